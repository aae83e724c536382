//! The hot path: the login decision, and the reads behind it and the device check, through
//! the cache (a hit, a miss or a bypass counted for each). These are methods of
//! `AccountService`.

use std::sync::Arc;

use crate::account::login::{decide, Decision, Presented};
use crate::account::policy::Policy;
use crate::account::service::{AccountError, AccountService};
use crate::account::trust::cache::Lookup;
use crate::account::trust::metrics::{CacheKind, LookupResult};
use crate::account::trust::{DeviceDigest, DeviceRecord};
use crate::account::user::{User, UserId};
use crate::account::AccountId;
use crate::store::StoreError;

impl AccountService {
    pub async fn login(
        &self,
        account: &AccountId,
        id: &UserId,
        device_token: Option<&str>,
        verified_passkey: bool,
    ) -> Result<Decision, AccountError> {
        let policy = self.cached_policy(account).await?;
        let user = self
            .cached_user(account, id)
            .await?
            .ok_or(AccountError::NotFound("no such user in this account"))?;
        let trusted = match device_token {
            Some(token) if user.two_factor_enabled(policy.require_2fa) => {
                let digest = self.device_key.digest(account, id, token);
                self.cached_device(account, &digest)
                    .await?
                    .is_some_and(|found| found.1.is_trusted(&user, &policy, self.clock.now_ms()))
            }
            _ => false,
        };
        let presented = Presented {
            trusted_device: trusted,
            verified_passkey,
        };
        let decision = decide(&policy, &user, presented);
        self.metrics.decision(&decision);
        Ok(decision)
    }

    /// The account's policy as the cache holds it: a hit costs an `Arc` count.
    pub(crate) async fn cached_policy(
        &self,
        account: &AccountId,
    ) -> Result<Arc<Policy>, StoreError> {
        let now = self.clock.now_ms();
        let ticket = self.cache.ticket();
        if let Some(policy) = self.counted(CacheKind::Policy, self.cache.policy(account, now)) {
            return Ok(policy);
        }
        let policy = self.directory.policy(account).await?;
        self.cache.put_policy(ticket, account, policy.clone(), now);
        Ok(Arc::new(policy))
    }

    pub(crate) async fn cached_user(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Option<Arc<User>>, StoreError> {
        let now = self.clock.now_ms();
        let ticket = self.cache.ticket();
        if let Some(user) = self.counted(CacheKind::User, self.cache.user(account, id, now)) {
            return Ok(Some(user));
        }
        let user = self.directory.user(account, id).await?;
        if let Some(user) = &user {
            self.cache.put_user(ticket, account, user.clone(), now);
        }
        Ok(user.map(Arc::new))
    }

    /// The device's record with its account (always `account`: a digest cached for another
    /// account is a miss for this one).
    pub(crate) async fn cached_device(
        &self,
        account: &AccountId,
        digest: &DeviceDigest,
    ) -> Result<Option<Arc<(AccountId, DeviceRecord)>>, StoreError> {
        let now = self.clock.now_ms();
        let ticket = self.cache.ticket();
        let lookup = match self.cache.device(digest, now) {
            Lookup::Hit(found) if found.0 == *account => Lookup::Hit(found),
            Lookup::Hit(_) | Lookup::Miss => Lookup::Miss,
            Lookup::Bypass => Lookup::Bypass,
        };
        if let Some(found) = self.counted(CacheKind::Device, lookup) {
            return Ok(Some(found));
        }
        let record = self.directory.device(account, digest).await?;
        if let Some(record) = &record {
            self.cache
                .put_device(ticket, *digest, account, record.clone(), now);
        }
        Ok(record.map(|record| Arc::new((account.clone(), record))))
    }

    /// A cache lookup, counted as a hit, a miss or a bypass; the value on a hit.
    fn counted<V>(&self, kind: CacheKind, lookup: Lookup<V>) -> Option<V> {
        let (result, value) = match lookup {
            Lookup::Hit(value) => (LookupResult::Hit, Some(value)),
            Lookup::Miss => (LookupResult::Miss, None),
            Lookup::Bypass => (LookupResult::Bypass, None),
        };
        self.metrics.lookup(kind, result);
        value
    }
}
