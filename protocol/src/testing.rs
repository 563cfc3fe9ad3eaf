//! Builders for signed authorizations and receipts, for tests, benchmarks and demos (the
//! `testing` feature): each starts from what every test needs and changes only what the
//! test is about, so no test writes the messages out by hand.
//!
//! ```ignore
//! let auth = AuthorizationBuilder::new(&hub, "localnet", &user, &runner)
//!     .cap(10 * NEAR).expires_at(now + HOUR).model(ModelCeiling::unbounded("m"))
//!     .sign([3; 32], &user_key);
//! let item = ReceiptBuilder::new(&auth).seq(1).line("m", 1, 100, 20, 1_000).sign(&runner_key);
//! ```

use near_sdk::{
    json_types::{U128, U64},
    AccountId,
};

use crate::{
    authorization::{ContentCeiling, ModelCeiling},
    crypto::native::KeyPair,
    receipt::next_transcript,
    Authorization, ContentLine, NativeCrypto, SettleItem, SignedAuthorization, SignedReceipt,
    UsageLine, UsageReceipt,
};

/// An authorization for one channel: no cap, no models, no content and no expiry until
/// told.
pub struct AuthorizationBuilder {
    authorization: Authorization,
    /// Set by an edit that names a key other than the signer's.
    named_key: Option<near_sdk::PublicKey>,
}

impl AuthorizationBuilder {
    pub fn new(hub: &AccountId, chain_id: &str, user: &AccountId, runner: &AccountId) -> Self {
        Self {
            authorization: Authorization {
                hub: hub.clone(),
                chain_id: chain_id.into(),
                user: user.clone(),
                runner: runner.clone(),
                cap: U128(0),
                expires_at_ns: U64(0),
                models: Vec::new(),
                content: Vec::new(),
                // The signing key's, set in `sign` unless an edit named another.
                public_key: KeyPair::from_seed([0; 32]).public_key(),
            },
            named_key: None,
        }
    }

    #[must_use]
    pub fn cap(mut self, yocto: u128) -> Self {
        self.authorization.cap = U128(yocto);
        self
    }

    #[must_use]
    pub fn expires_at(mut self, ns: u64) -> Self {
        self.authorization.expires_at_ns = U64(ns);
        self
    }

    #[must_use]
    pub fn model(mut self, ceiling: ModelCeiling) -> Self {
        self.authorization.models.push(ceiling);
        self
    }

    /// Allows `content_id` at up to `max_per_use` a use.
    #[must_use]
    pub fn content(mut self, content_id: &str, max_per_use: u128) -> Self {
        self.authorization.content.push(ContentCeiling {
            content_id: content_id.into(),
            max_per_use: U128(max_per_use),
        });
        self
    }

    /// Any other change (a test of a malformed or mismatched authorization).
    #[must_use]
    pub fn edit(mut self, edit: impl FnOnce(&mut Authorization)) -> Self {
        let before = self.authorization.public_key.clone();
        edit(&mut self.authorization);
        if self.authorization.public_key != before {
            self.named_key = Some(self.authorization.public_key.clone());
        }
        self
    }

    /// Signed by `key` (whose public key it names, unless an edit named another) with the
    /// NEP-413 `nonce`.
    pub fn sign(mut self, nonce: [u8; 32], key: &KeyPair) -> SignedAuthorization {
        self.authorization.public_key = self.named_key.unwrap_or_else(|| key.public_key());
        SignedAuthorization::sign(self.authorization, nonce, key)
    }
}

/// A change to a receipt, made last before it is signed.
type Edit<'a> = Box<dyn FnOnce(&mut UsageReceipt) + 'a>;

/// A receipt under `auth`, its total the sum of its lines, with distinct request and
/// output hashes per sequence number.
pub struct ReceiptBuilder<'a> {
    receipt: UsageReceipt,
    authorization: SignedAuthorization,
    total: Option<u128>,
    edits: Vec<Edit<'a>>,
}

impl<'a> ReceiptBuilder<'a> {
    pub fn new(auth: &SignedAuthorization) -> Self {
        Self {
            receipt: UsageReceipt {
                user: auth.authorization.user.clone(),
                runner: auth.authorization.runner.clone(),
                authorization: auth.prehash(&NativeCrypto).into(),
                seq: U64(1),
                lines: Vec::new(),
                content: Vec::new(),
                amount: U128(0),
                request_hash: [0; 32].into(),
                output_hash: [0; 32].into(),
                transcript: [0; 32].into(),
                issued_at_ns: U64(0),
            },
            authorization: auth.clone(),
            total: None,
            edits: Vec::new(),
        }
    }

    #[must_use]
    pub fn seq(mut self, seq: u64) -> Self {
        self.receipt.seq = U64(seq);
        self
    }

    /// A model line: cumulative units and amount for `model_id` v`version`.
    #[must_use]
    pub fn line(
        mut self,
        model_id: &str,
        version: u32,
        units_in: u64,
        units_out: u64,
        amount: u128,
    ) -> Self {
        self.receipt.lines.push(UsageLine {
            model_id: model_id.into(),
            version,
            units_in: U64(units_in),
            units_out: U64(units_out),
            amount: U128(amount),
        });
        self
    }

    /// A content line: cumulative uses and amount of `content_id`.
    #[must_use]
    pub fn content(mut self, content_id: &str, uses: u64, amount: u128) -> Self {
        self.receipt.content.push(ContentLine {
            content_id: content_id.into(),
            uses: U64(uses),
            amount: U128(amount),
        });
        self
    }

    /// A total other than the lines' sum (a malformed receipt).
    #[must_use]
    pub fn total(mut self, amount: u128) -> Self {
        self.total = Some(amount);
        self
    }

    #[must_use]
    pub fn issued_at(mut self, ns: u64) -> Self {
        self.receipt.issued_at_ns = U64(ns);
        self
    }

    /// Any other change, made last, just before signing.
    #[must_use]
    pub fn edit(mut self, edit: impl FnOnce(&mut UsageReceipt) + 'a) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// The unsigned receipt as built.
    pub fn build(self) -> UsageReceipt {
        let mut receipt = self.receipt;
        let lines = receipt.lines.iter().map(|l| l.amount.0);
        let content = receipt.content.iter().map(|c| c.amount.0);
        let sum = lines.chain(content).fold(0, u128::saturating_add);
        receipt.amount = U128(self.total.unwrap_or(sum));
        // Distinct commitments per receipt: the sequence's low byte is enough.
        let tag = receipt.seq.0.to_le_bytes()[0];
        let (request, output) = ([tag; 32], [tag ^ 0xff; 32]);
        receipt.request_hash = request.into();
        receipt.output_hash = output.into();
        receipt.transcript = next_transcript(&NativeCrypto, &[0; 32], &request, &output).into();
        for edit in self.edits {
            edit(&mut receipt);
        }
        receipt
    }

    /// Signed by the runner's `key`, with the authorization attached.
    pub fn sign(self, key: &KeyPair) -> SettleItem {
        let authorization = Some(self.authorization.clone());
        SettleItem {
            receipt: SignedReceipt::sign(self.build(), key),
            authorization,
        }
    }
}
