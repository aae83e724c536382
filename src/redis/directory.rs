//! The Redis directory: one Lua script per multi-key step, on the gateway's own connection.
//!
//! Every key of one account carries the hash tag `{a:<account>}` (key names from `KeySpace`),
//! so each script touches one slot and runs unchanged on a Redis Cluster. The scripts are
//! `src/redis/scripts/directory_*.lua`. Scripts publish their invalidation themselves,
//! so a committed change and its invalidation cannot be separated by a crash.
//!
//! | key (`P:{a:<account>}:` + …) | type | holds |
//! | --- | --- | --- |
//! | `pol` | hash | the policy: `r` require, `c` channels, `f` sms fallback, `t` trust, `ab` abuse protection (JSON, `src/abuse/settings.rs` `AbusePolicy`; absent or empty: the operator's defaults), `wf` default workflow (`DefaultWorkflow::encode`; empty: none), `v` version |
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
use redis::Value;

use crate::abuse::AbusePolicy;
use crate::account::audit::{AuditEntry, Who};
use crate::account::policy::{ChannelSet, DefaultWorkflow, Policy, TrustDuration};
use crate::account::store::{
    DeviceRevocation, Directory, NewDevice, PolicyWrite, TrustOutcome, UserWrite, UserWriteOutcome,
    MISSING_LISTED,
};
use crate::account::trust::cache::Invalidation;
use crate::account::trust::{DeviceDigest, DeviceId, DeviceRecord};
use crate::account::user::{Override, SetBy, User, UserId, UserRole};
use crate::account::{hex, AccountId};
use crate::phone::PhoneNumber;
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, flag, scripts, Adapter};
use crate::redis::KeySpace;
use crate::store::StoreError;

scripts! { DirectoryScripts = "directory_": write_policy, write_user, trust, revoke_one, revoke_all }

pub struct RedisDirectory {
    redis: Adapter,
    scripts: DirectoryScripts,
    audit_cap: usize,
}

impl RedisDirectory {
    pub(crate) fn new(connection: Connection, prefix: &str, audit_cap: usize) -> Self {
        Self {
            redis: Adapter::new(connection, prefix),
            scripts: DirectoryScripts::load(),
            audit_cap: audit_cap.max(1),
        }
    }

    /// A directory on the verification store's connection and prefix.
    pub fn on(store: &crate::redis::RedisStore, audit_cap: usize) -> Self {
        Self::new(store.connection(), store.prefix(), audit_cap)
    }

    /// The pub/sub channel every instance of this deployment (this prefix) listens on.
    pub fn channel(prefix: &str) -> String {
        KeySpace::new(prefix).invalidation_channel()
    }
}

/// The arguments of `directory_write_policy.lua`, in its ARGV order.
struct PolicyArgs<'a> {
    policy: &'a Policy,
    audit_cap: usize,
    channel: String,
    invalidation: String,
    audit: &'a AuditEntry,
}

impl PolicyArgs<'_> {
    fn append(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        let policy = self.policy;
        invocation
            .arg(policy.version)
            .arg(flag(policy.require_2fa))
            .arg(policy.channels.encode())
            .arg(flag(policy.sms_fallback))
            .arg(policy.trusted_device.as_str())
            .arg(flag(policy.sms_active()))
            .arg(MISSING_LISTED)
            .arg(self.audit_cap)
            .arg(&self.channel)
            .arg(&self.invalidation);
        audit_args(invocation, self.audit);
        invocation.arg(encode_abuse(&policy.abuse));
        invocation.arg(
            policy
                .workflow
                .as_ref()
                .map(DefaultWorkflow::encode)
                .unwrap_or_default(),
        );
    }
}

/// The policy's `ab` field: empty for an account that overrides nothing.
fn encode_abuse(abuse: &AbusePolicy) -> String {
    if *abuse == AbusePolicy::default() {
        return String::new();
    }
    // A value of plain maps, lists and numbers: serialising it cannot fail.
    serde_json::to_string(abuse).unwrap_or_default()
}

fn decode_abuse(field: Option<&str>) -> Result<AbusePolicy, StoreError> {
    match field {
        None | Some("") => Ok(AbusePolicy::default()),
        Some(text) => serde_json::from_str(text).map_err(|_| corrupt("abuse policy")),
    }
}

/// The arguments of `directory_write_user.lua`, in its ARGV order.
struct UserArgs<'a> {
    write: &'a UserWrite,
    audit_cap: usize,
    channel: String,
    invalidation: String,
    base: String,
}

impl UserArgs<'_> {
    fn append(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        let write = self.write;
        let user = &write.user;
        let (over, set_by) = encode_override(&user.two_factor);
        invocation
            .arg(flag(write.create))
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
            .arg(flag(write.revoke_devices))
            .arg(self.audit_cap)
            .arg(&self.channel)
            .arg(&self.invalidation)
            .arg(write.audit.len())
            .arg(&self.base)
            .arg(write.max_users);
        for entry in &write.audit {
            audit_args(invocation, entry);
        }
    }
}

/// The arguments of `directory_trust.lua`, in its ARGV order.
struct TrustArgs<'a> {
    new: &'a NewDevice,
    digest: &'a str,
    base: String,
    audit_cap: usize,
    channel: String,
}

impl TrustArgs<'_> {
    fn append(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        let new = self.new;
        let record = &new.record;
        invocation
            .arg(record.id.as_str())
            .arg(record.user.as_str())
            .arg(record.created_ms)
            .arg(record.expires_ms)
            .arg(self.digest)
            .arg(new.proof_ttl_ms.max(1))
            .arg(new.max_devices.max(1))
            .arg(&self.base)
            .arg(self.audit_cap)
            .arg(&self.channel);
        audit_args(invocation, &new.audit);
        invocation.arg(new.max_account_devices);
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
        let (require, channels, fallback, trust, version, abuse, workflow): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<String>,
            Option<String>,
        ) = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(self.redis.keys.policy(account))
                    .arg(&["r", "c", "f", "t", "v", "ab", "wf"]),
            )
            .await?;
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
            abuse: std::sync::Arc::new(decode_abuse(abuse.as_deref())?),
            workflow: match workflow.as_deref() {
                None | Some("") => None,
                Some(text) => {
                    Some(DefaultWorkflow::decode(text).ok_or_else(|| corrupt("workflow"))?)
                }
            },
            version,
        })
    }

    async fn write_policy(
        &self,
        account: &AccountId,
        policy: &Policy,
        audit: &AuditEntry,
    ) -> Result<PolicyWrite, StoreError> {
        let mut invocation = self.scripts.write_policy.prepare_invoke();
        invocation
            .key(self.redis.keys.policy(account))
            .key(self.redis.keys.users_without_phone(account))
            .key(self.redis.keys.audit(account));
        PolicyArgs {
            policy,
            audit_cap: self.audit_cap,
            channel: self.redis.keys.invalidation_channel(),
            invalidation: Invalidation::Policy(account.clone()).encode(),
            audit,
        }
        .append(&mut invocation);
        let reply = self.redis.call(&invocation, "policy").await?;
        match reply.outcome() {
            "ok" => Ok(PolicyWrite::Written {
                version: reply.parse(1)?,
            }),
            "stale" => Ok(PolicyWrite::Stale),
            "missing" => Ok(PolicyWrite::MissingPhones {
                count: reply.parse(1)?,
                users: reply
                    .rest(2)
                    .iter()
                    .filter_map(|id| UserId::parse(id))
                    .collect(),
            }),
            _ => Err(reply.unknown()),
        }
    }

    async fn user(&self, account: &AccountId, user: &UserId) -> Result<Option<User>, StoreError> {
        let fields: Vec<Option<String>> = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(self.redis.keys.user(account, user))
                    .arg(&["ro", "ph", "ov", "ob", "fa", "cr", "up", "v", "ep"]),
            )
            .await?;
        parse_user(user, fields)
    }

    async fn write_user(
        &self,
        account: &AccountId,
        write: &UserWrite,
    ) -> Result<UserWriteOutcome, StoreError> {
        let user = &write.user;
        let mut invocation = self.scripts.write_user.prepare_invoke();
        invocation
            .key(self.redis.keys.user(account, &user.id))
            .key(self.redis.keys.policy(account))
            .key(self.redis.keys.users(account))
            .key(self.redis.keys.users_without_phone(account))
            .key(self.redis.keys.audit(account))
            .key(self.redis.keys.user_devices(account, &user.id))
            .key(self.redis.keys.account_devices(account));
        UserArgs {
            write,
            audit_cap: self.audit_cap,
            channel: self.redis.keys.invalidation_channel(),
            invalidation: Invalidation::User(account.clone(), user.id.clone()).encode(),
            base: self.redis.keys.account_base(account),
        }
        .append(&mut invocation);
        let reply = self.redis.call(&invocation, "user write").await?;
        match reply.outcome() {
            "ok" => Ok(UserWriteOutcome::Written {
                version: reply.parse(1)?,
                device_epoch: reply.parse(2)?,
            }),
            "stale" => Ok(UserWriteOutcome::Stale),
            "too_many_users" => Ok(UserWriteOutcome::TooManyUsers {
                max: write.max_users,
            }),
            "exists" => Ok(UserWriteOutcome::Exists),
            "not_found" => Ok(UserWriteOutcome::NotFound),
            _ => Err(reply.unknown()),
        }
    }

    async fn trust_device(
        &self,
        account: &AccountId,
        new: &NewDevice,
    ) -> Result<TrustOutcome, StoreError> {
        let record = &new.record;
        let digest = hex(&new.digest);
        let mut invocation = self.scripts.trust.prepare_invoke();
        invocation
            .key(self.redis.keys.user(account, &record.user))
            .key(self.redis.keys.device(account, &new.digest))
            .key(self.redis.keys.user_devices(account, &record.user))
            .key(self.redis.keys.spent_proof(account, &new.proof))
            .key(self.redis.keys.audit(account))
            .key(self.redis.keys.account_devices(account));
        TrustArgs {
            new,
            digest: &digest,
            base: self.redis.keys.account_base(account),
            audit_cap: self.audit_cap,
            channel: self.redis.keys.invalidation_channel(),
        }
        .append(&mut invocation);
        let reply = self.redis.call(&invocation, "trust").await?;
        match reply.outcome() {
            "too_many_devices" => Ok(TrustOutcome::TooManyDevices {
                max: new.max_account_devices,
            }),
            "ok" => Ok(TrustOutcome::Trusted {
                epoch: reply.parse(1)?,
            }),
            "no_user" => Ok(TrustOutcome::NoSuchUser),
            "proof_used" => Ok(TrustOutcome::ProofUsed),
            _ => Err(reply.unknown()),
        }
    }

    async fn device(
        &self,
        account: &AccountId,
        digest: &DeviceDigest,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let (id, user, created, expires, epoch): (
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
        ) = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(self.redis.keys.device(account, digest))
                    .arg(&["id", "u", "cr", "ex", "ep"]),
            )
            .await?;
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
        revocation: &DeviceRevocation<'_>,
    ) -> Result<Option<DeviceDigest>, StoreError> {
        let DeviceRevocation {
            user,
            device,
            audit,
        } = *revocation;
        let mut invocation = self.scripts.revoke_one.prepare_invoke();
        invocation
            .key(self.redis.keys.user_devices(account, user))
            .key(self.redis.keys.audit(account))
            .key(self.redis.keys.account_devices(account))
            .arg(device.as_str())
            .arg(self.redis.keys.account_base(account))
            .arg(self.audit_cap)
            .arg(self.redis.keys.invalidation_channel());
        audit_args(&mut invocation, audit);
        let reply = self.redis.call(&invocation, "revoke").await?;
        match reply.outcome() {
            "ok" => {
                let digest = data_encoding::HEXLOWER.decode(reply.word(1)?.as_bytes());
                let digest = digest.ok().and_then(|bytes| bytes.try_into().ok());
                Ok(Some(digest.ok_or_else(|| reply.corrupt())?))
            }
            "not_found" => Ok(None),
            _ => Err(reply.unknown()),
        }
    }

    async fn revoke_devices(
        &self,
        account: &AccountId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<Option<u64>, StoreError> {
        let mut invocation = self.scripts.revoke_all.prepare_invoke();
        invocation
            .key(self.redis.keys.user(account, user))
            .key(self.redis.keys.user_devices(account, user))
            .key(self.redis.keys.audit(account))
            .key(self.redis.keys.account_devices(account))
            .arg(self.redis.keys.account_base(account))
            .arg(self.audit_cap)
            .arg(self.redis.keys.invalidation_channel())
            .arg(Invalidation::User(account.clone(), user.clone()).encode());
        audit_args(&mut invocation, audit);
        let reply = self.redis.call(&invocation, "revoke-all").await?;
        match reply.outcome() {
            "ok" => Ok(Some(reply.parse(1)?)),
            "no_user" => Ok(None),
            _ => Err(reply.unknown()),
        }
    }

    async fn append_audit(
        &self,
        account: &AccountId,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.redis
            .query::<Value>(
                redis::cmd("XADD")
                    .arg(self.redis.keys.audit(account))
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
                    .arg(entry.details.to_string()),
            )
            .await
            .map(drop)
    }

    async fn audit(
        &self,
        account: &AccountId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let end = match before {
            Some(cursor) => format!("({cursor}"),
            None => "+".to_owned(),
        };
        let rows: Vec<(String, Vec<String>)> = self
            .redis
            .query(
                redis::cmd("XREVRANGE")
                    .arg(self.redis.keys.audit(account))
                    .arg(end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(limit),
            )
            .await?;
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
