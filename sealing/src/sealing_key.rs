use std::fmt;
use std::str::FromStr;

use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, Serializable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::{Error, Result};

pub(crate) type PrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;
pub(crate) type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;

/// A runner's X25519 secret for receiving grants. Separate from its ed25519 receipt keys:
/// the two are rotated for different reasons, and a grant key must never sign.
#[derive(Clone)]
pub struct SealingKey(pub(crate) PrivateKey);

/// The public half, which the runner registers on the hub and owners wrap content keys to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealingPublicKey([u8; 32]);

impl SealingKey {
    pub fn generate() -> Self {
        Self(X25519HkdfSha256::gen_keypair(&mut crate::os_rng()).0)
    }

    /// Any 32 bytes make a key (X25519 clamps them).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(PrivateKey::from_bytes(bytes).expect("an X25519 secret is any 32 bytes"))
    }

    pub fn public_key(&self) -> SealingPublicKey {
        SealingPublicKey(X25519HkdfSha256::sk_to_pk(&self.0).to_bytes().into())
    }

    /// 64 lowercase hex digits. Deliberately not `Display`: a secret is written out only on
    /// purpose.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(<[u8; 32]>::from(self.0.to_bytes()));
        Zeroizing::new(hex::encode(bytes.as_ref()))
    }
}

impl FromStr for SealingKey {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bytes = Zeroizing::new(crate::parse_hex32("sealing key", text)?);
        Ok(Self::from_bytes(&bytes))
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey(public {})", self.public_key())
    }
}

impl SealingPublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn to_hpke(self) -> PublicKey {
        PublicKey::from_bytes(&self.0).expect("an X25519 public key is any 32 bytes")
    }
}

impl fmt::Display for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingPublicKey({self})")
    }
}

impl FromStr for SealingPublicKey {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        crate::parse_hex32("sealing public key", text).map(Self)
    }
}

impl Serialize for SealingPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SealingPublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
