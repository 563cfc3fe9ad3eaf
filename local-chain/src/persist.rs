//! Saving the chain to a directory and loading it back, so a local node survives a restart.
//! One borsh file, written to a temporary name and renamed, so a crash mid-write leaves the
//! previous state intact.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use borsh::{BorshDeserialize, BorshSerialize};
use near_crypto::PublicKey;
use near_primitives::account::AccessKey;
use near_primitives_core::types::AccountId;
use near_vm_runner::ContractCode;

use crate::{account::Account, Chain};

pub const FILE: &str = "chain.borsh";

#[derive(BorshSerialize, BorshDeserialize)]
pub struct Snapshot {
    pub chain_id: String,
    pub root: AccountId,
    pub height: u64,
    pub timestamp_ns: u64,
    pub accounts: Vec<(AccountId, AccountSnapshot)>,
}

#[derive(BorshSerialize, BorshDeserialize)]
pub struct AccountSnapshot {
    amount: u128,
    locked: u128,
    code: Option<Vec<u8>>,
    code_storage: u64,
    storage: Vec<(Vec<u8>, Vec<u8>)>,
    storage_usage: u64,
    keys: Vec<(PublicKey, AccessKey)>,
}

impl From<&Account> for AccountSnapshot {
    fn from(a: &Account) -> Self {
        let mut storage: Vec<_> = a
            .storage
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        storage.sort();
        Self {
            amount: a.amount,
            locked: a.locked,
            code: a.code.as_ref().map(|c| c.code().to_vec()),
            code_storage: a.code_storage,
            storage,
            storage_usage: a.storage_usage,
            keys: a.keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

impl From<AccountSnapshot> for Account {
    fn from(s: AccountSnapshot) -> Self {
        Self {
            amount: s.amount,
            locked: s.locked,
            code: s.code.map(|c| Arc::new(ContractCode::new(c, None))),
            code_storage: s.code_storage,
            storage: s.storage.into_iter().collect::<HashMap<_, _>>(),
            storage_usage: s.storage_usage,
            keys: s.keys.into_iter().collect(),
        }
    }
}

impl Chain {
    /// Writes the chain's state to `dir`.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        write(
            dir,
            &Snapshot {
                chain_id: self.chain_id.clone(),
                root: self.root.clone(),
                height: self.height,
                timestamp_ns: self.timestamp_ns,
                accounts: self
                    .accounts
                    .iter()
                    .map(|(id, a)| (id.clone(), a.into()))
                    .collect(),
            },
        )
    }

    /// The chain saved in `dir`, if there is one. Promise data in flight is not saved:
    /// every transaction runs to completion before it returns.
    pub fn load(dir: &Path) -> std::io::Result<Option<Self>> {
        let Some(s) = read(dir)? else {
            return Ok(None);
        };
        let key = PublicKey::empty(near_crypto::KeyType::ED25519);
        let mut chain = Self::new(&s.chain_id, &s.root, &key, 0);
        chain.height = s.height;
        chain.timestamp_ns = s.timestamp_ns;
        chain.accounts = s
            .accounts
            .into_iter()
            .map(|(id, a)| (id, a.into()))
            .collect();
        Ok(Some(chain))
    }
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

pub fn write(dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, borsh::to_vec(snapshot)?)?;
    std::fs::rename(tmp, path(dir))
}

pub fn read(dir: &Path) -> std::io::Result<Option<Snapshot>> {
    match std::fs::read(path(dir)) {
        Ok(bytes) => Ok(Some(Snapshot::try_from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
