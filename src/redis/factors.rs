//! The Redis factor store: one script or command per step, on the gateway's connection.
//!
//! Keys live beside the directory's, under the account's hash tag, so every script touches one
//! slot and runs unchanged on a Redis Cluster. Key names come from `KeySpace`, scripts from
//! `src/redis/scripts/factor_*.lua`.
//!
//! | key (`P:{a:<account>}:` + …) | type | holds |
//! | --- | --- | --- |
//! | `fx:<user>:<factor>` | hash | a factor: `k` kind, `st` status, `cr` created, `s` sealed TOTP secret, `al`/`dg`/`pd` algorithm, digits, period, `ci`/`ka`/`kb` credential id, COSE alg, key (base64url), `sc` sign counter, `be`/`bs` backup eligible / backed up (1 or 0), `ex` expiry of a pending one, `ls` last used step, `nf` consecutive failures, `lu` locked until; a pending factor expires |
//! | `wc:<user>:<challenge hex>` | string | a WebAuthn ceremony's state (JSON), read once with GETDEL; `<user>` is `*` for a usernameless passkey ceremony |
//! | `ph` | hash | passkey user handle (hex) → user id, against `tenants.max_users` |
//! | `rc:<user>` | set | the user's recovery-code digests (hex) |
//! | `rl:<user>` | hash | recovery-code failures: `nf`, `lu` |
//! | `ch:<challenge id>` | string | a passed challenge (proof for trusting a device): user, kind, factor, expiry, joined by bars |
//! | `pend` | sorted set | the account's pending entries (unconfirmed factors' and ceremonies' key names), scored by expiry, against `tenants.max_pending_ceremonies` |

use std::sync::Arc;

use async_trait::async_trait;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use redis::{Script, ScriptInvocation};

use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::user::{FactorType, UserId};
use crate::account::AccountId;
use crate::clock::Clock;
use crate::factors::recovery::CodeDigest;
use crate::factors::store::{
    AttemptOutcome, CounterOutcome, FactorRecord, FactorRef, FactorStatus, FactorStore,
    KeyCredential, NewCeremony, NewFactor, PassedChallenge, RecoveryOutcome, RecoveryTry,
    TotpSecret, TotpTry, UserRef,
};
use crate::factors::totp::{Algorithm, TotpParams};
use crate::factors::webauthn::{BackupState, CredentialKey};
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, flag, scripts, Adapter, Reply};
use crate::store::StoreError;

scripts! { FactorScripts = "factor_": put, put_ceremony, take_ceremony, totp_attempt, counter, use_recovery, replace_recovery, put_handle }

pub struct RedisFactorStore {
    redis: Adapter,
    scripts: FactorScripts,
    /// The pending bound's clock (expiry is the gateway's, as everywhere).
    clock: Arc<dyn Clock>,
    tenants: TenantSettings,
}

impl RedisFactorStore {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        Self {
            redis: Adapter::new(connection, prefix),
            scripts: FactorScripts::load(),
            clock: Arc::new(crate::clock::SystemClock),
            tenants: TenantSettings::default(),
        }
    }

    /// A factor store on the verification store's connection and prefix.
    pub fn on(store: &crate::redis::RedisStore) -> Self {
        Self::new(store.connection(), store.prefix())
    }

    /// The per-account bounds (`[tenants]`) and the clock they count expiry by; the
    /// documented defaults and the system clock until this is called.
    pub fn with_tenants(mut self, tenants: TenantSettings, clock: Arc<dyn Clock>) -> Self {
        self.tenants = tenants;
        self.clock = clock;
        self
    }

    fn factor_key(&self, factor: FactorRef<'_>) -> String {
        let UserRef { account, user } = factor.owner;
        self.redis.keys.factor(account, user, factor.id)
    }

    /// Starts a script that lists a pending entry of `account` (`factor_put`,
    /// `factor_put_ceremony`): its keys, the entry's then the account's pending list, and its
    /// first arguments, the entry's TTL (0: not pending), now and the account's bound.
    fn pending_invocation<'a>(
        &self,
        script: &'a Script,
        account: &AccountId,
        key: String,
        ttl_ms: u64,
    ) -> ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(key)
            .key(self.redis.keys.pending(account))
            .arg(ttl_ms)
            .arg(self.clock.now_ms())
            .arg(self.tenants.limits(account).pending_ceremonies);
        invocation
    }

    /// Runs a `pending_invocation`: `full` when the account is at its bound of pending entries.
    async fn store_pending(
        &self,
        account: &AccountId,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<(), StoreError> {
        let reply = self.redis.call(invocation, "pending entry").await?;
        match reply.outcome() {
            "stored" => Ok(()),
            "full" => Err(LimitReached {
                limit: Limit::PendingCeremonies,
                max: self.tenants.limits(account).pending_ceremonies,
            }
            .into()),
            _ => Err(reply.unknown()),
        }
    }
}

fn encode(record: &FactorRecord) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("k", record.kind.as_str().to_owned()),
        ("st", record.status.as_str().to_owned()),
        ("cr", record.created_ms.to_string()),
    ];
    if let Some(totp) = &record.totp {
        fields.push(("s", totp.sealed.clone()));
        fields.push(("al", totp.params.algorithm.as_str().to_owned()));
        fields.push(("dg", totp.params.digits.to_string()));
        fields.push(("pd", totp.params.period.to_string()));
    }
    if let Some(key) = &record.webauthn {
        fields.push(("ci", BASE64URL_NOPAD.encode(&key.credential_id)));
        fields.push(("ka", key.key.alg.to_string()));
        fields.push(("kb", BASE64URL_NOPAD.encode(&key.key.bytes)));
        fields.push(("sc", key.counter.to_string()));
        fields.push(("be", flag(key.backup.eligible).to_string()));
        fields.push(("bs", flag(key.backup.backed_up).to_string()));
    }
    fields
}

fn decode(
    id: &str,
    fields: std::collections::HashMap<String, String>,
) -> Result<Option<FactorRecord>, StoreError> {
    let Some(kind) = fields.get("k") else {
        return Ok(None);
    };
    let get = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| corrupt("factor field missing"))
    };
    let number = |name: &str| -> Result<u64, StoreError> {
        get(name)?
            .parse()
            .map_err(|_| corrupt("factor field is not a number"))
    };
    let b64 = |name: &str| -> Result<Vec<u8>, StoreError> {
        BASE64URL_NOPAD
            .decode(get(name)?.as_bytes())
            .map_err(|_| corrupt("factor field is not base64url"))
    };
    let kind = FactorType::parse(kind).ok_or_else(|| corrupt("factor kind"))?;
    let totp = match fields.get("s") {
        None => None,
        Some(sealed) => Some(TotpSecret {
            sealed: sealed.clone(),
            params: TotpParams {
                algorithm: Algorithm::parse(get("al")?).ok_or_else(|| corrupt("algorithm"))?,
                digits: number("dg")? as u8,
                period: number("pd")?,
            },
        }),
    };
    let webauthn = match fields.get("ci") {
        None => None,
        Some(_) => Some(KeyCredential {
            credential_id: b64("ci")?,
            key: CredentialKey {
                alg: get("ka")?.parse().map_err(|_| corrupt("key alg"))?,
                bytes: b64("kb")?,
            },
            counter: number("sc")? as u32,
            // Records written before issue 18 have neither flag: not eligible, not backed up.
            backup: BackupState {
                eligible: fields.get("be").is_some_and(|v| v == "1"),
                backed_up: fields.get("bs").is_some_and(|v| v == "1"),
            },
        }),
    };
    Ok(Some(FactorRecord {
        id: id.to_owned(),
        kind,
        status: FactorStatus::parse(get("st")?).ok_or_else(|| corrupt("factor status"))?,
        created_ms: number("cr")?,
        totp,
        webauthn,
    }))
}

/// `wrong <attempts left> <wait ms>`: its two numbers.
fn wrong(reply: &Reply) -> Result<(u32, u64), StoreError> {
    Ok((reply.parse(1)?, reply.parse(2)?))
}

#[async_trait]
impl FactorStore for RedisFactorStore {
    async fn put(&self, factor: NewFactor<'_>) -> Result<(), StoreError> {
        let (owner, record) = (factor.owner, factor.record);
        let key = self.factor_key(owner.factor(&record.id));
        let mut invocation = self.pending_invocation(
            &self.scripts.put,
            owner.account,
            key,
            factor.pending_ttl_ms.unwrap_or(0),
        );
        for (name, value) in encode(record) {
            invocation.arg(name).arg(value);
        }
        if let Some(ttl) = factor.pending_ttl_ms {
            // Expiry is decided from the gateway's clock; the key's TTL only bounds retention.
            invocation.arg("ex").arg(record.created_ms + ttl);
        }
        self.store_pending(owner.account, &invocation).await
    }

    async fn get(&self, factor: FactorRef<'_>) -> Result<Option<FactorRecord>, StoreError> {
        let command = redis::cmd("HGETALL").arg(self.factor_key(factor)).clone();
        decode(factor.id, self.redis.query(&command).await?)
    }

    async fn delete(&self, factor: FactorRef<'_>) -> Result<(), StoreError> {
        let command = redis::cmd("DEL").arg(self.factor_key(factor)).clone();
        self.redis.query::<i64>(&command).await.map(drop)
    }

    async fn totp_attempt(&self, attempt: TotpTry<'_>) -> Result<AttemptOutcome, StoreError> {
        let factor = attempt.factor;
        let mut invocation = self.scripts.totp_attempt.prepare_invoke();
        invocation
            .key(self.factor_key(factor))
            .key(self.redis.keys.pending(factor.owner.account))
            .arg(attempt.now_ms)
            .arg(
                attempt
                    .matched
                    .map(|step| step.to_string())
                    .unwrap_or_default(),
            )
            .arg(flag(attempt.activate))
            .arg(attempt.limits);
        let reply = self.redis.call(&invocation, "TOTP attempt").await?;
        Ok(match reply.outcome() {
            "ok" => AttemptOutcome::Accepted,
            "replayed" => AttemptOutcome::Replayed,
            "wrong" => {
                let (attempts_left, wait_ms) = wrong(&reply)?;
                AttemptOutcome::Wrong {
                    attempts_left,
                    wait_ms,
                }
            }
            "locked" => AttemptOutcome::Locked {
                retry_after_ms: reply.parse(1)?,
            },
            "not_found" => AttemptOutcome::NotFound,
            "not_active" => AttemptOutcome::NotActive,
            _ => return Err(reply.unknown()),
        })
    }

    async fn advance_counter(
        &self,
        factor: FactorRef<'_>,
        counter: u32,
        backup: BackupState,
    ) -> Result<CounterOutcome, StoreError> {
        let mut invocation = self.scripts.counter.prepare_invoke();
        invocation
            .key(self.factor_key(factor))
            .arg(counter)
            .arg(flag(backup.backed_up));
        let reply = self.redis.call(&invocation, "counter").await?;
        Ok(match reply.outcome() {
            "ok" => CounterOutcome::Advanced,
            "regressed" => CounterOutcome::Regressed {
                stored: reply.parse(1)?,
            },
            "not_found" => CounterOutcome::NotFound,
            _ => return Err(reply.unknown()),
        })
    }

    async fn put_ceremony(&self, ceremony: NewCeremony<'_>) -> Result<(), StoreError> {
        let UserRef { account, user } = ceremony.owner;
        let key = self.redis.keys.ceremony(account, user, ceremony.challenge);
        let ttl_ms = ceremony.ttl_ms.max(1);
        let mut invocation =
            self.pending_invocation(&self.scripts.put_ceremony, account, key, ttl_ms);
        invocation.arg(ceremony.state);
        self.store_pending(account, &invocation).await
    }

    async fn take_ceremony(
        &self,
        owner: UserRef<'_>,
        challenge: &[u8],
    ) -> Result<Option<String>, StoreError> {
        let mut invocation = self.scripts.take_ceremony.prepare_invoke();
        invocation
            .key(
                self.redis
                    .keys
                    .ceremony(owner.account, owner.user, challenge),
            )
            .key(self.redis.keys.pending(owner.account));
        let reply = self.redis.call(&invocation, "ceremony").await?;
        // The state is JSON: the rest of the reply, read whole.
        match reply.outcome() {
            "none" => Ok(None),
            "taken" => Ok(Some(reply.tail()?.to_owned())),
            _ => Err(reply.unknown()),
        }
    }

    async fn replace_recovery(
        &self,
        owner: UserRef<'_>,
        digests: &[CodeDigest],
    ) -> Result<(), StoreError> {
        let mut invocation = self.scripts.replace_recovery.prepare_invoke();
        invocation.key(self.redis.keys.recovery_codes(owner.account, owner.user));
        for digest in digests {
            invocation.arg(HEXLOWER.encode(digest));
        }
        self.redis
            .call(&invocation, "replace recovery")
            .await
            .map(drop)
    }

    async fn use_recovery(&self, attempt: RecoveryTry<'_>) -> Result<RecoveryOutcome, StoreError> {
        let UserRef { account, user } = attempt.owner;
        let mut invocation = self.scripts.use_recovery.prepare_invoke();
        invocation
            .key(self.redis.keys.recovery_codes(account, user))
            .key(self.redis.keys.recovery_lock(account, user))
            .arg(HEXLOWER.encode(attempt.digest))
            .arg(attempt.now_ms)
            .arg(attempt.limits);
        let reply = self.redis.call(&invocation, "recovery").await?;
        Ok(match reply.outcome() {
            "ok" => RecoveryOutcome::Used {
                remaining: reply.parse(1)?,
            },
            "wrong" => {
                let (attempts_left, wait_ms) = wrong(&reply)?;
                RecoveryOutcome::Wrong {
                    attempts_left,
                    wait_ms,
                }
            }
            "locked" => RecoveryOutcome::Locked {
                retry_after_ms: reply.parse(1)?,
            },
            _ => return Err(reply.unknown()),
        })
    }

    async fn recovery_left(&self, owner: UserRef<'_>) -> Result<u32, StoreError> {
        let key = self.redis.keys.recovery_codes(owner.account, owner.user);
        self.redis.query(redis::cmd("SCARD").arg(key)).await
    }

    async fn delete_recovery(&self, owner: UserRef<'_>) -> Result<(), StoreError> {
        let UserRef { account, user } = owner;
        // Two keys of one slot (the account's hash tag): one DEL is one step, also on Cluster.
        let command = redis::cmd("DEL")
            .arg(self.redis.keys.recovery_codes(account, user))
            .arg(self.redis.keys.recovery_lock(account, user))
            .clone();
        self.redis.query::<i64>(&command).await.map(drop)
    }

    async fn put_passed(
        &self,
        account: &AccountId,
        passed: &PassedChallenge,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.redis.keys.passed_challenge(account, &passed.id);
        let value = format!(
            "{}|{}|{}|{}",
            passed.user, passed.kind, passed.factor, passed.expires_ms
        );
        let command = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .clone();
        self.redis.query(&command).await
    }

    async fn passed(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<PassedChallenge>, StoreError> {
        let key = self.redis.keys.passed_challenge(account, id);
        let value: Option<String> = self.redis.query(redis::cmd("GET").arg(key)).await?;
        let Some(value) = value else {
            return Ok(None);
        };
        let mut parts = value.splitn(4, '|');
        let (Some(user), Some(kind), Some(factor), Some(expires)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt("passed challenge"));
        };
        Ok(Some(PassedChallenge {
            id: id.to_owned(),
            user: UserId::parse(user).ok_or_else(|| corrupt("challenge user"))?,
            kind: kind.to_owned(),
            factor: factor.to_owned(),
            expires_ms: expires.parse().map_err(|_| corrupt("challenge expiry"))?,
        }))
    }

    async fn put_user_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
        user: &UserId,
    ) -> Result<(), StoreError> {
        let max = self.tenants.limits(account).users;
        let mut invocation = self.scripts.put_handle.prepare_invoke();
        invocation
            .key(self.redis.keys.user_handles(account))
            .arg(HEXLOWER.encode(handle))
            .arg(user.as_str())
            .arg(max);
        let reply = self.redis.call(&invocation, "user handle").await?;
        match reply.outcome() {
            "stored" => Ok(()),
            "full" => Err(LimitReached {
                limit: Limit::Users,
                max,
            }
            .into()),
            _ => Err(reply.unknown()),
        }
    }

    async fn user_of_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
    ) -> Result<Option<UserId>, StoreError> {
        let command = redis::cmd("HGET")
            .arg(self.redis.keys.user_handles(account))
            .arg(HEXLOWER.encode(handle))
            .clone();
        let user: Option<String> = self.redis.query(&command).await?;
        user.map(|user| UserId::parse(&user).ok_or_else(|| corrupt("handle user")))
            .transpose()
    }

    async fn delete_user_handle(
        &self,
        account: &AccountId,
        handle: &[u8],
    ) -> Result<(), StoreError> {
        let command = redis::cmd("HDEL")
            .arg(self.redis.keys.user_handles(account))
            .arg(HEXLOWER.encode(handle))
            .clone();
        self.redis.query::<i64>(&command).await.map(drop)
    }
}
