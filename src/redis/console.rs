//! The console's store on Redis (`console::store::ConsoleStore`), every key under the one tag
//! `{console}` (see `KeySpace::console_base`): the console's traffic is people clicking, and one
//! slot lets each script see all it bounds.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:{console}:i:<sha256 hex>` | string, TTL | an invitation (JSON) under its token's digest |
//! | `P:{console}:ch:<challenge hex>` | string, TTL | an open ceremony's state (JSON) |
//! | `P:{console}:c:<credential id>` | string | a console passkey (JSON, without its counter) |
//! | `P:{console}:cc:<credential id>` | string | that passkey's signature counter |
//! | `P:{console}:s:<sha256 hex>` | string, TTL | a session (JSON) under its id's digest |
//! | `P:{console}:ip:<who>`, `cp:<who>`, `sp:<who>` | set | one person's invitations, passkeys, sessions |
//! | `P:{console}:ls:<who>` | string, TTL | when that person last signed in (ms) |
//! | `P:{console}:iz`, `chz`, `cz`, `sz`, `lsz` | sorted set | each kind's live members, score: expiry ms |
//!
//! `<who>` is `root` or `<account>/<user>`. Per-person sets are pruned of gone members when
//! written (`console_put.lua`), so their bound counts live entries only.

use async_trait::async_trait;
use data_encoding::HEXLOWER;

use crate::clock::{Clock, SystemClock};
use crate::console::store::{
    Bounds, ConsoleCredential, ConsoleStore, Invitation, Principal, Room, SessionRecord,
};
use crate::redis::script::{scripts, Adapter};
use crate::store::StoreError;

scripts! { ConsoleScripts = "console_": put, counter, end_sessions }

pub struct RedisConsoleStore {
    redis: Adapter,
    scripts: ConsoleScripts,
    /// The index's expiry scores only bound the total; each entry's own TTL is what expires it.
    clock: std::sync::Arc<dyn Clock>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("console {what}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|_| corrupt("entry not serialisable"))
}

fn from_json<T: serde::de::DeserializeOwned>(
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.map(|text| serde_json::from_str(&text).map_err(|_| corrupt("entry unreadable")))
        .transpose()
}

impl RedisConsoleStore {
    pub fn on(store: &crate::redis::RedisStore) -> Self {
        Self::new(store.connection(), store.prefix())
    }

    pub(crate) fn new(connection: crate::redis::connection::Connection, prefix: &str) -> Self {
        Self {
            redis: Adapter::new(connection, prefix),
            scripts: ConsoleScripts::load(),
            clock: std::sync::Arc::new(SystemClock),
        }
    }

    /// The clock whose time the index scores use (tests move it with the gateway's).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    #[allow(clippy::too_many_arguments)]
    async fn put(
        &self,
        kind: &str,
        member: &str,
        who: &str,
        value: &str,
        ttl_ms: u64,
        per: usize,
        total: usize,
    ) -> Result<Room, StoreError> {
        let keys = &self.redis.keys;
        let mut invocation = self.scripts.put.prepare_invoke();
        invocation
            .key(keys.console_entry(kind, member))
            .key(keys.console_owned(kind, who))
            .key(keys.console_index(kind))
            .arg(member)
            .arg(value)
            .arg(ttl_ms)
            .arg(per)
            .arg(total)
            .arg(self.clock.now_ms())
            .arg(keys.console_base(kind));
        let reply = self.redis.call(&invocation, "console put").await?;
        match reply.outcome() {
            "ok" => Ok(Room::Stored),
            "full" => Ok(Room::Full),
            _ => Err(reply.unknown()),
        }
    }

    async fn get(&self, key: String) -> Result<Option<String>, StoreError> {
        self.redis.query(redis::cmd("GET").arg(key)).await
    }

    async fn take(&self, key: String) -> Result<Option<String>, StoreError> {
        self.redis.query(redis::cmd("GETDEL").arg(key)).await
    }
}

#[async_trait]
impl ConsoleStore for RedisConsoleStore {
    async fn put_invitation(
        &self,
        digest: &[u8; 32],
        invitation: &Invitation,
        ttl_ms: u64,
        bounds: Bounds,
    ) -> Result<Room, StoreError> {
        let member = HEXLOWER.encode(digest);
        let who = invitation.principal.encode();
        self.put(
            "i",
            &member,
            &who,
            &to_json(invitation)?,
            ttl_ms,
            bounds.per_principal,
            bounds.total,
        )
        .await
    }

    async fn invitation(&self, digest: &[u8; 32]) -> Result<Option<Invitation>, StoreError> {
        let key = self.redis.keys.console_entry("i", &HEXLOWER.encode(digest));
        from_json(self.get(key).await?)
    }

    async fn take_invitation(&self, digest: &[u8; 32]) -> Result<Option<Invitation>, StoreError> {
        let key = self.redis.keys.console_entry("i", &HEXLOWER.encode(digest));
        from_json(self.take(key).await?)
    }

    async fn put_ceremony(
        &self,
        challenge: &[u8],
        state: &str,
        ttl_ms: u64,
        total: usize,
    ) -> Result<Room, StoreError> {
        let member = HEXLOWER.encode(challenge);
        self.put("ch", &member, "-", state, ttl_ms, 0, total).await
    }

    async fn take_ceremony(&self, challenge: &[u8]) -> Result<Option<String>, StoreError> {
        let key = self
            .redis
            .keys
            .console_entry("ch", &HEXLOWER.encode(challenge));
        self.take(key).await
    }

    async fn put_credential(
        &self,
        credential: &ConsoleCredential,
        bounds: Bounds,
    ) -> Result<Room, StoreError> {
        let room = self
            .put(
                "c",
                &credential.id,
                &credential.principal.encode(),
                &to_json(credential)?,
                0,
                bounds.per_principal,
                bounds.total,
            )
            .await?;
        if room == Room::Stored {
            let key = self.redis.keys.console_counter(&credential.id);
            self.redis
                .query::<()>(redis::cmd("SET").arg(key).arg(credential.counter))
                .await?;
        }
        Ok(room)
    }

    async fn credential(&self, id: &str) -> Result<Option<ConsoleCredential>, StoreError> {
        let keys = &self.redis.keys;
        let (entry, counter): (Option<String>, Option<u32>) = self
            .redis
            .query(
                redis::cmd("MGET")
                    .arg(keys.console_entry("c", id))
                    .arg(keys.console_counter(id)),
            )
            .await?;
        let mut credential: Option<ConsoleCredential> = from_json(entry)?;
        if let (Some(credential), Some(counter)) = (credential.as_mut(), counter) {
            credential.counter = counter;
        }
        Ok(credential)
    }

    async fn advance_counter(&self, id: &str, counter: u32) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.counter.prepare_invoke();
        invocation
            .key(self.redis.keys.console_counter(id))
            .arg(counter);
        let reply = self.redis.call(&invocation, "console counter").await?;
        match reply.outcome() {
            "advanced" => Ok(true),
            "regressed" => Ok(false),
            _ => Err(reply.unknown()),
        }
    }

    async fn has_root_credential(&self) -> Result<bool, StoreError> {
        let owned = self
            .redis
            .keys
            .console_owned("c", &Principal::Root.encode());
        let count: u64 = self.redis.query(redis::cmd("SCARD").arg(owned)).await?;
        Ok(count > 0)
    }

    async fn put_session(
        &self,
        digest: &[u8; 32],
        session: &SessionRecord,
        ttl_ms: u64,
        bounds: Bounds,
    ) -> Result<Room, StoreError> {
        self.put(
            "s",
            &HEXLOWER.encode(digest),
            &session.principal.encode(),
            &to_json(session)?,
            ttl_ms,
            bounds.per_principal,
            bounds.total,
        )
        .await
    }

    async fn session(&self, digest: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.redis.keys.console_entry("s", &HEXLOWER.encode(digest));
        from_json(self.get(key).await?)
    }

    async fn touch_session(
        &self,
        digest: &[u8; 32],
        last_seen_ms: u64,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let keys = &self.redis.keys;
        let member = HEXLOWER.encode(digest);
        let key = keys.console_entry("s", &member);
        let Some(mut session) = from_json::<SessionRecord>(self.get(key.clone()).await?)? else {
            return Ok(());
        };
        session.last_seen_ms = last_seen_ms;
        // XX: a session signed out meanwhile stays signed out.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(to_json(&session)?)
            .arg("PX")
            .arg(ttl_ms)
            .arg("XX")
            .ignore()
            .cmd("ZADD")
            .arg(keys.console_index("s"))
            .arg("XX")
            .arg(self.clock.now_ms() + ttl_ms)
            .arg(&member)
            .ignore();
        let mut connection = self.redis.connection.clone();
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(|error| crate::redis::script::Failure::Unavailable.of(error))
    }

    async fn delete_session(&self, digest: &[u8; 32]) -> Result<(), StoreError> {
        let key = self.redis.keys.console_entry("s", &HEXLOWER.encode(digest));
        self.redis.query::<()>(redis::cmd("DEL").arg(key)).await
    }

    async fn delete_sessions_of(&self, principal: &Principal) -> Result<usize, StoreError> {
        let keys = &self.redis.keys;
        let mut invocation = self.scripts.end_sessions.prepare_invoke();
        invocation
            .key(keys.console_owned("s", &principal.encode()))
            .key(keys.console_index("s"))
            .arg(keys.console_base("s"));
        let reply = self.redis.call(&invocation, "console end sessions").await?;
        match reply.outcome() {
            "ok" => reply.parse(1),
            _ => Err(reply.unknown()),
        }
    }

    async fn record_sign_in(
        &self,
        principal: &Principal,
        at_ms: u64,
        ttl_ms: u64,
        total: usize,
    ) -> Result<Room, StoreError> {
        let who = principal.encode();
        let keys = &self.redis.keys;
        // A person already recorded is replaced in place (XX), whatever the total bound says;
        // only a new person takes room, through the bounded put (no per-person set: 0).
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(keys.console_entry("ls", &who))
            .arg(at_ms)
            .arg("PX")
            .arg(ttl_ms)
            .arg("XX")
            .cmd("ZADD")
            .arg(keys.console_index("ls"))
            .arg("XX")
            .arg(self.clock.now_ms() + ttl_ms)
            .arg(&who)
            .ignore();
        let mut connection = self.redis.connection.clone();
        let (replaced,): (Option<String>,) = pipe
            .query_async(&mut connection)
            .await
            .map_err(|error| crate::redis::script::Failure::Unavailable.of(error))?;
        if replaced.is_some() {
            return Ok(Room::Stored);
        }
        self.put("ls", &who, &who, &at_ms.to_string(), ttl_ms, 0, total)
            .await
    }

    async fn last_sign_ins(
        &self,
        principals: &[Principal],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        if principals.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = principals
            .iter()
            .map(|principal| self.redis.keys.console_entry("ls", &principal.encode()))
            .collect();
        // One tag for all console keys: one MGET, on a cluster too.
        let found: Vec<Option<String>> = self.redis.query(redis::cmd("MGET").arg(keys)).await?;
        found
            .into_iter()
            .map(|at| {
                at.map(|at| {
                    at.parse::<u64>()
                        .map_err(|_| corrupt("sign-in time unreadable"))
                })
                .transpose()
            })
            .collect()
    }
}
