//! The Redis factor store: one script or command per step, on the gateway's connection.
//!
//! Keys live beside the directory's, under the account's hash tag, so every script touches one
//! slot and runs unchanged on a Redis Cluster. Key names come from `KeySpace`, scripts from
//! `src/redis/scripts/factor_*.lua`.
//!
//! | key (`P:{a:<account>}:` + …) | type | holds |
//! | --- | --- | --- |
//! | `fx:<user>:<factor>` | hash | a factor: `k` kind, `st` status, `cr` created, `s` sealed TOTP secret, `al`/`dg`/`pd` algorithm, digits, period, `ci`/`ka`/`kb` credential id, COSE alg, key (base64url), `sc` sign counter, `ex` expiry of a pending one, `ls` last used step, `nf` consecutive failures, `lu` locked until; a pending factor expires |
//! | `wc:<user>:<challenge hex>` | string | a WebAuthn ceremony's state (JSON), read once with GETDEL |
//! | `rc:<user>` | set | the user's recovery-code digests (hex) |
//! | `rl:<user>` | hash | recovery-code failures: `nf`, `lu` |
//! | `ch:<challenge id>` | string | a passed challenge (proof for trusting a device): user, kind, factor, expiry, joined by bars |
//! | `pend` | sorted set | the account's pending entries (unconfirmed factors' and ceremonies' key names), scored by expiry, against `tenants.max_pending_ceremonies` |

use async_trait::async_trait;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use redis::Script;

use crate::factors::recovery::CodeDigest;
use crate::factors::store::{
    AttemptLimits, AttemptOutcome, CounterOutcome, FactorRecord, FactorStatus, FactorStore,
    KeyCredential, PassedChallenge, RecoveryOutcome, TotpSecret, TotpTry,
};
use crate::factors::totp::{Algorithm, TotpParams};
use crate::factors::webauthn::CredentialKey;
use std::sync::Arc;

use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::user::{FactorType, UserId};
use crate::account::AccountId;
use crate::clock::Clock;
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, lua, query, run, words, Failure};
use crate::redis::KeySpace;
use crate::store::StoreError;

pub struct RedisFactorStore {
    connection: Connection,
    keys: KeySpace,
    /// The pending bound's clock (expiry is the gateway's, as everywhere).
    clock: Arc<dyn Clock>,
    tenants: TenantSettings,
    put: Script,
    put_ceremony: Script,
    take_ceremony: Script,
    totp_attempt: Script,
    counter: Script,
    use_recovery: Script,
    replace_recovery: Script,
}

impl RedisFactorStore {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        Self {
            connection,
            keys: KeySpace::new(prefix),
            clock: Arc::new(crate::clock::SystemClock),
            tenants: TenantSettings::default(),
            put: lua!("factor_put"),
            put_ceremony: lua!("factor_put_ceremony"),
            take_ceremony: lua!("factor_take_ceremony"),
            totp_attempt: lua!("factor_totp_attempt"),
            counter: lua!("factor_counter"),
            use_recovery: lua!("factor_use_recovery"),
            replace_recovery: lua!("factor_replace_recovery"),
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

    /// Runs a script that lists a pending entry (`factor_put`, `factor_put_ceremony`): `full`
    /// when the account is at its bound of pending entries.
    async fn store_pending(
        &self,
        account: &AccountId,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<(), StoreError> {
        match self.run(invocation).await?.as_str() {
            "stored" => Ok(()),
            "full" => Err(LimitReached {
                limit: Limit::PendingCeremonies,
                max: self.tenants.limits(account).pending_ceremonies,
            }
            .into()),
            _ => Err(corrupt("unknown pending reply")),
        }
    }

    /// Runs a script: its one-string reply (see `crate::redis::script`).
    async fn run(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<String, StoreError> {
        run(&self.connection, invocation, Failure::Unavailable).await
    }

    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        query(&self.connection, cmd, Failure::Unavailable).await
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

fn limited(reply: &[&str]) -> Result<(u32, u64), StoreError> {
    let left = reply
        .get(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("attempts left"))?;
    let wait = reply
        .get(2)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("wait"))?;
    Ok((left, wait))
}

/// The lock-out limits, the last arguments of every attempt script.
fn limit_args(limits: &AttemptLimits) -> (u32, u64, u64) {
    (
        limits.max_failures.max(1),
        limits.first_wait_ms,
        limits.max_wait_ms,
    )
}

fn retry_after(reply: &[&str]) -> Result<u64, StoreError> {
    reply
        .get(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("retry after"))
}

#[async_trait]
impl FactorStore for RedisFactorStore {
    async fn put(
        &self,
        account: &AccountId,
        user: &UserId,
        record: &FactorRecord,
        ttl_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut invocation = self.put.prepare_invoke();
        invocation
            .key(self.keys.factor(account, user, &record.id))
            .key(self.keys.pending(account))
            .arg(ttl_ms.unwrap_or(0))
            .arg(self.clock.now_ms())
            .arg(self.tenants.limits(account).pending_ceremonies);
        for (name, value) in encode(record) {
            invocation.arg(name).arg(value);
        }
        if let Some(ttl) = ttl_ms {
            // Expiry is decided from the gateway's clock; the key's TTL only bounds retention.
            invocation.arg("ex").arg(record.created_ms + ttl);
        }
        self.store_pending(account, &invocation).await
    }

    async fn get(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
    ) -> Result<Option<FactorRecord>, StoreError> {
        let fields = self
            .command(redis::cmd("HGETALL").arg(self.keys.factor(account, user, id)))
            .await?;
        decode(id, fields)
    }

    async fn delete(&self, account: &AccountId, user: &UserId, id: &str) -> Result<(), StoreError> {
        self.command::<i64>(redis::cmd("DEL").arg(self.keys.factor(account, user, id)))
            .await
            .map(drop)
    }

    async fn totp_attempt(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
        attempt: TotpTry,
        limits: &AttemptLimits,
    ) -> Result<AttemptOutcome, StoreError> {
        let TotpTry {
            matched,
            activate,
            now_ms,
        } = attempt;
        let mut invocation = self.totp_attempt.prepare_invoke();
        invocation
            .key(self.keys.factor(account, user, id))
            .key(self.keys.pending(account))
            .arg(now_ms)
            .arg(matched.map(|step| step.to_string()).unwrap_or_default())
            .arg(if activate { "1" } else { "0" })
            .arg(limit_args(limits));
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        Ok(match reply.first().copied() {
            Some("ok") => AttemptOutcome::Accepted,
            Some("replayed") => AttemptOutcome::Replayed,
            Some("wrong") => {
                let (attempts_left, wait_ms) = limited(&reply)?;
                AttemptOutcome::Wrong {
                    attempts_left,
                    wait_ms,
                }
            }
            Some("locked") => AttemptOutcome::Locked {
                retry_after_ms: retry_after(&reply)?,
            },
            Some("not_found") => AttemptOutcome::NotFound,
            Some("not_active") => AttemptOutcome::NotActive,
            _ => return Err(corrupt("unknown TOTP attempt reply")),
        })
    }

    async fn advance_counter(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
        counter: u32,
    ) -> Result<CounterOutcome, StoreError> {
        let mut invocation = self.counter.prepare_invoke();
        invocation
            .key(self.keys.factor(account, user, id))
            .arg(counter);
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        Ok(match reply.first().copied() {
            Some("ok") => CounterOutcome::Advanced,
            Some("regressed") => CounterOutcome::Regressed {
                stored: retry_after(&reply)? as u32,
            },
            Some("not_found") => CounterOutcome::NotFound,
            _ => return Err(corrupt("unknown counter reply")),
        })
    }

    async fn put_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        challenge: &[u8],
        state: &str,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.keys.ceremony(account, user, challenge);
        let mut invocation = self.put_ceremony.prepare_invoke();
        invocation
            .key(key)
            .key(self.keys.pending(account))
            .arg(state)
            .arg(ttl_ms.max(1))
            .arg(self.clock.now_ms())
            .arg(self.tenants.limits(account).pending_ceremonies);
        self.store_pending(account, &invocation).await
    }

    async fn take_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        challenge: &[u8],
    ) -> Result<Option<String>, StoreError> {
        let key = self.keys.ceremony(account, user, challenge);
        let mut invocation = self.take_ceremony.prepare_invoke();
        invocation.key(key).key(self.keys.pending(account));
        let text = self.run(&invocation).await?;
        // The state is JSON: the rest of the reply, read whole.
        match text.split_once(' ') {
            None if text == "none" => Ok(None),
            Some(("taken", state)) => Ok(Some(state.to_owned())),
            _ => Err(corrupt("unknown ceremony reply")),
        }
    }

    async fn replace_recovery(
        &self,
        account: &AccountId,
        user: &UserId,
        digests: &[CodeDigest],
    ) -> Result<(), StoreError> {
        let mut invocation = self.replace_recovery.prepare_invoke();
        invocation.key(self.keys.recovery_codes(account, user));
        for digest in digests {
            invocation.arg(HEXLOWER.encode(digest));
        }
        self.run(&invocation).await.map(drop)
    }

    async fn use_recovery(
        &self,
        account: &AccountId,
        user: &UserId,
        digest: &CodeDigest,
        now_ms: u64,
        limits: &AttemptLimits,
    ) -> Result<RecoveryOutcome, StoreError> {
        let mut invocation = self.use_recovery.prepare_invoke();
        invocation
            .key(self.keys.recovery_codes(account, user))
            .key(self.keys.recovery_lock(account, user))
            .arg(HEXLOWER.encode(digest))
            .arg(now_ms)
            .arg(limit_args(limits));
        let text = self.run(&invocation).await?;
        let reply = words(&text);
        Ok(match reply.first().copied() {
            Some("ok") => RecoveryOutcome::Used {
                remaining: retry_after(&reply)? as u32,
            },
            Some("wrong") => {
                let (attempts_left, wait_ms) = limited(&reply)?;
                RecoveryOutcome::Wrong {
                    attempts_left,
                    wait_ms,
                }
            }
            Some("locked") => RecoveryOutcome::Locked {
                retry_after_ms: retry_after(&reply)?,
            },
            _ => return Err(corrupt("unknown recovery reply")),
        })
    }

    async fn recovery_left(&self, account: &AccountId, user: &UserId) -> Result<u32, StoreError> {
        self.command(redis::cmd("SCARD").arg(self.keys.recovery_codes(account, user)))
            .await
    }

    async fn delete_recovery(&self, account: &AccountId, user: &UserId) -> Result<(), StoreError> {
        // Two keys of one slot (the account's hash tag): one DEL is one step, also on Cluster.
        self.command::<i64>(
            redis::cmd("DEL")
                .arg(self.keys.recovery_codes(account, user))
                .arg(self.keys.recovery_lock(account, user)),
        )
        .await
        .map(drop)
    }

    async fn put_passed(
        &self,
        account: &AccountId,
        passed: &PassedChallenge,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.keys.passed_challenge(account, &passed.id);
        let value = format!(
            "{}|{}|{}|{}",
            passed.user, passed.kind, passed.factor, passed.expires_ms
        );
        self.command::<()>(
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms.max(1)),
        )
        .await
    }

    async fn passed(
        &self,
        account: &AccountId,
        id: &str,
    ) -> Result<Option<PassedChallenge>, StoreError> {
        let value: Option<String> = self
            .command(redis::cmd("GET").arg(self.keys.passed_challenge(account, id)))
            .await?;
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
}
