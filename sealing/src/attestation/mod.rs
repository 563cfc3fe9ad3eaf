//! TEE attestation of a runner's sealing key: before an owner wraps a content key to a
//! runner, it can demand a quote proving that the sealing key lives inside a measured TEE
//! it trusts, so that only that code, and not the runner's operator, ever holds the key.
//!
//! # Report-data convention
//!
//! The runner, inside the TEE, generates its sealing key and asks the TEE for a quote whose
//! 64-byte REPORTDATA is [`report_data_for`] its [`SealingKeyBinding`]:
//!
//! | bytes  | content |
//! |--------|---------|
//! | 0..32  | `SealingKeyBinding::prehash` = `sha256(borsh(u32 SEALING_KEY_TAG) ‖ borsh(hub, chain_id, runner, sealing_key))` |
//! | 32..64 | zero |
//!
//! The quote then says: a TD with this measurement, on a platform Intel vouches for at this
//! TCB level, asked for this binding, that is, holds this sealing key for this runner on
//! this hub and chain. Another runner, hub or key gives another hash, so a quote cannot be
//! replayed for them. The zero half is reserved so that a later version can commit to more
//! (a nonce, a second key) without an ambiguous reading of old quotes.
//!
//! # Checks, in order
//!
//! 1. [`QuoteVerifier::verify`]: the quote is genuine at the given time. For TDX that is
//!    [`DcapVerifier`], dcap-qvl's port of Intel's DCAP quote verification: the PCK
//!    chain up to Intel's SGX root CA, the CRLs, the signed TCB info and QE identity
//!    (expired collateral is refused), the QE report and the quote signature, and TD
//!    attributes (debug and migratable TDs are refused).
//! 2. [`AttestationPolicy::check`]: the TCB status and the measurement are allowed, and the
//!    report data binds the sealing key.
//! 3. [`check_record`]: the hub's attestation record names this very quote.
//!
//! # What an MRTD allowlist pins, and what it does not
//!
//! TDX's MRTD measures the TD's initial memory: the virtual firmware (TDVF/OVMF). The kernel,
//! command line, initrd and application are measured into the runtime registers RTMR0-3,
//! which [`VerifiedQuote::rtmrs`] exposes but [`AttestationPolicy`] does not yet check. An
//! MRTD allowlist therefore admits any software booted by that firmware; a policy that must
//! pin the runner's code has to check the RTMRs (or a measured-boot event log replayed into
//! them) too.

mod dcap;
mod policy;

pub use dcap::{DcapVerifier, QuoteCollateralV3};
pub use policy::{check_record, report_data_for, AttestationPolicy, UP_TO_DATE};

use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::error::AttestationError;
#[cfg(doc)]
use market_protocol::sealing::SealingKeyBinding;

/// Checks that a quote is genuine and says what it attests. The seam between the policy and
/// a TEE's own verification, so that the policy is tested without real quotes and other
/// TEE kinds can be added.
pub trait QuoteVerifier {
    /// Verifies `quote` as of `now_unix_secs` (collateral and certificates must be valid
    /// then) and returns what it attests. Applies no allowlist: that is the policy's job.
    fn verify(&self, quote: &[u8], now_unix_secs: u64) -> Result<VerifiedQuote, AttestationError>;
}

/// The kind of trusted execution environment a quote comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    /// Intel TDX: a quote of version 4 or 5 with a TD report.
    Tdx,
}

impl Tee {
    /// The name the hub records, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Tdx => "tdx",
        }
    }
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a genuine quote attests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedQuote {
    pub tee: Tee,
    /// The launch measurement: for TDX the MRTD, 48 bytes.
    pub measurement: Vec<u8>,
    /// Runtime measurement registers: for TDX RTMR0-3 (firmware configuration, kernel and
    /// command line, initrd, application), 48 bytes each.
    pub rtmrs: Vec<Vec<u8>>,
    /// For TDX the MRCONFIGID, 48 bytes the host sets at TD creation (some deployments put
    /// the hash of the workload's configuration there).
    pub config_id: Vec<u8>,
    /// What the code inside the TEE asked to have signed; see [`report_data_for`].
    pub report_data: [u8; 64],
    /// The platform's and quoting enclave's merged TCB status as Intel's collateral rates
    /// it: `UpToDate`, `SWHardeningNeeded`, `ConfigurationNeeded`, `OutOfDate`, …
    pub tcb_status: String,
    /// Intel security advisories (`INTEL-SA-…`) that apply at that TCB level.
    pub advisory_ids: Vec<String>,
}
