//! Sends admitted ahead: the Redis stores' way to keep the admission off most sends to a busy
//! prefix (docs/abuse.md, "Sends admitted ahead").
//!
//! When an instance sends to the same prefix again and again, its admission asks Redis to count
//! a few more sends than this one, and Redis grants as many of them as the caps and the guard's
//! rules let through with every count as it stands: each rule only tightens as sends grow within
//! a minute (approvals only grow, the baseline holds), so a granted send is one the admission
//! would have admitted had it run then. The next sends to that prefix on this instance use the
//! granted ones ([`Reservations::take`]) and skip the admission's Redis work; every other instance
//! sees them counted already, so the guard's limits hold across instances exactly as before
//! ("throttled before the 300th" included). What changes is only when a send is counted: a
//! little before it happens, in the same minute, never after.
//!
//! The pool of one prefix: its second send within `lifetime` is admitted asking for one more;
//! once the pool is half used, the send that finds it so refills it (its own start carries the
//! admission again, counting only the sends ahead, never refusing the send it rides on: that
//! one was counted already), asking to double it, up to `most`. One refill at a time; sends that
//! find the pool empty meanwhile are admitted themselves.
//!
//! Sends counted ahead are usable for `lifetime` after the pool's latest grant, and never past
//! two seconds before their minute ends, so that they are counted in the minute they are used
//! in. What no request used is given back (`abuse_refund.lua`, from [`Reservations::sweep`])
//! while that minute is still the counters' current one; until then it errs towards caution,
//! like a send the verification store refused after its admission. `GET /v1/usage` leaves this
//! instance's unused ones out ([`Reservations::unused`]). Bounded: at most `capacity` prefixes;
//! past it, new prefixes are admitted one send at a time.

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
    /// Unused sends `sweep` handed out to be given back, until [`Reservations::given_back`]
    /// says they were (so that the usage leaves them out meanwhile).
    returning: Vec<Unused>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    account: Box<str>,
    prefix: Prefix,
    guarded: bool,
}

/// One prefix's pool of sends counted ahead.
struct Entry {
    country: Region,
    /// Sends counted ahead that no request has used yet.
    left: u32,
    /// The pool's size to aim for: doubles with each refill, up to `most`.
    target: u32,
    /// Its sends may be used before this (the caller's clock): `lifetime` after the latest
    /// grant, cut two seconds before the minute ends.
    until_ms: u64,
    /// The minute they were counted in.
    minute: u64,
    /// The rules they were admitted under: a policy change ends them.
    rules: Rules,
    /// The latest send to this key (a prefix not sent to for `lifetime` starts over).
    last_ms: u64,
    /// A refill asked at this time has not answered yet (one at a time).
    refilling_since: Option<u64>,
    /// A grant was smaller than asked: the caps or rules leave no more room, so the pool is not
    /// refilled (a new one, next minute or after `lifetime`, asks again).
    full: bool,
}

type Rules = (Thresholds, Thresholds, DailyCaps);

fn rules(check: &SendCheck<'_>) -> Rules {
    (check.prefix_rules, check.country_rules, check.caps)
}

/// What a send does about its admission ([`Reservations::take`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The send was counted ahead: nothing to admit. With `refill` > 0 it also asks the store to
    /// count that many more ahead (not counting itself again), then calls
    /// [`Reservations::refilled`].
    Counted { refill: u32 },
    /// Admit the send, asking for `ahead` more; then [`Reservations::admitted`].
    Admit { ahead: u32 },
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
    /// A pool begun by `check`'s admission or refill, which asked for `asked` and got `granted`.
    fn new(check: &SendCheck<'_>, asked: u32, granted: u32, target: u32, until_ms: u64) -> Self {
        Self {
            country: check.country,
            left: granted,
            target,
            until_ms,
            minute: check.now_ms / MINUTE_MS,
            rules: rules(check),
            last_ms: check.now_ms,
            refilling_since: None,
            full: granted < asked,
        }
    }

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

    /// Whether its sends may be used by `check`.
    fn serves(&self, check: &SendCheck<'_>) -> bool {
        check.now_ms < self.until_ms
            && check.now_ms / MINUTE_MS == self.minute
            && self.rules == rules(check)
    }
}

impl Reservations {
    /// At most `most` sends counted ahead per prefix (0: never), each grant usable for
    /// `lifetime_ms`, at most `capacity` prefixes at once.
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

    /// What `check`'s send does: use a send counted ahead (and maybe refill the pool once it is
    /// half used), or be admitted, asking for more ahead when the prefix is busy (sent to within
    /// `lifetime`) and the minute has room.
    pub fn take(&self, check: &SendCheck<'_>) -> Ask {
        if self.most == 0 {
            return Ask::Admit { ahead: 0 };
        }
        let room = self.until(check.now_ms) > check.now_ms;
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(&Key::of(check)) else {
            return Ask::Admit { ahead: 0 };
        };
        let busy = check.now_ms.saturating_sub(entry.last_ms) < self.lifetime_ms;
        entry.last_ms = entry.last_ms.max(check.now_ms);
        if entry.left > 0 && entry.serves(check) {
            entry.left -= 1;
            let refilling = entry
                .refilling_since
                .is_some_and(|since| check.now_ms.saturating_sub(since) < self.lifetime_ms);
            if refilling || entry.full || !room || entry.left > entry.target / 2 {
                return Ask::Counted { refill: 0 };
            }
            entry.target = (entry.target * 2).min(self.most);
            entry.refilling_since = Some(check.now_ms);
            return Ask::Counted {
                refill: entry.target - entry.left,
            };
        }
        if !busy || !room || (entry.full && entry.serves(check)) {
            return Ask::Admit { ahead: 0 };
        }
        let ahead = entry.target;
        entry.target = (entry.target * 2).min(self.most);
        Ask::Admit { ahead }
    }

    /// The admission of `check`, asked for `asked` sends ahead of it, counted `granted` (0
    /// included: a new key is tracked from its first send).
    pub fn admitted(&self, check: &SendCheck<'_>, asked: u32, granted: u32) {
        self.add(check, asked, granted, false);
    }

    /// The refill `take` asked for (`asked`) counted `granted` more (0 when it failed).
    pub fn refilled(&self, check: &SendCheck<'_>, asked: u32, granted: u32) {
        self.add(check, asked, granted, true);
    }

    /// Adds `granted` sends counted now to `check`'s pool: to the running one when it still
    /// serves (same minute and rules), else to a new one (what the old left goes back).
    fn add(&self, check: &SendCheck<'_>, asked: u32, granted: u32, refill: bool) {
        if self.most == 0 {
            return;
        }
        let until_ms = self.until(check.now_ms);
        let key = Key::of(check);
        let mut state = self.state();
        let State {
            entries, leftovers, ..
        } = &mut *state;
        let room = entries.len() < self.capacity;
        match entries.get_mut(&key) {
            Some(entry) if entry.serves(check) || (entry.left == 0 && granted == 0) => {
                entry.left += granted;
                entry.until_ms = entry.until_ms.max(until_ms);
                entry.last_ms = entry.last_ms.max(check.now_ms);
                if refill {
                    entry.refilling_since = None;
                }
                entry.full |= granted < asked;
                if granted > 0 {
                    entry.minute = check.now_ms / MINUTE_MS;
                    entry.rules = rules(check);
                }
            }
            Some(entry) => {
                leftovers.extend(entry.unused(&key));
                *entry = Entry::new(check, asked, granted, entry.target, until_ms);
            }
            None if room => {
                entries.insert(key, Entry::new(check, asked, granted, 1, until_ms));
            }
            // Full: `take` asked for none (a key it does not know), so nothing was counted ahead.
            None => {}
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
    /// sends they counted and no request used, to give back (and then to pass to `given_back`;
    /// until then `unused` still counts them).
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
        state.returning.extend(unused.iter().cloned());
        unused
    }

    /// `unused`, from `sweep`, was given back (or failed to be, and stays counted).
    pub fn given_back(&self, unused: &Unused) {
        let mut state = self.state();
        if let Some(at) = state.returning.iter().position(|held| held == unused) {
            state.returning.swap_remove(at);
        }
    }

    /// The sends this instance counted ahead on `day` (days since the epoch) for `account` and
    /// has not used, per country: `GET /v1/usage` leaves them out.
    pub fn unused(&self, account: &str, day: u64) -> BTreeMap<Region, u64> {
        let state = self.state();
        let mut countries = BTreeMap::new();
        let pending = state
            .entries
            .iter()
            .filter_map(|(key, entry)| entry.unused(key))
            .chain(state.leftovers.iter().cloned())
            .chain(state.returning.iter().cloned());
        for unused in pending {
            if &*unused.account == account && unused.minute * MINUTE_MS / DAY_MS == day {
                *countries.entry(unused.country).or_insert(0) += u64::from(unused.count);
            }
        }
        countries
    }

    /// When sends granted at `now_ms` stop being usable: the lifetime, cut two seconds before
    /// the minute's end.
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

    /// What the store was asked for a send, when it grants everything asked.
    #[derive(Debug, PartialEq)]
    enum Asked {
        Nothing,
        Admission(u32),
        Refill(u32),
    }

    fn send(reservations: &Reservations, check: &SendCheck<'_>) -> Asked {
        match reservations.take(check) {
            Ask::Counted { refill: 0 } => Asked::Nothing,
            Ask::Counted { refill } => {
                reservations.refilled(check, refill, refill);
                Asked::Refill(refill)
            }
            Ask::Admit { ahead } => {
                reservations.admitted(check, ahead, ahead);
                Asked::Admission(ahead)
            }
        }
    }

    fn counted(reservations: &Reservations, check: &SendCheck<'_>) -> bool {
        matches!(reservations.take(check), Ask::Counted { .. })
    }

    const T0: u64 = 1_000 * MINUTE_MS;

    /// What `AC1` has counted ahead on T0's day and not used, all countries together.
    fn unused_in_all(reservations: &Reservations) -> u64 {
        reservations.unused("AC1", T0 / DAY_MS).values().sum()
    }

    #[test]
    fn a_busy_prefix_is_admitted_twice_then_refilled_when_half_used() {
        let reservations = Reservations::new(16, 1_000, 100);
        let mut asked = Vec::new();
        for i in 0..60 {
            let check = check("AC1", "+4915112345678", T0 + i);
            match send(&reservations, &check) {
                Asked::Nothing => {}
                other => asked.push(other),
            }
        }
        use Asked::{Admission, Refill};
        assert_eq!(
            asked,
            [
                Admission(0),
                Admission(1),
                Refill(4),
                Refill(6),
                Refill(12),
                Refill(8),
                Refill(8),
                Refill(8),
                Refill(8),
                Refill(8),
                Refill(8)
            ]
        );
        // 60 sends, 73 counted: 13 left to give back.
        let countries = reservations.unused("AC1", T0 / DAY_MS);
        assert_eq!(unused_in_all(&reservations), 13);
        let germany = Region::parse("DE").unwrap();
        assert_eq!(countries.into_iter().collect::<Vec<_>>(), [(germany, 13)]);
        assert!(reservations.sweep(T0 + 59).is_empty());
        let unused = reservations.sweep(T0 + 1_100);
        assert_eq!(unused.len(), 1);
        assert_eq!((unused[0].count, unused[0].minute), (13, T0 / MINUTE_MS));
        assert_eq!(unused_in_all(&reservations), 13, "until given back");
        reservations.given_back(&unused[0]);
        assert_eq!(unused_in_all(&reservations), 0);
    }

    #[test]
    fn one_refill_at_a_time_and_admissions_while_it_runs() {
        let reservations = Reservations::new(16, 1_000, 100);
        let at = |i| check("AC1", "+4915112345678", T0 + i);
        send(&reservations, &at(0));
        send(&reservations, &at(1));
        // The one send counted ahead is used, and a refill asked; it has not answered yet.
        assert_eq!(reservations.take(&at(2)), Ask::Counted { refill: 4 });
        // Meanwhile the pool is empty: sends are admitted, asking for the next pool size.
        assert_eq!(reservations.take(&at(3)), Ask::Admit { ahead: 4 });
        reservations.admitted(&at(3), 4, 4);
        assert_eq!(
            reservations.take(&at(4)),
            Ask::Counted { refill: 0 },
            "refill running"
        );
        reservations.refilled(&at(5), 4, 4);
        assert_eq!(unused_in_all(&reservations), 7);
    }

    #[test]
    fn a_quiet_prefix_never_reserves() {
        let reservations = Reservations::new(16, 1_000, 100);
        for i in 0..5 {
            let check = check("AC1", "+4915112345678", T0 + i * 1_500);
            assert_eq!(send(&reservations, &check), Asked::Admission(0));
        }
    }

    #[test]
    fn reservations_end_with_their_lifetime_minute_policy_or_a_refusal() {
        let reservations = Reservations::new(16, 1_000, 100);
        let number = "+4915112345678";
        let grant = |at: u64| reservations.admitted(&check("AC1", number, at), 5, 5);
        grant(T0);
        assert!(
            !counted(&reservations, &check("AC1", number, T0 + 1_000)),
            "lifetime"
        );
        grant(T0 + 2_000);
        let mut other_rules = check("AC1", number, T0 + 2_001);
        other_rules.caps.total = Some(10);
        assert!(!counted(&reservations, &other_rules), "policy");
        assert!(
            !counted(&reservations, &check("AC2", number, T0 + 2_001)),
            "account"
        );
        let mut safe_listed = check("AC1", number, T0 + 2_001);
        safe_listed.guarded = false;
        assert!(!counted(&reservations, &safe_listed), "guard");
        assert!(counted(&reservations, &check("AC1", number, T0 + 2_001)));
        reservations.refused("AC1");
        assert!(
            !counted(&reservations, &check("AC1", number, T0 + 2_002)),
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
        reservations.admitted(&check("AC1", number, late - 10), 0, 0);
        assert_eq!(
            reservations.take(&check("AC1", number, late)),
            Ask::Admit { ahead: 0 }
        );
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
            assert_eq!(granted, Asked::Admission(u32::from(i < 3)), "prefix {i}");
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
            let check = check("AC1", "+4915112345678", T0 + i);
            assert_eq!(send(&reservations, &check), Asked::Admission(0));
        }
        assert!(reservations.state().entries.is_empty());
    }
}
