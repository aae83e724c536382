//! The Redis abuse store: the pumping guard's counters, cool-downs and daily counts of each
//! account, in the account's slot (hash tag `{a:<account>}`), so `admit_send` is one script
//! (`scripts/abuse_admit.lua`) on one node, also on a Redis Cluster. Time is the caller's clock.
//!
//! | key (`P:{a:<account>}:ab:` + …) | type | holds |
//! | --- | --- | --- |
//! | `p:<prefix>`, `c:<region>` | hash | counters: `m<minute>` sends, `a<minute>` approvals (the last 60 minutes), `h<hour>` sends (the 24 whole hours before this one, derived from the minutes when the hour ends), the running sums `S`, `A` (minutes before `W`), `B` (hours before `H`); a country's `K`: the latest cool-down's end in it (`scripts/abuse_window.lua`); expires 25 h after the last count |
//! | `idx` | sorted set | tracked entries (`p:<prefix>`, `c:<region>`) by last count; at most `abuse.max_tracked`, the least recently counted evicted with its counters |
//! | `blk` | hash | running cool-downs: `p:<prefix>` / `c:<region>` → `<until ms> <region>`; at most `abuse.max_tracked` |
//! | `d:<day>` | hash | one UTC day's messages: `<region>` per country (the total is their sum), `!*` / `!<region>` once a cap refused; expires an hour after the next day ends |

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use redis::Script;

use crate::abuse::guard::{Thresholds, DAY_MS, HOUR_MS};
use crate::abuse::reserve::{Ask, Unused};
use crate::abuse::settings::AbuseSettings;
use crate::abuse::store::{
    AbuseStore, ActiveBlock, Admission, Approval, Block, BlockRule, Scope, SendCheck, Usage,
};
use crate::abuse::{Prefix, Reservations};
use crate::clock::Clock;
use crate::phone::Region;
use crate::redis::connection::Connection;
use crate::redis::script::{corrupt, flag, load, lua, query, run, words, Failure};
use crate::redis::KeySpace;
use crate::store::StoreError;

/// Counters, the index and the cool-downs live this long after their last write: the 24-hour
/// baseline, an hour of slack, and a minute (the script renews them once a minute).
const COUNTERS_TTL_MS: u64 = DAY_MS + HOUR_MS + 60_000;

pub struct RedisAbuseStore {
    connection: Connection,
    keys: KeySpace,
    admit: Script,
    approve: Script,
    refund: Script,
    max_tracked: usize,
    /// This instance's sends admitted ahead, shared with the start script's admission.
    reservations: Arc<Reservations>,
}

impl RedisAbuseStore {
    /// An abuse store on the verification store's connection and prefix, sharing its
    /// reservations when it admits sends (`RedisStore::admitting_sends`).
    pub fn on(store: &crate::redis::RedisStore, settings: &AbuseSettings) -> Self {
        Self {
            connection: store.connection(),
            keys: KeySpace::new(store.prefix()),
            admit: load(&admit_source()),
            approve: with_window(include_str!("scripts/abuse_approve.lua")),
            refund: lua!("abuse_refund"),
            max_tracked: settings.max_tracked.max(1),
            reservations: store
                .reservations()
                .unwrap_or_else(|| Arc::new(reservations(settings))),
        }
    }

    /// Gives back, every quarter of a second until `stop`, the sends reservations counted ahead
    /// and no request used (`Reservations::sweep`). A failure leaves them counted (towards
    /// caution) and is logged.
    pub fn spawn_refunds(
        self: Arc<Self>,
        tasks: &tokio_util::task::TaskTracker,
        stop: tokio_util::sync::CancellationToken,
        clock: Arc<dyn Clock>,
    ) {
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(REFUND_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(error) = self.give_back_unused(clock.now_ms()).await {
                    tracing::warn!(%error, "sends counted ahead and not used stay counted");
                }
            }
        });
    }

    /// Ends the reservations over at `now_ms` and gives back the sends they counted ahead and no
    /// request used: how many. Each is tried; the first failure is the answer.
    pub async fn give_back_unused(&self, now_ms: u64) -> Result<u64, StoreError> {
        let mut given = 0;
        let mut failure = None;
        for unused in self.reservations.sweep(now_ms) {
            match self.give_back(&unused).await {
                Ok(()) => given += u64::from(unused.count),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
            self.reservations.given_back(&unused);
        }
        failure.map_or(Ok(given), Err)
    }

    /// Gives back sends counted ahead and not used (`abuse_refund.lua`).
    async fn give_back(&self, unused: &Unused) -> Result<(), StoreError> {
        let account = &*unused.account;
        let mut invocation = self.refund.prepare_invoke();
        invocation
            .key(self.keys.abuse_prefix(account, unused.prefix.as_str()))
            .key(self.keys.abuse_country(account, unused.country.as_str()))
            .key(
                self.keys
                    .abuse_day(account, unused.minute * 60_000 / DAY_MS),
            )
            .arg(unused.minute)
            .arg(unused.count)
            .arg(unused.country.as_str())
            .arg(flag(unused.guarded));
        let _: String = run(&self.connection, &invocation, Failure::Unavailable).await?;
        Ok(())
    }

    /// How many prefixes and countries `account` has tracked (for the tests of the bound).
    pub async fn tracked(&self, account: &str) -> Result<usize, StoreError> {
        query(
            &self.connection,
            redis::cmd("ZCARD").arg(self.keys.abuse_tracked(account)),
            Failure::Unavailable,
        )
        .await
    }
}

/// How often unused sends counted ahead are given back (`spawn_refunds`): well within the two
/// seconds a reservation ends before its minute does.
const REFUND_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The reservations `settings` ask for, bounded like the embedded store's tracked entries.
pub(crate) fn reservations(settings: &AbuseSettings) -> Reservations {
    Reservations::new(
        settings.reserve_ahead,
        settings.reserve_ms,
        settings.memory_max_tracked,
    )
}

/// A script of this store: `abuse_window.lua` (the counters' helper both use), then `body`.
fn with_window(body: &str) -> Script {
    load(&[include_str!("scripts/abuse_window.lua"), body].join("\n"))
}

/// The admission script's source (`abuse_window.lua`, then `abuse_admit.lua`), unloaded: the
/// verify store wraps it in the script that admits and starts in one step (`verify.rs`).
pub(crate) fn admit_source() -> String {
    [
        include_str!("scripts/abuse_window.lua"),
        include_str!("scripts/abuse_admit.lua"),
    ]
    .join("\n")
}

/// How many keys and arguments `admit_arguments` appends (`abuse_admit.lua`'s KEYS and ARGV).
pub(crate) const ADMIT_KEYS: usize = 5;
pub(crate) const ADMIT_ARGS: usize = 9;

/// Appends `check`'s keys and arguments to `invocation`, in `abuse_admit.lua`'s order, for
/// `ask` (`Reservations::take`: admit, asking for sends ahead, or refill). The account's settings travel as one
/// text: every argument costs Redis a parse, an object and a Lua string, and the steady state
/// reads none of them (the script says why). The texts are written into buffers sized once, not
/// formatted piece by piece.
pub(crate) fn admit_arguments(
    keys: &KeySpace,
    max_tracked: usize,
    check: &SendCheck<'_>,
    ask: Ask,
    invocation: &mut redis::ScriptInvocation<'_>,
) {
    let account = check.account;
    let day = check.now_ms / DAY_MS;
    let ([prefix_key, country_key, tracked, blocks, today], base) =
        keys.abuse_admission(account, check.prefix.as_str(), check.country.as_str(), day);
    let mut settings = String::with_capacity(128 + base.len());
    push_rules(&mut settings, &check.prefix_rules);
    push_rules(&mut settings, &check.country_rules);
    for number in [
        max_tracked.max(1) as u64,
        COUNTERS_TTL_MS,
        (day + 2) * DAY_MS + HOUR_MS - check.now_ms,
    ] {
        push_number(&mut settings, number);
        settings.push(' ');
    }
    settings.push_str(&base);
    let mut caps = String::with_capacity(41);
    push_number(&mut caps, check.caps.total.unwrap_or(0));
    caps.push(' ');
    push_number(&mut caps, check.caps.per_country.unwrap_or(0));
    let mut guarded = String::with_capacity(12);
    guarded.push_str(flag(check.guarded));
    match ask {
        Ask::Admit { ahead: 0 } => {}
        Ask::Admit { ahead } => push_number(&mut guarded, u64::from(ahead)),
        Ask::Counted { refill } => {
            guarded.push('+');
            push_number(&mut guarded, u64::from(refill));
        }
    }
    invocation
        .key(prefix_key)
        .key(country_key)
        .key(tracked)
        .key(blocks)
        .key(today)
        .arg(check.now_ms)
        .arg(guarded)
        .arg(check.country.as_str())
        .arg(check.prefix.as_str())
        .arg(check.now_ms / 60_000)
        .arg(trip_floor(&check.prefix_rules))
        .arg(trip_floor(&check.country_rules))
        .arg(caps)
        .arg(settings);
}

/// `number` in decimal.
fn push_number(text: &mut String, number: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = number;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        text.push(char::from(digit));
    }
}

/// The fewest sends (this one counted) at which either of `rules` can trip: the script reads
/// the rules only from there on (`trips` in `abuse_admit.lua`).
fn trip_floor(rules: &Thresholds) -> u64 {
    rules.min_sends.min(rules.surge_min_sends)
}

/// What the admission's part of a script reply says.
#[derive(Debug)]
pub(crate) enum Verdict<'r> {
    Refused(Block),
    /// Admitted and counted, with `ahead` more sends counted for this instance to use; `rest`:
    /// the start's reply when the two ran as one (empty from the admission alone).
    Admitted {
        ahead: u32,
        rest: &'r [&'r str],
    },
}

/// Tells `reservations` what the admission asked as `ask` answered (`None`: it failed): sends
/// counted ahead, a refill's, or a refusal, which ends the account's reservations. A refill that
/// refused would be a broken script: an error.
pub(crate) fn settle(
    reservations: &Reservations,
    check: &SendCheck<'_>,
    ask: Ask,
    verdict: Option<&Verdict<'_>>,
) -> Result<(), StoreError> {
    match (ask, verdict) {
        (Ask::Counted { refill }, Some(Verdict::Admitted { ahead, .. })) => {
            reservations.refilled(check, refill, *ahead)
        }
        (Ask::Counted { refill }, Some(Verdict::Refused(_))) => {
            reservations.refilled(check, refill, 0);
            return Err(corrupt("a refill refused"));
        }
        // A failure says nothing of the room: the next send may refill again.
        (Ask::Counted { .. }, None) => reservations.refilled(check, 0, 0),
        (Ask::Admit { ahead: asked }, Some(Verdict::Admitted { ahead, .. })) => {
            reservations.admitted(check, asked, *ahead)
        }
        (Ask::Admit { .. }, Some(Verdict::Refused(_))) => reservations.refused(check.account),
        (Ask::Admit { .. }, None) => {}
    }
    Ok(())
}

/// Reads the admission's reply: `refused …`, `admitted`, `admitted <ahead>`, and from the script
/// that admits and starts in one, the start's reply, after `admitted <ahead>` when sends were
/// counted ahead.
pub(crate) fn admission<'r>(
    reply: &'r [&'r str],
    check: &SendCheck<'_>,
) -> Result<Verdict<'r>, StoreError> {
    match reply {
        ["refused", rule, scope, retry_after, started] => {
            let rule = match *rule {
                "cap" => BlockRule::DailyMessageCap,
                "pumping" => BlockRule::SuspectedPumping,
                _ => return Err(corrupt("unknown abuse rule")),
            };
            let scope = match *scope {
                "account" => Scope::Account,
                "country" => Scope::Country,
                "prefix" => Scope::Prefix,
                _ => return Err(corrupt("unknown abuse scope")),
            };
            Ok(Verdict::Refused(Block {
                rule,
                scope,
                country: check.country,
                prefix: (scope == Scope::Prefix).then(|| check.prefix.clone()),
                retry_after_ms: retry_after
                    .parse()
                    .map_err(|_| corrupt("abuse retry after"))?,
                started: *started == "1",
            }))
        }
        ["admitted", ahead, rest @ ..] => Ok(Verdict::Admitted {
            ahead: ahead.parse().map_err(|_| corrupt("abuse sends ahead"))?,
            rest,
        }),
        ["admitted"] => Ok(Verdict::Admitted {
            ahead: 0,
            rest: &[],
        }),
        rest => Ok(Verdict::Admitted { ahead: 0, rest }),
    }
}

/// One scope's rules as `abuse_admit.lua` reads them, each followed by a space: min sends, min
/// conversion percent, surge factor, surge min sends, cool-down ms.
fn push_rules(text: &mut String, rules: &Thresholds) {
    for number in [
        rules.min_sends,
        rules.min_conversion_percent,
        rules.surge_factor,
        rules.surge_min_sends,
        rules.cooldown.as_millis() as u64,
    ] {
        push_number(text, number);
        text.push(' ');
    }
}

#[async_trait]
impl AbuseStore for RedisAbuseStore {
    async fn admit_send(&self, check: &SendCheck<'_>) -> Result<Admission, StoreError> {
        let ask = self.reservations.take(check);
        if ask == (Ask::Counted { refill: 0 }) {
            return Ok(Admission::Admitted);
        }
        let mut invocation = self.admit.prepare_invoke();
        admit_arguments(&self.keys, self.max_tracked, check, ask, &mut invocation);
        let text = match run::<String>(&self.connection, &invocation, Failure::Unavailable).await {
            Ok(text) => text,
            Err(error) => {
                settle(&self.reservations, check, ask, None)?;
                if let Ask::Counted { .. } = ask {
                    // The send was counted ahead: a refill that failed leaves it admitted.
                    tracing::warn!(%error, "a refill of sends counted ahead failed");
                    return Ok(Admission::Admitted);
                }
                return Err(error);
            }
        };
        let reply = words(&text);
        let verdict = admission(&reply, check)?;
        settle(&self.reservations, check, ask, Some(&verdict))?;
        match verdict {
            Verdict::Refused(block) => Ok(Admission::Refused(block)),
            Verdict::Admitted { rest: [], .. } => Ok(Admission::Admitted),
            Verdict::Admitted { .. } => Err(corrupt("unknown abuse reply")),
        }
    }

    async fn record_approval(&self, approval: &Approval<'_>) -> Result<(), StoreError> {
        let Approval {
            account,
            country,
            prefix,
            now_ms,
        } = *approval;
        let mut invocation = self.approve.prepare_invoke();
        invocation
            .key(self.keys.abuse_prefix(account, prefix.as_str()))
            .key(self.keys.abuse_country(account, country.as_str()))
            .key(self.keys.abuse_tracked(account))
            .arg(now_ms)
            .arg(COUNTERS_TTL_MS)
            .arg(format!("p:{prefix}"))
            .arg(format!("c:{country}"));
        let _: String = run(&self.connection, &invocation, Failure::Unavailable).await?;
        Ok(())
    }

    async fn usage(&self, account: &str, day: u64, now_ms: u64) -> Result<Usage, StoreError> {
        let counts: HashMap<String, u64> = query(
            &self.connection,
            redis::cmd("HGETALL").arg(self.keys.abuse_day(account, day)),
            Failure::Unavailable,
        )
        .await?;
        let running: HashMap<String, String> = query(
            &self.connection,
            redis::cmd("HGETALL").arg(self.keys.abuse_blocks(account)),
            Failure::Unavailable,
        )
        .await?;
        let mut usage = Usage {
            day,
            ..Usage::default()
        };
        // The day's total is the sum of its countries (one field written per send), less the
        // sends this instance counted ahead and has not used.
        let ahead = self.reservations.unused(account, day);
        for (field, count) in &counts {
            if let Some(region) = Region::parse(field) {
                let count = count.saturating_sub(ahead.get(&region).copied().unwrap_or(0));
                usage.countries.insert(region, count);
                usage.total += count;
            }
        }
        for (member, value) in &running {
            let (until, region) = value
                .split_once(' ')
                .ok_or_else(|| corrupt("abuse cool-down"))?;
            let until_ms: u64 = until.parse().map_err(|_| corrupt("abuse cool-down"))?;
            if until_ms <= now_ms {
                continue;
            }
            let country = Region::parse(region).unwrap_or(Region::UNKNOWN);
            let block = match member.split_once(':') {
                Some(("p", prefix)) => ActiveBlock {
                    scope: Scope::Prefix,
                    country,
                    prefix: Some(Prefix::parse(prefix).ok_or_else(|| corrupt("abuse prefix"))?),
                    until_ms,
                },
                Some(("c", _)) => ActiveBlock {
                    scope: Scope::Country,
                    country,
                    prefix: None,
                    until_ms,
                },
                _ => return Err(corrupt("abuse cool-down member")),
            };
            usage.blocks.push(block);
        }
        usage.blocks.sort();
        Ok(usage)
    }
}
