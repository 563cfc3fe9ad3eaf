//! Keys on disk, as NEAR credential JSON files like near-cli's
//! (`~/.near-credentials/<network>/<account>.json`):
//! `{"account_id": "...", "public_key": "ed25519:...", "private_key": "ed25519:..."}`.
//! near-cli-rs writes its legacy-keychain files without `account_id` (and with fields of
//! its own): there the account is the file's name, as that keychain names them.
//!
//! A runner has two keys: its account's access key, which signs the `settle` transactions,
//! and a receipt key registered on the hub, which signs usage receipts. Keeping them apart
//! means the receipt key can be rotated (`revoke_runner_key`) without touching the account.

use std::path::Path;

use anyhow::{bail, Context};
use market_protocol::crypto::native::KeyPair;
use near_crypto::{KeyType, SecretKey};
use near_sdk::AccountId;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Credentials {
    pub account_id: AccountId,
    pub public_key: String,
    pub private_key: String,
}

impl Credentials {
    /// A fresh random ed25519 key for `account_id`.
    pub fn generate(account_id: AccountId) -> Self {
        Self::from_secret(account_id, &SecretKey::from_random(KeyType::ED25519))
    }

    pub fn from_secret(account_id: AccountId, secret: &SecretKey) -> Self {
        Self {
            account_id,
            public_key: secret.public_key().to_string(),
            private_key: secret.to_string(),
        }
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct OnDisk {
            account_id: Option<AccountId>,
            public_key: String,
            private_key: String,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the key file {}", path.display()))?;
        let on_disk: OnDisk = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a NEAR credential file ({{\"account_id\", \"public_key\", \"private_key\"}})",
                path.display()
            )
        })?;
        let account_id = match on_disk.account_id {
            Some(id) => id,
            None => path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .with_context(|| {
                    format!(
                        "{} names no account_id and its file name is not an account id (near-cli names key files <account>.json)",
                        path.display()
                    )
                })?,
        };
        let creds = Self {
            account_id,
            public_key: on_disk.public_key,
            private_key: on_disk.private_key,
        };
        let secret = creds.secret()?;
        if secret.public_key().to_string() != creds.public_key {
            bail!(
                "{}: public_key {} does not belong to its private_key",
                path.display(),
                creds.public_key
            );
        }
        Ok(creds)
    }

    /// Writes the file readable by its owner only; refuses to overwrite a key.
    pub fn write_new(&self, path: &Path) -> anyhow::Result<()> {
        write_secret(path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    pub fn secret(&self) -> anyhow::Result<SecretKey> {
        let secret: SecretKey = self
            .private_key
            .parse()
            .with_context(|| format!("the private key of {} is not a NEAR key", self.account_id))?;
        if !matches!(secret.key_type(), KeyType::ED25519) {
            bail!("the key of {} is not an ed25519 key", self.account_id);
        }
        Ok(secret)
    }

    /// The key as the protocol crate's signer (receipts, authorizations).
    pub fn key_pair(&self) -> anyhow::Result<KeyPair> {
        let secret = self.secret()?;
        let bytes = secret.unwrap_as_ed25519().0;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[..32]);
        Ok(KeyPair::from_seed(seed))
    }

    /// The key as a transaction signer.
    pub fn signer(&self) -> anyhow::Result<near_crypto::Signer> {
        Ok(near_crypto::InMemorySigner::from_secret_key(
            self.account_id.clone(),
            self.secret()?,
        ))
    }
}

/// Writes a new secret file, readable by its owner only; never overwrites one.
pub fn write_secret(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_files_round_trip_and_agree_with_the_protocol_key() {
        let dir = std::env::temp_dir().join(format!("runner-keys-{}", std::process::id()));
        let path = dir.join("runner.json");
        let _ = std::fs::remove_file(&path);
        let creds = Credentials::generate("runner.testnet".parse().unwrap());
        creds.write_new(&path).unwrap();
        assert!(
            creds.write_new(&path).is_err(),
            "an existing key is never overwritten"
        );
        let back = Credentials::read(&path).unwrap();
        assert_eq!(back.public_key, creds.public_key);
        assert_eq!(
            String::from(&back.key_pair().unwrap().public_key()),
            creds.public_key,
            "the receipt signer's public key is the file's"
        );
        let mut forged = back.clone();
        forged.public_key = Credentials::generate("x.testnet".parse().unwrap()).public_key;
        std::fs::write(&path, serde_json::to_string(&forged).unwrap()).unwrap();
        assert!(Credentials::read(&path)
            .unwrap_err()
            .to_string()
            .contains("does not belong"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn near_cli_rs_key_files_name_the_account_by_file_name() {
        let dir = std::env::temp_dir().join(format!("runner-keys-rs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let creds = Credentials::generate("gpu.testnet".parse().unwrap());
        // near-cli-rs's legacy keychain: no account_id, fields of its own.
        let file = serde_json::json!({"implicit_account_id": "ab12", "master_seed_phrase": "x y z",
            "public_key": creds.public_key, "private_key": creds.private_key});
        let path = dir.join("gpu.testnet.json");
        std::fs::write(&path, file.to_string()).unwrap();
        assert_eq!(
            Credentials::read(&path).unwrap().account_id.as_str(),
            "gpu.testnet"
        );
        let unnamed = dir.join("Not An Account.json");
        std::fs::write(&unnamed, file.to_string()).unwrap();
        assert!(Credentials::read(&unnamed)
            .unwrap_err()
            .to_string()
            .contains("names no account_id"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
