//! The abuse store: the pumping guard throttles a prefix that sends without approvals and
//! leaves a converting one alone, the safe list bypasses it, cool-downs end, daily caps hold,
//! two instances on one Redis share the counters, and the bounds hold.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;

use otpgate::abuse::guard::DAY_MS;
use otpgate::abuse::settings::{AbuseSettings, DailyCaps};
use otpgate::abuse::store::{ActiveBlock, Admission, Approval, Block, BlockRule, Scope, SendCheck};
use otpgate::abuse::{AbuseStore, Prefix};
use otpgate::account::AccountId;
use otpgate::clock::{Clock, ManualClock};
use otpgate::config::Settings;
use otpgate::memory::MemoryAbuseStore;
use otpgate::phone::{PhoneNumber, Region};
use otpgate::redis::{KeySpace, RedisAbuseStore, RedisStore};
use otpgate::startup::redis_settings;

use crate::redis_server::{shared_cluster, shared_redis};
use crate::stores::Backend;
use crate::{on_backends, on_every_store};

/// 10:00 UTC: the scenarios below cross no midnight unless they mean to.
const START_MS: u64 = 1_764_000_000_000 - 1_764_000_000_000 % DAY_MS + 10 * 3_600_000;

/// One backend's abuse store (and a second instance on the same Redis), with an account of its
/// own and the clock the scenario moves.
struct Abuse {
    store: Arc<dyn AbuseStore>,
    /// A second store object on the same Redis and prefix: another gateway instance.
    other: Option<Arc<dyn AbuseStore>>,
    memory: Option<Arc<MemoryAbuseStore>>,
    redis: Option<Arc<RedisAbuseStore>>,
    prefix: String,
    clock: ManualClock,
    /// The account's id (`AC…`): abuse protection knows accounts by it.
    account: String,
}

async fn abuse(backend: Backend, settings: &AbuseSettings) -> Abuse {
    let clock = ManualClock::new(START_MS);
    let account = AccountId::random(&SystemRandom::new())
        .expect("random account id")
        .to_string();
    let urls = match backend {
        Backend::Memory => {
            let memory = Arc::new(MemoryAbuseStore::new(settings));
            return Abuse {
                store: memory.clone(),
                other: None,
                memory: Some(memory),
                redis: None,
                prefix: String::new(),
                clock,
                account,
            };
        }
        Backend::Redis => vec![shared_redis().url()],
        Backend::Cluster => shared_cluster().urls(),
    };
    let mut config = Settings::defaults();
    config.store.redis_urls = urls;
    config.store.key_prefix = unique_prefix();
    let connect = || async {
        RedisStore::connect(&redis_settings(&config.store))
            .await
            .expect("connect to the test Redis")
    };
    let store = Arc::new(RedisAbuseStore::on(&connect().await, settings));
    Abuse {
        store: store.clone(),
        other: Some(Arc::new(RedisAbuseStore::on(&connect().await, settings))),
        memory: None,
        redis: Some(store),
        prefix: config.store.key_prefix.clone(),
        clock,
        account,
    }
}

fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "ab{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Abuse {
    fn check(&self, e164: &str) -> SendCheck<'_> {
        let number = PhoneNumber::parse(e164).unwrap();
        SendCheck {
            account: &self.account,
            country: number.region(),
            prefix: Prefix::of(&number),
            guarded: true,
            prefix_rules: AbuseSettings::default().prefix_rules,
            country_rules: AbuseSettings::default().country_rules,
            caps: DailyCaps::default(),
            now_ms: self.clock.now_ms(),
        }
    }

    async fn send(&self, e164: &str) -> Admission {
        self.store.admit_send(&self.check(e164)).await.unwrap()
    }

    async fn approve(&self, e164: &str) {
        let number = PhoneNumber::parse(e164).unwrap();
        self.store
            .record_approval(&Approval {
                account: self.account.as_str(),
                country: number.region(),
                prefix: &Prefix::of(&number),
                now_ms: self.clock.now_ms(),
            })
            .await
            .unwrap();
    }

    /// The account's usage today (the scenarios' first day).
    async fn today(&self) -> otpgate::abuse::Usage {
        self.store
            .usage(&self.account, START_MS / DAY_MS, self.clock.now_ms())
            .await
            .unwrap()
    }

    /// How many prefixes and countries the account has tracked.
    async fn tracked(&self) -> usize {
        match (&self.memory, &self.redis) {
            (Some(memory), _) => memory.tracked(&self.account).0,
            (_, Some(redis)) => redis.tracked(&self.account).await.unwrap(),
            _ => unreachable!("one of the two"),
        }
    }
}

/// The numbers of one prefix: the prefix and four digits.
fn in_prefix(prefix: &str, n: usize) -> String {
    format!("{prefix}{:04}", n % 10_000)
}

fn refused(admission: &Admission) -> &Block {
    match admission {
        Admission::Refused(block) => block,
        Admission::Admitted => panic!("expected a refusal"),
    }
}

async fn a_burst_to_one_prefix_without_approvals_is_throttled_before_the_300th(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    // 300 sends in ten minutes, none approved.
    let mut first_refusal = None;
    for n in 0..300 {
        let admission = abuse.send(&in_prefix("+1415555", n)).await;
        if let Admission::Refused(block) = &admission {
            if first_refusal.is_none() {
                first_refusal = Some((n, block.clone()));
            } else {
                assert!(!block.started, "a block starts once");
                assert_eq!(block.scope, Scope::Prefix);
            }
        }
        abuse.clock.advance(Duration::from_secs(2));
    }
    let (at, block) = first_refusal.expect("throttled");
    assert!(at < 299, "throttled at send {at}");
    assert_eq!(
        at, 49,
        "the 50th send makes 50 in the hour without approvals"
    );
    assert_eq!(
        block,
        Block {
            rule: BlockRule::SuspectedPumping,
            scope: Scope::Prefix,
            country: Region::parse("US").unwrap(),
            prefix: Some(Prefix::parse("+1415555").unwrap()),
            retry_after_ms: 3_600_000,
            started: true,
        }
    );

    // Another prefix of the same country whose codes are approved is not throttled.
    for n in 0..60 {
        let number = in_prefix("+1212555", n);
        assert_eq!(abuse.send(&number).await, Admission::Admitted, "send {n}");
        if n % 5 != 0 {
            abuse.approve(&number).await;
        }
        abuse.clock.advance(Duration::from_secs(10));
    }
    let usage = abuse
        .store
        .usage(&abuse.account, START_MS / DAY_MS, abuse.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(usage.total, 49 + 60);
    assert_eq!(
        usage.countries.get(&Region::parse("US").unwrap()),
        Some(&109)
    );
    assert_eq!(usage.blocks.len(), 1, "{:?}", usage.blocks);
    assert_eq!(
        usage.blocks[0],
        ActiveBlock {
            scope: Scope::Prefix,
            country: Region::parse("US").unwrap(),
            prefix: Some(Prefix::parse("+1415555").unwrap()),
            until_ms: START_MS + 49 * 2_000 + 3_600_000,
        }
    );
}

async fn the_safe_list_bypasses_the_guard_and_leaves_its_prefix_unthrottled(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    for n in 0..300 {
        let mut check = abuse.check(&in_prefix("+1415555", n));
        check.guarded = false;
        assert_eq!(
            abuse.store.admit_send(&check).await.unwrap(),
            Admission::Admitted,
            "safe send {n}"
        );
        abuse.clock.advance(Duration::from_secs(1));
    }
    // The safe sends were not counted against the prefix: others still pass it.
    assert_eq!(abuse.send("+14155550001").await, Admission::Admitted);
    // The caps did count them.
    let usage = abuse
        .store
        .usage(&abuse.account, START_MS / DAY_MS, abuse.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(usage.total, 301);
}

async fn a_cool_down_ends_after_its_hour(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    let mut n = 0;
    while abuse.send(&in_prefix("+44740012", n)).await == Admission::Admitted {
        n += 1;
        abuse.clock.advance(Duration::from_secs(1));
    }
    abuse.clock.advance(Duration::from_secs(1800));
    let waiting = abuse.send("+447400123456").await;
    let block = refused(&waiting);
    assert_eq!(block.retry_after_ms, 1_800_000);
    assert!(!block.started);
    // The hour is over and the burst has left the window.
    abuse.clock.advance(Duration::from_secs(1800 + 60));
    assert_eq!(abuse.send("+447400123456").await, Admission::Admitted);
}

async fn approvals_keep_a_busy_prefix_open(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    // 99 sends in an hour (under the surge minimum), every second one approved: 50 %.
    for n in 0..99 {
        let number = in_prefix("+491511234", n);
        assert_eq!(abuse.send(&number).await, Admission::Admitted, "send {n}");
        if n % 2 == 0 {
            abuse.approve(&number).await;
        }
        abuse.clock.advance(Duration::from_secs(30));
    }
}

async fn a_surge_over_ten_times_the_daily_average_is_throttled_even_when_it_converts(
    backend: Backend,
) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    let number = "+14155552671";
    // A day at 10 sends an hour (in each hour's first half), every one approved.
    for _ in 0..24 {
        for _ in 0..10 {
            assert_eq!(abuse.send(number).await, Admission::Admitted);
            abuse.approve(number).await;
            abuse.clock.advance(Duration::from_secs(180));
        }
        abuse.clock.advance(Duration::from_secs(1800));
    }
    // Half an hour later, 150 in ten minutes, every one approved: ten times the hourly average
    // (240 / 24) is 100, so the 101st is refused.
    abuse.clock.advance(Duration::from_secs(1800));
    for sent in 0..150 {
        match abuse.send(number).await {
            Admission::Admitted => abuse.approve(number).await,
            Admission::Refused(block) => {
                assert_eq!(
                    (sent, block.scope, block.started),
                    (100, Scope::Prefix, true)
                );
                return;
            }
        }
        abuse.clock.advance(Duration::from_secs(4));
    }
    panic!("the surge was not throttled");
}

async fn the_daily_caps_refuse_until_the_next_day(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    let capped = |e164: &str| {
        let mut check = abuse.check(e164);
        check.caps = DailyCaps {
            total: Some(5),
            per_country: Some(3),
        };
        check
    };
    for n in 0..3 {
        let check = capped(&in_prefix("+491511234", n));
        assert_eq!(
            abuse.store.admit_send(&check).await.unwrap(),
            Admission::Admitted
        );
    }
    let germany = Region::parse("DE").unwrap();
    let first = abuse
        .store
        .admit_send(&capped("+4915112349999"))
        .await
        .unwrap();
    let block = refused(&first);
    assert_eq!(
        (block.rule, block.scope, block.country, block.started),
        (BlockRule::DailyMessageCap, Scope::Country, germany, true)
    );
    assert_eq!(block.retry_after_ms, DAY_MS - 10 * 3_600_000);
    let again = abuse
        .store
        .admit_send(&capped("+4915112349999"))
        .await
        .unwrap();
    assert!(!refused(&again).started, "reported once a day");
    // Another country still has room under the overall cap of five.
    for e164 in ["+436641234567", "+436641234568"] {
        assert_eq!(
            abuse.store.admit_send(&capped(e164)).await.unwrap(),
            Admission::Admitted
        );
    }
    let over = abuse
        .store
        .admit_send(&capped("+436641234569"))
        .await
        .unwrap();
    let block = refused(&over);
    assert_eq!((block.scope, block.started), (Scope::Account, true));
    // A new day, new counts.
    abuse
        .clock
        .advance(Duration::from_millis(block.retry_after_ms));
    let next_day = abuse
        .store
        .admit_send(&capped("+4915112349999"))
        .await
        .unwrap();
    assert_eq!(next_day, Admission::Admitted);
    // Yesterday stays readable.
    let yesterday = abuse
        .store
        .usage(&abuse.account, START_MS / DAY_MS, abuse.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(yesterday.total, 5);
    assert_eq!(yesterday.countries.get(&germany), Some(&3));
}

async fn two_instances_share_the_counters(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    let other = abuse.other.clone().expect("a Redis backend");
    for n in 0..49 {
        let mut check = abuse.check(&in_prefix("+1415555", n));
        let store = if n % 2 == 0 { &abuse.store } else { &other };
        check.now_ms = abuse.clock.now_ms();
        assert_eq!(store.admit_send(&check).await.unwrap(), Admission::Admitted);
        abuse.clock.advance(Duration::from_secs(1));
    }
    let fiftieth = other
        .admit_send(&abuse.check("+14155559999"))
        .await
        .unwrap();
    assert!(refused(&fiftieth).started);
    let blocked_here = abuse.send("+14155559998").await;
    assert!(
        !refused(&blocked_here).started,
        "the other instance's block"
    );
}

async fn the_tracked_entries_of_an_account_are_bounded(backend: Backend) {
    let settings = AbuseSettings {
        max_tracked: 10,
        memory_max_tracked: 10,
        ..AbuseSettings::default()
    };
    let abuse = abuse(backend, &settings).await;
    for n in 0..40 {
        let e164 = format!("+1{}5550123", 201 + n);
        if PhoneNumber::parse(&e164).is_ok() {
            let mut check = abuse.check(&e164);
            check.now_ms = abuse.clock.now_ms();
            assert_eq!(
                abuse.store.admit_send(&check).await.unwrap(),
                Admission::Admitted
            );
        }
        abuse.clock.advance(Duration::from_millis(10));
        assert!(abuse.tracked().await <= 10);
    }
    assert_eq!(abuse.tracked().await, 10);
    // The most recent prefix is still tracked: its sends still count.
    let recent = "+12405550123";
    for _ in 0..60 {
        if let Admission::Refused(block) = abuse.send(recent).await {
            assert_eq!(block.scope, Scope::Prefix);
            return;
        }
    }
    panic!("the most recent prefix was forgotten");
}

async fn the_embedded_store_bounds_all_accounts_together(backend: Backend) {
    let settings = AbuseSettings {
        max_tracked: 10,
        memory_max_tracked: 15,
        ..AbuseSettings::default()
    };
    let abuse = abuse(backend, &settings).await;
    let memory = abuse.memory.clone().expect("the memory backend");
    let rng = SystemRandom::new();
    for _ in 0..5 {
        let account = AccountId::random(&rng).unwrap().to_string();
        for n in 0..8 {
            let mut check = abuse.check(&format!("+491511{n}234567"));
            check.account = &account;
            assert_eq!(
                memory.admit_send(&check).await.unwrap(),
                Admission::Admitted
            );
            let (mine, all) = memory.tracked(&account);
            assert!(
                mine <= 10 && all <= 15,
                "{mine} of the account, {all} in all"
            );
        }
    }
}

async fn the_keys_expire_after_a_day_and_more(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    abuse.send("+14155552671").await;
    let keys = KeySpace::new(&abuse.prefix);
    let account = &abuse.account;
    for key in [
        keys.abuse_prefix(account, "+1415555"),
        keys.abuse_country(account, "US"),
        keys.abuse_tracked(account),
        keys.abuse_day(account, START_MS / DAY_MS),
    ] {
        let reply = shared_redis().command(&["PTTL", &key]);
        let ttl: i64 = reply.trim_start_matches(':').trim().parse().unwrap();
        // The day's counts: an hour after the next day ends (39 hours at 10:00).
        if key.ends_with(&format!(":{}", START_MS / DAY_MS)) {
            assert!(
                (39 * 3_600_000 - 60_000..=39 * 3_600_000).contains(&ttl),
                "{key}: {ttl}"
            );
            continue;
        }
        // The counters and the index: 25 hours and a minute (renewed once a minute).
        assert!(
            (25 * 3_600_000..=25 * 3_600_000 + 60_000).contains(&ttl),
            "{key}: {ttl}"
        );
    }
}

/// A Redis hash field as a number (0 when missing), on `backend`'s server (on a cluster, the
/// node that holds the key: the others answer MOVED).
fn redis_field(backend: Backend, key: &str, field: &str) -> u64 {
    let urls = match backend {
        Backend::Cluster => shared_cluster().urls(),
        _ => vec![shared_redis().url()],
    };
    urls.iter()
        .filter_map(|url| url.rsplit(':').next()?.parse().ok())
        .find_map(|port| {
            let reply = crate::redis_server::command(port, &["HGET", key, field]);
            if reply.starts_with('-') {
                return None;
            }
            Some(reply.lines().last()?.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Sends counted ahead (src/abuse/reserve.rs) change when a send is counted, never how many are
/// let through: a burst at one instant to one prefix, through two instances in turn, sends
/// exactly 49 (the 50th in the hour without approvals is refused), and every send after the
/// refusal is refused too.
async fn sends_counted_ahead_let_through_exactly_as_many_across_instances(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    let other = abuse.other.clone().expect("a Redis backend");
    let mut admitted = 0;
    let mut refused_at = None;
    for n in 0..120 {
        let store = if n % 3 == 0 { &other } else { &abuse.store };
        match store
            .admit_send(&abuse.check(&in_prefix("+1415555", n)))
            .await
            .unwrap()
        {
            Admission::Admitted => admitted += 1,
            Admission::Refused(block) => {
                assert_eq!(
                    (block.rule, block.scope),
                    (BlockRule::SuspectedPumping, Scope::Prefix)
                );
                refused_at.get_or_insert(n);
            }
        }
        if n == 29 {
            // Thirty sent; the day already counts more: the pools of both instances.
            let keys = KeySpace::new(&abuse.prefix);
            let day = keys.abuse_day(&abuse.account, START_MS / DAY_MS);
            let counted = redis_field(backend, &day, "US");
            assert!(counted > 30, "{counted} counted after 30 sends");
        }
    }
    assert_eq!(admitted, 49, "first refusal at send {refused_at:?}");
    // Both instances were refused after using what they had counted ahead: the day's count
    // holds exactly the sends let through.
    assert_eq!(abuse.today().await.total, 49);
}

/// Sends counted ahead and not yet used are left out of the usage at once, and given back to
/// the counters (the day's and the prefix's and country's minute) when their reservation ends.
async fn unused_sends_counted_ahead_are_given_back(backend: Backend) {
    let abuse = abuse(backend, &AbuseSettings::default()).await;
    let redis = abuse.redis.clone().expect("a Redis backend");
    // 21 sends at one instant: two admissions (asking for 0 and 1 more), then a refill each
    // time the pool is half used (4, 6, 12 and 24 more): 49 counted.
    for n in 0..21 {
        assert_eq!(
            abuse.send(&in_prefix("+491511234", n)).await,
            Admission::Admitted
        );
    }
    let keys = KeySpace::new(&abuse.prefix);
    let account = &abuse.account;
    let day = keys.abuse_day(account, START_MS / DAY_MS);
    let minute = format!("m{}", START_MS / 60_000);
    let prefix = keys.abuse_prefix(account, "+491511234");
    let country = keys.abuse_country(account, "DE");
    let counted = || {
        [
            redis_field(Backend::Redis, &day, "DE"),
            redis_field(Backend::Redis, &prefix, &minute),
            redis_field(Backend::Redis, &country, &minute),
        ]
    };
    assert_eq!(counted(), [49; 3], "28 counted ahead of the 21 sent");
    let usage = abuse.today().await;
    assert_eq!(usage.total, 21);
    assert_eq!(
        usage.countries.get(&Region::parse("DE").unwrap()),
        Some(&21)
    );
    // Still running: nothing to give back yet.
    assert_eq!(
        redis.give_back_unused(abuse.clock.now_ms()).await.unwrap(),
        0
    );
    abuse.clock.advance(Duration::from_secs(1));
    assert_eq!(
        redis.give_back_unused(abuse.clock.now_ms()).await.unwrap(),
        28
    );
    assert_eq!(counted(), [21; 3]);
    assert_eq!(abuse.today().await.total, 21);
}

on_every_store!(
    a_burst_to_one_prefix_without_approvals_is_throttled_before_the_300th,
    the_safe_list_bypasses_the_guard_and_leaves_its_prefix_unthrottled,
    a_cool_down_ends_after_its_hour,
    approvals_keep_a_busy_prefix_open,
    a_surge_over_ten_times_the_daily_average_is_throttled_even_when_it_converts,
    the_daily_caps_refuse_until_the_next_day,
    the_tracked_entries_of_an_account_are_bounded,
);
on_backends!([on_redis => Redis, on_redis_cluster => Cluster] two_instances_share_the_counters);
on_backends!([on_redis => Redis, on_redis_cluster => Cluster]
    sends_counted_ahead_let_through_exactly_as_many_across_instances);
on_backends!([on_redis => Redis] unused_sends_counted_ahead_are_given_back);
on_backends!([on_memory => Memory] the_embedded_store_bounds_all_accounts_together);
on_backends!([on_redis => Redis] the_keys_expire_after_a_day_and_more);
