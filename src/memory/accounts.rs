//! The embedded accounts port (`account::store::Accounts`): accounts and their API keys in this
//! process. Not bounded: only the root key creates accounts, and only it or an account's owner
//! mints keys.

use async_trait::async_trait;
use dashmap::DashMap;

use crate::account::store::Accounts;
use crate::account::{Account, AccountId, ApiKeyRecord, KeyDigest};
use crate::store::StoreError;

#[derive(Default)]
pub struct MemoryAccounts {
    accounts: DashMap<AccountId, Account>,
    keys: DashMap<KeyDigest, ApiKeyRecord>,
}

impl MemoryAccounts {
    pub fn new() -> Self {
        Self::default()
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

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.keys.insert(key.digest, key.clone());
        Ok(())
    }

    async fn find_api_key(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.keys.get(digest).map(|entry| entry.clone()))
    }
}
