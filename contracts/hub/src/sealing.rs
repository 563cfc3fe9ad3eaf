//! Closed models: sealed versions, runners' sealing keys and content-key grants. The hub
//! only records and checks who may hold what; wrapping and unwrapping keys happens off
//! chain (`market-sealing`).
//!
//! A model with a sealed version is *closed*: settlement pays a runner for a sealed
//! version only with a grant of that version in force, and for a version in the clear of a
//! closed model only with a grant in force of any of its sealed versions
//! (`RunnerNotAllowed` otherwise, as an allowlist would). A receipt names its version and
//! the hub cannot see which weights ran, so a per-version rule alone would let a revoked
//! runner keep serving the weights it decrypted under a clear version's number. Closing is
//! a change of who may serve, so it takes effect after the notice, as every other one:
//! receipts of clear versions signed before then still settle.

use market_protocol::{
    ed25519_key_bytes,
    sealing::{SealingKeyBinding, SEALING_KEY_LEN},
};
use near_sdk::{
    collections::LookupMap,
    env,
    json_types::{Base64VecU8, U64},
    near, AccountId, PublicKey,
};

use market_hub_api::{Attestation, Grant, Pauses, SealedArtifact, Sealing, SealingKey};

use crate::{
    error::Error, events::Event, state::Deadline, state::StorageKey, storage::refund, Hub, HubExt,
};

/// Length of HPKE's encapsulated key for X25519, and of a wrapped 32-byte content key
/// (ChaCha20-Poly1305 adds a 16-byte tag).
const ENC_LEN: usize = 32;
const WRAPPED_KEY_LEN: usize = 48;
/// Longest scheme id, TEE kind or measurement.
const MAX_SEALING_TEXT: usize = 128;

/// A closed model: when its first sealed version's notice ends, and its sealed versions.
#[near(serializers = [borsh])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub since: Deadline,
    pub sealed_versions: Vec<u32>,
}

/// Closed models' records. Each map is only a storage prefix: skipped when the root state
/// is written (`HubState::sealing`) and rebuilt on load, so adding them changed no stored
/// layout and needed no migration.
pub struct SealingMaps {
    pub artifacts: LookupMap<(String, u32), SealedArtifact>,
    pub keys: LookupMap<AccountId, SealingKey>,
    pub grants: LookupMap<(String, u32, AccountId), Grant>,
    pub closed: LookupMap<String, Closed>,
}

impl Default for SealingMaps {
    fn default() -> Self {
        Self {
            artifacts: LookupMap::new(StorageKey::SealedArtifacts),
            keys: LookupMap::new(StorageKey::SealingKeys),
            grants: LookupMap::new(StorageKey::Grants),
            closed: LookupMap::new(StorageKey::ClosedModels),
        }
    }
}

impl SealingMaps {
    /// Records `version` of `model_id` as sealed, closing the model after `notice_ns` if
    /// it was open.
    pub(crate) fn add_sealed(
        &mut self,
        model_id: &String,
        version: u32,
        artifact: &SealedArtifact,
        now_ns: u64,
        notice_ns: u64,
    ) {
        self.artifacts
            .insert(&(model_id.clone(), version), artifact);
        let mut closed = self.closed.get(model_id).unwrap_or_else(|| Closed {
            since: Deadline {
                requested_at_ns: U64(now_ns),
                ready_at_ns: U64(now_ns.saturating_add(notice_ns)),
            },
            sealed_versions: Vec::new(),
        });
        closed.sealed_versions.push(version);
        self.closed.insert(model_id, &closed);
    }

    /// Whether settlement pays `runner` for `version` of `model_id` at `now_ns` (see the
    /// module's doc).
    pub(crate) fn admits(
        &self,
        model_id: &str,
        version: u32,
        runner: &AccountId,
        now_ns: u64,
        pauses: &Pauses,
    ) -> bool {
        let Some(closed) = self.closed.get(&model_id.to_owned()) else {
            return true;
        };
        let granted = |v: u32| {
            self.grants
                .get(&(model_id.to_owned(), v, runner.clone()))
                .is_some_and(|g| g.in_force(now_ns, pauses))
        };
        if closed.sealed_versions.contains(&version) {
            return granted(version);
        }
        let (ready, requested) = (closed.since.ready_at_ns.0, closed.since.requested_at_ns.0);
        now_ns < pauses.extended(ready, requested, now_ns)
            || closed.sealed_versions.iter().any(|&v| granted(v))
    }
}

pub(crate) fn validate_artifact(artifact: &SealedArtifact) -> Result<(), Error> {
    if artifact.scheme.is_empty() || artifact.scheme.len() > MAX_SEALING_TEXT {
        return Err(Error::InvalidInput(format!(
            "scheme must be 1 to {MAX_SEALING_TEXT} bytes, not {}",
            artifact.scheme.len()
        )));
    }
    Ok(())
}

fn exact_len(what: &str, bytes: &Base64VecU8, len: usize) -> Result<(), Error> {
    if bytes.0.len() == len {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{what} must be {len} bytes, not {}",
            bytes.0.len()
        )))
    }
}

impl Hub {
    /// `runner`, if it may hold sealed weights: registered, not gone, not slashed.
    fn sealing_runner(&self, runner: &AccountId) {
        let record = self
            .runners
            .get(runner)
            .unwrap_or_else(|| Error::UnknownRunner(runner.clone()).panic());
        if record.left {
            Error::RunnerLeft(runner.clone()).panic();
        }
        if record.slashed {
            Error::InvalidInput(format!("runner {runner} was slashed")).panic();
        }
    }

    /// `key` is one of `runner`'s receipt keys, not revoked.
    fn unrevoked_receipt_key(&self, runner: &AccountId, key: &PublicKey) {
        match self.runner_keys.get(&(runner.clone(), key.clone())) {
            Some(k) if !k.revoked() => {}
            Some(_) => Error::RevokedRunnerKey(key.clone()).panic(),
            None => Error::UnknownRunnerKey(key.clone()).panic(),
        }
    }

    /// A sealed version of a model the caller owns.
    fn owned_sealed_version(&self, model_id: &String, version: u32) -> SealedArtifact {
        self.owned_model(model_id);
        self.sealing
            .artifacts
            .get(&(model_id.clone(), version))
            .unwrap_or_else(|| {
                Error::InvalidInput(format!(
                    "model `{model_id}` has no sealed version {version}"
                ))
                .panic()
            })
    }
}

#[near]
impl Sealing for Hub {
    #[payable]
    fn register_sealing_key(
        &mut self,
        key: Base64VecU8,
        receipt_key: PublicKey,
        signature: Base64VecU8,
        attestation: Option<Attestation>,
    ) {
        self.assert_active();
        // A full-access key's call, even when the record's size is unchanged.
        if env::attached_deposit().is_zero() {
            Error::InvalidInput("attach at least one yocto (storage, if any)".into()).panic();
        }
        let runner = env::predecessor_account_id();
        self.sealing_runner(&runner);
        exact_len("a sealing key", &key, SEALING_KEY_LEN).unwrap_or_else(|e| e.panic());
        self.unrevoked_receipt_key(&runner, &receipt_key);
        if let Some(a) = &attestation {
            for (name, text) in [("tee", &a.tee), ("measurement", &a.measurement)] {
                if text.is_empty() || text.len() > MAX_SEALING_TEXT {
                    Error::InvalidInput(format!(
                        "attestation {name} must be 1 to {MAX_SEALING_TEXT} bytes"
                    ))
                    .panic();
                }
            }
        }
        let mut sealing_key = [0u8; SEALING_KEY_LEN];
        sealing_key.copy_from_slice(&key.0);
        let binding = SealingKeyBinding {
            hub: env::current_account_id().to_string(),
            chain_id: self.config_now().chain_id.clone(),
            runner: runner.to_string(),
            sealing_key,
        };
        let signed_by = ed25519_key_bytes(&receipt_key)
            .unwrap_or_else(|| Error::NotEd25519(receipt_key.clone()).panic());
        let signature: [u8; 64] = signature.0.as_slice().try_into().unwrap_or_else(|_| {
            Error::InvalidInput(format!(
                "the binding signature must be 64 bytes, not {}",
                signature.0.len()
            ))
            .panic()
        });
        if !env::ed25519_verify(&signature, binding.prehash(&crate::EnvCrypto), &signed_by) {
            Error::InvalidInput(
                "the binding signature does not verify with the receipt key".into(),
            )
            .panic();
        }
        let record = SealingKey {
            key: key.clone(),
            receipt_key: receipt_key.clone(),
            attestation,
            registered_at_ns: U64(env::block_timestamp()),
        };
        let ((), surplus) = self.paying_storage(
            env::attached_deposit().as_yoctonear(),
            "a sealing key",
            |s| {
                s.sealing.keys.insert(&runner, &record);
            },
        );
        refund(&runner, surplus);
        Event::SealingKeyRegistered {
            runner,
            key,
            receipt_key,
        }
        .emit();
    }

    fn sealing_key(&self, runner: AccountId) -> Option<SealingKey> {
        self.sealing.keys.get(&runner)
    }

    #[payable]
    fn grant_sealed_version(
        &mut self,
        model_id: String,
        version: u32,
        runner: AccountId,
        sealing_key: Base64VecU8,
        enc: Base64VecU8,
        wrapped_key: Base64VecU8,
    ) {
        self.assert_active();
        self.owned_sealed_version(&model_id, version);
        exact_len("enc", &enc, ENC_LEN).unwrap_or_else(|e| e.panic());
        exact_len("wrapped_key", &wrapped_key, WRAPPED_KEY_LEN).unwrap_or_else(|e| e.panic());
        self.sealing_runner(&runner);
        let current = self.sealing.keys.get(&runner).unwrap_or_else(|| {
            Error::InvalidInput(format!("runner {runner} has no sealing key")).panic()
        });
        if current.key != sealing_key {
            Error::InvalidInput(format!(
                "runner {runner}'s sealing key is not the one the content key was wrapped to"
            ))
            .panic();
        }
        self.unrevoked_receipt_key(&runner, &current.receipt_key);
        let grant = Grant {
            sealing_key,
            enc,
            wrapped_key,
            granted_at_ns: U64(env::block_timestamp()),
            revoked: None,
        };
        let owner = env::predecessor_account_id();
        let key = (model_id.clone(), version, runner.clone());
        let ((), surplus) =
            self.paying_storage(env::attached_deposit().as_yoctonear(), "a grant", |s| {
                // Measured with a revocation, the record's largest size.
                s.sealing.grants.insert(
                    &key,
                    &Grant {
                        revoked: Some(Deadline {
                            requested_at_ns: U64(0),
                            ready_at_ns: U64(0),
                        }),
                        ..grant.clone()
                    },
                );
            });
        self.sealing.grants.insert(&key, &grant);
        refund(&owner, surplus);
        Event::VersionGranted {
            model_id,
            version,
            runner,
        }
        .emit();
    }

    #[payable]
    fn revoke_grant(&mut self, model_id: String, version: u32, runner: AccountId) {
        near_sdk::assert_one_yocto();
        self.owned_sealed_version(&model_id, version);
        let key = (model_id.clone(), version, runner.clone());
        let mut grant = self.sealing.grants.get(&key).unwrap_or_else(|| {
            Error::InvalidInput(format!(
                "runner {runner} holds no grant of model `{model_id}` version {version}"
            ))
            .panic()
        });
        if grant.revoked.is_some() {
            Error::InvalidInput("the grant's revocation is already scheduled".into()).panic();
        }
        let now = env::block_timestamp();
        let ready_at_ns = U64(now + self.notice_ns());
        grant.revoked = Some(Deadline {
            requested_at_ns: U64(now),
            ready_at_ns,
        });
        self.sealing.grants.insert(&key, &grant);
        Event::GrantRevocationScheduled {
            model_id,
            version,
            runner,
            effective_at_ns: ready_at_ns,
        }
        .emit();
    }

    fn grant(&self, model_id: String, version: u32, runner: AccountId) -> Option<Grant> {
        self.sealing.grants.get(&(model_id, version, runner))
    }

    fn sealed_artifact(&self, model_id: String, version: u32) -> Option<SealedArtifact> {
        self.sealing.artifacts.get(&(model_id, version))
    }
}
