//! The embedded webhook store: one mutex, every method one critical section.
//!
//! Bounded: webhooks per account and in total (the registration's bounds), events per webhook
//! (`max_queued` of each enqueue) and in all (`max_queued_total`: past it events are dropped
//! and counted), attempts and dead letters per webhook (the settle's `LogBounds`). Everything
//! lives as long as the process: a restart loses the webhooks and every queued event (the
//! Redis store keeps them). One process is the only deliverer, so the due accounts are read
//! from the webhooks themselves and the due signals (`signal`, `park`) have nothing to do.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::account::AccountId;
use crate::events::store::{
    Attempt, Claim, Claimed, DeadLetter, Deliveries, DueAccount, Enqueue, Enqueued, Lease, Outcome,
    QueuedEvent, Recipients, Registered, Settle, Settled, Webhook, WebhookBounds, WebhookId,
    WebhookStore,
};
use crate::store::StoreError;

pub struct MemoryWebhookStore {
    state: Mutex<State>,
    max_queued_total: usize,
}

#[derive(Default)]
struct State {
    /// Per account, in the order registered.
    webhooks: HashMap<AccountId, Vec<Webhook>>,
    total: usize,
    endpoints: HashMap<WebhookId, Endpoint>,
    queued_total: usize,
}

#[derive(Default)]
struct Endpoint {
    queue: VecDeque<QueuedEvent>,
    /// When the endpoint needs the worker: its head is due, or its lease ends. `None`: nothing
    /// queued.
    due_ms: Option<u64>,
    /// The instance holding the lease (only one in process, but the contract is the same).
    lease_owner: Option<String>,
    failures: u32,
    first_attempt_ms: Option<u64>,
    attempts: VecDeque<Attempt>,
    dead_letters: VecDeque<DeadLetter>,
}

impl MemoryWebhookStore {
    pub fn new(max_queued_total: usize) -> Self {
        Self {
            state: Mutex::default(),
            max_queued_total,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic inside a critical section leaves plain data behind: carry on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn next_due(&self, account: &AccountId) -> Option<u64> {
        self.webhooks
            .get(account)?
            .iter()
            .filter_map(|webhook| self.endpoints.get(&webhook.id)?.due_ms)
            .min()
    }
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn register(
        &self,
        webhook: &Webhook,
        bounds: WebhookBounds,
    ) -> Result<Registered, StoreError> {
        let mut state = self.state();
        if state.total >= bounds.total {
            return Ok(Registered::GatewayFull);
        }
        let list = state.webhooks.entry(webhook.account.clone()).or_default();
        if list.len() >= bounds.per_account {
            return Ok(Registered::AccountFull);
        }
        list.push(webhook.clone());
        state.total += 1;
        state
            .endpoints
            .insert(webhook.id.clone(), Endpoint::default());
        Ok(Registered::Created)
    }

    async fn list(&self, account: &AccountId) -> Result<Vec<Webhook>, StoreError> {
        Ok(self
            .state()
            .webhooks
            .get(account)
            .cloned()
            .unwrap_or_default())
    }

    async fn get(
        &self,
        account: &AccountId,
        id: &WebhookId,
    ) -> Result<Option<Webhook>, StoreError> {
        Ok(self
            .state()
            .webhooks
            .get(account)
            .and_then(|list| list.iter().find(|webhook| &webhook.id == id).cloned()))
    }

    async fn remove(&self, account: &AccountId, id: &WebhookId) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(list) = state.webhooks.get_mut(account) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|webhook| &webhook.id != id);
        if list.len() == before {
            return Ok(false);
        }
        if list.is_empty() {
            state.webhooks.remove(account);
        }
        state.total -= 1;
        if let Some(endpoint) = state.endpoints.remove(id) {
            state.queued_total -= endpoint.queue.len();
        }
        Ok(true)
    }

    async fn enqueue(&self, request: Enqueue<'_>) -> Result<Enqueued, StoreError> {
        let mut state = self.state();
        let State {
            webhooks,
            endpoints,
            queued_total,
            ..
        } = &mut *state;
        let mut enqueued = Enqueued::default();
        for webhook in webhooks.get(request.account).into_iter().flatten() {
            let wanted = match request.recipients {
                Recipients::Subscribed => webhook.events.accepts(request.event.kind),
                Recipients::Only(id) => &webhook.id == id,
            };
            let Some(endpoint) = endpoints.get_mut(&webhook.id).filter(|_| wanted) else {
                continue;
            };
            if endpoint.queue.len() >= request.max_queued || *queued_total >= self.max_queued_total
            {
                enqueued.dropped += 1;
                continue;
            }
            endpoint.queue.push_back(request.event.clone());
            *queued_total += 1;
            // A webhook waiting for a retry or leased keeps its time: its head comes first.
            endpoint.due_ms.get_or_insert(request.now_ms);
            enqueued.queued += 1;
        }
        Ok(enqueued)
    }

    async fn due_accounts(&self, now_ms: u64, limit: usize) -> Result<Vec<DueAccount>, StoreError> {
        let state = self.state();
        Ok(state
            .webhooks
            .keys()
            .filter(|account| state.next_due(account).is_some_and(|due| due <= now_ms))
            .take(limit)
            .map(|account| DueAccount {
                account: account.clone(),
                generation: 0,
            })
            .collect())
    }

    async fn signal(&self, _account: &AccountId, _due_ms: u64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn park(&self, _due: &DueAccount, _next_ms: Option<u64>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn accounts_with_webhooks(&self) -> Result<Vec<AccountId>, StoreError> {
        Ok(self.state().webhooks.keys().cloned().collect())
    }

    async fn claim(&self, lease: Lease<'_>) -> Result<Claimed, StoreError> {
        let mut state = self.state();
        let State {
            webhooks,
            endpoints,
            ..
        } = &mut *state;
        let mut due: Vec<&Webhook> = webhooks
            .get(lease.account)
            .into_iter()
            .flatten()
            .filter(|webhook| {
                endpoints
                    .get(&webhook.id)
                    .and_then(|endpoint| endpoint.due_ms)
                    .is_some_and(|due| due <= lease.now_ms)
            })
            .collect();
        due.sort_by_key(|webhook| endpoints[&webhook.id].due_ms);
        for webhook in due {
            let endpoint = endpoints
                .get_mut(&webhook.id)
                .ok_or_else(|| StoreError::Corrupt("webhook without its queue".into()))?;
            let Some(head) = endpoint.queue.front().cloned() else {
                endpoint.due_ms = None;
                continue;
            };
            endpoint.lease_owner = Some(lease.owner.to_owned());
            endpoint.due_ms = Some(lease.until_ms);
            return Ok(Claimed::One(Box::new(Claim {
                account: lease.account.clone(),
                webhook: webhook.id.clone(),
                url: webhook.url.clone(),
                secret: webhook.secret.clone(),
                event: head,
                failures: endpoint.failures,
                first_attempt_ms: endpoint.first_attempt_ms,
                owner: lease.owner.to_owned(),
            })));
        }
        Ok(Claimed::Nothing {
            next_ms: state.next_due(lease.account),
        })
    }

    async fn settle(&self, request: Settle<'_>) -> Result<Settled, StoreError> {
        let mut state = self.state();
        let Some(endpoint) = state.endpoints.get_mut(&request.claim.webhook) else {
            return Ok(Settled::LeaseLost);
        };
        let holds = endpoint.lease_owner.as_deref() == Some(request.claim.owner.as_str())
            && endpoint.queue.front().map(|head| &head.id) == Some(&request.claim.event.id);
        if !holds {
            return Ok(Settled::LeaseLost);
        }
        endpoint.lease_owner = None;
        let mut taken = false;
        match request.outcome {
            Outcome::RetryAt(due_ms) => {
                endpoint.failures += 1;
                endpoint
                    .first_attempt_ms
                    .get_or_insert(request.attempt.at_ms);
                endpoint.due_ms = Some(due_ms);
            }
            Outcome::Delivered | Outcome::DeadLettered => {
                let head = endpoint.queue.pop_front();
                taken = true;
                if let (Outcome::DeadLettered, Some(event)) = (request.outcome, head) {
                    endpoint.dead_letters.push_front(DeadLetter {
                        event,
                        last_attempt: request.attempt.clone(),
                    });
                    endpoint.dead_letters.truncate(request.log.dead_letters);
                }
                endpoint.failures = 0;
                endpoint.first_attempt_ms = None;
                endpoint.due_ms = (!endpoint.queue.is_empty()).then_some(request.now_ms);
            }
        }
        endpoint.attempts.push_front(request.attempt.clone());
        endpoint.attempts.truncate(request.log.attempts);
        if taken {
            state.queued_total -= 1;
        }
        Ok(Settled::Done {
            next_ms: state.next_due(&request.claim.account),
        })
    }

    async fn deliveries(
        &self,
        account: &AccountId,
        id: &WebhookId,
    ) -> Result<Deliveries, StoreError> {
        let state = self.state();
        let owned = state
            .webhooks
            .get(account)
            .is_some_and(|list| list.iter().any(|webhook| &webhook.id == id));
        Ok(state
            .endpoints
            .get(id)
            .filter(|_| owned)
            .map(|endpoint| Deliveries {
                attempts: endpoint.attempts.iter().cloned().collect(),
                dead_letters: endpoint.dead_letters.iter().cloned().collect(),
                queued: endpoint.queue.len(),
            })
            .unwrap_or_default())
    }
}
