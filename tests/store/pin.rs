//! The PIN store: wrong PINs wait then lock (counted before the hash is compared), e-mailed
//! links are used once, the registry holds a number for one account, the account's bound.

use std::time::Duration;

use otpgate::account::AccountId;
use otpgate::clock::Clock;
use otpgate::pin::store::{
    CreateOutcome, LinkIssue, LinkOpening, LinkUse, Matched, NewLink, NewNumber, NumberRef,
    PinAttempt, Reservation,
};
use otpgate::pin::{AttemptLimits, LinkPurpose, PhoneNumberId};
use otpgate::store::StoreError;

use crate::on_every_store;
use crate::stores::{bounded, stores, stores_with, Backend, Stores};

const LIMITS: AttemptLimits = AttemptLimits {
    free_attempts: 2,
    attempts_per_wait: 1,
    first_wait_ms: 30_000,
    max_wait_ms: 45_000,
    lock_after: Some(4),
};

fn number(stores: &Stores, account: &AccountId, e164: &str) -> NewNumber {
    NewNumber {
        account: account.clone(),
        id: PhoneNumberId::random(&stores.rng).unwrap(),
        e164: e164.into(),
        pin_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
        now_ms: stores.clock.now_ms(),
        max_numbers: 100,
    }
}

/// The stored number `new` made.
fn at(new: &NewNumber) -> NumberRef<'_> {
    NumberRef {
        account: &new.account,
        id: &new.id,
    }
}

async fn created(stores: &Stores, new: &NewNumber) {
    match stores.pins.create(new).await.unwrap() {
        CreateOutcome::Created(record) => assert!(record.two_step),
        other => panic!("expected a new number, got {other:?}"),
    }
}

async fn reserve(stores: &Stores, new: &NewNumber) -> Reservation {
    stores
        .pins
        .reserve_attempt(PinAttempt {
            number: at(new),
            limits: LIMITS,
            now_ms: stores.clock.now_ms(),
        })
        .await
        .unwrap()
}

async fn wrong_pins_wait_longer_each_time_then_lock(backend: Backend) {
    let stores = stores(backend).await;
    let new = number(&stores, &stores.account, "+14155552671");
    created(&stores, &new).await;
    let attempt = |reservation: Reservation| match reservation {
        Reservation::Go { attempt, .. } => attempt,
        other => panic!("expected an attempt, got {other:?}"),
    };
    // The first is free; the second (the free_attempts-th) sets the first wait.
    assert_eq!(attempt(reserve(&stores, &new).await), 1);
    assert_eq!(attempt(reserve(&stores, &new).await), 2);
    assert_eq!(
        reserve(&stores, &new).await,
        Reservation::Wait {
            retry_after_ms: 30_000
        }
    );
    stores.clock.advance(Duration::from_secs(30));
    // Doubled to 60 s, capped at 45 s.
    assert_eq!(attempt(reserve(&stores, &new).await), 3);
    assert_eq!(
        reserve(&stores, &new).await,
        Reservation::Wait {
            retry_after_ms: 45_000
        }
    );
    stores.clock.advance(Duration::from_secs(45));
    assert_eq!(attempt(reserve(&stores, &new).await), 4);
    stores.clock.advance(Duration::from_secs(3600));
    assert_eq!(reserve(&stores, &new).await, Reservation::Locked);
    let record = stores
        .pins
        .get(at(&new))
        .await
        .unwrap()
        .expect("the number");
    assert!(record.locked(&LIMITS));
}

async fn a_matching_pin_clears_its_reservation_only_on_the_same_pin(backend: Backend) {
    let stores = stores(backend).await;
    let new = number(&stores, &stores.account, "+14155552671");
    created(&stores, &new).await;
    let Reservation::Go { pin_version, .. } = reserve(&stores, &new).await else {
        panic!("expected an attempt");
    };
    let now = stores.clock.now_ms();
    let stale = stores
        .pins
        .attempt_succeeded(Matched {
            number: at(&new),
            pin_version: pin_version + 1,
            now_ms: now,
        })
        .await
        .unwrap();
    assert!(!stale, "a PIN changed since the reservation clears nothing");
    let cleared = stores
        .pins
        .attempt_succeeded(Matched {
            number: at(&new),
            pin_version,
            now_ms: now,
        })
        .await
        .unwrap();
    assert!(cleared);
    let record = stores.pins.get(at(&new)).await.unwrap().unwrap();
    assert_eq!((record.failures, record.registered_ms), (0, now));
}

async fn an_emailed_link_is_used_once_and_only_while_it_is_the_newest(backend: Backend) {
    let stores = stores(backend).await;
    let new = number(&stores, &stores.account, "+14155552671");
    created(&stores, &new).await;
    let account = &new.account;
    let issue = |digest: [u8; 32]| {
        let stores = &stores;
        let new = &new;
        async move {
            stores
                .pins
                .issue_link(&NewLink {
                    number: at(new),
                    purpose: LinkPurpose::Reset,
                    digest,
                    now_ms: stores.clock.now_ms(),
                    ttl_ms: 600_000,
                })
                .await
                .unwrap()
        }
    };
    let use_link = |digest: [u8; 32]| {
        let stores = &stores;
        async move {
            stores
                .pins
                .use_link(&LinkOpening {
                    account,
                    digest: &digest,
                    purpose: LinkPurpose::Reset,
                    new_pin_hash: Some("$argon2id$new"),
                    now_ms: stores.clock.now_ms(),
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(
        issue([1; 32]).await,
        LinkIssue::Issued {
            e164: "+14155552671".into()
        }
    );
    issue([2; 32]).await;
    assert_eq!(use_link([1; 32]).await, LinkUse::Superseded);
    assert_eq!(
        use_link([2; 32]).await,
        LinkUse::Done {
            number: new.id.clone(),
            e164: "+14155552671".into(),
            was_locked: false
        }
    );
    assert_eq!(use_link([2; 32]).await, LinkUse::Used);
    assert_eq!(use_link([3; 32]).await, LinkUse::Unknown);
    issue([4; 32]).await;
    stores.clock.advance(Duration::from_millis(600_000));
    assert_eq!(use_link([4; 32]).await, LinkUse::Expired);
}

async fn a_number_is_held_by_one_account_and_bounded_per_account(backend: Backend) {
    let stores = stores_with(backend, bounded(|limits| limits.phone_numbers = 1)).await;
    let first = number(&stores, &stores.account, "+14155552671");
    created(&stores, &first).await;
    let again = number(&stores, &stores.account, "+14155552671");
    assert_eq!(
        stores.pins.create(&again).await.unwrap(),
        CreateOutcome::Exists(first.id.clone())
    );
    let other_account = AccountId::random(&stores.rng).unwrap();
    let elsewhere = number(&stores, &other_account, "+14155552671");
    assert_eq!(
        stores.pins.create(&elsewhere).await.unwrap(),
        CreateOutcome::HeldElsewhere {
            account: stores.account.clone(),
            id: first.id.clone()
        }
    );
    let second = number(&stores, &stores.account, "+447911123456");
    match stores.pins.create(&second).await {
        Err(StoreError::AccountLimit(reached)) => assert_eq!(reached.max, 1),
        other => panic!("expected the account's bound, got {other:?}"),
    }
    // Refused, the number stays free for another account.
    created(&stores, &number(&stores, &other_account, "+447911123456")).await;
}

on_every_store!(
    wrong_pins_wait_longer_each_time_then_lock,
    a_matching_pin_clears_its_reservation_only_on_the_same_pin,
    an_emailed_link_is_used_once_and_only_while_it_is_the_newest,
    a_number_is_held_by_one_account_and_bounded_per_account,
);
