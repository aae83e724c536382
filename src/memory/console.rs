//! The console's store in process (`console::store::ConsoleStore`): invitations, ceremonies,
//! console passkeys and sessions in one mutex, each entry with its expiry, every map bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::clock::Clock;
use crate::console::store::{
    Bounds, ConsoleCredential, ConsoleStore, Invitation, Principal, Room, SessionRecord,
};
use crate::store::StoreError;

#[derive(Default)]
struct Inner {
    invitations: HashMap<[u8; 32], (Invitation, u64)>,
    ceremonies: HashMap<Vec<u8>, (String, u64)>,
    credentials: HashMap<String, ConsoleCredential>,
    sessions: HashMap<[u8; 32], (SessionRecord, u64)>,
    /// When each person last signed in, and until when that is kept.
    sign_ins: HashMap<Principal, (u64, u64)>,
}

impl Inner {
    fn sweep(&mut self, now: u64) {
        self.invitations.retain(|_, (_, at)| *at > now);
        self.ceremonies.retain(|_, (_, at)| *at > now);
        self.sessions.retain(|_, (_, at)| *at > now);
        self.sign_ins.retain(|_, (_, at)| *at > now);
    }
}

pub struct MemoryConsoleStore {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
}

impl MemoryConsoleStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            clock,
        }
    }

    /// The maps with expired entries dropped first, so bounds count only live ones.
    fn locked(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.sweep(self.clock.now_ms());
        inner
    }
}

#[async_trait]
impl ConsoleStore for MemoryConsoleStore {
    async fn put_invitation(
        &self,
        digest: &[u8; 32],
        invitation: &Invitation,
        ttl_ms: u64,
        bounds: Bounds,
    ) -> Result<Room, StoreError> {
        let mut inner = self.locked();
        let mine = inner
            .invitations
            .values()
            .filter(|(held, _)| held.principal == invitation.principal)
            .count();
        if mine >= bounds.per_principal || inner.invitations.len() >= bounds.total {
            return Ok(Room::Full);
        }
        let expires = self.clock.now_ms() + ttl_ms;
        inner
            .invitations
            .insert(*digest, (invitation.clone(), expires));
        Ok(Room::Stored)
    }

    async fn invitation(&self, digest: &[u8; 32]) -> Result<Option<Invitation>, StoreError> {
        Ok(self
            .locked()
            .invitations
            .get(digest)
            .map(|(invitation, _)| invitation.clone()))
    }

    async fn take_invitation(&self, digest: &[u8; 32]) -> Result<Option<Invitation>, StoreError> {
        Ok(self
            .locked()
            .invitations
            .remove(digest)
            .map(|(invitation, _)| invitation))
    }

    async fn put_ceremony(
        &self,
        challenge: &[u8],
        state: &str,
        ttl_ms: u64,
        total: usize,
    ) -> Result<Room, StoreError> {
        let mut inner = self.locked();
        if inner.ceremonies.len() >= total {
            return Ok(Room::Full);
        }
        let expires = self.clock.now_ms() + ttl_ms;
        inner
            .ceremonies
            .insert(challenge.to_vec(), (state.to_owned(), expires));
        Ok(Room::Stored)
    }

    async fn take_ceremony(&self, challenge: &[u8]) -> Result<Option<String>, StoreError> {
        Ok(self
            .locked()
            .ceremonies
            .remove(challenge)
            .map(|(state, _)| state))
    }

    async fn put_credential(
        &self,
        credential: &ConsoleCredential,
        bounds: Bounds,
    ) -> Result<Room, StoreError> {
        let mut inner = self.locked();
        let mine = inner
            .credentials
            .values()
            .filter(|held| held.principal == credential.principal)
            .count();
        if mine >= bounds.per_principal || inner.credentials.len() >= bounds.total {
            return Ok(Room::Full);
        }
        inner
            .credentials
            .insert(credential.id.clone(), credential.clone());
        Ok(Room::Stored)
    }

    async fn credential(&self, id: &str) -> Result<Option<ConsoleCredential>, StoreError> {
        Ok(self.locked().credentials.get(id).cloned())
    }

    async fn advance_counter(&self, id: &str, counter: u32) -> Result<bool, StoreError> {
        let mut inner = self.locked();
        let Some(credential) = inner.credentials.get_mut(id) else {
            return Ok(false);
        };
        if !crate::factors::webauthn::counter_advances(credential.counter, counter) {
            return Ok(false);
        }
        credential.counter = counter;
        Ok(true)
    }

    async fn has_root_credential(&self) -> Result<bool, StoreError> {
        Ok(self
            .locked()
            .credentials
            .values()
            .any(|credential| credential.principal == Principal::Root))
    }

    async fn put_session(
        &self,
        digest: &[u8; 32],
        session: &SessionRecord,
        ttl_ms: u64,
        bounds: Bounds,
    ) -> Result<Room, StoreError> {
        let mut inner = self.locked();
        let mine = inner
            .sessions
            .values()
            .filter(|(held, _)| held.principal == session.principal)
            .count();
        if mine >= bounds.per_principal || inner.sessions.len() >= bounds.total {
            return Ok(Room::Full);
        }
        let expires = self.clock.now_ms() + ttl_ms;
        inner.sessions.insert(*digest, (session.clone(), expires));
        Ok(Room::Stored)
    }

    async fn session(&self, digest: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .locked()
            .sessions
            .get(digest)
            .map(|(session, _)| session.clone()))
    }

    async fn touch_session(
        &self,
        digest: &[u8; 32],
        last_seen_ms: u64,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        if let Some((session, expires)) = self.locked().sessions.get_mut(digest) {
            session.last_seen_ms = last_seen_ms;
            *expires = now + ttl_ms;
        }
        Ok(())
    }

    async fn delete_session(&self, digest: &[u8; 32]) -> Result<(), StoreError> {
        self.locked().sessions.remove(digest);
        Ok(())
    }

    async fn delete_sessions_of(&self, principal: &Principal) -> Result<usize, StoreError> {
        let mut inner = self.locked();
        let before = inner.sessions.len();
        inner
            .sessions
            .retain(|_, (session, _)| session.principal != *principal);
        Ok(before - inner.sessions.len())
    }

    async fn record_sign_in(
        &self,
        principal: &Principal,
        at_ms: u64,
        ttl_ms: u64,
        total: usize,
    ) -> Result<Room, StoreError> {
        let mut inner = self.locked();
        if !inner.sign_ins.contains_key(principal) && inner.sign_ins.len() >= total {
            return Ok(Room::Full);
        }
        let expires = self.clock.now_ms() + ttl_ms;
        inner.sign_ins.insert(principal.clone(), (at_ms, expires));
        Ok(Room::Stored)
    }

    async fn last_sign_ins(
        &self,
        principals: &[Principal],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let inner = self.locked();
        Ok(principals
            .iter()
            .map(|principal| inner.sign_ins.get(principal).map(|(at, _)| *at))
            .collect())
    }

    fn sweep(&self, now_ms: u64) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sweep(now_ms);
    }
}
