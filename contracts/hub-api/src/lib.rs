//! The hub contract's interface, for the contract and every caller alike: one trait per
//! area that the contract implements ([`Registry`], [`Runners`], [`Escrow`],
//! [`Settlement`], [`Disputes`], [`Content`], [`Tokens`], [`Admin`], [`Upgrades`],
//! [`Sealing`], as
//! near/intents' `defuse` does), the types its methods take and return, the codes it
//! rejects with ([`RejectCode`]), and each method described once as a value ([`methods`])
//! that a transport sends: [`jsonrpc`] over NEAR JSON-RPC, the local chain's and
//! near-workspaces' in `sandbox-tests`.
//!
//! ```ignore
//! let channel = client.view(methods::channel(&user, &runner)).await?;
//! signer.call(methods::fund_channel(&runner).deposit(amount)).await?;
//! ```

pub mod admin;
pub mod content;
pub mod escrow;
pub mod methods;
pub mod pause;
pub mod registry;
pub mod reject;
pub mod runners;
pub mod schedule;
pub mod sealing;
pub mod settlement;
pub mod tokens;

#[cfg(feature = "jsonrpc")]
pub mod jsonrpc;

pub use admin::{Admin, Config, ConfigUpdate, HubInfo, Upgrades};
pub use content::{Content, ContentItem, License};
pub use escrow::{ActiveAuthorization, Channel, ChannelView, Escrow, SettledContent, SettledLine};
pub use methods::{Call, DecodeError, View};
pub use pause::Pauses;
pub use registry::{
    Model, ModelUpdate, ModelVersion, ModelView, Registry, RunnerPolicy, RunnerTerms, VersionInput,
};
pub use reject::RejectCode;
pub use runners::{AccountKey, Runner, RunnerView, Runners};
pub use schedule::{Deadline, Scheduled};
pub use sealing::{Attestation, Grant, SealedArtifact, Sealing, SealingKey};
pub use settlement::{Disputes, ReceiptOutcome, SettleResult, Settlement};
pub use tokens::{ManifestEntry, Tokens};
