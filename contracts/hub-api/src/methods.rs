//! Every hub method, described once as a value: its name, its arguments encoded as the
//! contract reads them (JSON, or borsh where the contract says `#[serializer(borsh)]`), the
//! deposit it needs by default and how to decode its result. A transport (NEAR JSON-RPC in
//! [`crate::jsonrpc`], the local chain in `sandbox-tests`, near-workspaces) only sends the
//! bytes and hands back what came back, so no caller writes a method name or an argument
//! by hand.

use std::{fmt, marker::PhantomData};

use market_protocol::{Hash32, SettleItem, SignedReceipt};
use near_sdk::{
    json_types::{Base64VecU8, U128},
    serde::de::DeserializeOwned,
    AccountId, PublicKey,
};
use serde_json::json;

use crate::{
    admin::{Config, ConfigUpdate, HubInfo},
    content::{ContentItem, License},
    escrow::ChannelView,
    registry::{ModelUpdate, ModelView, RunnerPolicy, VersionInput},
    runners::{AccountKey, Runner, RunnerView},
    sealing::{Attestation, Grant, SealedArtifact, SealingKey},
    settlement::ReceiptOutcome,
    tokens::ManifestEntry,
    ModelVersion,
};

/// The gas a call gets unless told otherwise: the most one transaction may use.
pub const DEFAULT_GAS: u64 = 300_000_000_000_000;
/// What owner and payout methods need attached: proof of a full-access key.
pub const ONE_YOCTO: u128 = 1;

/// A method's result could not be decoded: the hub and this client disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub method: &'static str,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` returned {}", self.method, self.message)
    }
}

impl std::error::Error for DecodeError {}

type Decoder<R> = fn(&'static str, &[u8]) -> Result<R, DecodeError>;

fn json_result<R: DeserializeOwned>(method: &'static str, bytes: &[u8]) -> Result<R, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError {
        method,
        message: e.to_string(),
    })
}

/// Methods returning nothing (or a promise whose value nobody needs).
#[allow(
    clippy::unnecessary_wraps,
    reason = "every decoder has the same signature"
)]
fn no_result(_: &'static str, _: &[u8]) -> Result<(), DecodeError> {
    Ok(())
}

/// A read-only call, answered by any node without a transaction.
#[derive(Clone, Debug)]
pub struct View<R> {
    pub method: &'static str,
    pub args: Vec<u8>,
    decode: Decoder<R>,
    result: PhantomData<fn() -> R>,
}

impl<R> View<R> {
    pub fn decode(&self, bytes: &[u8]) -> Result<R, DecodeError> {
        (self.decode)(self.method, bytes)
    }
}

/// A change call: a transaction signed by the caller, with a deposit and gas.
#[derive(Clone, Debug)]
pub struct Call<R> {
    pub method: &'static str,
    pub args: Vec<u8>,
    pub deposit: u128,
    pub gas: u64,
    decode: Decoder<R>,
    result: PhantomData<fn() -> R>,
}

impl<R> Call<R> {
    /// Attaches `yocto` instead of the method's default.
    #[must_use]
    pub fn deposit(mut self, yocto: u128) -> Self {
        self.deposit = yocto;
        self
    }

    #[must_use]
    pub fn gas(mut self, gas: u64) -> Self {
        self.gas = gas;
        self
    }

    /// The method's return value (the transaction's final value).
    pub fn decode(&self, bytes: &[u8]) -> Result<R, DecodeError> {
        (self.decode)(self.method, bytes)
    }
}

fn view<R: DeserializeOwned>(method: &'static str, args: serde_json::Value) -> View<R> {
    View {
        method,
        args: args.to_string().into_bytes(),
        decode: json_result::<R>,
        result: PhantomData,
    }
}

fn call<R: DeserializeOwned>(method: &'static str, args: serde_json::Value) -> Call<R> {
    with_args(method, args.to_string().into_bytes(), json_result::<R>)
}

fn call_unit(method: &'static str, args: serde_json::Value) -> Call<()> {
    with_args(method, args.to_string().into_bytes(), no_result)
}

/// One yocto attached by default: the method checks it.
fn owner_call(method: &'static str, args: serde_json::Value) -> Call<()> {
    call_unit(method, args).deposit(ONE_YOCTO)
}

fn with_args<R>(method: &'static str, args: Vec<u8>, decode: Decoder<R>) -> Call<R> {
    Call {
        method,
        args,
        deposit: 0,
        gas: DEFAULT_GAS,
        decode,
        result: PhantomData,
    }
}

fn borsh<T: borsh::BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("serializing to a Vec cannot fail")
}

// ---- Set-up (the hub account itself) ----

/// Initializes a freshly deployed hub.
pub fn new(owner: &AccountId, config: &Config) -> Call<()> {
    call_unit("new", json!({ "owner": owner, "config": config }))
}

/// Rewrites the state in the latest layout (the hub account, right after new code).
pub fn migrate() -> Call<()> {
    call_unit("migrate", json!({}))
}

// ---- Registry ----

/// Attach the model's storage (surplus refunded).
pub fn register_model(
    model_id: &str,
    price_in_per_1k: u128,
    price_out_per_1k: u128,
    runner_bps: u16,
    runner_policy: &RunnerPolicy,
) -> Call<()> {
    call_unit(
        "register_model",
        json!({
            "model_id": model_id,
            "price_in_per_1k": U128(price_in_per_1k),
            "price_out_per_1k": U128(price_out_per_1k),
            "runner_bps": runner_bps,
            "runner_policy": runner_policy,
        }),
    )
}

/// The new version's number. Attach its storage.
pub fn add_model_version(model_id: &str, version: &VersionInput) -> Call<u32> {
    call(
        "add_model_version",
        json!({ "model_id": model_id, "version": version }),
    )
}

pub fn update_model(model_id: &str, update: &ModelUpdate) -> Call<()> {
    owner_call(
        "update_model",
        json!({ "model_id": model_id, "update": update }),
    )
}

pub fn transfer_model(model_id: &str, new_owner: &AccountId) -> Call<()> {
    owner_call(
        "transfer_model",
        json!({ "model_id": model_id, "new_owner": new_owner }),
    )
}

pub fn model(model_id: &str) -> View<Option<ModelView>> {
    view("model", json!({ "model_id": model_id }))
}

pub fn models(from_index: Option<u32>, limit: Option<u32>) -> View<Vec<ModelView>> {
    view(
        "models",
        json!({ "from_index": from_index, "limit": limit }),
    )
}

pub fn model_version(model_id: &str, version: u32) -> View<Option<ModelVersion>> {
    view(
        "model_version",
        json!({ "model_id": model_id, "version": version }),
    )
}

// ---- Runners and keys ----

/// Attach the bond (at least the hub's minimum) plus the keys' storage.
pub fn register_runner(keys: &[PublicKey]) -> Call<()> {
    call_unit("register_runner", json!({ "keys": keys }))
}

pub fn add_runner_key(key: &PublicKey) -> Call<()> {
    call_unit("add_runner_key", json!({ "key": key }))
}

pub fn revoke_runner_key(key: &PublicKey) -> Call<()> {
    owner_call("revoke_runner_key", json!({ "key": key }))
}

/// Attach the bond to add.
pub fn add_bond() -> Call<()> {
    call_unit("add_bond", json!({}))
}

pub fn request_leave() -> Call<()> {
    call_unit("request_leave", json!({}))
}

pub fn finish_leave() -> Call<()> {
    owner_call("finish_leave", json!({}))
}

/// All earnings when `amount` is `None`.
pub fn withdraw_earnings(amount: Option<u128>) -> Call<()> {
    owner_call("withdraw_earnings", json!({ "amount": amount.map(U128) }))
}

pub fn runner(runner: &AccountId) -> View<Option<Runner>> {
    view("runner", json!({ "runner": runner }))
}

pub fn runners(from_index: Option<u32>, limit: Option<u32>) -> View<Vec<RunnerView>> {
    view(
        "runners",
        json!({ "from_index": from_index, "limit": limit }),
    )
}

pub fn runner_key(runner: &AccountId, key: &PublicKey) -> View<Option<AccountKey>> {
    view("runner_key", json!({ "runner": runner, "key": key }))
}

pub fn user_key(user: &AccountId, key: &PublicKey) -> View<Option<AccountKey>> {
    view("user_key", json!({ "user": user, "key": key }))
}

// ---- Users' escrow ----

/// Attach the key's storage.
pub fn register_user_key(key: &PublicKey) -> Call<()> {
    call_unit("register_user_key", json!({ "key": key }))
}

pub fn revoke_user_key(key: &PublicKey) -> Call<()> {
    call_unit("revoke_user_key", json!({ "key": key }))
}

/// Attach the funds (plus the channel's storage the first time: `hub_info`).
pub fn fund_channel(runner: &AccountId) -> Call<()> {
    call_unit("fund_channel", json!({ "runner": runner }))
}

pub fn request_withdrawal(runner: &AccountId) -> Call<()> {
    call_unit("request_withdrawal", json!({ "runner": runner }))
}

pub fn finish_withdrawal(runner: &AccountId) -> Call<()> {
    owner_call("finish_withdrawal", json!({ "runner": runner }))
}

pub fn channel(user: &AccountId, runner: &AccountId) -> View<Option<ChannelView>> {
    view("channel", json!({ "user": user, "runner": runner }))
}

pub fn channels(from_index: Option<u32>, limit: Option<u32>) -> View<Vec<ChannelView>> {
    view(
        "channels",
        json!({ "from_index": from_index, "limit": limit }),
    )
}

// ---- Settlement and disputes ----

/// One outcome per receipt, in order.
pub fn settle(items: &[SettleItem]) -> Call<Vec<ReceiptOutcome>> {
    with_args("settle", borsh(items), json_result)
}

/// What `settle(items)` sent by `submitter` would return now, changing nothing.
pub fn simulate_settle(submitter: &AccountId, items: &[SettleItem]) -> View<Vec<ReceiptOutcome>> {
    View {
        method: "simulate_settle",
        args: borsh(&(submitter, items)),
        decode: json_result,
        result: PhantomData,
    }
}

/// Two contradictory receipts of one runner: slashes its bond.
pub fn report_equivocation(first: &SignedReceipt, second: &SignedReceipt) -> Call<()> {
    with_args("report_equivocation", borsh(&(first, second)), no_result)
}

// ---- Content ----

/// Attach the item's storage.
pub fn register_content(
    content_id: &str,
    sha256: Hash32,
    uri: &str,
    license: &License,
) -> Call<()> {
    call_unit(
        "register_content",
        json!({ "content_id": content_id, "sha256": sha256, "uri": uri, "license": license }),
    )
}

pub fn content(content_id: &str) -> View<Option<ContentItem>> {
    view("content", json!({ "content_id": content_id }))
}

pub fn content_earnings(owner: &AccountId) -> View<U128> {
    view("content_earnings", json!({ "owner": owner }))
}

/// All earnings when `amount` is `None`.
pub fn withdraw_content_earnings(amount: Option<u128>) -> Call<()> {
    owner_call(
        "withdraw_content_earnings",
        json!({ "amount": amount.map(U128) }),
    )
}

// ---- Sealed models ----

/// The caller's (a runner's) sealing key, bound by `signature` of `receipt_key`. Attach
/// storage.
pub fn register_sealing_key(
    key: &[u8],
    receipt_key: &PublicKey,
    signature: &[u8],
    attestation: Option<&Attestation>,
) -> Call<()> {
    call_unit(
        "register_sealing_key",
        json!({
            "key": Base64VecU8::from(key.to_vec()),
            "receipt_key": receipt_key,
            "signature": Base64VecU8::from(signature.to_vec()),
            "attestation": attestation,
        }),
    )
}

pub fn sealing_key(runner: &AccountId) -> View<Option<SealingKey>> {
    view("sealing_key", json!({ "runner": runner }))
}

/// The owner grants a sealed version's content key, HPKE-wrapped (`enc`, `wrapped_key`)
/// to `runner`'s current `sealing_key`. Attach storage.
pub fn grant_sealed_version(
    model_id: &str,
    version: u32,
    runner: &AccountId,
    sealing_key: &[u8],
    enc: &[u8],
    wrapped_key: &[u8],
) -> Call<()> {
    call_unit(
        "grant_sealed_version",
        json!({
            "model_id": model_id,
            "version": version,
            "runner": runner,
            "sealing_key": Base64VecU8::from(sealing_key.to_vec()),
            "enc": Base64VecU8::from(enc.to_vec()),
            "wrapped_key": Base64VecU8::from(wrapped_key.to_vec()),
        }),
    )
}

pub fn revoke_grant(model_id: &str, version: u32, runner: &AccountId) -> Call<()> {
    owner_call(
        "revoke_grant",
        json!({ "model_id": model_id, "version": version, "runner": runner }),
    )
}

pub fn grant(model_id: &str, version: u32, runner: &AccountId) -> View<Option<Grant>> {
    view(
        "grant",
        json!({ "model_id": model_id, "version": version, "runner": runner }),
    )
}

pub fn sealed_artifact(model_id: &str, version: u32) -> View<Option<SealedArtifact>> {
    view(
        "sealed_artifact",
        json!({ "model_id": model_id, "version": version }),
    )
}

// ---- Model tokens ----

/// Owner: the token's wasm. Attach its storage.
pub fn set_token_code(code: &[u8]) -> Call<()> {
    with_args("set_token_code", borsh(code), no_result).deposit(ONE_YOCTO)
}

/// Owner: the token as a global contract, by hash.
pub fn set_token_code_hash(code_hash: Hash32) -> Call<()> {
    owner_call("set_token_code_hash", json!({ "code_hash": code_hash }))
}

/// Whether the token went live. Attach the token account's storage.
pub fn issue_token(
    model_id: &str,
    symbol: &str,
    manifest: &[ManifestEntry],
    developer_weight: u32,
) -> Call<bool> {
    call(
        "issue_token",
        json!({
            "model_id": model_id,
            "symbol": symbol,
            "manifest": manifest,
            "developer_weight": developer_weight,
        }),
    )
}

/// Pays the model's accrued holders' share to its token; whether the transfer landed.
pub fn flush(model_id: &str) -> Call<bool> {
    call("flush", json!({ "model_id": model_id }))
}

// ---- The owner ----

pub fn set_config(update: &ConfigUpdate) -> Call<()> {
    owner_call("set_config", json!({ "update": update }))
}

pub fn pause() -> Call<()> {
    owner_call("pause", json!({}))
}

pub fn unpause() -> Call<()> {
    owner_call("unpause", json!({}))
}

/// All protocol earnings when `amount` is `None`.
pub fn withdraw_protocol_fees(receiver: &AccountId, amount: Option<u128>) -> Call<()> {
    owner_call(
        "withdraw_protocol_fees",
        json!({ "receiver": receiver, "amount": amount.map(U128) }),
    )
}

pub fn propose_owner(new_owner: &AccountId) -> Call<()> {
    owner_call("propose_owner", json!({ "new_owner": new_owner }))
}

pub fn accept_owner() -> Call<()> {
    owner_call("accept_owner", json!({}))
}

pub fn hub_info() -> View<HubInfo> {
    view("hub_info", json!({}))
}

/// Owner: new code, applied after the time lock. Attach its storage.
pub fn propose_upgrade(code: &[u8]) -> Call<()> {
    with_args("propose_upgrade", borsh(code), no_result).deposit(ONE_YOCTO)
}

pub fn cancel_upgrade() -> Call<()> {
    owner_call("cancel_upgrade", json!({}))
}

pub fn apply_upgrade() -> Call<()> {
    owner_call("apply_upgrade", json!({}))
}
