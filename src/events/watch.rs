//! Which accounts have webhooks, known in process so that an event of an account without one
//! costs `emit` a set lookup and nothing else (no rendering, no channel, no store call): the send
//! path of the many accounts that never register a webhook pays nothing for events.
//!
//! The set is refreshed from the store every `events.poll_interval` (the store's list is a
//! superset: on Redis an account stays listed once it registered a webhook), and the instance
//! that registers a webhook adds its account at once. So a webhook receives every event its own
//! instance emits after the registration answered, and the events of other instances from at most
//! one refresh later (documented in docs/events.md). A store that cannot be read keeps the last
//! set.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store::WebhookStore;
use crate::account::AccountId;

#[derive(Default)]
pub struct Watched {
    accounts: RwLock<HashSet<AccountId>>,
    /// Accounts added while a refresh reads the store (`Some` during a refresh): the refresh's
    /// answer may predate them, so they are kept whatever it says.
    added_during_refresh: Mutex<Option<Vec<AccountId>>>,
}

impl Watched {
    pub fn contains(&self, account: &AccountId) -> bool {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(account)
    }

    /// An account that just registered a webhook.
    pub fn add(&self, account: &AccountId) {
        // Held while the set changes, so that a refresh ending now either sees this account in
        // its list of additions or writes its set before this insert.
        let mut added = self.added();
        if let Some(added) = added.as_mut() {
            added.push(account.clone());
        }
        self.accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(account.clone());
    }

    /// Replaces the set with the store's list (and what was added meanwhile).
    pub async fn refresh(&self, store: &dyn WebhookStore) {
        *self.added() = Some(Vec::new());
        let listed = store.accounts_with_webhooks().await;
        let mut added = self.added();
        let extra = added.take().unwrap_or_default();
        match listed {
            Ok(listed) => {
                let mut accounts: HashSet<AccountId> = listed.into_iter().collect();
                accounts.extend(extra);
                *self
                    .accounts
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = accounts;
            }
            Err(error) => tracing::debug!(%error, "accounts with webhooks: kept the last list"),
        }
    }

    fn added(&self) -> std::sync::MutexGuard<'_, Option<Vec<AccountId>>> {
        self.added_during_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Refreshes every `interval` until `stop`, the first time at once.
    pub async fn run(
        self: std::sync::Arc<Self>,
        store: std::sync::Arc<dyn WebhookStore>,
        interval: Duration,
        stop: CancellationToken,
    ) {
        loop {
            self.refresh(store.as_ref()).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
