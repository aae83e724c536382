//! Sends admitted ahead: the Redis stores' way to keep the admission off most sends to a busy
//! prefix (docs/abuse.md, "Sends admitted ahead").
//!
//! When an instance sends to the same prefix again and again, its admission asks Redis to count
//! a few more sends than this one (`want`), and Redis grants as many of them (`granted`) as the
//! caps and the guard's rules let through with every count as it stands: each rule only tightens
//! as sends grow within a minute (approvals only grow, the baseline holds), so a granted send is
//! one the admission would have admitted had it run then. The next sends to that prefix on this
//! instance use the granted ones ([`Reservations::take`]) and skip the admission's Redis work;
//! every other instance sees them counted already, so the guard's limits hold across instances
//! exactly as before ("throttled before the 300th" included). What changes is only when a
//! send is counted: up to `lifetime` before it happens, never after.
//!
//! A reservation lives at most `lifetime` (and ends two seconds before its minute does, so that
//! it is counted in the minute it is used in). Sends it counted but no request used are given
//! back (`abuse_refund.lua`, from [`Reservations::sweep`]) while their minute is still current;
//! until then they err towards caution, like a send the verification store refused after its
//! admission. `GET /v1/usage` leaves this instance's unused ones out ([`Reservations::unused`]).
//!
//! How many to ask for adapts to the prefix's traffic on this instance: nothing for a prefix not
//! sent to within `lifetime` (a quiet prefix never reserves), then one, then twice what the last
//! reservation used, up to `most`. Bounded: at most `capacity` entries; past it, new prefixes
//! are admitted one send at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::guard::{Thresholds, DAY_MS};
use super::prefix::Prefix;
use super::settings::DailyCaps;
use super::store::SendCheck;
use crate::phone::Region;

/// A reservation ends this long before its minute does, so that what it leaves unused is given
/// back while the minute is still the counters' current one.
const MINUTE_MARGIN_MS: u64 = 2_000;
const MINUTE_MS: u64 = 60_000;

/// This instance's sends admitted ahead, per account, prefix and guard (a safe-listed send is
/// counted only in the day's counts).
pub struct Reservations {
    most: u32,
    lifetime_ms: u64,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Unused sends of reservations replaced or dropped before `sweep` saw them end.
    leftovers: Vec<Unused>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    account: Box<str>,
    prefix: Prefix,
    guarded: bool,
}

struct Entry {
    country: Region,
    /// Sends counted ahead that no request has used yet.
    left: u32,
    /// How many the latest reservation counted ahead.
    size: u32,
    /// Its sends may be used before this (the caller's clock).
    until_ms: u64,
    /// The minute they were counted in.
    minute: u64,
    /// The rules they were admitted under: a policy change ends them.
    rules: Rules,
    /// The latest admission of this key (a prefix not sent to for `lifetime` asks for none).
    last_ms: u64,
}

type Rules = (Thresholds, Thresholds, DailyCaps);

fn rules(check: &SendCheck<'_>) -> Rules {
    (check.prefix_rules, check.country_rules, check.caps)
}

/// Sends a reservation counted that no request used: `abuse_refund.lua` gives them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unused {
    pub account: Box<str>,
    pub country: Region,
    pub prefix: Prefix,
    pub guarded: bool,
    /// The minute (ms since the epoch / 60 000) they were counted in.
    pub minute: u64,
    pub count: u32,
}

impl Key {
    fn of(check: &SendCheck<'_>) -> Self {
        Self {
            account: check.account.into(),
            prefix: check.prefix.clone(),
            guarded: check.guarded,
        }
    }
}

impl Entry {
    fn unused(&self, key: &Key) -> Option<Unused> {
        (self.left > 0).then(|| Unused {
            account: key.account.clone(),
            country: self.country,
            prefix: key.prefix.clone(),
            guarded: key.guarded,
            minute: self.minute,
            count: self.left,
        })
    }
}

impl Reservations {
    /// At most `most` sends counted ahead per reservation (0: never), each reservation living at
    /// most `lifetime_ms`, at most `capacity` prefixes at once.
    pub fn new(most: u32, lifetime_ms: u64, capacity: usize) -> Self {
        Self {
            most,
            lifetime_ms,
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts that are still counts.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Uses one send of a running reservation for `check`: true when the send is admitted and
    /// counted already (nothing to ask the store).
    pub fn take(&self, check: &SendCheck<'_>) -> bool {
        if self.most == 0 {
            return false;
        }
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(&Key::of(check)) else {
            return false;
        };
        let usable = entry.left > 0
            && check.now_ms < entry.until_ms
            && check.now_ms / MINUTE_MS == entry.minute
            && entry.rules == rules(check);
        if usable {
            entry.left -= 1;
        }
        usable
    }

    /// How many sends after this one the admission of `check` should count ahead.
    pub fn want(&self, check: &SendCheck<'_>) -> u32 {
        if self.most == 0 || self.until(check.now_ms) <= check.now_ms {
            return 0;
        }
        let state = self.state();
        match state.entries.get(&Key::of(check)) {
            Some(entry) if check.now_ms.saturating_sub(entry.last_ms) < self.lifetime_ms => {
                let used = entry.size - entry.left;
                used.saturating_mul(2).clamp(1, self.most)
            }
            // A new or quiet prefix asks for none.
            _ => 0,
        }
    }

    /// The admission of `check` counted `granted` sends ahead of it (0 included: the key's
    /// traffic is what `want` learns from). What the reservation it replaces left unused is
    /// given back at the next `sweep`.
    pub fn admitted(&self, check: &SendCheck<'_>, granted: u32) {
        if self.most == 0 {
            return;
        }
        let until_ms = self.until(check.now_ms);
        let key = Key::of(check);
        let mut state = self.state();
        let State {
            entries, leftovers, ..
        } = &mut *state;
        let entry = Entry {
            country: check.country,
            left: granted,
            size: granted,
            until_ms,
            minute: check.now_ms / MINUTE_MS,
            rules: rules(check),
            last_ms: check.now_ms,
        };
        let room = entries.len() < self.capacity;
        match entries.get_mut(&key) {
            Some(old) => {
                leftovers.extend(old.unused(&key));
                *old = entry;
            }
            None if room => {
                entries.insert(key, entry);
            }
            // Full: `want` asked for none, so nothing was counted ahead.
            None => leftovers.extend(entry.unused(&key)),
        }
    }

    /// Ends every reservation of `account` (a refusal: a cool-down or a cap may have started).
    pub fn refused(&self, account: &str) {
        let mut state = self.state();
        let State {
            entries, leftovers, ..
        } = &mut *state;
        entries.retain(|key, entry| {
            if &*key.account != account {
                return true;
            }
            leftovers.extend(entry.unused(key));
            false
        });
    }

    /// Ends the reservations over at `now_ms` and forgets prefixes quiet for `lifetime`: the
    /// sends they counted and no request used, to give back.
    pub fn sweep(&self, now_ms: u64) -> Vec<Unused> {
        let mut state = self.state();
        let State {
            entries, leftovers, ..
        } = &mut *state;
        let mut unused = std::mem::take(leftovers);
        entries.retain(|key, entry| {
            if entry.left > 0 && (now_ms >= entry.until_ms || now_ms / MINUTE_MS != entry.minute) {
                unused.extend(entry.unused(key));
                entry.left = 0;
            }
            now_ms.saturating_sub(entry.last_ms) < self.lifetime_ms
        });
        unused
    }

    /// The sends this instance counted ahead on `day` (days since the epoch) for `account` and
    /// has not used, overall and per country: `GET /v1/usage` leaves them out.
    pub fn unused(&self, account: &str, day: u64) -> (u64, BTreeMap<Region, u64>) {
        let state = self.state();
        let mut total = 0;
        let mut countries = BTreeMap::new();
        let pending = state
            .entries
            .iter()
            .filter_map(|(key, entry)| entry.unused(key))
            .chain(state.leftovers.iter().cloned());
        for unused in pending {
            if &*unused.account == account && unused.minute * MINUTE_MS / DAY_MS == day {
                total += u64::from(unused.count);
                *countries.entry(unused.country).or_insert(0) += u64::from(unused.count);
            }
        }
        (total, countries)
    }

    /// When a reservation made at `now_ms` ends: its lifetime, cut two seconds before its
    /// minute's end.
    fn until(&self, now_ms: u64) -> u64 {
        let minute_end = (now_ms / MINUTE_MS + 1) * MINUTE_MS - MINUTE_MARGIN_MS;
        (now_ms + self.lifetime_ms).min(minute_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::PhoneNumber;

    fn check<'a>(account: &'a str, number: &str, now_ms: u64) -> SendCheck<'a> {
        let to = PhoneNumber::parse(number).unwrap();
        SendCheck {
            account,
            country: to.region(),
            prefix: Prefix::of(&to),
            guarded: true,
            prefix_rules: Thresholds::default(),
            country_rules: Thresholds::country_default(),
            caps: DailyCaps::default(),
            now_ms,
        }
    }

    /// Admits `check` as a store granting everything asked would: uses a reservation, else
    /// asks and records the grant. Answers whether the store was asked, and how many it granted.
    fn send(reservations: &Reservations, check: &SendCheck<'_>) -> Option<u32> {
        if reservations.take(check) {
            return None;
        }
        let granted = reservations.want(check);
        reservations.admitted(check, granted);
        Some(granted)
    }

    const T0: u64 = 1_000 * MINUTE_MS;

    #[test]
    fn a_busy_prefix_reserves_more_each_time_up_to_the_most() {
        let reservations = Reservations::new(16, 1_000, 100);
        let mut asked = Vec::new();
        for i in 0..60 {
            let check = check("AC1", "+4915112345678", T0 + i);
            if let Some(granted) = send(&reservations, &check) {
                asked.push(granted);
            }
        }
        assert_eq!(asked, [0, 1, 2, 4, 8, 16, 16, 16]);
        // 60 sends: 8 admissions, which counted 63 ahead, of which 52 were used.
        let (total, countries) = reservations.unused("AC1", T0 / DAY_MS);
        assert_eq!(total, 11);
        assert_eq!(
            countries.into_iter().collect::<Vec<_>>(),
            [(Region::parse("DE").unwrap(), 11)]
        );
        assert!(reservations.sweep(T0 + 59).is_empty());
        let unused = reservations.sweep(T0 + 1_100);
        assert_eq!(unused.len(), 1);
        assert_eq!((unused[0].count, unused[0].minute), (11, T0 / MINUTE_MS));
        assert_eq!(reservations.unused("AC1", T0 / DAY_MS).0, 0);
    }

    #[test]
    fn a_quiet_prefix_never_reserves() {
        let reservations = Reservations::new(16, 1_000, 100);
        for i in 0..5 {
            let check = check("AC1", "+4915112345678", T0 + i * 1_500);
            assert_eq!(send(&reservations, &check), Some(0));
        }
    }

    #[test]
    fn reservations_end_with_their_lifetime_minute_policy_or_a_refusal() {
        let reservations = Reservations::new(16, 1_000, 100);
        let number = "+4915112345678";
        let grant = |at: u64| reservations.admitted(&check("AC1", number, at), 5);
        grant(T0);
        assert!(
            !reservations.take(&check("AC1", number, T0 + 1_000)),
            "lifetime"
        );
        grant(T0 + 2_000);
        let mut other_rules = check("AC1", number, T0 + 2_001);
        other_rules.caps.total = Some(10);
        assert!(!reservations.take(&other_rules), "policy");
        assert!(
            !reservations.take(&check("AC2", number, T0 + 2_001)),
            "account"
        );
        let mut safe_listed = check("AC1", number, T0 + 2_001);
        safe_listed.guarded = false;
        assert!(!reservations.take(&safe_listed), "guard");
        assert!(reservations.take(&check("AC1", number, T0 + 2_001)));
        reservations.refused("AC1");
        assert!(
            !reservations.take(&check("AC1", number, T0 + 2_002)),
            "refusal"
        );
        // The first five were replaced (5 unused), the second ended by the refusal (4 unused).
        let counts: Vec<u32> = reservations
            .sweep(T0 + 2_003)
            .iter()
            .map(|u| u.count)
            .collect();
        assert_eq!(counts, [5, 4]);
        // Two seconds before a minute ends there is no time left to reserve in.
        let late = T0 + MINUTE_MS - MINUTE_MARGIN_MS;
        reservations.admitted(&check("AC1", number, late - 10), 0);
        assert_eq!(reservations.want(&check("AC1", number, late)), 0);
        assert_eq!(reservations.until(late - 500), late);
    }

    #[test]
    fn the_entries_are_bounded() {
        let reservations = Reservations::new(16, 1_000, 3);
        for i in 0..10u64 {
            let number = format!("+49151{:04}5678", 1_000 + i);
            send(&reservations, &check("AC1", &number, T0));
            let again = check("AC1", &number, T0 + 1);
            let granted = send(&reservations, &again);
            assert_eq!(granted, Some(u32::from(i < 3)), "prefix {i}");
        }
        assert!(reservations.state().entries.len() <= 3);
        // Quiet prefixes are forgotten, which makes room again.
        reservations.sweep(T0 + 2_000);
        assert!(reservations.state().entries.is_empty());
    }

    #[test]
    fn none_are_made_when_switched_off() {
        let reservations = Reservations::new(0, 1_000, 100);
        for i in 0..10 {
            assert_eq!(
                send(&reservations, &check("AC1", "+4915112345678", T0 + i)),
                Some(0)
            );
        }
        assert!(reservations.state().entries.is_empty());
    }
}
