//! Signed messages of the AI marketplace, shared by the hub contract and the runner so that
//! both sign and verify the very same bytes.
//!
//! * [`Authorization`]: the user's spending authorization for one channel (user → runner),
//!   signed as a NEP-413 message so any NEAR wallet's `signMessage` can produce it.
//! * [`UsageReceipt`]: the runner's cumulative usage receipt, signed under the suite's own
//!   NEP-461 prefix tag ([`RECEIPT_TAG`]).
//!
//! Byte layouts are pinned by known-answer vectors in `protocol/vectors.json`.

pub mod admission;
pub mod authorization;
pub mod crypto;
pub mod ids;
pub mod nep413;
pub mod receipt;
pub mod sealing;
#[cfg(feature = "native")]
pub mod weights;

pub use admission::{Admission, Inadmissible, KeyState};
pub use authorization::{Authorization, SignedAuthorization};
pub use crypto::{ed25519_key_bytes, Crypto, Signature};
pub use ids::{validate_chain_id, validate_content_id, validate_model_id, ChannelId, Hash32};
pub use receipt::{ContentLine, SettleItem, SignedReceipt, UsageLine, UsageReceipt, RECEIPT_TAG};

#[cfg(feature = "native")]
pub use crypto::native::NativeCrypto;

#[cfg(feature = "sign")]
pub mod vectors;

#[cfg(feature = "testing")]
pub mod testing;
