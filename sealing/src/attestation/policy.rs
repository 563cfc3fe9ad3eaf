//! What an owner accepts from a genuine quote, and whether the hub's record names it.

use market_protocol::sealing::SealingKeyBinding;
use market_protocol::NativeCrypto;
use sha2::{Digest, Sha256};

use super::{AttestationError, QuoteVerifier, VerifiedQuote};

/// The TCB status of a platform with every published fix applied.
pub const UP_TO_DATE: &str = "UpToDate";

/// The REPORTDATA a runner's TEE puts in its quote for `binding`: the binding's prehash,
/// then 32 zero bytes (see the module documentation).
pub fn report_data_for(binding: &SealingKeyBinding) -> [u8; 64] {
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(&binding.prehash(&NativeCrypto));
    report_data
}

/// The measurements and TCB statuses an owner accepts. An empty measurement list accepts
/// nothing: an owner must name the TD images it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationPolicy {
    /// Launch measurements (TDX MRTDs, 48 bytes each).
    pub allowed_measurements: Vec<Vec<u8>>,
    /// TCB statuses as dcap-qvl names them.
    pub allowed_tcb_statuses: Vec<String>,
}

impl Default for AttestationPolicy {
    /// No measurement, and only fully patched platforms: anything weaker is the owner's
    /// explicit choice.
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl AttestationPolicy {
    /// Accepts these measurements on `UpToDate` platforms only.
    pub fn new(allowed_measurements: Vec<Vec<u8>>) -> Self {
        Self {
            allowed_measurements,
            allowed_tcb_statuses: vec![UP_TO_DATE.to_owned()],
        }
    }

    /// Checks a verified quote against the policy, then that it binds `binding`.
    pub fn check(
        &self,
        verified: &VerifiedQuote,
        binding: &SealingKeyBinding,
    ) -> Result<(), AttestationError> {
        if !self.allowed_tcb_statuses.contains(&verified.tcb_status) {
            return Err(AttestationError::TcbStatusNotAllowed {
                status: verified.tcb_status.clone(),
                advisory_ids: verified.advisory_ids.clone(),
                allowed: self.allowed_tcb_statuses.clone(),
            });
        }
        if !self.allowed_measurements.contains(&verified.measurement) {
            return Err(AttestationError::MeasurementNotAllowed {
                measurement: hex::encode(&verified.measurement),
                allowed: self.allowed_measurements.len(),
            });
        }
        let expected = report_data_for(binding);
        if verified.report_data != expected {
            return Err(AttestationError::ReportDataMismatch {
                expected: hex::encode(expected),
                found: hex::encode(verified.report_data),
            });
        }
        Ok(())
    }

    /// Verifies `quote` with `verifier` as of `now_unix_secs`, then [`Self::check`]s it.
    pub fn verify(
        &self,
        verifier: &(impl QuoteVerifier + ?Sized),
        quote: &[u8],
        now_unix_secs: u64,
        binding: &SealingKeyBinding,
    ) -> Result<VerifiedQuote, AttestationError> {
        let attested = verifier.verify(quote, now_unix_secs)?;
        self.check(&attested, binding)?;
        Ok(attested)
    }
}

/// Checks that the hub's attestation record (`tee`, `measurement_hex`, `quote_sha256`, the
/// fields of `market_hub_api::sealing::Attestation`) describes `quote`, which verified as
/// `verified`. The hub does not verify quotes, so its record is only a claim: this is what
/// ties the claim to a quote that was checked.
pub fn check_record(
    verified: &VerifiedQuote,
    quote: &[u8],
    tee: &str,
    measurement_hex: &str,
    quote_sha256: &[u8; 32],
) -> Result<(), AttestationError> {
    let mismatch = |field, recorded: String, actual: String| {
        Err(AttestationError::RecordMismatch {
            field,
            recorded,
            actual,
        })
    };
    let actual_sha256: [u8; 32] = Sha256::digest(quote).into();
    if &actual_sha256 != quote_sha256 {
        return mismatch(
            "quote sha256",
            hex::encode(quote_sha256),
            hex::encode(actual_sha256),
        );
    }
    if tee != verified.tee.as_str() {
        return mismatch("tee", tee.to_owned(), verified.tee.to_string());
    }
    let measurement = hex::encode(&verified.measurement);
    if !measurement_hex.eq_ignore_ascii_case(&measurement) {
        return mismatch("measurement", measurement_hex.to_owned(), measurement);
    }
    Ok(())
}
