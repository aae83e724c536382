//! Webhooks out: the `WebhookStore` contract (registrations and their bounds, per-webhook FIFO
//! queues, leases, retries, dead letters, the due accounts) on every store, and the delivery
//! worker against a real HTTP receiver on loopback that checks every signature with its own
//! implementation of the Standard Webhooks spec: a receiver answering 500 then 200 gets the
//! event exactly once more; one that is down for a while gets every event after it is back, in
//! order; a worker dropped with events queued in Redis leaves them to a new worker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::rand::SystemRandom;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use otpgate::account::AccountId;
use otpgate::clock::{Clock, ManualClock};
use otpgate::config::Settings;
use otpgate::events::store::{
    AttemptOutcome, Claim, Claimed, Deliveries, DueAccount, Enqueue, Enqueued, Lease, LogBounds,
    Outcome, QueuedEvent, Recipients, Registered, Settle, Settled, WebhookBounds,
};
use otpgate::events::{
    Deliverer, Emitted, EmitterSettings, Event, EventData, EventFilter, EventId, EventType, Events,
    EventsSettings, Label, SubjectId, SubjectKind, Webhook, WebhookId, WebhookSecret, WebhookStore,
};
use otpgate::memory::MemoryWebhookStore;
use otpgate::redis::{RedisStore, RedisWebhookStore};
use otpgate::startup::redis_settings;

use crate::redis_server::{shared_cluster, shared_redis};
use crate::webhook_receiver::Receiver;
use crate::{on_backends, on_every_store};

const BOUNDS: WebhookBounds = WebhookBounds {
    per_account: 3,
    total: 1_000_000,
};
const LOG: LogBounds = LogBounds {
    attempts: 4,
    dead_letters: 2,
};
const LEASE_MS: u64 = 60_000;

/// One scenario's webhook store, on its own key prefix, with the way to open it again.
struct Fixture {
    store: Arc<dyn WebhookStore>,
    clock: Arc<ManualClock>,
    account: AccountId,
    rng: SystemRandom,
    /// How to connect again to the same keys (Redis): a restarted gateway.
    settings: Option<Settings>,
}

impl Fixture {
    async fn new(backend: crate::stores::Backend) -> Self {
        use crate::stores::Backend;
        let rng = SystemRandom::new();
        let account = AccountId::random(&rng).unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let urls = match backend {
            Backend::Memory => {
                return Self {
                    store: Arc::new(MemoryWebhookStore::new(100_000)),
                    clock,
                    account,
                    rng,
                    settings: None,
                }
            }
            Backend::Redis => vec![shared_redis().url()],
            Backend::Cluster => shared_cluster().urls(),
        };
        let mut settings = Settings::defaults();
        settings.store.redis_urls = urls;
        settings.store.key_prefix = unique_prefix();
        let store = reopen(&settings).await;
        Self {
            store,
            clock,
            account,
            rng,
            settings: Some(settings),
        }
    }

    fn webhook(&self, url: &str, events: EventFilter) -> Webhook {
        Webhook {
            id: WebhookId::random(&self.rng).unwrap(),
            account: self.account.clone(),
            url: url.to_owned(),
            events,
            secret: WebhookSecret::generate(&self.rng).unwrap(),
            created_ms: self.clock.now_ms(),
        }
    }

    async fn registered(&self, url: &str, events: EventFilter) -> Webhook {
        let webhook = self.webhook(url, events);
        assert_eq!(
            self.store.register(&webhook, BOUNDS).await.unwrap(),
            Registered::Created
        );
        webhook
    }

    fn event(&self, kind: EventType, n: u32) -> QueuedEvent {
        let id = EventId::random(&self.rng).unwrap();
        let event = Event::new(
            kind,
            SubjectKind::Verification,
            SubjectId::parse(&format!("VE{n:032x}")).unwrap(),
        );
        QueuedEvent {
            body: String::from_utf8(event.envelope(&self.account, &id, self.clock.now_ms()))
                .unwrap(),
            id,
            kind,
            created_ms: self.clock.now_ms(),
        }
    }

    async fn enqueue(&self, event: &QueuedEvent) -> Enqueued {
        self.enqueue_to(event, Recipients::Subscribed, 100).await
    }

    /// Queues `event` to `recipients`, each queue holding at most `max_queued`.
    async fn enqueue_to(
        &self,
        event: &QueuedEvent,
        recipients: Recipients<'_>,
        max_queued: usize,
    ) -> Enqueued {
        self.store
            .enqueue(Enqueue {
                account: &self.account,
                event,
                recipients,
                now_ms: self.clock.now_ms(),
                max_queued,
            })
            .await
            .unwrap()
    }

    async fn claim(&self, owner: &str) -> Claimed {
        let now = self.clock.now_ms();
        self.store
            .claim(Lease {
                account: &self.account,
                owner,
                now_ms: now,
                until_ms: now + LEASE_MS,
            })
            .await
            .unwrap()
    }

    async fn claimed(&self, owner: &str) -> Claim {
        match self.claim(owner).await {
            Claimed::One(claim) => *claim,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    async fn settle(&self, claim: &Claim, outcome: Outcome) -> Settled {
        let now = self.clock.now_ms();
        let attempt = otpgate::events::store::Attempt {
            at_ms: now,
            event_id: claim.event.id.clone(),
            event_type: claim.event.kind,
            attempt: claim.failures + 1,
            outcome: match outcome {
                Outcome::Delivered => AttemptOutcome::Delivered,
                Outcome::RetryAt(_) => AttemptOutcome::Failed,
                Outcome::DeadLettered => AttemptOutcome::DeadLettered,
            },
            status: Some(500),
            error: Some("status".into()),
            duration_ms: 3,
        };
        self.store
            .settle(Settle {
                claim,
                outcome,
                attempt: &attempt,
                now_ms: now,
                log: LOG,
            })
            .await
            .unwrap()
    }

    /// This account's entry among the due ones, if it is due.
    async fn due_entry(&self) -> Option<DueAccount> {
        self.store
            .due_accounts(self.clock.now_ms(), 1_000)
            .await
            .unwrap()
            .into_iter()
            .find(|due| due.account == self.account)
    }

    async fn due(&self) -> bool {
        self.due_entry().await.is_some()
    }

    /// Queues a new event of `kind` about verification `n`.
    async fn queue_new(&self, kind: EventType, n: u32) -> QueuedEvent {
        let event = self.event(kind, n);
        self.enqueue(&event).await;
        event
    }

    async fn log(&self, webhook: &WebhookId) -> Deliveries {
        self.store.deliveries(&self.account, webhook).await.unwrap()
    }
}

async fn reopen(settings: &Settings) -> Arc<dyn WebhookStore> {
    let redis = RedisStore::connect(&redis_settings(&settings.store))
        .await
        .expect("connect to the test Redis");
    Arc::new(RedisWebhookStore::on(&redis))
}

fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "ev{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

const ALL: EventFilter = EventFilter::All;

// The store's contract.

on_every_store!(
    registrations_are_bounded_per_account_and_read_back_whole,
    an_event_goes_to_the_webhooks_whose_filter_takes_it_in_order,
    a_leased_webhook_is_not_claimed_again_until_its_lease_ends,
    a_failed_head_holds_the_events_behind_it_until_its_retry_is_due,
    a_settle_after_the_lease_was_taken_over_changes_nothing,
    attempts_and_dead_letters_are_kept_bounded_latest_first,
    a_full_queue_drops_new_events_for_that_webhook_only,
    removing_a_webhook_drops_its_queue_and_frees_its_place,
    a_parked_account_is_due_again_when_signalled_even_by_a_stale_worker,
    the_test_event_goes_to_one_webhook_whatever_its_filter,
);

async fn registrations_are_bounded_per_account_and_read_back_whole(
    backend: crate::stores::Backend,
) {
    let fixture = Fixture::new(backend).await;
    let filter = EventFilter::parse(["io.otpgate.verification.approved"]).unwrap();
    let first = fixture
        .registered("https://hooks.example.com/a", filter)
        .await;
    fixture.clock.advance(Duration::from_millis(1));
    fixture.registered("https://hooks.example.com/b", ALL).await;
    fixture.clock.advance(Duration::from_millis(1));
    fixture.registered("https://hooks.example.com/c", ALL).await;
    let fourth = fixture.webhook("https://hooks.example.com/d", ALL);
    assert_eq!(
        fixture.store.register(&fourth, BOUNDS).await.unwrap(),
        Registered::AccountFull
    );
    let listed = fixture.store.list(&fixture.account).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0], first, "oldest first, secret and filter intact");
    assert_eq!(
        fixture
            .store
            .get(&fixture.account, &first.id)
            .await
            .unwrap(),
        Some(first.clone())
    );
    let other = AccountId::random(&fixture.rng).unwrap();
    assert_eq!(fixture.store.get(&other, &first.id).await.unwrap(), None);
    // The gateway-wide bound: a new account is refused once the total is reached.
    let tight = WebhookBounds {
        per_account: 3,
        total: 3,
    };
    let elsewhere = Webhook {
        account: other.clone(),
        ..fixture.webhook("https://hooks.example.com/e", ALL)
    };
    // The count is the store's (on Redis, the key prefix's): this scenario's three.
    assert_eq!(
        fixture.store.register(&elsewhere, tight).await.unwrap(),
        Registered::GatewayFull
    );
    assert!(fixture.store.list(&other).await.unwrap().is_empty());
}

async fn an_event_goes_to_the_webhooks_whose_filter_takes_it_in_order(
    backend: crate::stores::Backend,
) {
    let fixture = Fixture::new(backend).await;
    let approvals = fixture
        .registered(
            "https://hooks.example.com/approvals",
            EventFilter::parse(["io.otpgate.verification.approved"]).unwrap(),
        )
        .await;
    let everything = fixture
        .registered("https://hooks.example.com/all", ALL)
        .await;
    let created = fixture.event(EventType::VerificationCreated, 1);
    let approved = fixture.event(EventType::VerificationApproved, 1);
    let canceled = fixture.event(EventType::VerificationCanceled, 2);
    assert_eq!(
        fixture.enqueue(&created).await,
        Enqueued {
            queued: 1,
            dropped: 0
        }
    );
    assert_eq!(fixture.enqueue(&approved).await.queued, 2);
    assert_eq!(fixture.enqueue(&canceled).await.queued, 1);
    assert!(fixture.due().await);

    let mut seen: Vec<(WebhookId, EventId)> = Vec::new();
    loop {
        let claims: Vec<Claim> = {
            let mut claims = Vec::new();
            while let Claimed::One(claim) = fixture.claim("w").await {
                claims.push(*claim);
            }
            claims
        };
        if claims.is_empty() {
            break;
        }
        for claim in claims {
            assert_eq!(claim.failures, 0);
            assert_eq!(claim.first_attempt_ms, None);
            let webhook = if claim.webhook == approvals.id {
                &approvals
            } else {
                &everything
            };
            assert_eq!(claim.url, webhook.url);
            assert_eq!(claim.secret, webhook.secret);
            seen.push((claim.webhook.clone(), claim.event.id.clone()));
            assert!(matches!(
                fixture.settle(&claim, Outcome::Delivered).await,
                Settled::Done { .. }
            ));
        }
    }
    let of = |webhook: &Webhook| -> Vec<EventId> {
        seen.iter()
            .filter(|(id, _)| id == &webhook.id)
            .map(|(_, event)| event.clone())
            .collect()
    };
    assert_eq!(of(&approvals), vec![approved.id.clone()]);
    assert_eq!(
        of(&everything),
        vec![created.id.clone(), approved.id.clone(), canceled.id.clone()]
    );
    let log = fixture.log(&everything.id).await;
    assert_eq!(log.queued, 0);
    assert_eq!(log.attempts.len(), 3);
    assert_eq!(log.attempts[0].event_id, canceled.id, "latest first");
    assert_eq!(log.attempts[0].outcome, AttemptOutcome::Delivered);
    assert!(matches!(
        fixture.claim("w").await,
        Claimed::Nothing { next_ms: None }
    ));
}

async fn a_leased_webhook_is_not_claimed_again_until_its_lease_ends(
    backend: crate::stores::Backend,
) {
    let fixture = Fixture::new(backend).await;
    fixture.registered("https://hooks.example.com/", ALL).await;
    fixture.queue_new(EventType::VerificationCreated, 1).await;
    let first = fixture.claimed("instance-a").await;
    let lease_end = fixture.clock.now_ms() + LEASE_MS;
    match fixture.claim("instance-b").await {
        Claimed::Nothing { next_ms } => assert_eq!(next_ms, Some(lease_end)),
        other => panic!("the lease holds: {other:?}"),
    }
    fixture.clock.advance(Duration::from_millis(LEASE_MS - 1));
    assert!(matches!(
        fixture.claim("instance-b").await,
        Claimed::Nothing { .. }
    ));
    // Instance A died without settling: its lease ends and B takes the same head.
    fixture.clock.advance(Duration::from_millis(1));
    let second = fixture.claimed("instance-b").await;
    assert_eq!(second.event.id, first.event.id);
    assert_eq!(second.failures, 0, "an unsettled attempt is not counted");
}

async fn a_failed_head_holds_the_events_behind_it_until_its_retry_is_due(
    backend: crate::stores::Backend,
) {
    let fixture = Fixture::new(backend).await;
    fixture.registered("https://hooks.example.com/", ALL).await;
    let head = fixture.event(EventType::VerificationCreated, 1);
    let behind = fixture.event(EventType::VerificationApproved, 1);
    fixture.enqueue(&head).await;
    fixture.enqueue(&behind).await;
    let claim = fixture.claimed("w").await;
    assert_eq!(claim.event, head);
    let failed_at = fixture.clock.now_ms();
    let retry_at = failed_at + 5_000;
    assert_eq!(
        fixture.settle(&claim, Outcome::RetryAt(retry_at)).await,
        Settled::Done {
            next_ms: Some(retry_at)
        }
    );
    fixture.clock.advance(Duration::from_millis(4_999));
    assert!(matches!(
        fixture.claim("w").await,
        Claimed::Nothing {
            next_ms: Some(at)
        } if at == retry_at
    ));
    // A new event does not make the waiting webhook due earlier.
    fixture.queue_new(EventType::VerificationCanceled, 2).await;
    assert!(matches!(fixture.claim("w").await, Claimed::Nothing { .. }));
    fixture.clock.advance(Duration::from_millis(1));
    let again = fixture.claimed("w").await;
    assert_eq!(again.event, head, "the head again, not the event behind it");
    assert_eq!(again.failures, 1);
    assert_eq!(again.first_attempt_ms, Some(failed_at));
    fixture.settle(&again, Outcome::Delivered).await;
    let next = fixture.claimed("w").await;
    assert_eq!(next.event, behind);
    assert_eq!(next.failures, 0);
    assert_eq!(next.first_attempt_ms, None);
}

async fn a_settle_after_the_lease_was_taken_over_changes_nothing(backend: crate::stores::Backend) {
    let fixture = Fixture::new(backend).await;
    let webhook = fixture.registered("https://hooks.example.com/", ALL).await;
    fixture.queue_new(EventType::VerificationCreated, 1).await;
    let slow = fixture.claimed("slow").await;
    fixture.clock.advance(Duration::from_millis(LEASE_MS));
    let fast = fixture.claimed("fast").await;
    assert_eq!(
        fixture.settle(&slow, Outcome::Delivered).await,
        Settled::LeaseLost
    );
    let log = fixture.log(&webhook.id).await;
    assert_eq!(log.queued, 1, "the head is still queued");
    assert!(log.attempts.is_empty());
    assert!(matches!(
        fixture.settle(&fast, Outcome::Delivered).await,
        Settled::Done { next_ms: None }
    ));
    // Settling twice: the second finds another head (or none) and is refused.
    assert_eq!(
        fixture.settle(&fast, Outcome::Delivered).await,
        Settled::LeaseLost
    );
}

async fn attempts_and_dead_letters_are_kept_bounded_latest_first(backend: crate::stores::Backend) {
    let fixture = Fixture::new(backend).await;
    let webhook = fixture.registered("https://hooks.example.com/", ALL).await;
    let mut events = Vec::new();
    for n in 0..3 {
        let event = fixture.event(EventType::MessageFailed, n);
        fixture.enqueue(&event).await;
        events.push(event);
    }
    for _ in 0..3 {
        let claim = fixture.claimed("w").await;
        fixture.settle(&claim, Outcome::DeadLettered).await;
    }
    let log = fixture.log(&webhook.id).await;
    assert_eq!(log.queued, 0);
    assert_eq!(log.dead_letters.len(), LOG.dead_letters);
    assert_eq!(log.dead_letters[0].event, events[2]);
    assert_eq!(log.dead_letters[1].event, events[1]);
    assert_eq!(
        log.dead_letters[0].last_attempt.outcome,
        AttemptOutcome::DeadLettered
    );
    assert_eq!(log.dead_letters[0].last_attempt.status, Some(500));
    assert_eq!(log.attempts.len(), 3);
    for n in 3..8 {
        fixture.queue_new(EventType::MessageFailed, n).await;
        let claim = fixture.claimed("w").await;
        fixture.settle(&claim, Outcome::Delivered).await;
    }
    let log = fixture.log(&webhook.id).await;
    assert_eq!(log.attempts.len(), LOG.attempts);
    assert_eq!(log.dead_letters.len(), LOG.dead_letters);
}

async fn a_full_queue_drops_new_events_for_that_webhook_only(backend: crate::stores::Backend) {
    let fixture = Fixture::new(backend).await;
    let small = fixture.registered("https://hooks.example.com/1", ALL).await;
    fixture.registered("https://hooks.example.com/2", ALL).await;
    // Fill the first webhook's queue to 2 by queuing to it alone.
    for n in 0..2 {
        let event = fixture.event(EventType::WebhookTest, n);
        fixture
            .enqueue_to(&event, Recipients::Only(&small.id), 2)
            .await;
    }
    let event = fixture.event(EventType::VerificationCreated, 9);
    let enqueued = fixture.enqueue_to(&event, Recipients::Subscribed, 2).await;
    assert_eq!(
        enqueued,
        Enqueued {
            queued: 1,
            dropped: 1
        }
    );
}

async fn removing_a_webhook_drops_its_queue_and_frees_its_place(backend: crate::stores::Backend) {
    let fixture = Fixture::new(backend).await;
    let mut webhooks = Vec::new();
    for n in 0..3 {
        webhooks.push(
            fixture
                .registered(&format!("https://hooks.example.com/{n}"), ALL)
                .await,
        );
    }
    fixture.queue_new(EventType::VerificationCreated, 1).await;
    assert!(fixture
        .store
        .remove(&fixture.account, &webhooks[0].id)
        .await
        .unwrap());
    assert!(!fixture
        .store
        .remove(&fixture.account, &webhooks[0].id)
        .await
        .unwrap());
    let log = fixture.log(&webhooks[0].id).await;
    assert_eq!(log.queued, 0);
    fixture.registered("https://hooks.example.com/3", ALL).await;
    let mut claimed = Vec::new();
    while let Claimed::One(claim) = fixture.claim("w").await {
        claimed.push(claim.webhook.clone());
    }
    assert_eq!(claimed.len(), 2, "the removed webhook's event is gone");
    assert!(!claimed.contains(&webhooks[0].id));
}

async fn a_parked_account_is_due_again_when_signalled_even_by_a_stale_worker(
    backend: crate::stores::Backend,
) {
    let fixture = Fixture::new(backend).await;
    fixture.registered("https://hooks.example.com/", ALL).await;
    fixture.queue_new(EventType::VerificationCreated, 1).await;
    let due = fixture.due_entry().await.expect("the account is due");
    let claim = fixture.claimed("w").await;
    let Claimed::Nothing { next_ms } = fixture.claim("w").await else {
        panic!("one webhook, one claim");
    };
    fixture.store.park(&due, next_ms).await.unwrap();
    assert!(!fixture.due().await, "parked until the lease ends");
    fixture.settle(&claim, Outcome::Delivered).await;

    // A worker reads the account, an event is queued meanwhile, then it parks what it found
    // before: the account stays due.
    fixture.queue_new(EventType::VerificationApproved, 1).await;
    let stale = fixture.due_entry().await.expect("due after the enqueue");
    let claim = fixture.claimed("w").await;
    fixture.settle(&claim, Outcome::Delivered).await;
    fixture.queue_new(EventType::VerificationCanceled, 1).await;
    fixture.store.park(&stale, None).await.unwrap();
    assert!(fixture.due().await, "the signal after the read is kept");
}

async fn the_test_event_goes_to_one_webhook_whatever_its_filter(backend: crate::stores::Backend) {
    let fixture = Fixture::new(backend).await;
    let pins = fixture
        .registered(
            "https://hooks.example.com/pins",
            EventFilter::parse(["io.otpgate.pin.locked"]).unwrap(),
        )
        .await;
    fixture
        .registered("https://hooks.example.com/all", ALL)
        .await;
    let test = fixture.event(EventType::WebhookTest, 0);
    let enqueued = fixture
        .enqueue_to(&test, Recipients::Only(&pins.id), 10)
        .await;
    assert_eq!(enqueued.queued, 1);
    let claim = fixture.claimed("w").await;
    assert_eq!(claim.webhook, pins.id);
    assert!(matches!(fixture.claim("w").await, Claimed::Nothing { .. }));
}

// The delivery worker against a real receiver (tests/common/webhook_receiver.rs).

fn worker_settings() -> EventsSettings {
    EventsSettings {
        allow_http_loopback: true,
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        ..EventsSettings::default()
    }
}

/// A fixture, a receiver, a webhook pointing at it, the events handle and a worker.
struct Delivery {
    fixture: Fixture,
    receiver: Receiver,
    secret: Arc<Mutex<Option<String>>>,
    webhook: Webhook,
    events: Events,
    worker: Deliverer,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Delivery {
    async fn new(backend: crate::stores::Backend) -> Self {
        let fixture = Fixture::new(backend).await;
        let secret = Arc::new(Mutex::new(None));
        let receiver = Receiver::start(secret.clone()).await;
        let webhook = fixture.registered(&receiver.url(), ALL).await;
        *secret.lock().unwrap() = Some(webhook.secret.expose_text());
        let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
        let events = Events::start(
            fixture.store.clone(),
            fixture.clock.clone(),
            EmitterSettings {
                buffer: 100,
                max_queued_per_webhook: 100,
                watch: None,
                metrics: Arc::new(otpgate::metrics::Metrics::new()),
            },
            &tasks,
            stop.clone(),
        );
        let worker = Deliverer::new(
            fixture.store.clone(),
            fixture.clock.clone(),
            &worker_settings(),
        )
        .unwrap();
        Self {
            fixture,
            receiver,
            secret,
            webhook,
            events,
            worker,
            tasks,
            stop,
        }
    }

    /// Emits `count` approvals, of verifications 0..count, and waits until the store has them.
    async fn emit(&self, count: u32) {
        let before = self.queued().await;
        for n in 0..count {
            let event = Event::new(
                EventType::VerificationApproved,
                SubjectKind::Verification,
                SubjectId::parse(&format!("VE{n:032x}")).unwrap(),
            )
            .with(EventData {
                status: Some(Label::new("approved")),
                ..EventData::default()
            });
            assert!(matches!(
                self.events.emit(&self.fixture.account, event),
                Emitted::Accepted(_)
            ));
        }
        // The background task queues them: wait for its writes, not for time.
        for _ in 0..500 {
            if self.queued().await == before + count as usize {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the emitted events never reached the store");
    }

    async fn queued(&self) -> usize {
        self.fixture.log(&self.webhook.id).await.queued
    }

    async fn pass(&self) -> otpgate::events::PassReport {
        self.worker.pass().await.unwrap()
    }

    async fn finish(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

on_every_store!(
    a_receiver_answering_500_then_200_gets_the_event_exactly_once_more,
    a_receiver_down_for_a_while_gets_every_event_after_it_comes_back_in_order,
    an_event_past_the_retry_schedule_is_dead_lettered_and_listed,
    a_private_target_is_refused_at_delivery_and_logged,
);
on_backends!(
    [on_redis => Redis, on_redis_cluster => Cluster]
    a_new_worker_delivers_what_a_dropped_worker_left_queued
);

async fn a_receiver_answering_500_then_200_gets_the_event_exactly_once_more(
    backend: crate::stores::Backend,
) {
    let delivery = Delivery::new(backend).await;
    delivery.receiver.answer(&[500]);
    delivery.emit(1).await;
    let report = delivery.pass().await;
    assert_eq!(report.retried, 1);
    assert_eq!(delivery.receiver.requests().len(), 1);
    // Nothing happens before the first retry is due (5 s).
    delivery.fixture.clock.advance(Duration::from_millis(4_999));
    assert_eq!(delivery.pass().await.delivered, 0);
    assert_eq!(delivery.receiver.requests().len(), 1);
    delivery.fixture.clock.advance(Duration::from_millis(1));
    assert_eq!(delivery.pass().await.delivered, 1);
    // And never again.
    delivery.fixture.clock.advance(Duration::from_secs(3_600));
    assert_eq!(delivery.pass().await, Default::default());
    let requests = delivery.receiver.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.signature_valid), "{requests:?}");
    assert_eq!(requests[0].webhook_id, requests[1].webhook_id);
    assert_eq!(
        requests[1].timestamp,
        requests[0].timestamp + 5,
        "signed per attempt"
    );
    let log = delivery.fixture.log(&delivery.webhook.id).await;
    assert_eq!(log.attempts.len(), 2);
    assert_eq!(log.attempts[0].outcome, AttemptOutcome::Delivered);
    assert_eq!(log.attempts[0].attempt, 2);
    assert_eq!(log.attempts[1].status, Some(500));
    assert_eq!(log.attempts[1].error.as_deref(), Some("status"));
    delivery.finish().await;
}

async fn a_receiver_down_for_a_while_gets_every_event_after_it_comes_back_in_order(
    backend: crate::stores::Backend,
) {
    let mut delivery = Delivery::new(backend).await;
    delivery.emit(2).await;
    assert_eq!(delivery.pass().await.delivered, 2);
    delivery.receiver.stop();
    delivery.emit(5).await;
    // Down through five retries (5, 10, 20, 40, 80 s): nothing is lost or reordered.
    let mut wait = Duration::from_secs(5);
    for _ in 0..5 {
        let report = delivery.pass().await;
        assert_eq!(
            report.retried, 1,
            "one attempt of the head per retry: {report:?}"
        );
        delivery.fixture.clock.advance(wait);
        wait *= 2;
    }
    delivery.receiver.restart(delivery.secret.clone()).await;
    let report = delivery.pass().await;
    assert_eq!(report.delivered, 5, "{report:?}");
    let subjects: Vec<String> = delivery
        .receiver
        .requests()
        .into_iter()
        .inspect(|r| assert!(r.signature_valid))
        .map(|r| r.subject)
        .collect();
    let expected: Vec<String> = [0u32, 1, 0, 1, 2, 3, 4]
        .iter()
        .map(|n| format!("VE{n:032x}"))
        .collect();
    assert_eq!(subjects, expected);
    delivery.finish().await;
}

async fn an_event_past_the_retry_schedule_is_dead_lettered_and_listed(
    backend: crate::stores::Backend,
) {
    let delivery = Delivery::new(backend).await;
    delivery.receiver.answer(&[503; 64]);
    delivery.emit(2).await;
    let mut attempts = 0;
    loop {
        let report = delivery.pass().await;
        attempts += report.retried + report.dead_lettered;
        if report.dead_lettered == 1 {
            break;
        }
        assert_eq!(report.retried, 1);
        delivery.fixture.clock.advance(Duration::from_secs(3_600));
    }
    assert!(attempts > 20, "{attempts} attempts in a day");
    let log = delivery.fixture.log(&delivery.webhook.id).await;
    assert_eq!(log.dead_letters.len(), 1);
    assert_eq!(
        log.dead_letters[0].event.kind,
        EventType::VerificationApproved
    );
    assert_eq!(log.dead_letters[0].last_attempt.status, Some(503));
    // The event behind it goes next (the receiver still answers 503 for a few).
    assert_eq!(log.queued, 1);
    delivery.finish().await;
}

async fn a_private_target_is_refused_at_delivery_and_logged(backend: crate::stores::Backend) {
    let delivery = Delivery::new(backend).await;
    // Registered before the rules changed (or by a store written to by hand): a private
    // address is still refused when it is time to deliver.
    let private = delivery
        .fixture
        .registered("https://10.0.0.1/hook", ALL)
        .await;
    delivery.emit(1).await;
    let report = delivery.pass().await;
    assert_eq!(
        report.delivered, 1,
        "the loopback receiver, allowed in tests"
    );
    assert_eq!(report.retried, 1, "the private target");
    let log = delivery.fixture.log(&private.id).await;
    assert_eq!(log.attempts[0].error.as_deref(), Some("refused-target"));
    assert_eq!(log.attempts[0].status, None);
    delivery.finish().await;
}

async fn a_new_worker_delivers_what_a_dropped_worker_left_queued(backend: crate::stores::Backend) {
    let delivery = Delivery::new(backend).await;
    delivery.emit(3).await;
    // The first gateway claims the first event, then is killed before it settles anything.
    let account = delivery.fixture.account.clone();
    let now = delivery.fixture.clock.now_ms();
    let orphan = delivery
        .fixture
        .store
        .claim(Lease {
            account: &account,
            owner: "killed-gateway",
            now_ms: now,
            until_ms: now + 60_000,
        })
        .await
        .unwrap();
    assert!(matches!(orphan, Claimed::One(_)));
    let Delivery {
        fixture,
        receiver,
        worker,
        events,
        tasks,
        stop,
        ..
    } = delivery;
    drop((worker, events));
    stop.cancel();
    tasks.close();
    tasks.wait().await;

    // A new gateway on the same Redis: a new connection, a new worker.
    let store = reopen(fixture.settings.as_ref().unwrap()).await;
    let worker = Deliverer::new(store.clone(), fixture.clock.clone(), &worker_settings()).unwrap();
    assert_eq!(
        worker.pass().await.unwrap().delivered,
        0,
        "the dead gateway's lease holds for its term"
    );
    fixture.clock.advance(Duration::from_secs(60));
    assert_eq!(worker.pass().await.unwrap().delivered, 3);
    let subjects: Vec<String> = receiver.requests().into_iter().map(|r| r.subject).collect();
    let expected: Vec<String> = (0u32..3).map(|n| format!("VE{n:032x}")).collect();
    assert_eq!(subjects, expected);
    assert!(receiver.requests().iter().all(|r| r.signature_valid));
}
