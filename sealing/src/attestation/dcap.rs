//! Intel TDX quotes verified offline with dcap-qvl (Phala Network's pure-Rust port of
//! Intel's `SGXDataCenterAttestationPrimitives` quote verification library), against Intel's
//! SGX root CA that dcap-qvl embeds.

use std::fmt;

use dcap_qvl::configs::RustCryptoConfig;
use dcap_qvl::quote::Quote;
use dcap_qvl::verify::QuoteVerifier as DcapQuoteVerifier;

pub use dcap_qvl::QuoteCollateralV3;

use super::{AttestationError, QuoteVerifier, Tee, VerifiedQuote};

/// `tee_type` of a TDX quote header (Intel's `sgx_quote_4.h`).
const TEE_TYPE_TDX: u32 = 0x81;

/// Verifies TDX quotes against one platform's collateral: the TCB info, QE identity, CRLs
/// and issuer chains that the owner fetched from Intel's PCS or a PCCS for the quote's
/// FMSPC. The collateral carries its own validity window; verifying outside it fails.
#[derive(Clone, Debug)]
pub struct DcapVerifier {
    collateral: QuoteCollateralV3,
}

impl DcapVerifier {
    pub fn new(collateral: QuoteCollateralV3) -> Self {
        Self { collateral }
    }

    /// From the JSON that dcap-qvl writes for a `QuoteCollateralV3` (what its PCCS client and
    /// CLI save): binary fields as hex strings.
    pub fn from_collateral_json(json: &str) -> Result<Self, AttestationError> {
        serde_json::from_str(json)
            .map(Self::new)
            .map_err(|e| AttestationError::BadCollateral(e.to_string()))
    }

    pub fn collateral(&self) -> &QuoteCollateralV3 {
        &self.collateral
    }
}

impl QuoteVerifier for DcapVerifier {
    fn verify(&self, quote: &[u8], now_unix_secs: u64) -> Result<VerifiedQuote, AttestationError> {
        // Refuse other TEEs by their header before any signature is checked: an SGX quote
        // against TDX collateral would otherwise fail with an obscure QE identity mismatch.
        let header = Quote::parse(quote)
            .map_err(|e| invalid(e.context("malformed quote")))?
            .header;
        if header.tee_type != TEE_TYPE_TDX {
            return Err(wrong_tee(header.tee_type));
        }
        // The backend named rather than dcap-qvl's feature-chosen default, so that another
        // crate turning on `ring` does not change what runs here.
        let report = DcapQuoteVerifier::new_prod()
            .with_config::<RustCryptoConfig>()
            .verify(quote, &self.collateral, now_unix_secs)
            .map_err(invalid)?;
        let Some(td) = report.report.as_td10() else {
            return Err(wrong_tee(header.tee_type));
        };
        Ok(VerifiedQuote {
            tee: Tee::Tdx,
            measurement: td.mr_td.to_vec(),
            rtmrs: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3]
                .iter()
                .map(|rtmr| rtmr.to_vec())
                .collect(),
            config_id: td.mr_config_id.to_vec(),
            report_data: td.report_data,
            tcb_status: report.status,
            advisory_ids: report.advisory_ids,
        })
    }
}

fn wrong_tee(tee_type: u32) -> AttestationError {
    AttestationError::WrongTee {
        expected: Tee::Tdx.to_string(),
        found: match tee_type {
            0 => "sgx (enclave)".to_owned(),
            other => format!("unknown (tee_type {other:#x})"),
        },
    }
}

/// dcap-qvl's error with its causes (anyhow's alternate form): "Failed to decode quote: <why>".
fn invalid(error: impl fmt::Display) -> AttestationError {
    AttestationError::QuoteInvalid(format!("{error:#}"))
}
