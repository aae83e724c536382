//! The Redis directory: one Lua script per multi-key step, on the gateway's own connection.
//!
//! Every key of one account carries the hash tag `{a:<account>}`, so each script touches one
//! slot and runs unchanged on a Redis Cluster. Scripts publish their invalidation themselves,
//! so a committed change and its invalidation cannot be separated by a crash.
//!
//! | key (`P:{a:<account>}:` + …) | type | holds |
//! | --- | --- | --- |
//! | `pol` | hash | the policy: `r` require, `c` channels, `f` sms fallback, `t` trust, `v` version |
//! | `u:<user>` | hash | a user: `ro` role, `ph` phone, `ov`/`ob` override and who set it, `fa` factors, `cr`/`up` times, `v` version, `ep` device epoch |
//! | `users` | set | every user id |
//! | `nophone` | set | users without a phone (the SMS readiness check) |
//! | `d:<digest hex>` | hash | a trusted device: `id`, `u` user, `cr`, `ex`, `ep`; expires with the device |
//! | `ud:<user>` | hash | a user's devices: device id -> `<digest hex>:<expires>` |
//! | `pf:<verification id>` | string | a spent proof (trusts one device only) |
//! | `devs` | sorted set | every trusted device of the account (digest hex) scored by its expiry, against `tenants.max_trusted_devices` |
//! | `audit` | stream | the audit trail, capped with `MAXLEN` |
//!
//! Invalidations go to the channel `P:invalidate`.

use async_trait::async_trait;
use redis::{Script, Value};

use super::{
    Directory, NewDevice, PolicyWrite, TrustOutcome, UserWrite, UserWriteOutcome, MISSING_LISTED,
};
use crate::account::policy::{ChannelSet, Policy, TrustDuration};
use crate::account::user::{Override, SetBy, User, UserId, UserRole};
use crate::account::{hex, AccountId};
use crate::audit::{AuditEntry, Who};
use crate::phone::PhoneNumber;
use crate::store::redis::Connection;
use crate::store::StoreError;
use crate::trust::cache::Invalidation;
use crate::trust::{DeviceDigest, DeviceId, DeviceRecord};

/// Seven arguments per audit entry, from ARGV[i].
const LUA_AUDIT: &str = r#"
local function audit(key, cap, i)
  redis.call('XADD', key, 'MAXLEN', cap, '*', 'at', ARGV[i], 'k', ARGV[i+1], 'r', ARGV[i+2],
    'u', ARGV[i+3], 'a', ARGV[i+4], 't', ARGV[i+5], 'd', ARGV[i+6])
end
local function digest_of(value) return string.match(value, '^([^:]+)') end
"#;

/// KEYS: policy, users without phone, audit.
/// ARGV: expected version, r, c, f, t, sms active, listed, cap, channel, message, audit (7).
const LUA_WRITE_POLICY: &str = r#"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {'stale'} end
if ARGV[6] == '1' then
  local count = redis.call('SCARD', KEYS[2])
  if count > 0 then
    local ids = redis.call('SMEMBERS', KEYS[2])
    table.sort(ids)
    local out = {'missing', tostring(count)}
    for i = 1, math.min(#ids, tonumber(ARGV[7])) do out[#out + 1] = ids[i] end
    return out
  end
end
redis.call('HSET', KEYS[1], 'r', ARGV[2], 'c', ARGV[3], 'f', ARGV[4], 't', ARGV[5], 'v', v + 1)
audit(KEYS[3], ARGV[8], 11)
redis.call('PUBLISH', ARGV[9], ARGV[10])
return {'ok', tostring(v + 1)}
"#;

/// KEYS: user, policy, users, users without phone, audit, user's devices, account's devices.
/// ARGV: create, expected user version, expected policy version, id, role, phone, override,
/// set by, factors, created, updated, revoke, cap, channel, message, audit count, base,
/// max users, audits (7 each) from 19.
const LUA_WRITE_USER: &str = r#"
local pv = tonumber(redis.call('HGET', KEYS[2], 'v') or '0')
if pv ~= tonumber(ARGV[3]) then return {'stale'} end
local exists = redis.call('EXISTS', KEYS[1]) == 1
local uv = 0
if ARGV[1] == '1' then
  if exists then return {'exists'} end
  if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[18]) then return {'too_many_users'} end
else
  if not exists then return {'not_found'} end
  uv = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
  if uv ~= tonumber(ARGV[2]) then return {'stale'} end
end
local ep = tonumber(redis.call('HGET', KEYS[1], 'ep') or '0')
if ARGV[12] == '1' then
  ep = ep + 1
  for _, value in ipairs(redis.call('HVALS', KEYS[6])) do
    local digest = digest_of(value)
    if digest then
      redis.call('DEL', ARGV[17] .. 'd:' .. digest)
      redis.call('ZREM', KEYS[7], digest)
    end
  end
  redis.call('DEL', KEYS[6])
end
redis.call('HSET', KEYS[1], 'ro', ARGV[5], 'ph', ARGV[6], 'ov', ARGV[7], 'ob', ARGV[8],
  'fa', ARGV[9], 'cr', ARGV[10], 'up', ARGV[11], 'v', uv + 1, 'ep', ep)
redis.call('SADD', KEYS[3], ARGV[4])
if ARGV[6] == '' then redis.call('SADD', KEYS[4], ARGV[4]) else redis.call('SREM', KEYS[4], ARGV[4]) end
for n = 0, tonumber(ARGV[16]) - 1 do audit(KEYS[5], ARGV[13], 19 + n * 7) end
redis.call('PUBLISH', ARGV[14], ARGV[15])
return {'ok', tostring(uv + 1), tostring(ep)}
"#;

/// KEYS: user, device record, user's devices, proof, audit, account's devices.
/// ARGV: device id, user id, created (now), expires, digest hex, proof ttl, max devices, base,
/// cap, channel, audit (7), max devices of the account (18).
const LUA_TRUST: &str = r#"
local ep = redis.call('HGET', KEYS[1], 'ep')
if not ep then return {'no_user'} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'proof_used'} end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[18]) then return {'too_many_devices'} end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[6])
local now, expires = tonumber(ARGV[3]), tonumber(ARGV[4])
local list = redis.call('HGETALL', KEYS[3])
local live = {}
for i = 1, #list, 2 do
  local digest, until_ms = string.match(list[i + 1], '^([^:]+):(%d+)$')
  if (not until_ms) or tonumber(until_ms) <= now then
    redis.call('HDEL', KEYS[3], list[i])
    if digest then
      redis.call('DEL', ARGV[8] .. 'd:' .. digest)
      redis.call('ZREM', KEYS[6], digest)
    end
  else
    live[#live + 1] = {list[i], digest, tonumber(until_ms)}
  end
end
table.sort(live, function(a, b) return a[3] < b[3] end)
for i = 1, #live - tonumber(ARGV[7]) + 1 do
  redis.call('HDEL', KEYS[3], live[i][1])
  redis.call('DEL', ARGV[8] .. 'd:' .. live[i][2])
  redis.call('ZREM', KEYS[6], live[i][2])
  redis.call('PUBLISH', ARGV[10], 'd|' .. live[i][2])
end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'u', ARGV[2], 'cr', ARGV[3], 'ex', ARGV[4], 'ep', ep)
redis.call('PEXPIRE', KEYS[2], expires - now)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5] .. ':' .. ARGV[4])
if redis.call('PTTL', KEYS[3]) < expires - now then redis.call('PEXPIRE', KEYS[3], expires - now) end
redis.call('ZADD', KEYS[6], ARGV[4], ARGV[5])
if redis.call('PTTL', KEYS[6]) < expires - now then redis.call('PEXPIRE', KEYS[6], expires - now) end
audit(KEYS[5], ARGV[9], 11)
return {'ok', ep}
"#;

/// KEYS: user's devices, audit, account's devices. ARGV: device id, base, cap, channel,
/// audit (7).
const LUA_REVOKE_ONE: &str = r#"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return {'not_found'} end
local digest = digest_of(value)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', ARGV[2] .. 'd:' .. digest)
redis.call('ZREM', KEYS[3], digest)
audit(KEYS[2], ARGV[3], 5)
redis.call('PUBLISH', ARGV[4], 'd|' .. digest)
return {'ok', digest}
"#;

/// KEYS: user, user's devices, audit, account's devices. ARGV: base, cap, channel, message,
/// audit (7).
const LUA_REVOKE_ALL: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_user'} end
redis.call('HINCRBY', KEYS[1], 'ep', 1)
local list = redis.call('HVALS', KEYS[2])
for _, value in ipairs(list) do
  local digest = digest_of(value)
  if digest then
    redis.call('DEL', ARGV[1] .. 'd:' .. digest)
    redis.call('ZREM', KEYS[4], digest)
  end
end
redis.call('DEL', KEYS[2])
audit(KEYS[3], ARGV[2], 5)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {'ok', tostring(#list)}
"#;

pub struct RedisDirectory {
    connection: Connection,
    prefix: String,
    audit_cap: usize,
    write_policy: Script,
    write_user: Script,
    trust: Script,
    revoke_one: Script,
    revoke_all: Script,
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl RedisDirectory {
    pub(crate) fn new(connection: Connection, prefix: &str, audit_cap: usize) -> Self {
        let script = |body: &str| Script::new(&format!("{LUA_AUDIT}{body}"));
        Self {
            connection,
            prefix: prefix.to_owned(),
            audit_cap: audit_cap.max(1),
            write_policy: script(LUA_WRITE_POLICY),
            write_user: script(LUA_WRITE_USER),
            trust: script(LUA_TRUST),
            revoke_one: script(LUA_REVOKE_ONE),
            revoke_all: script(LUA_REVOKE_ALL),
        }
    }

    /// The pub/sub channel every instance of this deployment (this prefix) listens on.
    pub fn channel(prefix: &str) -> String {
        format!("{prefix}:invalidate")
    }

    fn base(&self, account: &AccountId) -> String {
        format!("{}:{{a:{}}}:", self.prefix, account.as_str())
    }

    fn key(&self, account: &AccountId, name: &str) -> String {
        format!("{}{name}", self.base(account))
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
}

/// Appends one audit entry's seven script arguments.
fn audit_args(invocation: &mut redis::ScriptInvocation<'_>, entry: &AuditEntry) {
    invocation
        .arg(entry.at_ms)
        .arg(&entry.who.key_id)
        .arg(&entry.who.role)
        .arg(entry.who.acting_user.as_deref().unwrap_or(""))
        .arg(&entry.action)
        .arg(&entry.target)
        .arg(entry.details.to_string());
}

fn encode_override(two_factor: &Option<Override>) -> (&'static str, String) {
    match two_factor {
        None => ("", String::new()),
        Some(over) => (if over.enabled { "1" } else { "0" }, over.set_by.encode()),
    }
}

fn parse_user(id: &UserId, fields: Vec<Option<String>>) -> Result<Option<User>, StoreError> {
    let [role, phone, over, set_by, factors, created, updated, version, epoch]: [Option<String>;
        9] = fields.try_into().map_err(|_| corrupt("short user reply"))?;
    let Some(role) = role else { return Ok(None) };
    let number = |value: Option<String>| -> Result<u64, StoreError> {
        value
            .unwrap_or_else(|| "0".into())
            .parse()
            .map_err(|_| corrupt("user field is not a number"))
    };
    let phone = match phone.as_deref() {
        None | Some("") => None,
        Some(e164) => Some(PhoneNumber::parse(e164).map_err(|_| corrupt("stored phone"))?),
    };
    let two_factor = match over.as_deref() {
        None | Some("") => None,
        Some(flag) => Some(Override {
            enabled: flag == "1",
            set_by: SetBy::decode(set_by.as_deref().unwrap_or(""))
                .ok_or_else(|| corrupt("override setter"))?,
        }),
    };
    Ok(Some(User {
        id: id.clone(),
        role: UserRole::parse(&role).ok_or_else(|| corrupt("user role"))?,
        phone,
        two_factor,
        factors: User::decode_factors(factors.as_deref().unwrap_or(""))
            .ok_or_else(|| corrupt("user factors"))?,
        device_epoch: number(epoch)?,
        version: number(version)?,
        created_ms: number(created)?,
        updated_ms: number(updated)?,
    }))
}

fn parse_audit(id: String, fields: Vec<String>) -> Result<AuditEntry, StoreError> {
    let mut entry = AuditEntry::new(0, Who::root(), "", String::new(), serde_json::Value::Null);
    entry.id = id;
    for pair in fields.chunks(2) {
        let [name, value] = pair else {
            return Err(corrupt("odd audit fields"));
        };
        match name.as_str() {
            "at" => entry.at_ms = value.parse().map_err(|_| corrupt("audit time"))?,
            "k" => entry.who.key_id = value.clone(),
            "r" => entry.who.role = value.clone(),
            "u" => entry.who.acting_user = (!value.is_empty()).then(|| value.clone()),
            "a" => entry.action = value.clone(),
            "t" => entry.target = value.clone(),
            "d" => {
                entry.details = serde_json::from_str(value).map_err(|_| corrupt("audit details"))?
            }
            _ => {}
        }
    }
    Ok(entry)
}

#[async_trait]
impl Directory for RedisDirectory {
    async fn policy(&self, account: &AccountId) -> Result<Policy, StoreError> {
        let mut connection = self.connection.clone();
        let (require, channels, fallback, trust, version): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<u64>,
        ) = redis::cmd("HMGET")
            .arg(self.key(account, "pol"))
            .arg(&["r", "c", "f", "t", "v"])
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let (Some(require), Some(channels), Some(fallback), Some(trust), Some(version)) =
            (require, channels, fallback, trust, version)
        else {
            return Ok(Policy::default_for_new_accounts());
        };
        Ok(Policy {
            require_2fa: require == "1",
            channels: ChannelSet::decode(&channels).ok_or_else(|| corrupt("channels"))?,
            sms_fallback: fallback == "1",
            trusted_device: TrustDuration::parse(&trust).ok_or_else(|| corrupt("trust"))?,
            version,
        })
    }

    async fn write_policy(
        &self,
        account: &AccountId,
        policy: &Policy,
        audit: &AuditEntry,
    ) -> Result<PolicyWrite, StoreError> {
        let flag = |on: bool| if on { "1" } else { "0" };
        let mut invocation = self.write_policy.prepare_invoke();
        invocation
            .key(self.key(account, "pol"))
            .key(self.key(account, "nophone"))
            .key(self.key(account, "audit"))
            .arg(policy.version)
            .arg(flag(policy.require_2fa))
            .arg(policy.channels.encode())
            .arg(flag(policy.sms_fallback))
            .arg(policy.trusted_device.as_str())
            .arg(flag(policy.sms_active()))
            .arg(MISSING_LISTED)
            .arg(self.audit_cap)
            .arg(Self::channel(&self.prefix))
            .arg(Invalidation::Policy(account.clone()).encode());
        audit_args(&mut invocation, audit);
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(PolicyWrite::Written {
                version: reply
                    .get(1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt("policy version"))?,
            }),
            Some("stale") => Ok(PolicyWrite::Stale),
            Some("missing") => Ok(PolicyWrite::MissingPhones {
                count: reply
                    .get(1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt("missing count"))?,
                users: reply[2..]
                    .iter()
                    .filter_map(|id| UserId::parse(id))
                    .collect(),
            }),
            _ => Err(corrupt("unknown policy reply")),
        }
    }

    async fn user(&self, account: &AccountId, user: &UserId) -> Result<Option<User>, StoreError> {
        let mut connection = self.connection.clone();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.key(account, &format!("u:{user}")))
            .arg(&["ro", "ph", "ov", "ob", "fa", "cr", "up", "v", "ep"])
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        parse_user(user, fields)
    }

    async fn write_user(
        &self,
        account: &AccountId,
        write: &UserWrite,
    ) -> Result<UserWriteOutcome, StoreError> {
        let user = &write.user;
        let (over, set_by) = encode_override(&user.two_factor);
        let mut invocation = self.write_user.prepare_invoke();
        invocation
            .key(self.key(account, &format!("u:{}", user.id)))
            .key(self.key(account, "pol"))
            .key(self.key(account, "users"))
            .key(self.key(account, "nophone"))
            .key(self.key(account, "audit"))
            .key(self.key(account, &format!("ud:{}", user.id)))
            .key(self.key(account, "devs"))
            .arg(if write.create { "1" } else { "0" })
            .arg(user.version)
            .arg(write.policy_version)
            .arg(user.id.as_str())
            .arg(user.role.as_str())
            .arg(user.phone.as_ref().map(PhoneNumber::e164).unwrap_or(""))
            .arg(over)
            .arg(set_by)
            .arg(User::encode_factors(&user.factors))
            .arg(user.created_ms)
            .arg(user.updated_ms)
            .arg(if write.revoke_devices { "1" } else { "0" })
            .arg(self.audit_cap)
            .arg(Self::channel(&self.prefix))
            .arg(Invalidation::User(account.clone(), user.id.clone()).encode())
            .arg(write.audit.len())
            .arg(self.base(account))
            .arg(write.max_users);
        for entry in &write.audit {
            audit_args(&mut invocation, entry);
        }
        let reply = self.run(&invocation).await?;
        let number = |index: usize| -> Result<u64, StoreError> {
            reply
                .get(index)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt("user write reply"))
        };
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(UserWriteOutcome::Written {
                version: number(1)?,
                device_epoch: number(2)?,
            }),
            Some("stale") => Ok(UserWriteOutcome::Stale),
            Some("too_many_users") => Ok(UserWriteOutcome::TooManyUsers {
                max: write.max_users,
            }),
            Some("exists") => Ok(UserWriteOutcome::Exists),
            Some("not_found") => Ok(UserWriteOutcome::NotFound),
            _ => Err(corrupt("unknown user write reply")),
        }
    }

    async fn trust_device(
        &self,
        account: &AccountId,
        new: &NewDevice,
    ) -> Result<TrustOutcome, StoreError> {
        let record = &new.record;
        let digest = hex(&new.digest);
        let mut invocation = self.trust.prepare_invoke();
        invocation
            .key(self.key(account, &format!("u:{}", record.user)))
            .key(self.key(account, &format!("d:{digest}")))
            .key(self.key(account, &format!("ud:{}", record.user)))
            .key(self.key(account, &format!("pf:{}", new.proof)))
            .key(self.key(account, "audit"))
            .key(self.key(account, "devs"))
            .arg(record.id.as_str())
            .arg(record.user.as_str())
            .arg(record.created_ms)
            .arg(record.expires_ms)
            .arg(&digest)
            .arg(new.proof_ttl_ms.max(1))
            .arg(new.max_devices.max(1))
            .arg(self.base(account))
            .arg(self.audit_cap)
            .arg(Self::channel(&self.prefix));
        audit_args(&mut invocation, &new.audit);
        invocation.arg(new.max_account_devices);
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("too_many_devices") => Ok(TrustOutcome::TooManyDevices {
                max: new.max_account_devices,
            }),
            Some("ok") => Ok(TrustOutcome::Trusted {
                epoch: reply
                    .get(1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt("trust epoch"))?,
            }),
            Some("no_user") => Ok(TrustOutcome::NoSuchUser),
            Some("proof_used") => Ok(TrustOutcome::ProofUsed),
            _ => Err(corrupt("unknown trust reply")),
        }
    }

    async fn device(
        &self,
        account: &AccountId,
        digest: &DeviceDigest,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let mut connection = self.connection.clone();
        let (id, user, created, expires, epoch): (
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
        ) = redis::cmd("HMGET")
            .arg(self.key(account, &format!("d:{}", hex(digest))))
            .arg(&["id", "u", "cr", "ex", "ep"])
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let (Some(id), Some(user), Some(created_ms), Some(expires_ms), Some(epoch)) =
            (id, user, created, expires, epoch)
        else {
            return Ok(None);
        };
        Ok(Some(DeviceRecord {
            id: DeviceId::parse(&id).ok_or_else(|| corrupt("device id"))?,
            user: UserId::parse(&user).ok_or_else(|| corrupt("device user"))?,
            created_ms,
            expires_ms,
            epoch,
        }))
    }

    async fn revoke_device(
        &self,
        account: &AccountId,
        user: &UserId,
        device: &DeviceId,
        audit: &AuditEntry,
    ) -> Result<Option<DeviceDigest>, StoreError> {
        let mut invocation = self.revoke_one.prepare_invoke();
        invocation
            .key(self.key(account, &format!("ud:{user}")))
            .key(self.key(account, "audit"))
            .key(self.key(account, "devs"))
            .arg(device.as_str())
            .arg(self.base(account))
            .arg(self.audit_cap)
            .arg(Self::channel(&self.prefix));
        audit_args(&mut invocation, audit);
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let bytes = reply
                    .get(1)
                    .and_then(|digest| data_encoding::HEXLOWER.decode(digest.as_bytes()).ok())
                    .ok_or_else(|| corrupt("revoked digest"))?;
                Ok(Some(
                    bytes.try_into().map_err(|_| corrupt("revoked digest"))?,
                ))
            }
            Some("not_found") => Ok(None),
            _ => Err(corrupt("unknown revoke reply")),
        }
    }

    async fn revoke_devices(
        &self,
        account: &AccountId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<Option<u64>, StoreError> {
        let mut invocation = self.revoke_all.prepare_invoke();
        invocation
            .key(self.key(account, &format!("u:{user}")))
            .key(self.key(account, &format!("ud:{user}")))
            .key(self.key(account, "audit"))
            .key(self.key(account, "devs"))
            .arg(self.base(account))
            .arg(self.audit_cap)
            .arg(Self::channel(&self.prefix))
            .arg(Invalidation::User(account.clone(), user.clone()).encode());
        audit_args(&mut invocation, audit);
        let reply = self.run(&invocation).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Some(
                reply
                    .get(1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt("revoke count"))?,
            )),
            Some("no_user") => Ok(None),
            _ => Err(corrupt("unknown revoke-all reply")),
        }
    }

    async fn append_audit(
        &self,
        account: &AccountId,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("XADD")
            .arg(self.key(account, "audit"))
            .arg("MAXLEN")
            .arg(self.audit_cap)
            .arg("*")
            .arg("at")
            .arg(entry.at_ms)
            .arg(&["k", &entry.who.key_id, "r", &entry.who.role])
            .arg("u")
            .arg(entry.who.acting_user.as_deref().unwrap_or(""))
            .arg(&["a", &entry.action, "t", &entry.target])
            .arg("d")
            .arg(entry.details.to_string())
            .query_async::<Value>(&mut connection)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn audit(
        &self,
        account: &AccountId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut connection = self.connection.clone();
        let end = match before {
            Some(cursor) => format!("({cursor}"),
            None => "+".to_owned(),
        };
        let rows: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(self.key(account, "audit"))
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|(id, fields)| parse_audit(id, fields))
            .collect()
    }

    fn shared(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
