//! An embedded NEAR chain for tests, benchmarks and the local demo: contracts compiled to
//! wasm run in nearcore's own VM (`near-vm-runner`) with nearcore's gas schedule for
//! `PROTOCOL_VERSION`; transactions are real `near-primitives` `SignedTransaction`s checked
//! against access keys. See README.md for what it models and where its figures may differ
//! from a real node.

pub mod account;
pub mod chain;
mod external;
mod ids;
pub mod outcome;
pub mod persist;
pub mod rpc;
pub mod trie;

pub use chain::{signer, Chain, GAS_PRICE};
pub use outcome::{Outcome, Status, TxResult};
