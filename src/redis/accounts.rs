//! The Redis accounts port (`account::store::Accounts`): accounts and their API keys, one hash
//! each, read and written with single commands on the gateway's connection.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:a:<account>` | hash | the account: `name`, `created`, `code_length` |
//! | `P:k:<sha256 hex>` | hash | an API key's record: `id`, `account`, `role`, `created` |

use async_trait::async_trait;

use crate::account::store::Accounts;
use crate::account::{Account, AccountId, ApiKeyRecord, KeyDigest, Role};
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, query, Failure};
use crate::redis::KeySpace;
use crate::store::StoreError;

pub struct RedisAccounts {
    connection: Connection,
    keys: KeySpace,
    /// How a failed write is reported (see `Failure::Sorted`).
    writes: Failure,
}

impl RedisAccounts {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        let writes = Failure::Sorted {
            cluster: connection.is_cluster(),
        };
        Self {
            connection,
            keys: KeySpace::new(prefix),
            writes,
        }
    }

    /// Accounts on the verification store's connection and prefix.
    pub fn on(store: &crate::redis::RedisStore) -> Self {
        Self::new(store.connection(), store.prefix())
    }
}

#[async_trait]
impl Accounts for RedisAccounts {
    async fn insert_account(&self, account: &Account) -> Result<(), StoreError> {
        query::<()>(
            &self.connection,
            redis::cmd("HSET")
                .arg(self.keys.account(&account.id))
                .arg(&["name", &account.name])
                .arg("created")
                .arg(account.created_ms)
                .arg("code_length")
                .arg(account.code_length),
            self.writes,
        )
        .await
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let (name, created, code_length): (Option<String>, Option<u64>, Option<u8>) = query(
            &self.connection,
            redis::cmd("HMGET")
                .arg(self.keys.account(id))
                .arg(&["name", "created", "code_length"]),
            Failure::Unavailable,
        )
        .await?;
        Ok(match (name, created, code_length) {
            (Some(name), Some(created_ms), Some(code_length)) => Some(Account {
                id: id.clone(),
                name,
                created_ms,
                code_length,
            }),
            _ => None,
        })
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        query(
            &self.connection,
            redis::cmd("HSET")
                .arg(self.keys.api_key(&key.digest))
                .arg(&[
                    "id",
                    &key.id,
                    "account",
                    key.account.as_str(),
                    "role",
                    key.role.as_str(),
                ])
                .arg("created")
                .arg(key.created_ms),
            self.writes,
        )
        .await
    }

    async fn find_api_key(&self, digest: &KeyDigest) -> Result<Option<ApiKeyRecord>, StoreError> {
        let (id, account, role, created): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<u64>,
        ) = query(
            &self.connection,
            redis::cmd("HMGET")
                .arg(self.keys.api_key(digest))
                .arg(&["id", "account", "role", "created"]),
            Failure::Unavailable,
        )
        .await?;
        let (Some(id), Some(account), Some(role), Some(created_ms)) = (id, account, role, created)
        else {
            return Ok(None);
        };
        Ok(Some(ApiKeyRecord {
            id,
            account: AccountId::parse(&account).ok_or_else(|| corrupt("bad account id on key"))?,
            role: role
                .parse::<Role>()
                .map_err(|()| corrupt("bad role on key"))?,
            digest: *digest,
            created_ms,
        }))
    }

    fn epoch(&self) -> u64 {
        self.connection.epoch()
    }
}
