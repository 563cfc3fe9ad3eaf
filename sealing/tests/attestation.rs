//! Attestation of sealing keys: a real TDX quote through dcap-qvl, and the policy over a fake
//! verifier, so that each refusal is shown to name what was wrong.

use market_protocol::sealing::SealingKeyBinding;
use market_sealing::attestation::QuoteCollateralV3;
use market_sealing::{
    check_record, report_data_for, AttestationError, AttestationPolicy, DcapVerifier,
    QuoteVerifier, Tee, VerifiedQuote,
};
use sha2::{Digest, Sha256};

/// dcap-qvl's sample TDX quote and its collateral (see `tests/data/README.md`).
const TDX_QUOTE: &[u8] = include_bytes!("data/tdx_quote");
const TDX_COLLATERAL: &str = include_str!("data/tdx_quote_collateral.json");
const SGX_QUOTE: &[u8] = include_bytes!("data/sgx_quote");

/// 2025-07-01T00:00:00Z: inside the collateral's window, from the QE identity's issue date
/// (2025-06-19T10:32:27Z) to the PCK CRL's next update (2025-07-19T10:00:35Z).
const INSIDE_VALIDITY: u64 = 1_751_328_000;
/// 2025-07-20T00:00:00Z: a day after the PCK CRL, TCB info and QE identity expired.
const JUST_EXPIRED: u64 = 1_752_969_600;
/// 2035-01-01T00:00:00Z: ten years after every piece of that collateral expired.
const LONG_EXPIRED: u64 = 2_051_222_400;

const SAMPLE_MRTD: &str = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
const SAMPLE_REPORT_DATA: &str = "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20";

fn dcap() -> DcapVerifier {
    DcapVerifier::from_collateral_json(TDX_COLLATERAL).unwrap()
}

fn hex48(text: &str) -> Vec<u8> {
    let bytes = hex::decode(text).unwrap();
    assert_eq!(bytes.len(), 48);
    bytes
}

fn binding() -> SealingKeyBinding {
    SealingKeyBinding {
        hub: "hub.test.near".to_owned(),
        chain_id: "localnet".to_owned(),
        runner: "runner-1.test.near".to_owned(),
        sealing_key: [7; 32],
    }
}

fn quote_invalid(result: Result<VerifiedQuote, AttestationError>) -> String {
    match result {
        Err(AttestationError::QuoteInvalid(message)) => message,
        other => panic!("expected QuoteInvalid, got {other:?}"),
    }
}

// --- The real quote through dcap-qvl ---

#[test]
fn a_real_tdx_quote_verifies_inside_its_collateral_window() {
    let verified = dcap().verify(TDX_QUOTE, INSIDE_VALIDITY).unwrap();
    assert_eq!(verified.tee, Tee::Tdx);
    assert_eq!(hex::encode(&verified.measurement), SAMPLE_MRTD);
    assert_eq!(verified.tcb_status, "UpToDate");
    assert!(verified.advisory_ids.is_empty());
    assert_eq!(hex::encode(verified.report_data), SAMPLE_REPORT_DATA);
    assert_eq!(verified.rtmrs.len(), 4);
    assert!(verified.rtmrs.iter().all(|rtmr| rtmr.len() == 48));
    assert_eq!(verified.config_id.len(), 48);
}

#[test]
fn the_collateral_round_trips_through_its_json() {
    let collateral: QuoteCollateralV3 = serde_json::from_str(TDX_COLLATERAL).unwrap();
    let json = serde_json::to_string(&collateral).unwrap();
    let verifier = DcapVerifier::from_collateral_json(&json).unwrap();
    assert_eq!(verifier.collateral(), &collateral);
    assert!(DcapVerifier::new(collateral)
        .verify(TDX_QUOTE, INSIDE_VALIDITY)
        .is_ok());
}

#[test]
fn expired_collateral_is_refused() {
    for now in [JUST_EXPIRED, LONG_EXPIRED] {
        let message = quote_invalid(dcap().verify(TDX_QUOTE, now));
        assert!(message.to_lowercase().contains("expired"), "{message}");
    }
}

#[test]
fn a_flipped_byte_anywhere_signed_is_refused() {
    // Header (QE SVN), MRTD, REPORTDATA: each is covered by the quote's signature.
    for offset in [8, 48 + 136, 48 + 520] {
        let mut quote = TDX_QUOTE.to_vec();
        quote[offset] ^= 1;
        let message = quote_invalid(dcap().verify(&quote, INSIDE_VALIDITY));
        assert!(
            message.contains("signature is invalid"),
            "offset {offset}: {message}"
        );
    }
}

#[test]
fn an_sgx_enclave_quote_is_refused_as_not_tdx() {
    let error = dcap().verify(SGX_QUOTE, INSIDE_VALIDITY).unwrap_err();
    assert_eq!(
        error,
        AttestationError::WrongTee {
            expected: "tdx".to_owned(),
            found: "sgx (enclave)".to_owned(),
        }
    );
}

#[test]
fn garbage_is_refused_as_an_invalid_quote() {
    let message = quote_invalid(dcap().verify(b"not a quote", INSIDE_VALIDITY));
    assert!(message.starts_with("malformed quote"), "{message}");
}

#[test]
fn malformed_collateral_is_refused() {
    assert!(matches!(
        DcapVerifier::from_collateral_json("{\"tcb_info\": 1}"),
        Err(AttestationError::BadCollateral(_))
    ));
}

/// End to end on the real path: the sample quote is genuine and its MRTD allowed, but its
/// report data commits to someone else's data, not to our binding.
#[test]
fn the_real_quote_does_not_bind_our_sealing_key() {
    let policy = AttestationPolicy::new(vec![hex48(SAMPLE_MRTD)]);
    let error = policy
        .verify(&dcap(), TDX_QUOTE, INSIDE_VALIDITY, &binding())
        .unwrap_err();
    assert_eq!(
        error,
        AttestationError::ReportDataMismatch {
            expected: hex::encode(report_data_for(&binding())),
            found: SAMPLE_REPORT_DATA.to_owned(),
        }
    );
}

// --- The policy over a fake verifier ---

/// Returns the same verified quote for any input: the policy alone is under test.
struct Fixed(VerifiedQuote);

impl QuoteVerifier for Fixed {
    fn verify(&self, _quote: &[u8], _now: u64) -> Result<VerifiedQuote, AttestationError> {
        Ok(self.0.clone())
    }
}

const MRTD: [u8; 48] = [0xa5; 48];

fn attested(binding: &SealingKeyBinding) -> VerifiedQuote {
    VerifiedQuote {
        tee: Tee::Tdx,
        measurement: MRTD.to_vec(),
        rtmrs: vec![vec![0; 48]; 4],
        config_id: vec![0; 48],
        report_data: report_data_for(binding),
        tcb_status: "UpToDate".to_owned(),
        advisory_ids: Vec::new(),
    }
}

fn policy() -> AttestationPolicy {
    AttestationPolicy::new(vec![vec![0x11; 48], MRTD.to_vec()])
}

fn appraise(verified: VerifiedQuote) -> Result<VerifiedQuote, AttestationError> {
    policy().verify(&Fixed(verified), b"quote", INSIDE_VALIDITY, &binding())
}

#[test]
fn an_allowed_measurement_binding_this_key_passes() {
    let verified = attested(&binding());
    assert_eq!(appraise(verified.clone()).unwrap(), verified);
}

#[test]
fn another_measurement_is_refused() {
    let mut verified = attested(&binding());
    verified.measurement = vec![0x5a; 48];
    assert_eq!(
        appraise(verified).unwrap_err(),
        AttestationError::MeasurementNotAllowed {
            measurement: hex::encode([0x5a; 48]),
            allowed: 2,
        }
    );
}

#[test]
fn the_default_policy_allows_no_measurement() {
    let verified = attested(&binding());
    assert!(matches!(
        AttestationPolicy::default().check(&verified, &binding()),
        Err(AttestationError::MeasurementNotAllowed { allowed: 0, .. })
    ));
}

#[test]
fn a_tcb_status_not_allowed_is_refused_and_can_be_allowed() {
    let mut verified = attested(&binding());
    verified.tcb_status = "SWHardeningNeeded".to_owned();
    verified.advisory_ids = vec!["INTEL-SA-00615".to_owned()];
    assert_eq!(
        appraise(verified.clone()).unwrap_err(),
        AttestationError::TcbStatusNotAllowed {
            status: "SWHardeningNeeded".to_owned(),
            advisory_ids: vec!["INTEL-SA-00615".to_owned()],
            allowed: vec!["UpToDate".to_owned()],
        }
    );

    let mut lenient = policy();
    lenient
        .allowed_tcb_statuses
        .push("SWHardeningNeeded".to_owned());
    assert!(lenient.check(&verified, &binding()).is_ok());
}

#[test]
fn report_data_for_another_runner_key_hub_or_chain_is_refused() {
    let others = [
        SealingKeyBinding {
            runner: "runner-2.test.near".to_owned(),
            ..binding()
        },
        SealingKeyBinding {
            sealing_key: [8; 32],
            ..binding()
        },
        SealingKeyBinding {
            hub: "other-hub.test.near".to_owned(),
            ..binding()
        },
        SealingKeyBinding {
            chain_id: "testnet".to_owned(),
            ..binding()
        },
    ];
    for other in others {
        let error = appraise(attested(&other)).unwrap_err();
        assert_eq!(
            error,
            AttestationError::ReportDataMismatch {
                expected: hex::encode(report_data_for(&binding())),
                found: hex::encode(report_data_for(&other)),
            },
            "{other:?}"
        );
    }
}

#[test]
fn anything_in_the_reserved_half_of_the_report_data_is_refused() {
    let mut verified = attested(&binding());
    verified.report_data[63] = 1;
    assert!(matches!(
        appraise(verified),
        Err(AttestationError::ReportDataMismatch { .. })
    ));
}

/// Pins the report data: the runner inside the TEE and the owner's tools must agree on it.
/// Its first half is `bind_message`'s pinned vector (`binding.rs`).
#[test]
fn report_data_is_pinned() {
    let report_data = report_data_for(&SealingKeyBinding {
        hub: "hub.near".to_owned(),
        chain_id: "mainnet".to_owned(),
        runner: "r.near".to_owned(),
        sealing_key: [9; 32],
    });
    assert_eq!(
        hex::encode(&report_data[..32]),
        "5542fea8f0a65a62090b1b35895d4e8cac02d9b75a9f58a5a5f535f8e9d296a8"
    );
    assert_eq!(report_data[32..], [0; 32]);
}

// --- The hub's record ---

#[test]
fn the_hub_record_must_name_this_quote() {
    let verified = dcap().verify(TDX_QUOTE, INSIDE_VALIDITY).unwrap();
    let sha: [u8; 32] = Sha256::digest(TDX_QUOTE).into();
    check_record(&verified, TDX_QUOTE, "tdx", SAMPLE_MRTD, &sha).unwrap();
    check_record(
        &verified,
        TDX_QUOTE,
        "tdx",
        &SAMPLE_MRTD.to_uppercase(),
        &sha,
    )
    .unwrap();

    let field = |result| match result {
        Err(AttestationError::RecordMismatch { field, .. }) => field,
        other => panic!("expected RecordMismatch, got {other:?}"),
    };
    assert_eq!(
        field(check_record(
            &verified,
            TDX_QUOTE,
            "tdx",
            SAMPLE_MRTD,
            &[0; 32]
        )),
        "quote sha256"
    );
    assert_eq!(
        field(check_record(
            &verified,
            TDX_QUOTE,
            "sev-snp",
            SAMPLE_MRTD,
            &sha
        )),
        "tee"
    );
    assert_eq!(
        field(check_record(
            &verified,
            TDX_QUOTE,
            "tdx",
            &"00".repeat(48),
            &sha
        )),
        "measurement"
    );
}

#[test]
fn tee_is_written_as_the_hub_records_it() {
    assert_eq!(serde_json::to_string(&Tee::Tdx).unwrap(), "\"tdx\"");
    assert_eq!(Tee::Tdx.to_string(), "tdx");
}
