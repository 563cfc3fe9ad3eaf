//! Closed models: versions whose weights are sealed (encrypted at rest), runners' X25519
//! sealing keys, and the grants that wrap a version's content key to one runner's sealing
//! key. The hub stores and checks; the cryptography runs off chain (`market-sealing`):
//! the hub cannot decrypt anything it stores, and everything it stores is public forever.

use market_protocol::Hash32;
use near_sdk::{
    json_types::{Base64VecU8, U64},
    near, AccountId, PublicKey,
};

use crate::schedule::Deadline;

/// How a sealed version's artifact is encrypted and what its ciphertext is. The version's
/// `weights_sha256` stays the plaintext weights' hash, which receipts and runners use.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedArtifact {
    /// The sealing scheme's id (`market-sealing`'s `SCHEME`).
    pub scheme: String,
    pub ciphertext_sha256: Hash32,
    pub ciphertext_size: U64,
}

/// What a runner's sealing key says about the machine holding it, for owners who grant
/// only to attested runners. The hub records it; the owner's grant command verifies the
/// quote (whose hash this names) off chain before wrapping a key.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// The trusted execution environment, e.g. `tdx`.
    pub tee: String,
    /// The measurement the quote reports (hex), e.g. TDX's MRTD.
    pub measurement: String,
    pub quote_sha256: Hash32,
}

/// A runner's X25519 public key that content keys are wrapped to, bound to the runner by a
/// signature of one of its registered receipt keys.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealingKey {
    /// 32 bytes.
    pub key: Base64VecU8,
    /// The receipt key that signed the binding (`market_protocol::sealing::binding`).
    pub receipt_key: PublicKey,
    pub attestation: Option<Attestation>,
    pub registered_at_ns: U64,
}

/// A version's content key wrapped to a runner's sealing key (HPKE base mode, RFC 9180).
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The sealing key it was wrapped to: a runner that rotates its key needs new grants.
    pub sealing_key: Base64VecU8,
    /// HPKE's encapsulated key, and the wrapped content key.
    pub enc: Base64VecU8,
    pub wrapped_key: Base64VecU8,
    pub granted_at_ns: U64,
    /// A scheduled revocation: from its `ready_at_ns` on the runner no longer passes the
    /// model's policy for this version (receipts it signed before then still settle).
    pub revoked: Option<Deadline>,
}

impl Grant {
    /// Whether the grant still admits its runner at `now_ns` (a pause extends a notice).
    pub fn in_force(&self, now_ns: u64, pauses: &crate::Pauses) -> bool {
        self.revoked
            .is_none_or(|d| now_ns < pauses.extended(d.ready_at_ns.0, d.requested_at_ns.0, now_ns))
    }
}

/// Sealed versions, sealing keys and grants. The hub contract implements it; callers use
/// [`crate::methods`].
pub trait Sealing {
    /// Registers (or replaces) the caller's sealing key. The caller must be an active,
    /// unslashed runner, `receipt_key` one of its unrevoked receipt keys, and `signature`
    /// that key's ed25519 signature of `market_protocol::sealing::binding(hub, chain_id,
    /// runner, key)`. Grants wrapped to a replaced key stay, naming the key they were
    /// wrapped to. Attach storage, at least one yocto (surplus refunded).
    fn register_sealing_key(
        &mut self,
        key: Base64VecU8,
        receipt_key: PublicKey,
        signature: Base64VecU8,
        attestation: Option<Attestation>,
    );

    fn sealing_key(&self, runner: AccountId) -> Option<SealingKey>;

    /// The model's owner grants a sealed version's content key to `runner`, wrapped to
    /// `sealing_key`, which must be the runner's current sealing key (the owner learns it
    /// from the runner, not from a node that could lie, and a key rotated since is refused
    /// rather than granted unusable). The runner must be active, not slashed, its sealing
    /// key's receipt key unrevoked. Replaces an earlier grant of the same version to the
    /// same runner, and cancels its revocation. Attach storage (surplus refunded).
    fn grant_sealed_version(
        &mut self,
        model_id: String,
        version: u32,
        runner: AccountId,
        sealing_key: Base64VecU8,
        enc: Base64VecU8,
        wrapped_key: Base64VecU8,
    );

    /// Schedules the end of a grant after the hub's notice, as every change to who may
    /// serve a model: receipts the runner signs until then still settle. The runner keeps
    /// whatever it decrypted: to stop a leak, seal a new version with a new key. One yocto.
    fn revoke_grant(&mut self, model_id: String, version: u32, runner: AccountId);

    fn grant(&self, model_id: String, version: u32, runner: AccountId) -> Option<Grant>;

    /// The sealing of a sealed version; `None` for a version in the clear.
    fn sealed_artifact(&self, model_id: String, version: u32) -> Option<SealedArtifact>;
}
