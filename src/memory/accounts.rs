//! The embedded accounts port (`account::store::Accounts`): accounts and their API keys in this
//! process. Not bounded: only the root key creates accounts, and only it or an account's owner
//! mints keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use dashmap::DashMap;

use crate::account::store::{Accounts, KeyRevocation};
use crate::account::{Account, AccountId, ApiKeyRecord, KeyDigest, Role};
use crate::store::StoreError;

#[derive(Default)]
pub struct MemoryAccounts {
    accounts: DashMap<AccountId, Account>,
    keys: DashMap<KeyDigest, ApiKeyRecord>,
    /// Each account's keys by id: the list's order, and the one lock under which a revocation
    /// counts the owner keys left (two revocations at once cannot both take the last two).
    by_account: Mutex<HashMap<AccountId, BTreeMap<String, KeyDigest>>>,
}

impl MemoryAccounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// The index; a panic elsewhere while it was held left it whole (each step changes it last).
    fn index(&self) -> MutexGuard<'_, HashMap<AccountId, BTreeMap<String, KeyDigest>>> {
        self.by_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Accounts for MemoryAccounts {
    async fn insert_account(&self, account: &Account) -> Result<(), StoreError> {
        self.accounts.insert(account.id.clone(), account.clone());
        Ok(())
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        Ok(self.accounts.get(id).map(|entry| entry.clone()))
    }

    async fn list_accounts(
        &self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let mut accounts: Vec<Account> = self
            .accounts
            .iter()
            .filter(|entry| after.is_none_or(|after| entry.key() > after))
            .map(|entry| entry.value().clone())
            .collect();
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        accounts.truncate(limit);
        Ok(accounts)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut by_account = self.index();
        by_account
            .entry(key.account.clone())
            .or_default()
            .insert(key.id.clone(), key.digest);
        self.keys.insert(key.digest, key.clone());
        Ok(())
    }

    async fn find_api_key(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.keys.get(digest).map(|entry| entry.clone()))
    }

    async fn list_api_keys(
        &self,
        account: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let by_account = self.index();
        let Some(ids) = by_account.get(account) else {
            return Ok(Vec::new());
        };
        let range = match after {
            Some(after) => {
                ids.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => ids.range::<str, _>(..),
        };
        Ok(range
            .filter_map(|(_, digest)| self.keys.get(digest).map(|entry| entry.clone()))
            .take(limit)
            .collect())
    }

    async fn revoke_api_key(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<KeyRevocation, StoreError> {
        let mut by_account = self.index();
        let Some(ids) = by_account.get_mut(account) else {
            return Ok(KeyRevocation::NotFound);
        };
        let Some(record) = ids
            .get(id)
            .and_then(|digest| self.keys.get(digest).map(|entry| entry.clone()))
        else {
            return Ok(KeyRevocation::NotFound);
        };
        if record.role == Role::Owner {
            let owners = ids
                .values()
                .filter_map(|digest| self.keys.get(digest))
                .filter(|key| key.role == Role::Owner)
                .count();
            if owners <= 1 {
                return Ok(KeyRevocation::LastOwner);
            }
        }
        ids.remove(id);
        self.keys.remove(&record.digest);
        Ok(KeyRevocation::Revoked(record))
    }
}
