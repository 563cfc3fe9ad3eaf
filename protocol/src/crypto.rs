//! The two primitives the protocol needs, behind a trait: the contract implements it with
//! NEAR host functions (`env::sha256_array`, `env::ed25519_verify`, far cheaper in gas than
//! hashing in wasm), native code with `sha2` and `ed25519-dalek`.

use near_sdk::{json_types::Base64VecU8, CurveType, PublicKey};

/// An ed25519 signature; JSON as base64, borsh as a length-prefixed byte vector.
pub type Signature = Base64VecU8;

pub trait Crypto {
    fn sha256(&self, data: &[u8]) -> [u8; 32];
    fn ed25519_verify(&self, signature: &[u8; 64], message: &[u8], public_key: &[u8; 32]) -> bool;
}

/// The 32 key bytes of an ed25519 `PublicKey`, or `None` for any other curve.
pub fn ed25519_key_bytes(key: &PublicKey) -> Option<[u8; 32]> {
    if key.curve_type() != CurveType::ED25519 {
        return None;
    }
    // `as_bytes` starts with the curve byte.
    key.as_bytes().get(1..33)?.try_into().ok()
}

/// Verifies `signature` by `key` over `prehash`; false for a non-ed25519 key or a signature
/// that is not 64 bytes.
pub fn verify(
    crypto: &impl Crypto,
    key: &PublicKey,
    signature: &Signature,
    prehash: &[u8; 32],
) -> bool {
    let Some(key) = ed25519_key_bytes(key) else {
        return false;
    };
    let Ok(signature) = <&[u8; 64]>::try_from(signature.0.as_slice()) else {
        return false;
    };
    crypto.ed25519_verify(signature, prehash, &key)
}

#[cfg(feature = "native")]
pub mod native {
    use super::Crypto;
    use sha2::Digest;

    /// sha2 + ed25519-dalek. `verify_strict` rejects small-order keys and non-canonical
    /// signatures, which the NEAR host function also refuses.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct NativeCrypto;

    impl Crypto for NativeCrypto {
        fn sha256(&self, data: &[u8]) -> [u8; 32] {
            sha2::Sha256::digest(data).into()
        }

        fn ed25519_verify(
            &self,
            signature: &[u8; 64],
            message: &[u8],
            public_key: &[u8; 32],
        ) -> bool {
            let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
                return false;
            };
            key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
                .is_ok()
        }
    }

    #[cfg(feature = "sign")]
    pub use signing::*;

    #[cfg(feature = "sign")]
    mod signing {
        use ed25519_dalek::Signer;
        use near_sdk::{CurveType, PublicKey};

        /// An ed25519 key pair for tests, tools and the runner.
        pub struct KeyPair(pub ed25519_dalek::SigningKey);

        impl KeyPair {
            pub fn from_seed(seed: [u8; 32]) -> Self {
                Self(ed25519_dalek::SigningKey::from_bytes(&seed))
            }

            pub fn public_key(&self) -> PublicKey {
                PublicKey::from_parts(
                    CurveType::ED25519,
                    self.0.verifying_key().to_bytes().to_vec(),
                )
                .expect("an ed25519 key is 32 bytes")
            }

            pub fn sign(&self, prehash: &[u8; 32]) -> super::super::Signature {
                self.0.sign(prehash).to_bytes().to_vec().into()
            }
        }
    }
}
