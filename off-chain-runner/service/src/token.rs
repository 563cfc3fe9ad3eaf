//! The API key a user hands to an OpenAI client: their signed spending authorization,
//! `aimk_` followed by base64url (no padding) of its borsh bytes. It is printable, has no
//! characters an HTTP header or a shell would mangle, and carries everything the runner
//! needs to check it (the NEP-413 nonce and signature included).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use market_protocol::SignedAuthorization;

pub const PREFIX: &str = "aimk_";
/// Far above the largest authorization (4 models of 64 bytes, long account ids); bounds
/// what an unauthenticated request can make the runner decode.
pub const MAX_TOKEN_LEN: usize = 4096;

pub fn encode(auth: &SignedAuthorization) -> String {
    let bytes = borsh::to_vec(auth).expect("serializing to a Vec cannot fail");
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn decode(token: &str) -> Result<SignedAuthorization, String> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(format!(
            "the API key is {} bytes, at most {MAX_TOKEN_LEN}",
            token.len()
        ));
    }
    let body = token.strip_prefix(PREFIX).ok_or_else(|| {
        format!("the API key must be a signed authorization starting with `{PREFIX}` (see `off-chain-runner authorize`)")
    })?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| format!("the API key is not base64url: {e}"))?;
    borsh::from_slice(&bytes).map_err(|e| format!("the API key is not a signed authorization: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use market_protocol::{crypto::native::KeyPair, Authorization};

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let key = KeyPair::from_seed([9; 32]);
        let auth = SignedAuthorization::sign(
            Authorization {
                hub: "hub.near".parse().unwrap(),
                chain_id: "localnet".into(),
                user: "alice.near".parse().unwrap(),
                runner: "runner.near".parse().unwrap(),
                cap: 10u128.pow(24).into(),
                expires_at_ns: u64::MAX.into(),
                models: vec![market_protocol::authorization::ModelCeiling::unbounded("m")],
                content: vec![],
                public_key: key.public_key(),
            },
            [3; 32],
            &key,
        );
        let token = encode(&auth);
        assert!(token.starts_with(PREFIX));
        assert_eq!(decode(&token).unwrap(), auth);
        assert!(decode(&token[PREFIX.len()..])
            .unwrap_err()
            .contains("aimk_"));
        assert!(
            decode(&format!("{token}A")).is_err(),
            "trailing bytes are refused"
        );
        assert!(decode("aimk_!!").unwrap_err().contains("base64url"));
        assert!(decode(&"a".repeat(MAX_TOKEN_LEN + 1))
            .unwrap_err()
            .contains("at most"));
    }

    proptest::proptest! {
        /// Whatever a client sends as its API key, decoding answers with an error or an
        /// authorization, never a panic (the 401 path).
        #[test]
        fn any_api_key_decodes_or_fails_cleanly(key in ".{0,300}", body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode(&key);
            let _ = decode(&format!("{PREFIX}{key}"));
            let _ = decode(&format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&body)));
        }
    }
}
