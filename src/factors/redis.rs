//! The Redis factor store: one script or command per step, on the gateway's connection.
//!
//! Keys live beside the directory's, under the account's hash tag, so every script touches one
//! slot and runs unchanged on a Redis Cluster. Only this file knows these key names.
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

use super::recovery::CodeDigest;
use super::store::{
    AttemptLimits, AttemptOutcome, CounterOutcome, FactorRecord, FactorStatus, FactorStore,
    KeyCredential, PassedChallenge, RecoveryOutcome, TotpSecret,
};
use super::totp::{Algorithm, TotpParams};
use super::webauthn::CredentialKey;
use std::sync::Arc;

use crate::account::limits::{Limit, LimitReached, TenantSettings};
use crate::account::user::{FactorType, UserId};
use crate::account::AccountId;
use crate::clock::Clock;
use crate::store::redis::Connection;
use crate::store::StoreError;

/// Bounds the account's pending entries (issue 13 §8): drops the expired, refuses past the
/// bound, else lists `member` until `expires`. KEYS[pend] is the account's `pend`.
const LUA_PENDING: &str = r#"
local function pending_room(pend, member, now, expires, ttl, max)
  redis.call('ZREMRANGEBYSCORE', pend, '-inf', now)
  if redis.call('ZSCORE', pend, member) == false and redis.call('ZCARD', pend) >= tonumber(max) then
    return false
  end
  redis.call('ZADD', pend, expires, member)
  if redis.call('PTTL', pend) < tonumber(ttl) then redis.call('PEXPIRE', pend, ttl) end
  return true
end
"#;

/// KEYS: factor, pending. ARGV: ttl ms (0: none), now, max pending, then field/value pairs.
/// 0 when the account is at its bound of pending entries.
const LUA_PUT: &str = r#"
local ttl = tonumber(ARGV[1])
if ttl > 0 and not pending_room(KEYS[2], KEYS[1], ARGV[2], ARGV[2] + ttl, ttl, ARGV[3]) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"#;

/// KEYS: ceremony, pending. ARGV: state, ttl ms, now, max pending. 0 at the bound.
const LUA_PUT_CEREMONY: &str = r#"
local ttl = tonumber(ARGV[2])
if not pending_room(KEYS[2], KEYS[1], ARGV[3], ARGV[3] + ttl, ttl, ARGV[4]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1
"#;

/// KEYS: ceremony, pending. The state, read once.
const LUA_TAKE_CEREMONY: &str = r#"
redis.call('ZREM', KEYS[2], KEYS[1])
return redis.call('GETDEL', KEYS[1])
"#;

/// KEYS: factor, pending. ARGV: now, matched step ('' when the code matched none), activate,
/// max failures, first wait, max wait.
const LUA_TOTP_ATTEMPT: &str = r#"
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {'not_found'} end
if st == 'pending' and ARGV[3] ~= '1' then return {'not_active'} end
local now = tonumber(ARGV[1])
local ex = redis.call('HGET', KEYS[1], 'ex')
if st == 'pending' and ex and tonumber(ex) <= now then return {'not_found'} end
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if until_ms > now then return {'locked', tostring(until_ms - now)} end
if ARGV[2] ~= '' then
  local last = redis.call('HGET', KEYS[1], 'ls')
  if (not last) or tonumber(ARGV[2]) > tonumber(last) then
    redis.call('HSET', KEYS[1], 'ls', ARGV[2], 'nf', 0, 'lu', 0)
    if ARGV[3] == '1' and st == 'pending' then
      redis.call('HSET', KEYS[1], 'st', 'active')
      redis.call('HDEL', KEYS[1], 'ex')
      redis.call('PERSIST', KEYS[1])
      redis.call('ZREM', KEYS[2], KEYS[1])
    end
    return {'ok'}
  end
  return {'replayed'}
end
local max = tonumber(ARGV[4])
local fails = tonumber(redis.call('HGET', KEYS[1], 'nf') or '0') + 1
local wait = 0
if fails % max == 0 then
  wait = math.min(tonumber(ARGV[5]) * math.pow(2, math.min(fails / max - 1, 32)), tonumber(ARGV[6]))
  redis.call('HSET', KEYS[1], 'lu', string.format('%d', now + wait))
end
redis.call('HSET', KEYS[1], 'nf', fails)
local left = max - fails % max
if wait > 0 then left = max end
return {'wrong', tostring(left), string.format('%d', wait)}
"#;

/// KEYS: factor. ARGV: counter.
const LUA_COUNTER: &str = r#"
local stored = redis.call('HGET', KEYS[1], 'sc')
if not stored then return {'not_found'} end
stored = tonumber(stored)
local new = tonumber(ARGV[1])
if (stored ~= 0 or new ~= 0) and new <= stored then return {'regressed', tostring(stored)} end
redis.call('HSET', KEYS[1], 'sc', ARGV[1])
return {'ok'}
"#;

/// KEYS: codes, lock. ARGV: digest, now, max failures, first wait, max wait.
const LUA_USE_RECOVERY: &str = r#"
local now = tonumber(ARGV[2])
local until_ms = tonumber(redis.call('HGET', KEYS[2], 'lu') or '0')
if until_ms > now then return {'locked', tostring(until_ms - now)} end
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return {'ok', tostring(redis.call('SCARD', KEYS[1]))}
end
local max = tonumber(ARGV[3])
local fails = redis.call('HINCRBY', KEYS[2], 'nf', 1)
local wait = 0
if fails % max == 0 then
  wait = math.min(tonumber(ARGV[4]) * math.pow(2, math.min(fails / max - 1, 32)), tonumber(ARGV[5]))
  redis.call('HSET', KEYS[2], 'lu', string.format('%d', now + wait))
end
local left = max - fails % max
if wait > 0 then left = max end
return {'wrong', tostring(left), string.format('%d', wait)}
"#;

/// KEYS: codes. ARGV: digests.
const LUA_REPLACE_RECOVERY: &str = r#"
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('SADD', KEYS[1], unpack(ARGV)) end
return 1
"#;

pub struct RedisFactorStore {
    connection: Connection,
    prefix: String,
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

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl RedisFactorStore {
    pub(crate) fn new(connection: Connection, prefix: &str) -> Self {
        let pending = |body: &str| Script::new(&format!("{LUA_PENDING}{body}"));
        Self {
            connection,
            prefix: prefix.to_owned(),
            clock: Arc::new(crate::clock::SystemClock),
            tenants: TenantSettings::default(),
            put: pending(LUA_PUT),
            put_ceremony: pending(LUA_PUT_CEREMONY),
            take_ceremony: Script::new(LUA_TAKE_CEREMONY),
            totp_attempt: Script::new(LUA_TOTP_ATTEMPT),
            counter: Script::new(LUA_COUNTER),
            use_recovery: Script::new(LUA_USE_RECOVERY),
            replace_recovery: Script::new(LUA_REPLACE_RECOVERY),
        }
    }

    /// The per-account bounds (`[tenants]`) and the clock they count expiry by; the
    /// documented defaults and the system clock until this is called.
    pub(crate) fn with_tenants(mut self, tenants: TenantSettings, clock: Arc<dyn Clock>) -> Self {
        self.tenants = tenants;
        self.clock = clock;
        self
    }

    fn key(&self, account: &AccountId, name: &str) -> String {
        format!("{}:{{a:{}}}:{name}", self.prefix, account.as_str())
    }

    fn pending_full(&self, account: &AccountId) -> StoreError {
        LimitReached {
            limit: Limit::PendingCeremonies,
            max: self.tenants.limits(account).pending_ceremonies,
        }
        .into()
    }

    fn factor_key(&self, account: &AccountId, user: &UserId, id: &str) -> String {
        self.key(account, &format!("fx:{user}:{id}"))
    }

    async fn run(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)
    }

    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        cmd.query_async(&mut connection).await.map_err(unavailable)
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

fn limited(reply: &[String]) -> Result<(u32, u64), StoreError> {
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

fn retry_after(reply: &[String]) -> Result<u64, StoreError> {
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
            .key(self.factor_key(account, user, &record.id))
            .key(self.key(account, "pend"))
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
        let mut connection = self.connection.clone();
        let stored = invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(unavailable)?;
        if stored == 0 {
            return Err(self.pending_full(account));
        }
        Ok(())
    }

    async fn get(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
    ) -> Result<Option<FactorRecord>, StoreError> {
        let fields = self
            .command(redis::cmd("HGETALL").arg(self.factor_key(account, user, id)))
            .await?;
        decode(id, fields)
    }

    async fn delete(&self, account: &AccountId, user: &UserId, id: &str) -> Result<(), StoreError> {
        self.command::<i64>(redis::cmd("DEL").arg(self.factor_key(account, user, id)))
            .await
            .map(drop)
    }

    async fn totp_attempt(
        &self,
        account: &AccountId,
        user: &UserId,
        id: &str,
        matched: Option<u64>,
        activate: bool,
        now_ms: u64,
        limits: &AttemptLimits,
    ) -> Result<AttemptOutcome, StoreError> {
        let mut invocation = self.totp_attempt.prepare_invoke();
        invocation
            .key(self.factor_key(account, user, id))
            .key(self.key(account, "pend"))
            .arg(now_ms)
            .arg(matched.map(|step| step.to_string()).unwrap_or_default())
            .arg(if activate { "1" } else { "0" })
            .arg(limits.max_failures.max(1))
            .arg(limits.first_wait_ms)
            .arg(limits.max_wait_ms);
        let reply = self.run(&invocation).await?;
        Ok(match reply.first().map(String::as_str) {
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
            .key(self.factor_key(account, user, id))
            .arg(counter);
        let reply = self.run(&invocation).await?;
        Ok(match reply.first().map(String::as_str) {
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
        let key = self.key(
            account,
            &format!("wc:{user}:{}", HEXLOWER.encode(challenge)),
        );
        let mut invocation = self.put_ceremony.prepare_invoke();
        invocation
            .key(key)
            .key(self.key(account, "pend"))
            .arg(state)
            .arg(ttl_ms.max(1))
            .arg(self.clock.now_ms())
            .arg(self.tenants.limits(account).pending_ceremonies);
        let mut connection = self.connection.clone();
        let stored = invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(unavailable)?;
        if stored == 0 {
            return Err(self.pending_full(account));
        }
        Ok(())
    }

    async fn take_ceremony(
        &self,
        account: &AccountId,
        user: &UserId,
        challenge: &[u8],
    ) -> Result<Option<String>, StoreError> {
        let key = self.key(
            account,
            &format!("wc:{user}:{}", HEXLOWER.encode(challenge)),
        );
        let mut invocation = self.take_ceremony.prepare_invoke();
        invocation.key(key).key(self.key(account, "pend"));
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)
    }

    async fn replace_recovery(
        &self,
        account: &AccountId,
        user: &UserId,
        digests: &[CodeDigest],
    ) -> Result<(), StoreError> {
        let mut invocation = self.replace_recovery.prepare_invoke();
        invocation.key(self.key(account, &format!("rc:{user}")));
        for digest in digests {
            invocation.arg(HEXLOWER.encode(digest));
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(unavailable)
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
            .key(self.key(account, &format!("rc:{user}")))
            .key(self.key(account, &format!("rl:{user}")))
            .arg(HEXLOWER.encode(digest))
            .arg(now_ms)
            .arg(limits.max_failures.max(1))
            .arg(limits.first_wait_ms)
            .arg(limits.max_wait_ms);
        let reply = self.run(&invocation).await?;
        Ok(match reply.first().map(String::as_str) {
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
        self.command(redis::cmd("SCARD").arg(self.key(account, &format!("rc:{user}"))))
            .await
    }

    async fn delete_recovery(&self, account: &AccountId, user: &UserId) -> Result<(), StoreError> {
        // Two keys of one slot (the account's hash tag): one DEL is one step, also on Cluster.
        self.command::<i64>(
            redis::cmd("DEL")
                .arg(self.key(account, &format!("rc:{user}")))
                .arg(self.key(account, &format!("rl:{user}"))),
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
        let key = self.key(account, &format!("ch:{}", passed.id));
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
            .command(redis::cmd("GET").arg(self.key(account, &format!("ch:{id}"))))
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
