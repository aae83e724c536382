//! `KeySpace`: the only code that builds Redis key names.
//!
//! Every key starts with the configured prefix `P`. Keys that one script touches together share
//! a hash tag, so each script touches one slot and runs unchanged on a Redis Cluster:
//!
//! | hash tag | whose | keys (after `P:{tag}:`) |
//! | --- | --- | --- |
//! | `{sNN}` | one shard of phone numbers (`phone::SHARD_COUNT`) | verifications `v:<id>`, number pointers `n:<account>:<e164>`, send idempotency `i:…`, check idempotency `c:…` (built in `verify_check.lua` from the base), the outbox streams, the workflows' due set `f` |
//! | `{a:<account>}` | one account | API key index (`keys`, `kr`, `kown`: src/redis/accounts.rs), directory (`pol`, `u:<user>`, `users`, `uz`, `nophone`, `withmail`, `d:<digest>`, `ud:<user>`, `pf:<proof>`, `devs`, `audit`), PIN store (`pn:<id>`, `pnx:<e164>`, `pnz`, `pl:<digest>`, `pmail`, `pncount`), factor store (`fx:…`, `wc:…`, `rc:…`, `rl:…`, `ch:…`, `pend`, `ph`) |
//! | `{n:<e164>}` | one phone number, gateway-wide | `holder`: the PIN registry's claim |
//! | `{a:<account>}` (abuse) | one account | abuse store (`ab:p:<prefix>`, `ab:c:<country>`, `ab:idx`, `ab:blk`, `ab:d:<day>`: `src/redis/abuse.rs`) |
//! | `{a:<account>}` | one account's webhooks | `whr`, `whz`, `whq:<id>`, `whs:<id>`, `whl:<id>`, `whx:<id>` (src/redis/events.rs) |
//! | `{wh}` | webhooks, gateway-wide | `due`, `gen`, `accounts`, `count` |
//! | `{console}` | the web console, gateway-wide | `i:<digest>`, `ip:<who>`, `iz`, `ch:<challenge>`, `chz`, `c:<credential>`, `cc:<credential>`, `cp:<who>`, `cz`, `s:<digest>`, `sp:<who>`, `sz`, `ls:<who>`, `lsz` (src/redis/console.rs) |
//!
//! Keys without a tag (`P:a:<account>`, `P:accounts`: every account's id, `P:k:<digest>`, `P:r:<provider>:<id>`) are read and
//! written one at a time. The tables of each adapter (`src/redis/*.rs`) say what each key holds.

use std::sync::Arc;

use crate::account::user::UserId;
use crate::account::{hex, AccountId, KeyDigest};
use crate::events::store::WebhookId;
use crate::phone::SHARD_COUNT;
use crate::pin::PhoneNumberId;
use crate::verify::model::VerificationId;

#[derive(Clone)]
pub struct KeySpace {
    prefix: String,
    /// `P:{sNN}:` for every shard, built once: the check path builds a key per request.
    shard_bases: Arc<[String]>,
}

impl KeySpace {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            shard_bases: (0..SHARD_COUNT)
                .map(|shard| format!("{prefix}:{{s{shard:02}}}:"))
                .collect(),
        }
    }

    /// The configured prefix, for the parts that take it whole (the connection's settings).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pub/sub channel every instance of this deployment (this prefix) listens on for
    /// cache invalidations.
    pub fn invalidation_channel(&self) -> String {
        format!("{}:invalidate", self.prefix)
    }

    // Verifications: one number shard's tag.

    /// `P:{sNN}:` — everything of one shard starts with this (scripts derive keys from it).
    pub fn shard_base(&self, shard: u8) -> &str {
        &self.shard_bases[usize::from(shard)]
    }

    pub fn verification(&self, id: &VerificationId) -> String {
        [self.shard_base(id.shard()), "v:", id.as_str()].concat()
    }

    /// The number's pointer: its pending verification and its send quota.
    pub fn number_pointer(&self, shard: u8, account: &AccountId, e164: &str) -> String {
        [self.shard_base(shard), "n:", account.as_str(), ":", e164].concat()
    }

    /// A send's idempotency key, scoped by account and number (README, "Idempotency").
    pub fn send_idempotency(
        &self,
        shard: u8,
        account: &AccountId,
        e164: &str,
        key: &str,
    ) -> String {
        [
            self.shard_base(shard),
            "i:",
            account.as_str(),
            ":",
            e164,
            ":",
            key,
        ]
        .concat()
    }

    /// The shard's outbox stream (consumer group `dispatch`).
    pub fn outbox(&self, shard: u8) -> String {
        [self.shard_base(shard), "o"].concat()
    }

    /// The shard's dead letters: messages no provider took, with the reasons.
    pub fn dead_letters(&self, shard: u8) -> String {
        [self.shard_base(shard), "d"].concat()
    }

    /// The shard's due set of workflows: verification ids by the time their next step is due.
    pub fn fallbacks(&self, shard: u8) -> String {
        [self.shard_base(shard), "f"].concat()
    }

    /// The shard's retry set: deferred messages by due time.
    pub fn retry_set(&self, shard: u8) -> String {
        [self.shard_base(shard), "z"].concat()
    }

    /// The deferred messages' payloads.
    pub fn retry_payloads(&self, shard: u8) -> String {
        [self.shard_base(shard), "y"].concat()
    }

    // Keys without a hash tag.

    pub fn receipt(&self, provider: &str, provider_message_id: &str) -> String {
        format!("{}:r:{provider}:{provider_message_id}", self.prefix)
    }

    pub fn account(&self, id: &AccountId) -> String {
        format!("{}:a:{}", self.prefix, id.as_str())
    }

    /// Every account's id (a sorted set, score 0, read by id): the console's list of accounts.
    pub fn accounts_index(&self) -> String {
        format!("{}:accounts", self.prefix)
    }

    pub fn api_key(&self, digest: &KeyDigest) -> String {
        format!("{}:k:{}", self.prefix, hex(digest))
    }

    // One account's tag.

    /// `P:{a:<account>}:` — every key of one account starts with this.
    pub fn account_base(&self, account: &AccountId) -> String {
        format!("{}:{{a:{}}}:", self.prefix, account.as_str())
    }

    fn in_account(&self, account: &AccountId, name: &str) -> String {
        format!("{}{name}", self.account_base(account))
    }

    pub fn policy(&self, account: &AccountId) -> String {
        self.in_account(account, "pol")
    }

    /// The account's key ids (sorted set, every score 0: ordered by id).
    pub fn account_keys(&self, account: &AccountId) -> String {
        self.in_account(account, "keys")
    }

    /// The account's key entries: id -> `<role> <created> <digest hex> <state>`.
    pub fn account_key_entries(&self, account: &AccountId) -> String {
        self.in_account(account, "kr")
    }

    /// How many live owner keys the account has (the last one is never revoked).
    pub fn account_owner_keys(&self, account: &AccountId) -> String {
        self.in_account(account, "kown")
    }

    pub fn users(&self, account: &AccountId) -> String {
        self.in_account(account, "users")
    }

    /// Every user id, score 0: the users list's index by id.
    pub fn users_by_id(&self, account: &AccountId) -> String {
        self.in_account(account, "uz")
    }

    pub fn users_without_phone(&self, account: &AccountId) -> String {
        self.in_account(account, "nophone")
    }

    /// The users with an e-mail address: those without one are `users` less these, which
    /// also counts users stored before addresses existed.
    pub fn users_with_email(&self, account: &AccountId) -> String {
        self.in_account(account, "withmail")
    }

    pub fn audit(&self, account: &AccountId) -> String {
        self.in_account(account, "audit")
    }

    pub fn user(&self, account: &AccountId, user: &UserId) -> String {
        self.in_account(account, &format!("u:{user}"))
    }

    pub fn user_devices(&self, account: &AccountId, user: &UserId) -> String {
        self.in_account(account, &format!("ud:{user}"))
    }

    pub fn account_devices(&self, account: &AccountId) -> String {
        self.in_account(account, "devs")
    }

    pub fn device(&self, account: &AccountId, digest: &[u8; 32]) -> String {
        self.in_account(account, &format!("d:{}", hex(digest)))
    }

    pub fn spent_proof(&self, account: &AccountId, proof: &str) -> String {
        self.in_account(account, &format!("pf:{proof}"))
    }

    pub fn phone_number(&self, account: &AccountId, id: &PhoneNumberId) -> String {
        self.in_account(account, &format!("pn:{}", id.as_str()))
    }

    pub fn phone_index(&self, account: &AccountId, e164: &str) -> String {
        self.in_account(account, &format!("pnx:{e164}"))
    }

    /// The account's phone-number ids, score 0: the list's index by id.
    pub fn phone_numbers(&self, account: &AccountId) -> String {
        self.in_account(account, "pnz")
    }

    pub fn phone_count(&self, account: &AccountId) -> String {
        self.in_account(account, "pncount")
    }

    pub fn pin_link(&self, account: &AccountId, digest: &[u8; 32]) -> String {
        self.in_account(account, &format!("pl:{}", hex(digest)))
    }

    pub fn pin_email(&self, account: &AccountId) -> String {
        self.in_account(account, "pmail")
    }

    pub fn factor(&self, account: &AccountId, user: &UserId, id: &str) -> String {
        self.in_account(account, &format!("fx:{user}:{id}"))
    }

    pub fn ceremony(&self, account: &AccountId, user: &UserId, challenge: &[u8]) -> String {
        self.in_account(account, &format!("wc:{user}:{}", hex(challenge)))
    }

    pub fn recovery_codes(&self, account: &AccountId, user: &UserId) -> String {
        self.in_account(account, &format!("rc:{user}"))
    }

    pub fn recovery_lock(&self, account: &AccountId, user: &UserId) -> String {
        self.in_account(account, &format!("rl:{user}"))
    }

    /// The account's passkey user handles (hex) and the users they name.
    pub fn user_handles(&self, account: &AccountId) -> String {
        self.in_account(account, "ph")
    }

    pub fn passed_challenge(&self, account: &AccountId, id: &str) -> String {
        self.in_account(account, &format!("ch:{id}"))
    }

    pub fn pending(&self, account: &AccountId) -> String {
        self.in_account(account, "pend")
    }

    // One phone number's tag, gateway-wide.

    /// The PIN registry's claim: its own hash tag, so one number's claims meet in one slot.
    pub fn phone_registry(&self, e164: &str) -> String {
        format!("{}:{{n:{e164}}}:holder", self.prefix)
    }

    // Abuse protection (src/redis/abuse.rs): one account's tag, under `ab:`.

    /// `P:{a:<account>}:ab:<name>`: abuse protection knows an account by its id's text only.
    /// The base is formatted once and the name's parts appended (`abuse_admission` writes the
    /// six texts of a send from one base: a `format!` each cost ~1 200 instructions, callgrind).
    fn abuse_key(&self, account: &str, name: &[&str]) -> String {
        Self::abuse_named(&self.abuse_base(account), name)
    }

    fn abuse_named(base: &str, name: &[&str]) -> String {
        let mut key =
            String::with_capacity(base.len() + name.iter().map(|part| part.len()).sum::<usize>());
        key.push_str(base);
        for part in name {
            key.push_str(part);
        }
        key
    }

    /// `P:{a:<account>}:ab:` — the abuse script finds an evicted entry's counters as this base
    /// and the entry's index member (`p:<prefix>`, `c:<country>`).
    pub fn abuse_base(&self, account: &str) -> String {
        format!("{}:{{a:{account}}}:ab:", self.prefix)
    }

    /// One prefix's counters: `<base>p:<prefix>`.
    pub fn abuse_prefix(&self, account: &str, prefix: &str) -> String {
        self.abuse_key(account, &["p:", prefix])
    }

    /// One country's counters: `<base>c:<region>`.
    pub fn abuse_country(&self, account: &str, region: &str) -> String {
        self.abuse_key(account, &["c:", region])
    }

    /// The tracked prefixes and countries by last count (the per-account bound).
    pub fn abuse_tracked(&self, account: &str) -> String {
        self.abuse_key(account, &["idx"])
    }

    /// The account's running cool-downs.
    pub fn abuse_blocks(&self, account: &str) -> String {
        self.abuse_key(account, &["blk"])
    }

    /// The account's messages of one UTC day (days since the epoch).
    pub fn abuse_day(&self, account: &str, day: u64) -> String {
        self.abuse_key(account, &["d:", &day.to_string()])
    }

    /// An admission's keys (`abuse_admit.lua`'s KEYS, in its order: the prefix's counters, the
    /// country's, the index, the cool-downs, the day's counts) and the base, written from one
    /// base: the same texts as the functions above.
    pub fn abuse_admission(
        &self,
        account: &str,
        prefix: &str,
        region: &str,
        day: u64,
    ) -> ([String; 5], String) {
        let base = self.abuse_base(account);
        let day = day.to_string();
        let keys = [
            Self::abuse_named(&base, &["p:", prefix]),
            Self::abuse_named(&base, &["c:", region]),
            Self::abuse_named(&base, &["idx"]),
            Self::abuse_named(&base, &["blk"]),
            Self::abuse_named(&base, &["d:", &day]),
        ];
        (keys, base)
    }

    // Webhooks (src/redis/events.rs): each account's under its tag, the due accounts under `{wh}`.

    /// The account's webhooks; the scripts derive each webhook's keys from it (`whq:<id>` queue,
    /// `whs:<id>` state, `whl:<id>` attempts, `whx:<id>` dead letters), so it must end in `whr`.
    pub fn webhooks(&self, account: &AccountId) -> String {
        self.in_account(account, "whr")
    }

    /// A webhook's queue of events (the scripts build the same name from `webhooks`).
    pub fn webhook_queue(&self, account: &AccountId, id: &WebhookId) -> String {
        self.in_account(account, &format!("whq:{id}"))
    }

    /// A webhook's latest attempts.
    pub fn webhook_attempts(&self, account: &AccountId, id: &WebhookId) -> String {
        self.in_account(account, &format!("whl:{id}"))
    }

    /// A webhook's dead letters.
    pub fn webhook_dead_letters(&self, account: &AccountId, id: &WebhookId) -> String {
        self.in_account(account, &format!("whx:{id}"))
    }

    /// The account's webhooks by when each needs the worker (due head or end of lease).
    pub fn webhook_schedule(&self, account: &AccountId) -> String {
        self.in_account(account, "whz")
    }

    /// The accounts with something due, by time; gateway-wide.
    pub fn webhook_due(&self) -> String {
        format!("{}:{{wh}}:due", self.prefix)
    }

    /// The due accounts' signal generations.
    pub fn webhook_generations(&self) -> String {
        format!("{}:{{wh}}:gen", self.prefix)
    }

    /// Every account that registered a webhook (the sweep's list).
    pub fn webhook_accounts(&self) -> String {
        format!("{}:{{wh}}:accounts", self.prefix)
    }

    /// How many webhooks the gateway has (its bound).
    pub fn webhook_count(&self) -> String {
        format!("{}:{{wh}}:count", self.prefix)
    }

    // The web console: one tag for all of it (its traffic is people clicking, not logins), so
    // every script touches one slot. `kind` is `i` (invitations), `ch` (ceremonies), `c`
    // (passkeys), `s` (sessions); `who` is a principal's stored form.

    /// `P:{console}:<kind>:` — an entry of `kind` is this base and its member.
    pub fn console_base(&self, kind: &str) -> String {
        format!("{}:{{console}}:{kind}:", self.prefix)
    }

    /// One console entry (`P:{console}:<kind>:<member>`).
    pub fn console_entry(&self, kind: &str, member: &str) -> String {
        [self.console_base(kind).as_str(), member].concat()
    }

    /// A person's members of `kind` (`P:{console}:<kind>p:<who>`), for the per-person bound and
    /// "Sign out everywhere".
    pub fn console_owned(&self, kind: &str, who: &str) -> String {
        format!("{}:{{console}}:{kind}p:{who}", self.prefix)
    }

    /// The live members of `kind` with their expiry (`P:{console}:<kind>z`), for the total bound.
    pub fn console_index(&self, kind: &str) -> String {
        format!("{}:{{console}}:{kind}z", self.prefix)
    }

    /// A console passkey's signature counter (`P:{console}:cc:<credential>`).
    pub fn console_counter(&self, credential: &str) -> String {
        self.console_entry("cc", credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_keys_share_its_hash_tag() {
        let keys = KeySpace::new("P");
        let account = AccountId::parse("AC0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            keys.account_base(&account),
            format!("P:{{a:{}}}:", account.as_str())
        );
        assert_eq!(
            keys.pending(&account),
            format!("P:{{a:{}}}:pend", account.as_str())
        );
        assert_eq!(
            keys.phone_registry("+14155550100"),
            "P:{n:+14155550100}:holder"
        );
        assert_eq!(keys.invalidation_channel(), "P:invalidate");
    }
}
