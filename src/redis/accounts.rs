//! The Redis accounts port (`account::store::Accounts`): accounts and their API keys, one hash
//! each, read and written with single commands on the gateway's connection.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:a:<account>` | hash | the account: `name`, `created`, `code_length` |
//! | `P:k:<sha256 hex>` | hash | an API key's record: `id`, `account`, `role`, `created` |
//! | `P:{a:<account>}:keys` | sorted set | the account's key ids, every score 0 (listed by id, `BYLEX`) |
//! | `P:{a:<account>}:kr` | hash | key id -> `<role> <created> <digest hex> <state>` (`live`, `revoking`) |
//! | `P:{a:<account>}:kown` | string | how many live owner keys the account has |
//!
//! A key is listed in its account's index before its record is written, so every key that works
//! is listed and revocable. A revocation is three steps (scripts `accounts_*.lua`): mark the entry
//! revoking in the account's slot (refused for the last owner key), delete the record and
//! publish the invalidation, forget the entry; a retry after a failure part-way goes on from
//! the mark. Keys minted before the index existed are not listed.

use async_trait::async_trait;

use crate::account::store::{Accounts, KeyRevocation};
use crate::account::trust::cache::Invalidation;
use crate::account::{hex, Account, AccountId, ApiKeyRecord, KeyDigest, Role};
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, query, run, scripts, Failure, Reply};
use crate::redis::KeySpace;
use crate::store::StoreError;

scripts! { AccountScripts = "accounts_": index_key, list_keys, revoke_key, drop_key, forget_key }

pub struct RedisAccounts {
    connection: Connection,
    keys: KeySpace,
    /// How a failed write is reported (see `Failure::Sorted`).
    writes: Failure,
    scripts: AccountScripts,
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
            scripts: AccountScripts::load(),
        }
    }

    async fn call(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        failure: Failure,
        what: &'static str,
    ) -> Result<Reply, StoreError> {
        let text: String = run(&self.connection, invocation, failure).await?;
        Ok(Reply::new(text, what))
    }

    /// The key of `account` whose index entry is `entry` (its four fields).
    fn record_of(
        account: &AccountId,
        id: &str,
        role: &str,
        created: &str,
        digest: &str,
    ) -> Result<ApiKeyRecord, StoreError> {
        let digest = data_encoding::HEXLOWER
            .decode(digest.as_bytes())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| corrupt("bad digest in key index"))?;
        Ok(ApiKeyRecord {
            id: id.to_owned(),
            account: account.clone(),
            role: role
                .parse::<Role>()
                .map_err(|()| corrupt("bad role in key index"))?,
            digest,
            created_ms: created
                .parse()
                .map_err(|_| corrupt("bad time in key index"))?,
        })
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
        .await?;
        // The index the console lists accounts from: after the record, so a listed id always
        // has one (a failure here leaves an account that is found by id but not listed).
        query::<()>(
            &self.connection,
            redis::cmd("ZADD")
                .arg(self.keys.accounts_index())
                .arg(0)
                .arg(account.id.as_str()),
            self.writes,
        )
        .await
    }

    async fn list_accounts(
        &self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let from = after.map_or_else(|| "-".to_owned(), |after| format!("({}", after.as_str()));
        let ids: Vec<String> = query(
            &self.connection,
            redis::cmd("ZRANGEBYLEX")
                .arg(self.keys.accounts_index())
                .arg(from)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(limit),
            Failure::Unavailable,
        )
        .await?;
        let mut accounts = Vec::with_capacity(ids.len());
        for id in ids {
            let id =
                AccountId::parse(&id).ok_or_else(|| corrupt("bad id in the accounts index"))?;
            if let Some(account) = self.get_account(&id).await? {
                accounts.push(account);
            }
        }
        Ok(accounts)
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
        let mut invocation = self.scripts.index_key.prepare_invoke();
        invocation
            .key(self.keys.account_keys(&key.account))
            .key(self.keys.account_key_entries(&key.account))
            .key(self.keys.account_owner_keys(&key.account))
            .arg(&key.id)
            .arg(key.role.as_str())
            .arg(key.created_ms)
            .arg(hex(&key.digest));
        self.call(&invocation, self.writes, "index key").await?;
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

    async fn list_api_keys(
        &self,
        account: &AccountId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut invocation = self.scripts.list_keys.prepare_invoke();
        invocation
            .key(self.keys.account_keys(account))
            .key(self.keys.account_key_entries(account))
            .arg(after.unwrap_or_default())
            .arg(limit);
        let reply = self
            .call(&invocation, Failure::Unavailable, "list keys")
            .await?;
        let fields = reply.rest(1);
        if fields.len() % 5 != 0 {
            return Err(reply.corrupt());
        }
        fields
            .chunks(5)
            .map(|key| Self::record_of(account, key[0], key[1], key[2], key[3]))
            .collect()
    }

    async fn revoke_api_key(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<KeyRevocation, StoreError> {
        let mut invocation = self.scripts.revoke_key.prepare_invoke();
        invocation
            .key(self.keys.account_keys(account))
            .key(self.keys.account_key_entries(account))
            .key(self.keys.account_owner_keys(account))
            .arg(id);
        let reply = self.call(&invocation, self.writes, "revoke key").await?;
        let record = match reply.outcome() {
            "ok" => Self::record_of(account, id, reply.word(1)?, reply.word(2)?, reply.word(3)?)?,
            "not_found" => return Ok(KeyRevocation::NotFound),
            "last_owner" => return Ok(KeyRevocation::LastOwner),
            _ => return Err(reply.unknown()),
        };
        let mut drop = self.scripts.drop_key.prepare_invoke();
        drop.key(self.keys.api_key(&record.digest))
            .arg(self.keys.invalidation_channel())
            .arg(Invalidation::Key(record.digest).encode());
        self.call(&drop, self.writes, "drop key").await?;
        let mut forget = self.scripts.forget_key.prepare_invoke();
        forget
            .key(self.keys.account_keys(account))
            .key(self.keys.account_key_entries(account))
            .arg(id);
        self.call(&forget, self.writes, "forget key").await?;
        Ok(KeyRevocation::Revoked(record))
    }

    fn epoch(&self) -> u64 {
        self.connection.epoch()
    }
}
