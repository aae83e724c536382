//! Verify's `Store` and workflows (`verify::workflow`): the steps stored with the send, a due
//! step fired once, a delivered or final verification never.

use otpgate::clock::Clock;
use otpgate::dispatch::model::SendAttempt;
use otpgate::verify::model::{Channel, StartOutcome};
use otpgate::verify::workflow::{NewStep, NewWorkflow, Reason};

use crate::on_every_store;
use crate::stores::{stores, Backend, Stores};
use crate::verify::send;

const FALLBACK_MS: u64 = 30_000;

fn workflow(first_message: &str) -> NewWorkflow {
    let step = |channel, id: &str, sealed: &[u8]| NewStep {
        channel,
        message_id: id.to_owned(),
        sealed: sealed.to_vec(),
    };
    NewWorkflow {
        fallback_after_ms: FALLBACK_MS,
        steps: vec![
            step(Channel::Whatsapp, first_message, b""),
            step(Channel::Sms, "MS-second", b"sealed second"),
        ],
        email: None,
    }
}

async fn start(stores: &Stores, to: &str) -> otpgate::verify::model::VerificationId {
    let mut new = send(stores, to);
    new.channel = Channel::Whatsapp;
    new.workflow = Some(workflow("MS-first"));
    match stores.verify.start_verification(&new).await.unwrap() {
        StartOutcome::Created(verification) => verification.id,
        other => panic!("expected a new verification, got {other:?}"),
    }
}

async fn fire(stores: &Stores, shard: u8) -> Vec<otpgate::verify::workflow::Fired> {
    let now = stores.clock.now_ms();
    stores
        .verify
        .fire_due_fallbacks(shard, now, 10)
        .await
        .unwrap()
}

async fn a_due_step_fires_once_with_its_stored_message(backend: Backend) {
    let stores = stores(backend).await;
    let id = start(&stores, "+4915112349901").await;
    let stored = stores
        .verify
        .workflow(&id)
        .await
        .unwrap()
        .expect("a workflow");
    assert_eq!((stored.current, stored.steps.len()), (0, 2));
    assert_eq!(stored.steps[0].queued_ms, Some(stores.clock.now_ms()));
    assert_eq!(stored.steps[1].queued_ms, None);

    stores
        .clock
        .advance(std::time::Duration::from_millis(FALLBACK_MS - 1));
    assert!(fire(&stores, id.shard()).await.is_empty(), "not due yet");
    stores.clock.advance(std::time::Duration::from_millis(1));
    let fired = fire(&stores, id.shard()).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].verification, id);
    assert_eq!(
        (fired[0].from, fired[0].to),
        (Channel::Whatsapp, Channel::Sms)
    );
    assert_eq!(fired[0].reason, Reason::Timeout);
    // Redis queued the message itself; memory hands it back.
    if let Some(message) = &fired[0].message {
        assert_eq!(message, b"sealed second");
    }
    assert!(fire(&stores, id.shard()).await.is_empty(), "fired once");
    let stored = stores.verify.workflow(&id).await.unwrap().unwrap();
    assert_eq!(stored.current, 1);
    assert_eq!(stored.steps[0].left, Some(Reason::Timeout));
    assert_eq!(stored.steps[1].queued_ms, Some(stores.clock.now_ms()));
    let now = stores.clock.now_ms();
    let verification = stores
        .verify
        .get_verification(&stores.account, &id, now)
        .await;
    assert_eq!(verification.unwrap().unwrap().channel, Channel::Sms);
}

async fn a_delivered_or_failed_step_is_decided_by_its_message(backend: Backend) {
    let stores = stores(backend).await;
    let delivered = start(&stores, "+4915112349902").await;
    let failed = start(&stores, "+4915112349903").await;
    let now = stores.clock.now_ms();
    let attempt = |status: &str| SendAttempt {
        message_id: "MS-first".into(),
        provider: "http".into(),
        status: status.into(),
        provider_message_id: None,
        error: None,
        created_ms: now,
        updated_ms: now,
    };
    let verify = &stores.verify;
    verify
        .record_send_attempt(&delivered, &attempt("delivered"))
        .await
        .unwrap();
    verify
        .record_send_attempt(&failed, &attempt("failed"))
        .await
        .unwrap();
    // A failure brings its step forward: due now, not in 30 s.
    verify
        .fall_back_now(&failed, "MS-first", now)
        .await
        .unwrap();
    verify
        .fall_back_now(&delivered, "MS-other", now)
        .await
        .unwrap();
    let fired = fire(&stores, failed.shard()).await;
    let fired_delivered = fire(&stores, delivered.shard()).await;
    let all: Vec<_> = fired.iter().chain(&fired_delivered).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (&all[0].verification, all[0].reason),
        (&failed, Reason::Failed)
    );

    stores
        .clock
        .advance(std::time::Duration::from_millis(FALLBACK_MS));
    assert!(
        fire(&stores, delivered.shard()).await.is_empty(),
        "delivered: no fallback"
    );
    let stored = verify.workflow(&delivered).await.unwrap().unwrap();
    assert_eq!((stored.current, stored.steps[1].queued_ms), (0, None));
}

async fn a_final_verification_does_not_fall_back(backend: Backend) {
    let stores = stores(backend).await;
    let id = start(&stores, "+4915112349904").await;
    let now = stores.clock.now_ms();
    stores
        .verify
        .cancel_verification(&stores.account, &id, now)
        .await
        .unwrap();
    stores
        .clock
        .advance(std::time::Duration::from_millis(FALLBACK_MS));
    assert!(fire(&stores, id.shard()).await.is_empty());
    let stored = stores.verify.workflow(&id).await.unwrap().unwrap();
    assert_eq!(stored.current, 0);
}

async fn a_resend_without_a_workflow_drops_it(backend: Backend) {
    let stores = stores(backend).await;
    let id = start(&stores, "+4915112349905").await;
    let resend = send(&stores, "+4915112349905");
    match stores.verify.start_verification(&resend).await.unwrap() {
        StartOutcome::Resent(verification) => assert_eq!(verification.id, id),
        other => panic!("expected a resend, got {other:?}"),
    }
    assert_eq!(stores.verify.workflow(&id).await.unwrap(), None);
    stores
        .clock
        .advance(std::time::Duration::from_millis(FALLBACK_MS));
    assert!(fire(&stores, id.shard()).await.is_empty());
}

async fn the_email_steps_masked_address_is_kept_until_a_resend_without_one(backend: Backend) {
    let stores = stores(backend).await;
    let to = "+4915112349906";
    let mut new = send(&stores, to);
    new.channel = Channel::Whatsapp;
    let mut mixed = workflow("MS-first");
    mixed.steps[1].channel = Channel::Email;
    mixed.email = Some("a***@example.com".to_owned());
    new.workflow = Some(mixed);
    let StartOutcome::Created(verification) = stores.verify.start_verification(&new).await.unwrap()
    else {
        panic!("expected a new verification");
    };
    let stored = stores.verify.workflow(&verification.id).await.unwrap();
    let stored = stored.expect("a workflow");
    assert_eq!(stored.email.as_deref(), Some("a***@example.com"));
    assert_eq!(stored.steps[1].channel, Channel::Email);

    let mut resend = send(&stores, to);
    resend.workflow = Some(workflow("MS-third"));
    stores.verify.start_verification(&resend).await.unwrap();
    let stored = stores.verify.workflow(&verification.id).await.unwrap();
    assert_eq!(stored.expect("the resend's workflow").email, None);
}

on_every_store!(
    the_email_steps_masked_address_is_kept_until_a_resend_without_one,
    a_due_step_fires_once_with_its_stored_message,
    a_delivered_or_failed_step_is_decided_by_its_message,
    a_final_verification_does_not_fall_back,
    a_resend_without_a_workflow_drops_it,
);
