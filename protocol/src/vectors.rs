//! Known-answer vectors: fixed keys, messages, signing bytes, prehashes and signatures,
//! written to `protocol/vectors.json` by `cargo run -p market-protocol --example vectors
//! --features sign` so another implementation (a wallet plug-in, a JS client) can check
//! itself against them. `tests/vectors.rs` fails if any byte here changes.

use near_sdk::serde_json::{json, Value};

use crate::{
    authorization::{ContentCeiling, ModelCeiling},
    crypto::native::{KeyPair, NativeCrypto},
    receipt::next_transcript,
    Authorization, ContentLine, SignedAuthorization, SignedReceipt, UsageLine, UsageReceipt,
};

pub const USER_SEED: [u8; 32] = [7; 32];
pub const RUNNER_SEED: [u8; 32] = [9; 32];

pub fn sample_authorization() -> SignedAuthorization {
    let user = KeyPair::from_seed(USER_SEED);
    SignedAuthorization::sign(
        Authorization {
            hub: "hub.ai-market.testnet".parse().unwrap(),
            chain_id: "testnet".into(),
            user: "alice.testnet".parse().unwrap(),
            runner: "gpu-runner.testnet".parse().unwrap(),
            cap: 5_000_000_000_000_000_000_000_000u128.into(),
            expires_at_ns: 1_800_000_000_000_000_000u64.into(),
            models: vec![
                ModelCeiling {
                    model_id: "smollm2-135m-instruct".into(),
                    max_in_per_1k: 1_000_000_000_000_000_000u128.into(),
                    max_out_per_1k: 2_000_000_000_000_000_000u128.into(),
                    max_units_per_request: 4_096u64.into(),
                },
                ModelCeiling {
                    model_id: "all-minilm-l6-v2".into(),
                    max_in_per_1k: 50_000_000_000_000_000u128.into(),
                    max_out_per_1k: 0u128.into(),
                    max_units_per_request: 8_192u64.into(),
                },
            ],
            content: vec![ContentCeiling {
                content_id: "encyclopedia-fr".into(),
                max_per_use: 10_000_000_000_000_000u128.into(),
            }],
            public_key: user.public_key(),
        },
        [42; 32],
        &user,
    )
}

pub fn sample_receipt(authorization: &SignedAuthorization) -> SignedReceipt {
    let crypto = NativeCrypto;
    let request = crypto.sha256_of(b"{\"prompt\":\"What is the capital of France?\"}");
    let output = crypto.sha256_of(b"Paris");
    let auth = &authorization.authorization;
    SignedReceipt::sign(
        UsageReceipt {
            user: auth.user.clone(),
            runner: auth.runner.clone(),
            authorization: authorization.prehash(&crypto).into(),
            seq: 3.into(),
            lines: vec![UsageLine {
                model_id: "smollm2-135m-instruct".into(),
                version: 1,
                units_in: 1200.into(),
                units_out: 340.into(),
                amount: 1_540_000_000_000_000_000u128.into(),
            }],
            content: vec![ContentLine {
                content_id: "encyclopedia-fr".into(),
                uses: 2.into(),
                amount: 20_000_000_000_000_000u128.into(),
            }],
            amount: 1_560_000_000_000_000_000u128.into(),
            request_hash: request.into(),
            output_hash: output.into(),
            transcript: next_transcript(&crypto, &[0; 32], &request, &output).into(),
            issued_at_ns: 1_764_000_000_000_000_000u64.into(),
        },
        &KeyPair::from_seed(RUNNER_SEED),
    )
}

trait Sha256Of {
    fn sha256_of(&self, data: &[u8]) -> [u8; 32];
}
impl Sha256Of for NativeCrypto {
    fn sha256_of(&self, data: &[u8]) -> [u8; 32] {
        crate::Crypto::sha256(self, data)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            write!(s, "{b:02x}").expect("writing to a String cannot fail");
            s
        })
}

/// Every vector, as written to `vectors.json`.
pub fn vectors() -> Value {
    let crypto = NativeCrypto;
    let authorization = sample_authorization();
    let receipt = sample_receipt(&authorization);
    let message = authorization.authorization.message();
    let nep413 = crate::nep413::Nep413Payload {
        message: &message,
        nonce: authorization.nonce.into(),
        recipient: authorization.authorization.hub.as_str(),
        callback_url: None,
    };
    json!({
        "about": "Known-answer vectors of market-protocol. Seeds are ed25519 secret seeds; *_hex are exact bytes.",
        "user_seed_hex": hex(&USER_SEED),
        "runner_seed_hex": hex(&RUNNER_SEED),
        "authorization": {
            "signed": authorization,
            "message": message,
            "borsh_hex": hex(&borsh::to_vec(&authorization).unwrap()),
            "nep413_signing_bytes_hex": hex(&nep413.signing_bytes()),
            "prehash_hex": hex(&authorization.prehash(&crypto)),
            "signature_hex": hex(&authorization.signature.0),
        },
        "receipt": {
            "signed": receipt,
            "borsh_hex": hex(&borsh::to_vec(&receipt.receipt).unwrap()),
            "signing_bytes_hex": hex(&receipt.receipt.signing_bytes()),
            "prehash_hex": hex(&receipt.receipt.prehash(&crypto)),
            "signature_hex": hex(&receipt.signature.0),
        },
    })
}
