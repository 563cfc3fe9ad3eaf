use std::fmt;
use std::str::FromStr;

use rand_core::RngCore;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The symmetric key a model version is sealed with: 32 random bytes, one per version (a new
/// version after a revocation gets a new key), wiped from memory on drop. No `PartialEq`:
/// comparing secrets byte by byte would leak through timing.
#[derive(Clone)]
pub struct ContentKey(Zeroizing<[u8; 32]>);

impl ContentKey {
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        crate::os_rng().fill_bytes(key.as_mut());
        Self(key)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits. Deliberately not `Display`: a secret is written out only on
    /// purpose.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.as_bytes()))
    }
}

impl FromStr for ContentKey {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        crate::parse_hex32("content key", text).map(Self::from_bytes)
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(..)")
    }
}
