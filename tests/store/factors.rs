//! The factor store: authenticator-code rounds and their back-off, used steps, security-key
//! counters, recovery codes, and the account's bound of pending ceremonies.

use std::time::Duration;

use otpgate::account::user::{FactorType, UserId};
use otpgate::clock::Clock;
use otpgate::factors::store::{
    AttemptLimits, AttemptOutcome, CounterOutcome, FactorRecord, FactorStatus, KeyCredential,
    NewCeremony, NewFactor, RecoveryOutcome, RecoveryTry, TotpSecret, TotpTry, UserRef,
};
use otpgate::factors::totp::{Algorithm, TotpParams};
use otpgate::factors::webauthn::{BackupState, CredentialKey};
use otpgate::store::StoreError;

use crate::on_every_store;
use crate::stores::{bounded, stores, stores_with, Backend, Stores};

const LIMITS: AttemptLimits = AttemptLimits {
    free_attempts: 2,
    attempts_per_wait: 2,
    first_wait_ms: 1_000,
    max_wait_ms: 3_000,
    lock_after: None,
};

fn alice() -> UserId {
    UserId::parse("alice").unwrap()
}

fn totp(stores: &Stores, status: FactorStatus) -> FactorRecord {
    FactorRecord {
        id: "FA-totp".into(),
        kind: FactorType::Totp,
        status,
        created_ms: stores.clock.now_ms(),
        totp: Some(TotpSecret {
            sealed: "k1:nonce:ciphertext".into(),
            params: TotpParams {
                algorithm: Algorithm::Sha1,
                digits: 6,
                period: 30,
            },
        }),
        webauthn: None,
    }
}

async fn attempt(stores: &Stores, matched: Option<u64>, activate: bool) -> AttemptOutcome {
    stores
        .factors
        .totp_attempt(TotpTry {
            factor: UserRef::new(&stores.account, &alice()).factor("FA-totp"),
            matched,
            activate,
            now_ms: stores.clock.now_ms(),
            limits: LIMITS,
        })
        .await
        .unwrap()
}

async fn each_round_of_wrong_codes_doubles_the_wait_up_to_its_cap(backend: Backend) {
    let stores = stores(backend).await;
    let record = totp(&stores, FactorStatus::Active);
    stores
        .factors
        .put(NewFactor {
            owner: UserRef::new(&stores.account, &alice()),
            record: &record,
            pending_ttl_ms: None,
        })
        .await
        .unwrap();
    for wait_ms in [1_000, 2_000, 3_000, 3_000] {
        assert_eq!(
            attempt(&stores, None, false).await,
            AttemptOutcome::Wrong {
                attempts_left: 1,
                wait_ms: 0
            }
        );
        assert_eq!(
            attempt(&stores, None, false).await,
            AttemptOutcome::Wrong {
                attempts_left: 2,
                wait_ms
            }
        );
        // Even the right code waits.
        assert_eq!(
            attempt(&stores, Some(1), false).await,
            AttemptOutcome::Locked {
                retry_after_ms: wait_ms
            }
        );
        stores.clock.advance(Duration::from_millis(wait_ms));
    }
    assert_eq!(
        attempt(&stores, Some(1), false).await,
        AttemptOutcome::Accepted
    );
}

async fn a_used_step_is_replayed_and_a_pending_factor_waits_for_activation(backend: Backend) {
    let stores = stores(backend).await;
    let record = totp(&stores, FactorStatus::Pending);
    stores
        .factors
        .put(NewFactor {
            owner: UserRef::new(&stores.account, &alice()),
            record: &record,
            pending_ttl_ms: Some(600_000),
        })
        .await
        .unwrap();
    assert_eq!(
        attempt(&stores, Some(5), false).await,
        AttemptOutcome::NotActive
    );
    assert_eq!(
        attempt(&stores, Some(5), true).await,
        AttemptOutcome::Accepted
    );
    let active = stores
        .factors
        .get(UserRef::new(&stores.account, &alice()).factor("FA-totp"))
        .await
        .unwrap()
        .expect("the factor");
    assert_eq!(active.status, FactorStatus::Active);
    assert_eq!(
        attempt(&stores, Some(5), false).await,
        AttemptOutcome::Replayed
    );
    assert_eq!(
        attempt(&stores, Some(4), false).await,
        AttemptOutcome::Replayed
    );
    assert_eq!(
        attempt(&stores, Some(6), false).await,
        AttemptOutcome::Accepted
    );
}

async fn a_security_keys_counter_only_moves_forward(backend: Backend) {
    let stores = stores(backend).await;
    let record = FactorRecord {
        id: "FA-key".into(),
        kind: FactorType::Webauthn,
        status: FactorStatus::Active,
        created_ms: stores.clock.now_ms(),
        totp: None,
        webauthn: Some(KeyCredential {
            credential_id: vec![1, 2, 3],
            key: CredentialKey {
                alg: -7,
                bytes: vec![4, 5, 6],
            },
            counter: 5,
            backup: BackupState {
                eligible: true,
                backed_up: false,
            },
        }),
    };
    stores
        .factors
        .put(NewFactor {
            owner: UserRef::new(&stores.account, &alice()),
            record: &record,
            pending_ttl_ms: None,
        })
        .await
        .unwrap();
    assert_eq!(
        stores
            .factors
            .get(UserRef::new(&stores.account, &alice()).factor("FA-key"))
            .await
            .unwrap(),
        Some(record)
    );
    let backed_up = BackupState {
        eligible: true,
        backed_up: true,
    };
    let advance = |counter: u32| {
        let stores = &stores;
        async move {
            stores
                .factors
                .advance_counter(
                    UserRef::new(&stores.account, &alice()).factor("FA-key"),
                    counter,
                    backed_up,
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(advance(5).await, CounterOutcome::Regressed { stored: 5 });
    let read = || async {
        let alice = alice();
        let factor = UserRef::new(&stores.account, &alice).factor("FA-key");
        let record = stores.factors.get(factor).await.unwrap().unwrap();
        record.webauthn.unwrap()
    };
    assert_eq!(
        read().await.backup.backed_up,
        false,
        "a refused counter changes nothing"
    );
    assert_eq!(advance(6).await, CounterOutcome::Advanced);
    assert_eq!((read().await.counter, read().await.backup), (6, backed_up));
    assert_eq!(advance(6).await, CounterOutcome::Regressed { stored: 6 });
}

async fn a_passkey_user_handle_names_its_user_until_deleted(backend: Backend) {
    let stores = stores(backend).await;
    let account = &stores.account;
    let factors = &stores.factors;
    let handle = [7u8; 16];
    assert_eq!(
        factors.user_of_handle(account, &handle).await.unwrap(),
        None
    );
    factors
        .put_user_handle(account, &handle, &alice())
        .await
        .unwrap();
    // Writing it again is a no-op, not a second entry.
    factors
        .put_user_handle(account, &handle, &alice())
        .await
        .unwrap();
    assert_eq!(
        factors.user_of_handle(account, &handle).await.unwrap(),
        Some(alice())
    );
    factors.delete_user_handle(account, &handle).await.unwrap();
    assert_eq!(
        factors.user_of_handle(account, &handle).await.unwrap(),
        None
    );
}

async fn a_recovery_code_is_spent_once(backend: Backend) {
    let stores = stores(backend).await;
    let account = &stores.account;
    stores
        .factors
        .replace_recovery(UserRef::new(account, &alice()), &[[1; 32], [2; 32]])
        .await
        .unwrap();
    let spend = |digest: [u8; 32]| {
        let stores = &stores;
        async move {
            stores
                .factors
                .use_recovery(RecoveryTry {
                    owner: UserRef::new(account, &alice()),
                    digest: &digest,
                    now_ms: stores.clock.now_ms(),
                    limits: LIMITS,
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(spend([1; 32]).await, RecoveryOutcome::Used { remaining: 1 });
    assert_eq!(
        spend([1; 32]).await,
        RecoveryOutcome::Wrong {
            attempts_left: 1,
            wait_ms: 0
        }
    );
    assert_eq!(
        spend([9; 32]).await,
        RecoveryOutcome::Wrong {
            attempts_left: 2,
            wait_ms: 1_000
        }
    );
    assert_eq!(
        spend([2; 32]).await,
        RecoveryOutcome::Locked {
            retry_after_ms: 1_000
        }
    );
    stores.clock.advance(Duration::from_millis(1_000));
    assert_eq!(spend([2; 32]).await, RecoveryOutcome::Used { remaining: 0 });
    assert_eq!(
        stores
            .factors
            .recovery_left(UserRef::new(account, &alice()))
            .await
            .unwrap(),
        0
    );
}

async fn pending_ceremonies_are_bounded_and_taken_once(backend: Backend) {
    let stores = stores_with(backend, bounded(|limits| limits.pending_ceremonies = 1)).await;
    let account = &stores.account;
    // JSON with spaces: the state comes back whole.
    let state = r#"{"challenge": "abc", "user": "alice"}"#;
    stores
        .factors
        .put_ceremony(NewCeremony {
            owner: UserRef::new(account, &alice()),
            challenge: b"one",
            state,
            ttl_ms: 60_000,
        })
        .await
        .unwrap();
    match stores
        .factors
        .put_ceremony(NewCeremony {
            owner: UserRef::new(account, &alice()),
            challenge: b"two",
            state,
            ttl_ms: 60_000,
        })
        .await
    {
        Err(StoreError::AccountLimit(reached)) => assert_eq!(reached.max, 1),
        other => panic!("expected the account's bound, got {other:?}"),
    }
    let taken = stores
        .factors
        .take_ceremony(UserRef::new(account, &alice()), b"one")
        .await
        .unwrap();
    assert_eq!(taken.as_deref(), Some(state));
    let again = stores
        .factors
        .take_ceremony(UserRef::new(account, &alice()), b"one")
        .await
        .unwrap();
    assert_eq!(again, None);
    stores
        .factors
        .put_ceremony(NewCeremony {
            owner: UserRef::new(account, &alice()),
            challenge: b"two",
            state,
            ttl_ms: 60_000,
        })
        .await
        .unwrap();
}

async fn passkey_user_handles_are_bounded_by_the_accounts_users(backend: Backend) {
    let stores = stores_with(backend, bounded(|limits| limits.users = 2)).await;
    let account = &stores.account;
    let factors = &stores.factors;
    let user = |name: &str| UserId::parse(name).unwrap();
    factors
        .put_user_handle(account, &[1; 16], &user("ada"))
        .await
        .unwrap();
    factors
        .put_user_handle(account, &[2; 16], &user("bob"))
        .await
        .unwrap();
    match factors
        .put_user_handle(account, &[3; 16], &user("cy"))
        .await
    {
        Err(StoreError::AccountLimit(reached)) => assert_eq!(reached.max, 2),
        other => panic!("expected the account's bound, got {other:?}"),
    }
    assert_eq!(
        factors.user_of_handle(account, &[3; 16]).await.unwrap(),
        None
    );
    // A known handle is still written at the bound (an idempotent re-registration).
    factors
        .put_user_handle(account, &[1; 16], &user("ada"))
        .await
        .unwrap();
    factors.delete_user_handle(account, &[2; 16]).await.unwrap();
    factors
        .put_user_handle(account, &[3; 16], &user("cy"))
        .await
        .unwrap();
}

on_every_store!(
    each_round_of_wrong_codes_doubles_the_wait_up_to_its_cap,
    a_used_step_is_replayed_and_a_pending_factor_waits_for_activation,
    a_security_keys_counter_only_moves_forward,
    a_recovery_code_is_spent_once,
    pending_ceremonies_are_bounded_and_taken_once,
    a_passkey_user_handle_names_its_user_until_deleted,
    passkey_user_handles_are_bounded_by_the_accounts_users,
);
