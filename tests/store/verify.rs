//! Verify's `Store`: one atomic step per send, check and cancel.

use otpgate::clock::Clock;
use otpgate::dispatch::receipts::{DeliveryStatus, Receipt};
use otpgate::phone::PhoneNumber;
use otpgate::verify::code::{Tag, TAG_LENGTH};
use otpgate::verify::model::{
    CancelOutcome, Channel, CheckOutcome, CheckTarget, CodeCheck, NewVerification, SendAttempt,
    SendQuota, StartOutcome, Status, Verification, VerificationId,
};

use crate::on_every_store;
use crate::stores::{stores, Backend, Stores};

const RIGHT: Tag = [7; TAG_LENGTH];
const WRONG: Tag = [9; TAG_LENGTH];
const TTL_MS: u64 = 600_000;

/// A send to `to` at the clock's time: three attempts, three sends, ten sends an hour.
pub(crate) fn send(stores: &Stores, to: &str) -> NewVerification {
    let to = PhoneNumber::parse(to).expect("a valid number");
    NewVerification {
        id: VerificationId::random(&stores.rng, to.shard()).expect("random id"),
        account: stores.account.clone(),
        to,
        channel: Channel::Sms,
        code_tag: RIGHT,
        code_length: 6,
        now_ms: stores.clock.now_ms(),
        ttl_ms: TTL_MS,
        retention_ms: 3_600_000,
        max_attempts: 3,
        max_sends: 3,
        send_quota: SendQuota {
            limit: 10,
            window_ms: 3_600_000,
        },
        idempotency_key: None,
        outbox: None,
        workflow: None,
    }
}

async fn created(stores: &Stores, new: &NewVerification) -> Verification {
    match stores.verify.start_verification(new).await.unwrap() {
        StartOutcome::Created(verification) => verification,
        other => panic!("expected a new verification, got {other:?}"),
    }
}

async fn check(stores: &Stores, id: &VerificationId, tag: &Tag, key: Option<&str>) -> CheckOutcome {
    stores
        .verify
        .check_verification(&CodeCheck {
            account: &stores.account,
            target: &CheckTarget::Id(id.clone()),
            tag,
            now_ms: stores.clock.now_ms(),
            idempotency_key: key,
        })
        .await
        .unwrap()
}

fn checked(outcome: CheckOutcome) -> (Verification, bool) {
    match outcome {
        CheckOutcome::Checked {
            verification,
            valid,
        } => (verification, valid),
        other => panic!("expected a counted check, got {other:?}"),
    }
}

async fn wrong_codes_count_until_the_last_attempt_and_then_nothing_counts(backend: Backend) {
    let stores = stores(backend).await;
    let new = send(&stores, "+14155552671");
    let verification = created(&stores, &new).await;
    assert_eq!(
        (verification.status, verification.attempts),
        (Status::Pending, 0)
    );
    for attempt in 1..=2 {
        let (after, valid) = checked(check(&stores, &new.id, &WRONG, None).await);
        assert!(!valid);
        assert_eq!((after.status, after.attempts), (Status::Pending, attempt));
    }
    let (after, valid) = checked(check(&stores, &new.id, &WRONG, None).await);
    assert!(!valid);
    assert_eq!(
        (after.status, after.attempts),
        (Status::MaxAttemptsReached, 3)
    );
    // Final: even the right code counts nothing now.
    match check(&stores, &new.id, &RIGHT, None).await {
        CheckOutcome::Final(verification) => assert_eq!(verification.attempts, 3),
        other => panic!("expected final, got {other:?}"),
    }
}

async fn the_right_code_approves_once_and_frees_the_number(backend: Backend) {
    let stores = stores(backend).await;
    let new = send(&stores, "+14155552671");
    created(&stores, &new).await;
    let (approved, valid) = checked(check(&stores, &new.id, &RIGHT, None).await);
    assert!(valid);
    assert_eq!((approved.status, approved.attempts), (Status::Approved, 1));
    assert!(matches!(
        check(&stores, &new.id, &RIGHT, None).await,
        CheckOutcome::Final(_)
    ));
    // The number has no pending verification any more: a check by number finds none, and the
    // next send creates a new verification instead of resending.
    let by_number = stores
        .verify
        .check_verification(&CodeCheck {
            account: &stores.account,
            target: &CheckTarget::To(new.to.clone()),
            tag: &RIGHT,
            now_ms: stores.clock.now_ms(),
            idempotency_key: None,
        })
        .await
        .unwrap();
    assert_eq!(by_number, CheckOutcome::NotFound);
    let again = created(&stores, &send(&stores, "+14155552671")).await;
    assert_ne!(again.id, new.id);
}

async fn a_send_with_a_seen_idempotency_key_answers_the_first_verification(backend: Backend) {
    let stores = stores(backend).await;
    let mut first = send(&stores, "+14155552671");
    first.idempotency_key = Some("order-1".into());
    let verification = created(&stores, &first).await;
    let mut retry = send(&stores, "+14155552671");
    retry.idempotency_key = Some("order-1".into());
    match stores.verify.start_verification(&retry).await.unwrap() {
        StartOutcome::Replayed(replayed) => {
            assert_eq!(replayed.id, verification.id);
            assert_eq!(replayed.sends, 1, "a replay sends nothing");
        }
        other => panic!("expected a replay, got {other:?}"),
    }
}

async fn a_check_with_a_seen_idempotency_key_answers_its_first_outcome(backend: Backend) {
    let stores = stores(backend).await;
    let new = send(&stores, "+14155552671");
    created(&stores, &new).await;
    let (_, valid) = checked(check(&stores, &new.id, &WRONG, Some("try-1")).await);
    assert!(!valid);
    // The same key with the right code: the first answer again, and nothing counted.
    match check(&stores, &new.id, &RIGHT, Some("try-1")).await {
        CheckOutcome::Replayed {
            verification,
            valid,
        } => {
            assert!(!valid);
            assert_eq!(
                (verification.status, verification.attempts),
                (Status::Pending, 1)
            );
        }
        other => panic!("expected a replay, got {other:?}"),
    }
    let (approved, valid) = checked(check(&stores, &new.id, &RIGHT, Some("try-2")).await);
    assert!(valid);
    assert_eq!(approved.attempts, 2);
}

async fn a_code_expires_at_the_callers_clock(backend: Backend) {
    let stores = stores(backend).await;
    let new = send(&stores, "+14155552671");
    created(&stores, &new).await;
    stores
        .clock
        .advance(std::time::Duration::from_millis(TTL_MS - 1));
    let (still, _) = checked(check(&stores, &new.id, &WRONG, None).await);
    assert_eq!(still.status, Status::Pending);
    stores.clock.advance(std::time::Duration::from_millis(1));
    let (expired, valid) = checked(check(&stores, &new.id, &RIGHT, None).await);
    assert!(!valid, "the right code after expiry is refused");
    assert_eq!(expired.status, Status::Expired);
}

async fn resends_stop_at_max_sends_and_sends_at_the_quota(backend: Backend) {
    let stores = stores(backend).await;
    let first = created(&stores, &send(&stores, "+14155552671")).await;
    for sends in 2..=3 {
        match stores
            .verify
            .start_verification(&send(&stores, "+14155552671"))
            .await
            .unwrap()
        {
            StartOutcome::Resent(resent) => {
                assert_eq!((resent.id.clone(), resent.sends), (first.id.clone(), sends))
            }
            other => panic!("expected a resend, got {other:?}"),
        }
    }
    assert!(matches!(
        stores
            .verify
            .start_verification(&send(&stores, "+14155552671"))
            .await
            .unwrap(),
        StartOutcome::MaxSendsReached(_)
    ));

    // Another number, a quota of two sends a minute: canceled verifications still count.
    let quota = SendQuota {
        limit: 2,
        window_ms: 60_000,
    };
    for _ in 0..2 {
        let mut new = send(&stores, "+447911123456");
        new.send_quota = quota;
        let verification = created(&stores, &new).await;
        let now = stores.clock.now_ms();
        let canceled = stores
            .verify
            .cancel_verification(&stores.account, &verification.id, now)
            .await
            .unwrap();
        assert!(matches!(canceled, CancelOutcome::Canceled(_)));
    }
    stores
        .clock
        .advance(std::time::Duration::from_millis(10_000));
    let mut refused = send(&stores, "+447911123456");
    refused.send_quota = quota;
    assert_eq!(
        stores.verify.start_verification(&refused).await.unwrap(),
        StartOutcome::SendQuotaExceeded {
            retry_after_ms: 50_000
        }
    );
    stores
        .clock
        .advance(std::time::Duration::from_millis(50_000));
    let mut later = send(&stores, "+447911123456");
    later.send_quota = quota;
    created(&stores, &later).await;
}

async fn a_canceled_verification_is_no_longer_pending(backend: Backend) {
    let stores = stores(backend).await;
    let new = send(&stores, "+14155552671");
    created(&stores, &new).await;
    let now = stores.clock.now_ms();
    match stores
        .verify
        .cancel_verification(&stores.account, &new.id, now)
        .await
        .unwrap()
    {
        CancelOutcome::Canceled(verification) => assert_eq!(verification.status, Status::Canceled),
        other => panic!("expected a cancel, got {other:?}"),
    }
    assert!(matches!(
        stores
            .verify
            .cancel_verification(&stores.account, &new.id, now)
            .await
            .unwrap(),
        CancelOutcome::NotPending(_)
    ));
    // Another account sees nothing.
    let stranger = otpgate::account::AccountId::random(&stores.rng).unwrap();
    let read = stores
        .verify
        .get_verification(&stranger, &new.id, now)
        .await
        .unwrap();
    assert_eq!(read, None);
}

async fn a_receipt_updates_the_message_it_names(backend: Backend) {
    let stores = stores(backend).await;
    let new = send(&stores, "+14155552671");
    created(&stores, &new).await;
    let now = stores.clock.now_ms();
    let attempt = SendAttempt {
        message_id: "MS0123456789abcdef0123456789abcdef".into(),
        provider: "twilio-main".into(),
        status: "accepted".into(),
        provider_message_id: Some("SMvendor1".into()),
        error: None,
        created_ms: now,
        updated_ms: now,
    };
    stores
        .verify
        .record_send_attempt(&new.id, &attempt)
        .await
        .unwrap();
    let applied = stores
        .verify
        .apply_receipt("twilio-main", &delivered("SMvendor1"), now + 5)
        .await
        .unwrap()
        .expect("the message is known");
    assert_eq!(
        (
            applied.account.as_str(),
            applied.verification.as_str(),
            applied.to.as_str(),
            applied.channel.as_str(),
            applied.previous.as_str()
        ),
        (
            new.account.as_str(),
            new.id.as_str(),
            "+14155552671",
            "sms",
            "accepted"
        )
    );
    let unknown = stores
        .verify
        .apply_receipt("twilio-main", &delivered("SMnobody"), now + 5)
        .await
        .unwrap();
    assert_eq!(unknown, None);
    let attempts = stores.verify.send_attempts(&new.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].status.as_str(), attempts[0].updated_ms),
        ("delivered", now + 5)
    );
}

on_every_store!(
    wrong_codes_count_until_the_last_attempt_and_then_nothing_counts,
    the_right_code_approves_once_and_frees_the_number,
    a_send_with_a_seen_idempotency_key_answers_the_first_verification,
    a_check_with_a_seen_idempotency_key_answers_its_first_outcome,
    a_code_expires_at_the_callers_clock,
    resends_stop_at_max_sends_and_sends_at_the_quota,
    a_canceled_verification_is_no_longer_pending,
    a_receipt_updates_the_message_it_names,
);

fn delivered(provider_message_id: &str) -> Receipt {
    Receipt {
        provider_message_id: provider_message_id.into(),
        status: DeliveryStatus::Delivered,
        error: None,
        reference: None,
    }
}
