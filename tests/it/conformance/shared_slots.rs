//! A mapping's `max_concurrency` across instances: its invocation slots live in PostgreSQL, so
//! two `PgStore`s on one database together hold at most `max` of them. A slot given back on one
//! instance goes to a collector waiting on the other, a killed holder's slot comes free when its
//! lease runs out, and a waiter gives up when its cancellation fires.

use std::time::Duration;

use esmd::store::PgStore;
use tokio_util::sync::CancellationToken;

use super::harness::{self, Fixture, Keep};
use crate::common::{secs, within};

async fn two() -> Option<(Fixture<PgStore>, PgStore)> {
    let f = harness::postgres().await?;
    let Keep::Database(options) = &f.keep else {
        unreachable!("a PostgreSQL fixture keeps its database's options")
    };
    let other = harness::open(options, &f.clock).await;
    Some((f, other))
}

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_holds_across_instances_and_a_release_wakes_the_other() {
    let Some((a, b)) = two().await else { return };
    let never = CancellationToken::new();
    let first = a.store.mapping_slot("m", 2, TTL, &never).await.unwrap();
    let second = b.mapping_slot("m", 2, TTL, &never).await.unwrap();
    assert!(first.is_some() && second.is_some());
    // Both slots are held: a third, on either instance, waits.
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        let never = CancellationToken::new();
        b2.mapping_slot("m", 2, TTL, &never).await.unwrap()
    });
    let other_mapping = a.store.mapping_slot("n", 1, TTL, &never).await.unwrap();
    assert!(other_mapping.is_some(), "each mapping has slots of its own");
    assert!(!waiter.is_finished(), "no third slot while two are held");
    drop(first);
    let slot = within(secs(10), "the waiter gets the released slot", waiter)
        .await
        .unwrap();
    assert!(slot.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_slot_comes_free_when_its_lease_runs_out_and_waiters_can_be_cancelled() {
    let Some((a, b)) = two().await else { return };
    let never = CancellationToken::new();
    let held = a.store.mapping_slot("m", 1, TTL, &never).await.unwrap();
    // The holder "dies": its slot is never given back.
    std::mem::forget(held);
    let cancel = CancellationToken::new();
    let b2 = b.clone();
    let gives_up = cancel.clone();
    let waiter = tokio::spawn(async move { b2.mapping_slot("m", 1, TTL, &gives_up).await });
    cancel.cancel();
    let cancelled = within(secs(10), "a cancelled waiter returns", waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(cancelled.is_none());
    // Past the lease, the slot is free for the other instance.
    a.advance(TTL + Duration::from_secs(1));
    let taken = within(
        secs(10),
        "the expired slot is taken",
        b.mapping_slot("m", 1, TTL, &never),
    )
    .await
    .unwrap();
    assert!(taken.is_some());
}
