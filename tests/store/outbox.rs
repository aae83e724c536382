//! Dispatch's `Outbox`: what the verify store queued is read once as new, stays pending on its
//! reader until settled (acknowledged, deferred, dead-lettered), is taken over by another reader
//! once idle, and comes back as new when a deferral falls due.

use std::sync::Arc;
use std::time::Duration;

use otpgate::clock::Clock;
use otpgate::dispatch::outbox::{Deferral, Outbox, OutboxEntry, ReadFrom, ShardReadError};
use otpgate::verify::model::{NewVerification, SendAttempt, StartOutcome, VerificationId};

use crate::on_every_outbox;
use crate::stores::{stores, Backend, Stores};
use crate::verify::send;

const SEALED: &[u8] = b"sealed message bytes";
const A: &str = "worker-a";
const B: &str = "worker-b";

fn outbox(stores: &Stores) -> Arc<dyn Outbox> {
    stores.outbox.clone().expect("a store with an outbox")
}

/// Starts a verification whose message the store queues; its id.
async fn queued(stores: &Stores) -> VerificationId {
    queued_to(stores, "+14155552671").await
}

async fn queued_to(stores: &Stores, to: &str) -> VerificationId {
    let new = NewVerification {
        outbox: Some(SEALED.to_vec()),
        workflow: None,
        ..send(stores, to)
    };
    match stores.verify.start_verification(&new).await.unwrap() {
        StartOutcome::Created(verification) => verification.id,
        other => panic!("expected a new verification, got {other:?}"),
    }
}

/// What `reader` reads on `shard` from `from`.
async fn read(outbox: &dyn Outbox, reader: &str, shard: u8, from: ReadFrom) -> Vec<OutboxEntry> {
    let mut results = outbox.read(reader, &[(shard, from)], 16).await;
    assert_eq!(results.len(), 1);
    let (read_shard, result) = results.remove(0);
    assert_eq!(read_shard, shard);
    result.expect("the shard reads")
}

/// A queued message, prepared and read once as new by reader A.
async fn read_once(stores: &Stores) -> OutboxEntry {
    let id = queued(stores).await;
    let outbox = outbox(stores);
    outbox.prepare_shard(id.shard()).await.unwrap();
    let mut entries = read(&*outbox, A, id.shard(), ReadFrom::New).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.remove(0)
}

/// Acknowledges the batches; every shard's result is fine.
async fn ack(outbox: &dyn Outbox, batches: &[(u8, Vec<String>)]) {
    let results = outbox.ack(batches).await;
    let shards: Vec<u8> = results.iter().map(|(shard, _)| *shard).collect();
    let asked: Vec<u8> = batches.iter().map(|(shard, _)| *shard).collect();
    assert_eq!(shards, asked, "one result per shard, in order");
    for (shard, result) in results {
        result.unwrap_or_else(|error| panic!("shard {shard} acknowledges: {error}"));
    }
}

async fn one_acknowledgement_settles_many_messages_on_several_shards(backend: Backend) {
    let stores = stores(backend).await;
    let outbox = outbox(&stores);
    let numbers = ["+14155552671", "+4915112345678", "+447911123456"];
    let mut shards: Vec<u8> = Vec::new();
    for number in numbers {
        let shard = queued_to(&stores, number).await.shard();
        outbox.prepare_shard(shard).await.unwrap();
        if !shards.contains(&shard) {
            shards.push(shard);
        }
    }
    let mut batches: Vec<(u8, Vec<String>)> = Vec::new();
    let mut read_count = 0;
    for &shard in &shards {
        let entries = read(&*outbox, A, shard, ReadFrom::New).await;
        read_count += entries.len();
        batches.push((shard, entries.into_iter().map(|e| e.entry_id).collect()));
    }
    assert_eq!(read_count, numbers.len());
    assert_eq!(
        outbox.stats(stores.clock.now_ms()).await.unwrap().depth,
        numbers.len() as u64
    );
    // An empty batch is a no-op, not an error.
    batches.push((shards[0].wrapping_add(1) % 64, Vec::new()));
    ack(&*outbox, &batches).await;
    for &shard in &shards {
        assert!(read(&*outbox, A, shard, ReadFrom::Pending(None))
            .await
            .is_empty());
    }
    assert_eq!(
        outbox.stats(stores.clock.now_ms()).await.unwrap().depth,
        0,
        "acknowledged and deleted from the streams"
    );
    // Acknowledging again (a flush retried after a lost reply) changes nothing.
    ack(&*outbox, &batches).await;
}

async fn a_shard_without_its_group_says_so_and_preparing_it_keeps_what_was_queued(
    backend: Backend,
) {
    let stores = stores(backend).await;
    let outbox = outbox(&stores);
    let id = queued(&stores).await;
    let results = outbox.read(A, &[(id.shard(), ReadFrom::New)], 16).await;
    assert!(
        matches!(results[..], [(_, Err(ShardReadError::NoGroup))]),
        "{results:?}"
    );
    outbox.prepare_shard(id.shard()).await.unwrap();
    outbox.prepare_shard(id.shard()).await.unwrap();
    let entries = read(&*outbox, A, id.shard(), ReadFrom::New).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.shard, id.shard());
    assert_eq!(entry.verification_id, id.as_str());
    assert_eq!(entry.sealed, SEALED);
    assert_eq!((entry.deliveries, entry.round), (1, 0));
    assert_eq!(entry.refused, "");
}

async fn a_message_stays_pending_on_its_reader_until_acknowledged(backend: Backend) {
    let stores = stores(backend).await;
    let outbox = outbox(&stores);
    let entry = read_once(&stores).await;
    assert!(read(&*outbox, A, entry.shard, ReadFrom::New)
        .await
        .is_empty());
    assert!(read(&*outbox, B, entry.shard, ReadFrom::Pending(None))
        .await
        .is_empty());
    let again = read(&*outbox, A, entry.shard, ReadFrom::Pending(None)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].entry_id, entry.entry_id);
    assert_eq!(
        again[0].deliveries, 2,
        "a pending read goes through the sent-mark check"
    );
    let after = ReadFrom::Pending(Some(entry.entry_id.clone()));
    assert!(read(&*outbox, A, entry.shard, after).await.is_empty());
    assert_eq!(outbox.stats(stores.clock.now_ms()).await.unwrap().depth, 1);

    ack(&*outbox, &[(entry.shard, vec![entry.entry_id.clone()])]).await;
    assert!(read(&*outbox, A, entry.shard, ReadFrom::Pending(None))
        .await
        .is_empty());
    let stats = outbox.stats(stores.clock.now_ms()).await.unwrap();
    assert_eq!((stats.depth, stats.dead_letters), (0, 0));
    assert_eq!(stats.oldest_age_ms, None);
}

async fn a_deferred_message_comes_back_as_new_when_due_with_its_round(backend: Backend) {
    let stores = stores(backend).await;
    let outbox = outbox(&stores);
    let entry = read_once(&stores).await;
    let due = stores.clock.now_ms() + 30_000;
    outbox
        .defer(
            &entry,
            &Deferral {
                message_id: "MS1",
                due_ms: due,
                round: 2,
                refused: "vonage infobip",
            },
        )
        .await
        .unwrap();
    assert!(read(&*outbox, A, entry.shard, ReadFrom::Pending(None))
        .await
        .is_empty());
    assert!(read(&*outbox, A, entry.shard, ReadFrom::New)
        .await
        .is_empty());
    assert_eq!(
        outbox.stats(due).await.unwrap().depth,
        1,
        "a parked message counts"
    );

    assert_eq!(outbox.release_due(due - 1, 16).await, 0, "not due yet");
    assert_eq!(outbox.release_due(due, 16).await, 1);
    assert_eq!(outbox.release_due(due, 16).await, 0, "released once");
    let back = read(&*outbox, B, entry.shard, ReadFrom::New).await;
    assert_eq!(back.len(), 1);
    assert_ne!(back[0].entry_id, entry.entry_id, "a new entry");
    assert_eq!(back[0].verification_id, entry.verification_id);
    assert_eq!(back[0].sealed, SEALED);
    assert_eq!((back[0].deliveries, back[0].round), (1, 2));
    assert_eq!(back[0].refused, "vonage infobip");
}

async fn an_idle_message_is_taken_over_by_another_reader_with_its_deliveries(backend: Backend) {
    let stores = stores(backend).await;
    let outbox = outbox(&stores);
    let entry = read_once(&stores).await;
    let on_shard = |results: Vec<(u8, Result<Vec<OutboxEntry>, _>)>| {
        results
            .into_iter()
            .find(|(shard, _)| *shard == entry.shard)
            .map(|(_, result)| result.expect("the shard reclaims"))
            .expect("a result for every shard")
    };
    let busy = outbox.reclaim(B, Duration::from_secs(3600), 16).await;
    assert!(on_shard(busy).is_empty(), "not idle for long enough");
    let taken = on_shard(outbox.reclaim(B, Duration::ZERO, 16).await);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].entry_id, entry.entry_id);
    assert_eq!(taken[0].deliveries, 2);
    assert!(read(&*outbox, A, entry.shard, ReadFrom::Pending(None))
        .await
        .is_empty());
    assert_eq!(
        read(&*outbox, B, entry.shard, ReadFrom::Pending(None))
            .await
            .len(),
        1,
        "pending on its new reader"
    );
}

async fn a_dead_letter_leaves_the_queue_and_is_kept(backend: Backend) {
    let stores = stores(backend).await;
    let outbox = outbox(&stores);
    let entry = read_once(&stores).await;
    outbox
        .dead_letter(&entry, "no provider took it")
        .await
        .unwrap();
    assert!(read(&*outbox, A, entry.shard, ReadFrom::Pending(None))
        .await
        .is_empty());
    let stats = outbox.stats(stores.clock.now_ms()).await.unwrap();
    assert_eq!((stats.depth, stats.dead_letters), (0, 1));
}

async fn the_accepted_attempt_is_the_sent_mark(backend: Backend) {
    let stores = stores(backend).await;
    let outbox = outbox(&stores);
    let id = queued(&stores).await;
    let now = stores.clock.now_ms();
    let attempt = |message_id: &str, status: &str| SendAttempt {
        message_id: message_id.into(),
        provider: "twilio".into(),
        status: status.into(),
        provider_message_id: None,
        error: None,
        created_ms: now,
        updated_ms: now,
    };
    let (vid, verify) = (id.as_str(), &stores.verify);
    verify
        .record_send_attempt(&id, &attempt("MS1", "provider_error"))
        .await
        .unwrap();
    assert!(!outbox.already_sent(vid, "MS1").await.unwrap());
    verify
        .record_send_attempt(&id, &attempt("MS1", "accepted"))
        .await
        .unwrap();
    assert!(outbox.already_sent(vid, "MS1").await.unwrap());
    assert!(
        !outbox.already_sent(vid, "MS2").await.unwrap(),
        "another message"
    );
    assert!(!outbox.already_sent("not an id", "MS1").await.unwrap());
}

on_every_outbox!(
    a_shard_without_its_group_says_so_and_preparing_it_keeps_what_was_queued,
    a_message_stays_pending_on_its_reader_until_acknowledged,
    one_acknowledgement_settles_many_messages_on_several_shards,
    a_deferred_message_comes_back_as_new_when_due_with_its_round,
    an_idle_message_is_taken_over_by_another_reader_with_its_deliveries,
    a_dead_letter_leaves_the_queue_and_is_kept,
    the_accepted_attempt_is_the_sent_mark,
);
