//! Models and their versions: registered and owned by model developers.

use market_protocol::validate_model_id;
use near_sdk::{
    env,
    json_types::{U128, U64},
    near, AccountId,
};

pub use market_hub_api::{ModelUpdate, ModelView, VersionInput};

use crate::{
    error::Error,
    events::Event,
    fees::MAX_RUNNER_BPS,
    state::{Model, ModelVersion, RunnerPolicy, RunnerTerms, Scheduled},
    storage::refund,
    Hub, HubExt,
};
use market_hub_api::Registry;

/// Longest allowlist a model may have; bounds what settlement reads per receipt.
pub const MAX_ALLOWLIST: usize = 16;
/// Longest `format`, `architecture` or `uri` of a version.
pub const MAX_VERSION_TEXT: usize = 256;

fn validate_policy(policy: &RunnerPolicy) -> Result<(), Error> {
    if let RunnerPolicy::Allowlist(list) = policy {
        if list.len() > MAX_ALLOWLIST {
            return Err(Error::InvalidInput(format!(
                "allowlist has {} runners, at most {MAX_ALLOWLIST}",
                list.len()
            )));
        }
    }
    Ok(())
}

impl Hub {
    pub(crate) fn assert_active(&self) {
        if self.pauses.is_paused(env::block_timestamp()) {
            Error::Paused.panic();
        }
    }

    fn validate_runner_bps(&self, runner_bps: u16) {
        let min = self.config_now().min_runner_bps;
        if runner_bps < min || runner_bps > MAX_RUNNER_BPS {
            Error::RunnerBpsOutOfRange {
                runner_bps,
                min,
                max: MAX_RUNNER_BPS,
            }
            .panic();
        }
    }

    /// The model, if the caller owns it.
    pub(crate) fn owned_model(&self, model_id: &String) -> Model {
        let caller = env::predecessor_account_id();
        let model = self
            .models
            .get(model_id)
            .unwrap_or_else(|| Error::UnknownModel(model_id.into()).panic());
        if model.owner != caller {
            Error::NotModelOwner {
                model_id: model_id.into(),
                caller,
            }
            .panic();
        }
        model
    }

    fn holders_bps(&self, model: &Model) -> u16 {
        let now = env::block_timestamp();
        // Cannot underflow: runner_bps <= MAX_RUNNER_BPS and protocol <= MAX_PROTOCOL_FEE_BPS.
        crate::fees::BPS
            - model.terms_at(now, &self.pauses).runner_bps
            - self.config_at(now).protocol_fee_bps
    }

    fn view(&self, model_id: String, model: Model) -> ModelView {
        ModelView {
            holders_bps: self.holders_bps(&model),
            model_id,
            model,
        }
    }
}

#[near]
impl Registry for Hub {
    #[payable]
    fn register_model(
        &mut self,
        model_id: String,
        price_in_per_1k: U128,
        price_out_per_1k: U128,
        runner_bps: u16,
        runner_policy: RunnerPolicy,
    ) {
        self.assert_active();
        validate_model_id(&model_id).unwrap_or_else(|e| Error::InvalidInput(e).panic());
        // The holders' share accrues from the first receipt and reaches them through the
        // model's token on `<model_id>.<hub>`: an id that cannot name it would strand it.
        Self::token_account(&model_id).unwrap_or_else(|e| e.panic());
        validate_policy(&runner_policy).unwrap_or_else(|e| e.panic());
        self.validate_runner_bps(runner_bps);
        if self.models.get(&model_id).is_some() {
            Error::ModelExists(model_id).panic();
        }
        let owner = env::predecessor_account_id();
        let model = Model {
            owner: owner.clone(),
            price_in_per_1k,
            price_out_per_1k,
            terms: RunnerTerms {
                runner_bps,
                runner_policy,
            },
            pending_terms: None,
            versions: 0,
            hidden: false,
            holders_accrued: U128(0),
            registered_at_ns: U64(env::block_timestamp()),
            token: None,
            token_issued: false,
            training_manifest: Vec::new(),
        };
        let ((), surplus) = self.paying_storage(
            env::attached_deposit().as_yoctonear(),
            "registering a model",
            |s| {
                s.models.insert(&model_id, &model);
            },
        );
        refund(&owner, surplus);
        Event::ModelRegistered {
            model_id,
            owner,
            price_in_per_1k,
            price_out_per_1k,
            runner_bps,
        }
        .emit();
    }

    #[payable]
    fn add_model_version(&mut self, model_id: String, version: VersionInput) -> u32 {
        self.assert_active();
        for (name, text) in [
            ("format", &version.format),
            ("architecture", &version.architecture),
            ("uri", &version.uri),
        ] {
            if text.is_empty() || text.len() > MAX_VERSION_TEXT {
                Error::InvalidInput(format!(
                    "{name} must be 1 to {MAX_VERSION_TEXT} bytes, not {}",
                    text.len()
                ))
                .panic();
            }
        }
        if let Some(sealed) = &version.sealed {
            crate::sealing::validate_artifact(sealed).unwrap_or_else(|e| e.panic());
        }
        let mut model = self.owned_model(&model_id);
        let number = model.versions + 1;
        model.versions = number;
        let (now, notice) = (env::block_timestamp(), self.notice_ns());
        let stored = ModelVersion {
            weights_sha256: version.weights_sha256,
            format: version.format,
            architecture: version.architecture,
            tokenizer_sha256: version.tokenizer_sha256,
            uri: version.uri,
            size_bytes: version.size_bytes,
            added_at_ns: U64(env::block_timestamp()),
        };
        let ((), surplus) = self.paying_storage(
            env::attached_deposit().as_yoctonear(),
            "adding a model version",
            |s| {
                s.versions.insert(&(model_id.clone(), number), &stored);
                s.models.insert(&model_id, &model);
                if let Some(sealed) = &version.sealed {
                    s.sealing.add_sealed(&model_id, number, sealed, now, notice);
                }
            },
        );
        refund(&env::predecessor_account_id(), surplus);
        Event::ModelVersionAdded {
            model_id,
            version: number,
            weights_sha256: version.weights_sha256.to_string(),
        }
        .emit();
        number
    }

    #[payable]
    fn update_model(&mut self, model_id: String, update: ModelUpdate) {
        let attached = crate::storage::full_access_deposit();
        let mut model = self.owned_model(&model_id);
        let now = env::block_timestamp();
        // Fold a scheduled change that has taken effect.
        if let Some(p) = model
            .pending_terms
            .take_if(|p| p.in_effect(now, &self.pauses))
        {
            model.terms = p.terms;
        }
        let mut terms = model.terms.clone();
        if let Some(runner_bps) = update.runner_bps {
            self.validate_runner_bps(runner_bps);
            terms.runner_bps = runner_bps;
        }
        if let Some(policy) = &update.runner_policy {
            validate_policy(policy).unwrap_or_else(|e| e.panic());
            terms.runner_policy = policy.clone();
        }
        let mut scheduled = None;
        if update.runner_bps.is_some() || update.runner_policy.is_some() {
            model.pending_terms = None;
            if terms.runner_bps == model.terms.runner_bps
                && model.terms.runner_policy.within(&terms.runner_policy)
            {
                model.terms = terms;
            } else {
                let effective_at_ns = U64(now + self.notice_ns());
                model.pending_terms = Some(Scheduled {
                    terms: terms.clone(),
                    scheduled_at_ns: U64(now),
                    effective_at_ns,
                });
                scheduled = Some((terms, effective_at_ns));
            }
        }
        model.price_in_per_1k = update.price_in_per_1k.unwrap_or(model.price_in_per_1k);
        model.price_out_per_1k = update.price_out_per_1k.unwrap_or(model.price_out_per_1k);
        model.hidden = update.hidden.unwrap_or(model.hidden);
        let ((), surplus) = self.paying_storage(attached, "a longer model record", |s| {
            s.models.insert(&model_id, &model);
        });
        refund(&env::predecessor_account_id(), surplus);
        Event::ModelUpdated {
            model_id: model_id.clone(),
            price_in_per_1k: model.price_in_per_1k,
            price_out_per_1k: model.price_out_per_1k,
            terms: model.terms,
            hidden: model.hidden,
        }
        .emit();
        if let Some((terms, effective_at_ns)) = scheduled {
            Event::ModelTermsScheduled {
                model_id,
                terms,
                effective_at_ns,
            }
            .emit();
        }
    }

    #[payable]
    fn transfer_model(&mut self, model_id: String, new_owner: AccountId) {
        let attached = crate::storage::full_access_deposit();
        let mut model = self.owned_model(&model_id);
        let from = std::mem::replace(&mut model.owner, new_owner.clone());
        let ((), surplus) = self.paying_storage(attached, "a longer owner id", |s| {
            s.models.insert(&model_id, &model);
        });
        refund(&from, surplus);
        Event::ModelTransferred {
            model_id,
            from,
            to: new_owner,
        }
        .emit();
    }

    fn model(&self, model_id: String) -> Option<ModelView> {
        let model = self.models.get(&model_id)?;
        Some(self.view(model_id, model))
    }

    fn models(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<ModelView> {
        let keys = self.models.keys_as_vector();
        let values = self.models.values_as_vector();
        let from = u64::from(from_index.unwrap_or(0));
        let to = (from + u64::from(limit.unwrap_or(50).min(200))).min(keys.len());
        (from..to)
            .filter_map(|i| Some((keys.get(i)?, values.get(i)?)))
            .filter(|(_, m)| !m.hidden)
            .map(|(model_id, model)| self.view(model_id, model))
            .collect()
    }

    fn model_version(&self, model_id: String, version: u32) -> Option<ModelVersion> {
        self.versions.get(&(model_id, version))
    }
}
