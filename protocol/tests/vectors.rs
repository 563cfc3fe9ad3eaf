//! Pins every encoding, prehash and signature to `vectors.json`, and checks the stored
//! bytes independently of the code that produced them.

use market_protocol::{vectors, Crypto, NativeCrypto, SignedAuthorization, SignedReceipt};
use near_sdk::serde_json::{self, Value};

fn stored() -> Value {
    serde_json::from_str(include_str!("../vectors.json")).expect("vectors.json is JSON")
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("valid hex")
}

#[test]
fn code_reproduces_the_stored_vectors() {
    // If this fails after an intended layout change, regenerate the file (see the example)
    // and bump the message kinds: every deployed signer depends on these bytes.
    assert_eq!(vectors::vectors(), stored());
}

#[test]
fn stored_authorization_bytes_are_consistent() {
    let v = &stored()["authorization"];
    let signed: SignedAuthorization = serde_json::from_value(v["signed"].clone()).unwrap();
    // borsh round trip of the stored bytes gives the stored JSON value.
    let decoded: SignedAuthorization = borsh::from_slice(&bytes(&v["borsh_hex"])).unwrap();
    assert_eq!(decoded, signed);
    // The NEP-413 signing bytes begin with the tag 2^31 + 413, little-endian.
    let signing = bytes(&v["nep413_signing_bytes_hex"]);
    assert_eq!(signing[..4], ((1u32 << 31) + 413).to_le_bytes());
    assert_eq!(
        NativeCrypto.sha256(&signing).to_vec(),
        bytes(&v["prehash_hex"])
    );
    let key = market_protocol::ed25519_key_bytes(&signed.authorization.public_key).unwrap();
    let sig: [u8; 64] = bytes(&v["signature_hex"]).try_into().unwrap();
    assert!(NativeCrypto.ed25519_verify(&sig, &bytes(&v["prehash_hex"]), &key));
    assert_eq!(
        signed.verify(&NativeCrypto).map(|h| h.to_vec()),
        Some(bytes(&v["prehash_hex"]))
    );
}

#[test]
fn stored_receipt_bytes_are_consistent() {
    let v = &stored()["receipt"];
    let signed: SignedReceipt = serde_json::from_value(v["signed"].clone()).unwrap();
    assert_eq!(
        borsh::to_vec(&signed.receipt).unwrap(),
        bytes(&v["borsh_hex"])
    );
    let signing = bytes(&v["signing_bytes_hex"]);
    assert_eq!(signing[..4], market_protocol::RECEIPT_TAG.to_le_bytes());
    assert_eq!(signing[4..], bytes(&v["borsh_hex"]));
    assert_eq!(
        NativeCrypto.sha256(&signing).to_vec(),
        bytes(&v["prehash_hex"])
    );
    assert!(signed.verify(&NativeCrypto));
    signed.receipt.validate().unwrap();
}

#[test]
fn one_flipped_bit_breaks_each_signature() {
    let auth = vectors::sample_authorization();
    let receipt = vectors::sample_receipt(&auth);
    for bit in [0, 7, 300, 511] {
        let mut a = auth.clone();
        a.signature.0[bit / 8] ^= 1 << (bit % 8);
        assert!(
            a.verify(&NativeCrypto).is_none(),
            "authorization signature bit {bit}"
        );
        let mut r = receipt.clone();
        r.signature.0[bit / 8] ^= 1 << (bit % 8);
        assert!(!r.verify(&NativeCrypto), "receipt signature bit {bit}");
    }
    // Tampered content: another cap, another chain, another hub, one more unit.
    let mut a = auth.clone();
    a.authorization.cap.0 += 1;
    assert!(a.verify(&NativeCrypto).is_none());
    let mut a = auth.clone();
    a.authorization.chain_id = "mainnet".into();
    assert!(a.verify(&NativeCrypto).is_none());
    let mut a = auth.clone();
    a.authorization.hub = "other-hub.testnet".parse().unwrap();
    assert!(a.verify(&NativeCrypto).is_none());
    let mut r = receipt.clone();
    r.receipt.lines[0].units_out.0 += 1;
    assert!(!r.verify(&NativeCrypto));
}

#[test]
fn a_receipt_signature_is_not_an_authorization_signature() {
    // Domain separation: the same key signing the same bytes under the two tags differs.
    assert_ne!((1u32 << 31) + 413, market_protocol::RECEIPT_TAG);
    let auth = vectors::sample_authorization();
    let mut forged = vectors::sample_receipt(&auth);
    forged.signature = auth.signature.clone();
    assert!(!forged.verify(&NativeCrypto));
}

#[test]
fn authorization_message_is_the_documented_json() {
    let auth = vectors::sample_authorization();
    let message = auth.authorization.message();
    assert!(message.starts_with(r#"{"kind":"ai-market-authorization-v2","hub":"hub.ai-market.testnet","chain_id":"testnet","#));
    assert!(message.contains(r#""cap":"5000000000000000000000000""#));
    // The signed price ceilings, models then content, in field order.
    assert!(message.contains(r#""models":[{"model_id":"smollm2-135m-instruct","max_in_per_1k":"1000000000000000000","max_out_per_1k":"2000000000000000000","max_units_per_request":"4096"},"#));
    assert!(message.contains(r#""content":[{"content_id":"encyclopedia-fr","max_per_use":"10000000000000000"}],"public_key":"ed25519:"#));
    assert!(!message.contains(' '), "compact JSON, no spaces: {message}");
}

#[test]
fn receipt_validation_names_the_problem() {
    let auth = vectors::sample_authorization();
    let mut r = vectors::sample_receipt(&auth).receipt;
    r.amount.0 += 1;
    assert!(r
        .validate()
        .unwrap_err()
        .contains("not the sum of its lines"));
    let mut r = vectors::sample_receipt(&auth).receipt;
    r.lines.push(r.lines[0].clone());
    assert!(r.validate().unwrap_err().contains("has two lines"));
    let mut a = auth.authorization.clone();
    a.models.clear();
    assert!(a.validate().unwrap_err().contains("1 to 4 models"));
    let mut a = auth.authorization.clone();
    a.content.push(a.content[0].clone());
    assert!(a.validate().unwrap_err().contains("listed twice"));
    let mut a = auth.authorization.clone();
    a.models[0].max_units_per_request.0 = 0;
    assert!(a.validate().unwrap_err().contains("0 units per request"));
}
