//! The embedded abuse store: one mutex, every method one critical section, the same rules as
//! `src/redis/scripts/abuse_admit.lua` (the store suite runs both).
//!
//! Bounded: per account at most `max_tracked` prefixes and countries, and `memory_max_tracked`
//! of all accounts together; past either bound the least recently counted entry is forgotten
//! (its counters; a cool-down it started stays). Entries with nothing counted in 25 hours are
//! dropped as they are met. Cool-downs: as many as tracked entries, expired ones dropped when
//! room is needed. Day counts: today's and yesterday's per account, older days dropped when a
//! new day starts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::abuse::guard::{Counters, Thresholds, Window, DAY_MS};
use crate::abuse::settings::AbuseSettings;
use crate::abuse::store::{
    AbuseStore, ActiveBlock, Admission, Approval, Block, BlockRule, Scope, SendCheck, Usage,
};
use crate::abuse::Prefix;
use crate::phone::Region;
use crate::store::StoreError;

/// An account's id, as abuse protection keys by it.
type AccountId = String;

pub struct MemoryAbuseStore {
    state: Mutex<State>,
    max_tracked: usize,
    max_total: usize,
}

/// What the guard tracks: a prefix or a country of one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Prefix(Prefix),
    Country(Region),
}

/// When an entry was last counted, and a sequence number that orders entries counted in the
/// same millisecond: the least recently counted comes first.
type Order = (u64, u64);

#[derive(Default)]
struct State {
    tracked: HashMap<(AccountId, Key), Tracked>,
    /// Every account's entries, least recently counted first.
    order: BTreeMap<Order, (AccountId, Key)>,
    /// Each account's entries, least recently counted first.
    per_account: HashMap<AccountId, BTreeMap<Order, Key>>,
    next_sequence: u64,
    blocks: HashMap<(AccountId, Key), Cooldown>,
    days: HashMap<(AccountId, u64), DayCounts>,
}

struct Tracked {
    counters: Counters,
    order: Order,
}

struct Cooldown {
    until_ms: u64,
    country: Region,
}

#[derive(Default)]
struct DayCounts {
    total: u64,
    countries: HashMap<Region, u64>,
    /// The caps that refused a send already today (`None`: the overall cap).
    refused: HashSet<Option<Region>>,
}

impl MemoryAbuseStore {
    pub fn new(settings: &AbuseSettings) -> Self {
        Self {
            state: Mutex::default(),
            max_tracked: settings.max_tracked.max(1),
            max_total: settings.memory_max_tracked.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters, not invariants, behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many prefixes and countries are tracked, for `account` and in all (for the tests of
    /// the bounds).
    pub fn tracked(&self, account: &str) -> (usize, usize) {
        let state = self.lock();
        let mine = state.per_account.get(account).map_or(0, BTreeMap::len);
        (mine, state.tracked.len())
    }
}

impl State {
    fn window(&mut self, account: &AccountId, key: Key, now_ms: u64) -> Window {
        match self.tracked.get_mut(&(account.clone(), key)) {
            Some(entry) => entry.counters.window(now_ms),
            None => Window::default(),
        }
    }

    fn blocked_until(&self, account: &AccountId, key: Key) -> Option<u64> {
        self.blocks
            .get(&(account.clone(), key))
            .map(|cooldown| cooldown.until_ms)
    }

    /// Starts a cool-down; when `max` are held, the finished ones are dropped, then (all still
    /// running) the one ending first.
    fn start_block(
        &mut self,
        account: &AccountId,
        key: Key,
        cooldown: Cooldown,
        now_ms: u64,
        max: usize,
    ) {
        if self.blocks.len() >= max {
            self.blocks.retain(|_, running| running.until_ms > now_ms);
            let ending_first = self
                .blocks
                .iter()
                .min_by_key(|(_, running)| running.until_ms)
                .map(|(id, _)| id.clone());
            if let Some(id) = ending_first.filter(|_| self.blocks.len() >= max) {
                self.blocks.remove(&id);
            }
        }
        self.blocks.insert((account.clone(), key), cooldown);
    }

    /// Counts on `key`'s counters with `count`, tracking it first if it is new.
    fn touch(
        &mut self,
        account: &AccountId,
        key: Key,
        now_ms: u64,
        limits: (usize, usize),
        count: impl FnOnce(&mut Counters),
    ) {
        let order = (now_ms, self.next_sequence);
        self.next_sequence += 1;
        let id = (account.clone(), key.clone());
        match self.tracked.get_mut(&id) {
            Some(entry) => {
                let previous = std::mem::replace(&mut entry.order, order);
                count(&mut entry.counters);
                self.order.remove(&previous);
                if let Some(mine) = self.per_account.get_mut(account) {
                    mine.remove(&previous);
                }
            }
            None => {
                self.make_room(account, now_ms, limits);
                let mut counters = Counters::default();
                count(&mut counters);
                self.tracked.insert(id.clone(), Tracked { counters, order });
            }
        }
        self.order.insert(order, id);
        self.per_account
            .entry(account.clone())
            .or_default()
            .insert(order, key);
    }

    /// Forgets entries until `account` has room for one more under its bound and all accounts
    /// together under theirs.
    fn make_room(
        &mut self,
        account: &AccountId,
        now_ms: u64,
        (max_tracked, max_total): (usize, usize),
    ) {
        while self
            .per_account
            .get(account)
            .is_some_and(|mine| mine.len() >= max_tracked)
        {
            let Some((_, key)) = self
                .per_account
                .get(account)
                .and_then(|mine| mine.first_key_value())
            else {
                break;
            };
            let key = key.clone();
            self.forget(account, &key);
        }
        while self.tracked.len() >= max_total {
            let Some((_, (owner, key))) = self.order.first_key_value() else {
                break;
            };
            let (owner, key) = (owner.clone(), key.clone());
            self.forget(&owner, &key);
        }
        // Entries idle for a day are dropped as they are met, a few per new entry.
        for _ in 0..4 {
            let Some((&(touched, _), (owner, key))) = self.order.first_key_value() else {
                break;
            };
            if touched + DAY_MS + DAY_MS / 24 > now_ms {
                break;
            }
            let (owner, key) = (owner.clone(), key.clone());
            self.forget(&owner, &key);
        }
    }

    fn forget(&mut self, account: &AccountId, key: &Key) {
        if let Some(entry) = self.tracked.remove(&(account.clone(), key.clone())) {
            self.order.remove(&entry.order);
            if let Some(mine) = self.per_account.get_mut(account) {
                mine.remove(&entry.order);
                if mine.is_empty() {
                    self.per_account.remove(account);
                }
            }
        }
    }

    fn day(&mut self, account: &AccountId, day: u64, max_days: usize) -> &mut DayCounts {
        if !self.days.contains_key(&(account.clone(), day)) && self.days.len() >= max_days {
            self.days.retain(|(_, kept), _| kept + 1 >= day);
        }
        self.days.entry((account.clone(), day)).or_default()
    }
}

/// The refusal of a cap, if `count` reached `cap`.
fn cap_refusal(
    counts: &mut DayCounts,
    which: Option<Region>,
    count: u64,
    cap: Option<u64>,
    check: &SendCheck<'_>,
) -> Option<Block> {
    let cap = cap?;
    if count < cap {
        return None;
    }
    let next_day = (check.now_ms / DAY_MS + 1) * DAY_MS;
    Some(Block {
        rule: BlockRule::DailyMessageCap,
        scope: if which.is_some() {
            Scope::Country
        } else {
            Scope::Account
        },
        country: check.country,
        prefix: None,
        retry_after_ms: next_day - check.now_ms,
        started: counts.refused.insert(which),
    })
}

fn pumping(check: &SendCheck<'_>, scope: Scope, retry_after_ms: u64, started: bool) -> Admission {
    Admission::Refused(Block {
        rule: BlockRule::SuspectedPumping,
        scope,
        country: check.country,
        prefix: (scope == Scope::Prefix).then(|| check.prefix.clone()),
        retry_after_ms,
        started,
    })
}

fn trips(rules: &Thresholds, mut window: Window) -> bool {
    window.sends += 1;
    rules.trips(&window)
}

#[async_trait]
impl AbuseStore for MemoryAbuseStore {
    async fn admit_send(&self, check: &SendCheck<'_>) -> Result<Admission, StoreError> {
        let mut state = self.lock();
        let now = check.now_ms;
        let account = &check.account.to_owned();
        let country = Key::Country(check.country);
        let prefix = Key::Prefix(check.prefix.clone());
        let today = now / DAY_MS;

        let counts = state.day(account, today, self.max_total);
        let (total, in_country) = (
            counts.total,
            counts.countries.get(&check.country).copied().unwrap_or(0),
        );
        let refusal = cap_refusal(counts, None, total, check.caps.total, check).or_else(|| {
            cap_refusal(
                counts,
                Some(check.country),
                in_country,
                check.caps.per_country,
                check,
            )
        });
        if let Some(block) = refusal {
            return Ok(Admission::Refused(block));
        }

        if check.guarded {
            for (key, scope) in [(&country, Scope::Country), (&prefix, Scope::Prefix)] {
                if let Some(until) = state.blocked_until(account, key.clone()) {
                    if until > now {
                        return Ok(pumping(check, scope, until - now, false));
                    }
                }
            }
            let scopes = [
                (&country, Scope::Country, check.country_rules),
                (&prefix, Scope::Prefix, check.prefix_rules),
            ];
            for (key, scope, rules) in scopes {
                if trips(&rules, state.window(account, key.clone(), now)) {
                    let cooldown = Cooldown {
                        until_ms: now + rules.cooldown.as_millis() as u64,
                        country: check.country,
                    };
                    state.start_block(account, key.clone(), cooldown, now, self.max_total);
                    return Ok(pumping(
                        check,
                        scope,
                        rules.cooldown.as_millis() as u64,
                        true,
                    ));
                }
            }
        }

        let counts = state.day(account, today, self.max_total);
        counts.total += 1;
        *counts.countries.entry(check.country).or_default() += 1;
        if check.guarded {
            let limits = (self.max_tracked, self.max_total);
            for key in [country, prefix] {
                state.touch(account, key, now, limits, |counters| {
                    counters.count_send(now)
                });
            }
        }
        Ok(Admission::Admitted)
    }

    async fn record_approval(&self, approval: &Approval<'_>) -> Result<(), StoreError> {
        let mut state = self.lock();
        let (account, now_ms) = (&approval.account.to_owned(), approval.now_ms);
        for key in [
            Key::Country(approval.country),
            Key::Prefix(approval.prefix.clone()),
        ] {
            if state.tracked.contains_key(&(account.clone(), key.clone())) {
                let limits = (self.max_tracked, self.max_total);
                state.touch(account, key, now_ms, limits, |counters| {
                    counters.count_approval(now_ms)
                });
            }
        }
        Ok(())
    }

    async fn usage(&self, account: &str, day: u64, now_ms: u64) -> Result<Usage, StoreError> {
        let state = self.lock();
        let mut usage = Usage {
            day,
            ..Usage::default()
        };
        if let Some(counts) = state.days.get(&(account.to_owned(), day)) {
            usage.total = counts.total;
            usage.countries = counts.countries.iter().map(|(r, n)| (*r, *n)).collect();
        }
        usage.blocks = state
            .blocks
            .iter()
            .filter(|((owner, _), cooldown)| owner == account && cooldown.until_ms > now_ms)
            .map(|((_, key), cooldown)| ActiveBlock {
                scope: match key {
                    Key::Prefix(_) => Scope::Prefix,
                    Key::Country(_) => Scope::Country,
                },
                country: cooldown.country,
                prefix: match key {
                    Key::Prefix(prefix) => Some(prefix.clone()),
                    Key::Country(_) => None,
                },
                until_ms: cooldown.until_ms,
            })
            .collect();
        usage.blocks.sort();
        Ok(usage)
    }
}
