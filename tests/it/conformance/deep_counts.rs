//! The counts of a queue deeper than a `/metrics` read counts, on every backend
//! (`src/store/hidden.rs`): a full count, shown as of one moment until it is old, then taken
//! again in the background while the scrape answers at once.

use std::time::Duration;

use esmd::domain::message::NewMessage;
use esmd::domain::queue::{QueueName, QueueSettings};
use esmd::store::QueueCounts;

use super::control::Control;
use super::harness::Fixture;
use crate::common::{eventually, secs};

fn delayed(n: usize) -> Vec<NewMessage> {
    (0..n)
        .map(|i| NewMessage {
            delay: Some(secs(600)),
            ..NewMessage::body(format!("d{i}"))
        })
        .collect()
}

fn shown(all: &[(QueueName, QueueCounts)], q: &QueueName) -> QueueCounts {
    all.iter()
        .find(|(n, _)| n == q)
        .map(|(_, c)| *c)
        .expect("the queue is listed")
}

/// With the cap made small: the first scrape that finds a queue over it counts it in full;
/// later ones show that count (all three figures of one moment) until it is old, then start a
/// recount in the background; a queue under the cap is exact at every scrape, and one that
/// falls back under it is exact again at once.
pub async fn a_deep_queue_shows_a_full_count_renewed_in_the_background<S: Control>(t: &Fixture<S>) {
    t.store.set_scrape_cap(5);
    let deep = t.queue("deep", QueueSettings::default()).await;
    let small = t.queue("small", QueueSettings::default()).await;
    for _ in 0..3 {
        t.store.send(&deep, delayed(10)).await.unwrap();
    }
    let plain: Vec<NewMessage> = (0..10).map(|i| NewMessage::body(format!("p{i}"))).collect();
    t.store.send(&deep, plain).await.unwrap();
    let got = t.store.receive(&deep, 8, Some(secs(600))).await.unwrap();
    assert_eq!(got.len(), 8);
    t.store.send(&small, delayed(3)).await.unwrap();

    let all = t.store.all_counts().await.unwrap();
    let first = t.store.counts_scanned(&deep).await.unwrap();
    assert_eq!((first.visible, first.in_flight, first.delayed), (2, 8, 30));
    assert_eq!(shown(&all, &deep), first, "the first scrape counts in full");
    assert_eq!(
        shown(&all, &small),
        t.store.counts_scanned(&small).await.unwrap()
    );

    // More arrive: the deep queue shows its count until it is old; the small one moves.
    t.store.send(&deep, delayed(10)).await.unwrap();
    t.store.send(&small, delayed(1)).await.unwrap();
    t.advance(Duration::from_millis(4_000));
    let all = t.store.all_counts().await.unwrap();
    assert_eq!(shown(&all, &deep), first, "kept, all three of one moment");
    assert_eq!(shown(&all, &small).delayed, 4, "under the cap: exact");

    // Old: this scrape still answers with the kept count and starts a recount.
    t.advance(Duration::from_millis(1_000));
    let all = t.store.all_counts().await.unwrap();
    assert_eq!(shown(&all, &deep), first);
    let now = t.store.counts_scanned(&deep).await.unwrap();
    assert_eq!(now.delayed, 40);
    eventually(secs(10), "the background recount", || async {
        let all = t.store.all_counts().await.unwrap();
        (shown(&all, &deep) == now).then_some(())
    })
    .await;

    // Back under the cap: exact at once.
    t.store.purge(&deep).await.unwrap();
    let all = t.store.all_counts().await.unwrap();
    assert_eq!(
        shown(&all, &deep),
        t.store.counts_scanned(&deep).await.unwrap()
    );
    assert_eq!(shown(&all, &deep).delayed, 0);
}
