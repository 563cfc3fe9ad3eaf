//! Content registry: the content models are trained on (open content, rewarded with a
//! share of the model's token at issuance) and the content runners put into a model's
//! context at inference time (inference-only, paid per use from the same fee).

use market_protocol::{validate_content_id, Hash32};
use near_sdk::{env, json_types::U128, near, AccountId};

use crate::{
    error::Error,
    events::Event,
    payouts::Payout,
    registry::MAX_VERSION_TEXT,
    state::{ContentItem, License},
    storage::refund,
    Hub, HubExt,
};
use market_hub_api::Content;

#[near]
impl Content for Hub {
    #[payable]
    fn register_content(
        &mut self,
        content_id: String,
        sha256: Hash32,
        uri: String,
        license: License,
    ) {
        self.assert_active();
        validate_content_id(&content_id).unwrap_or_else(|e| Error::InvalidInput(e).panic());
        if uri.is_empty() || uri.len() > MAX_VERSION_TEXT {
            Error::InvalidInput(format!(
                "uri must be 1 to {MAX_VERSION_TEXT} bytes, not {}",
                uri.len()
            ))
            .panic();
        }
        if self.content.contains_key(&content_id) {
            Error::ContentExists(content_id).panic();
        }
        let owner = env::predecessor_account_id();
        let item = ContentItem {
            owner: owner.clone(),
            sha256,
            uri,
            license: license.clone(),
        };
        let ((), surplus) = self.paying_storage(
            env::attached_deposit().as_yoctonear(),
            "registering content",
            |s| {
                s.content.insert(&content_id, &item);
                // The owner's earnings entry exists from now on, so settlement never adds
                // storage for it.
                if !s.content_earnings.contains_key(&owner) {
                    s.content_earnings.insert(&owner, &0);
                }
            },
        );
        refund(&owner, surplus);
        Event::ContentRegistered {
            content_id,
            owner,
            license,
        }
        .emit();
    }

    fn content(&self, content_id: String) -> Option<ContentItem> {
        self.content.get(&content_id)
    }

    fn content_earnings(&self, owner: AccountId) -> U128 {
        U128(self.content_earnings.get(&owner).unwrap_or(0))
    }

    #[payable]
    fn withdraw_content_earnings(&mut self, amount: Option<U128>) {
        near_sdk::assert_one_yocto();
        let owner = env::predecessor_account_id();
        let available = self.content_earnings.get(&owner).unwrap_or(0);
        let amount = amount.map_or(available, |a| a.0);
        if amount == 0 {
            Error::NothingToWithdraw.panic();
        }
        if amount > available {
            Error::AmountTooLarge {
                requested: amount,
                available,
            }
            .panic();
        }
        self.content_earnings.insert(&owner, &(available - amount));
        Event::ContentEarningsWithdrawn {
            owner: owner.clone(),
            amount: U128(amount),
        }
        .emit();
        Payout::ContentEarnings {
            owner: owner.clone(),
        }
        .send(&owner, amount);
    }
}
