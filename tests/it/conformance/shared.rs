//! Several esmd instances on one PostgreSQL database behave as one SQS: two `PgStore`s on the
//! same database never claim one message, a FIFO group in flight through one is blocked for the
//! other, a queue created through one exists for the other, and a long poll on one is woken
//! by a send on the other (LISTEN/NOTIFY; the manual clock never moves, so nothing else can end
//! the wait).

use std::collections::HashSet;
use std::time::Duration;

use esmd::domain::message::NewMessage;
use esmd::domain::queue::QueueSettings;
use esmd::store::{PgStore, QueueStore};

use super::harness::{self, Fixture, Keep};
use super::{bodies, fifo_msg};
use crate::common::{q, secs, within};

/// A fixture and a second store on its database (another instance), on the same clock.
async fn two() -> Option<(Fixture<PgStore>, PgStore)> {
    let f = harness::postgres().await?;
    let Keep::Database(options) = &f.keep else {
        unreachable!("a PostgreSQL fixture keeps its database's options")
    };
    let other = harness::open(options, &f.clock).await;
    Some((f, other))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_claim_the_same_message() {
    let Some((a, b)) = two().await else { return };
    let name = a.queue("shared", QueueSettings::default()).await;
    const N: usize = 300;
    for chunk in (0..N).collect::<Vec<_>>().chunks(10) {
        let batch = chunk
            .iter()
            .map(|i| NewMessage::body(format!("m{i}")))
            .collect();
        a.store.send(&name, batch).await.unwrap();
    }
    // Four receivers on each instance, all at once, until the queue is empty.
    let mut tasks = Vec::new();
    for store in [a.store.clone(), b.clone()] {
        for _ in 0..4 {
            let (store, name) = (store.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let got = store.receive(&name, 10, None).await.unwrap();
                    if got.is_empty() {
                        return ids;
                    }
                    ids.extend(got.into_iter().map(|m| m.message_id));
                }
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(within(secs(60), "the receivers", t).await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a message was claimed twice");
    assert_eq!(all.len(), N, "every message was claimed once");
    let c = b.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight), (0, N as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_fifo_groups_are_shared() {
    let Some((a, b)) = two().await else { return };
    let name = a.queue("shared.fifo", QueueSettings::default()).await;
    assert_eq!(
        b.queue(&name).await.unwrap().name,
        name,
        "created through a, seen by b"
    );
    let batch = vec![fifo_msg("g", "1"), fifo_msg("g", "2"), fifo_msg("h", "x")];
    let sent = b.send(&name, batch).await.unwrap();
    // The same deduplication id through the other instance is a duplicate.
    let dup = a.store.send(&name, vec![fifo_msg("g", "1")]).await.unwrap();
    assert_eq!(dup[0].as_ref().unwrap(), sent[0].as_ref().unwrap());
    let first = a.store.receive(&name, 1, None).await.unwrap();
    assert_eq!(bodies(&first), ["1"]);
    // g is in flight through a: b gets only h, and nothing of g.
    assert_eq!(bodies(&b.receive(&name, 10, None).await.unwrap()), ["x"]);
    assert!(b.receive(&name, 10, None).await.unwrap().is_empty());
    b.delete(&name, std::slice::from_ref(&first[0].receipt_handle))
        .await
        .unwrap();
    assert_eq!(bodies(&b.receive(&name, 10, None).await.unwrap()), ["2"]);
    a.store.delete_queue(&name).await.unwrap();
    assert!(
        b.queue(&q("shared.fifo")).await.is_err(),
        "deleted through a, gone for b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_one_instance_is_woken_by_a_send_on_the_other() {
    let Some((a, b)) = two().await else { return };
    let name = a.queue("lp-shared", QueueSettings::default()).await;
    let store = a.store.clone();
    let n = name.clone();
    let waiter = tokio::spawn(async move { store.receive_wait(&n, 10, None, secs(20)).await });
    tokio::time::sleep(Duration::from_millis(200)).await; // sleep-ok: lets the poll reach its wait; it holds either way, and a missed wake-up fails by the bound
    b.send(&name, vec![NewMessage::body("across")])
        .await
        .unwrap();
    let got = within(
        secs(10),
        "the long poll on a to be woken by b's send",
        waiter,
    )
    .await;
    assert_eq!(bodies(&got.unwrap().unwrap()), ["across"]);
}
