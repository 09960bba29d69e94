//! The counts the store keeps as writes commit (what `/metrics` shows without reading every
//! message) agree with a full count of the rows, after mixed traffic on standard, FIFO and
//! dead-letter queues, with the manual clock moving delays and visibility timeouts past their
//! end, retention expiring messages, a purge, a queue deleted and a restart. (A queue deeper than
//! a scrape reads: `conformance::extras`, on both backends.)

use std::time::Duration;

use esmd::domain::message::NewMessage;
use esmd::domain::queue::{QueueName, QueueSettings, Redrive};

use crate::common::TestStore;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A small deterministic generator (no randomness in a test's verdict).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

async fn agree(t: &TestStore, queues: &[QueueName], step: &str) {
    let all = t.store.all_counts().await.expect("all_counts");
    for q in queues {
        let kept = t.store.counts(q).await.expect("counts");
        let scanned = t.store.counts_scanned(q).await.expect("counts_scanned");
        assert_eq!(kept, scanned, "{q} after {step}");
        let listed = all.iter().find(|(n, _)| n == q).map(|(_, c)| *c);
        assert_eq!(listed, Some(scanned), "{q} in all_counts after {step}");
    }
}

#[tokio::test]
async fn kept_counts_match_a_full_count_after_mixed_traffic_on_the_manual_clock() {
    let mut t = TestStore::new().await;
    let dlq = t.queue("dlq", QueueSettings::default()).await;
    let std_q = t
        .queue(
            "work",
            QueueSettings {
                visibility_timeout: secs(20),
                retention: secs(400),
                redrive: Some(Redrive {
                    dead_letter_queue: dlq.clone(),
                    max_receive_count: 2,
                }),
                ..Default::default()
            },
        )
        .await;
    let fifo = t
        .queue(
            "work.fifo",
            QueueSettings {
                visibility_timeout: secs(15),
                content_based_deduplication: true,
                ..Default::default()
            },
        )
        .await;
    let queues = vec![dlq.clone(), std_q.clone(), fifo.clone()];
    let mut rng = Lcg(7);
    let mut held: Vec<(QueueName, String)> = Vec::new();
    for round in 0..60 {
        let step = format!("round {round}");
        // Sends: some delayed, some to FIFO groups (some deduplicated away).
        let n = 1 + rng.next(8);
        let batch: Vec<NewMessage> = (0..n)
            .map(|i| NewMessage {
                delay: (rng.next(3) == 0).then(|| secs(5 + rng.next(30))),
                ..NewMessage::body(format!("r{round}m{i}"))
            })
            .collect();
        t.store.send(&std_q, batch).await.expect("send");
        let fifo_batch: Vec<NewMessage> = (0..1 + rng.next(3))
            .map(|i| NewMessage {
                group_id: Some(format!("g{}", rng.next(3))),
                ..NewMessage::body(format!("f{}", (round * 10 + i) % 25))
            })
            .collect();
        t.store.send(&fifo, fifo_batch).await.expect("send fifo");
        // Receives, then some deletes and visibility changes.
        for q in [&std_q, &fifo, &dlq] {
            let got = t
                .store
                .receive(q, 1 + rng.next(5) as u32, None)
                .await
                .expect("receive");
            for m in got {
                match rng.next(4) {
                    0 => {
                        t.store
                            .delete(q, &[m.receipt_handle])
                            .await
                            .expect("delete");
                    }
                    1 => {
                        t.store
                            .change_visibility(q, &[(m.receipt_handle, secs(rng.next(40)))])
                            .await
                            .expect("change visibility");
                    }
                    _ => held.push((q.clone(), m.receipt_handle)),
                }
            }
        }
        // A late delete of something received earlier (maybe after its visibility ran out).
        if !held.is_empty() && rng.next(2) == 0 {
            let (q, h) = held.swap_remove(rng.next(held.len() as u64) as usize);
            let _ = t.store.delete(&q, &[h]).await.expect("late delete");
        }
        t.advance(Duration::from_millis(500 + rng.next(9_000)));
        agree(&t, &queues, &step).await;
        if round % 10 == 9 {
            t.store.sweep().await.expect("sweep");
            agree(&t, &queues, &format!("{step}, swept")).await;
        }
    }
    let total: u64 = {
        let c = t.store.counts_scanned(&std_q).await.expect("counts");
        c.visible + c.in_flight + c.delayed
    };
    assert!(total > 0, "the traffic left messages to count");
    t.store.purge(&dlq).await.expect("purge");
    agree(&t, &queues, "the purge").await;
    let gone = t.queue("gone", QueueSettings::default()).await;
    t.store
        .send(&gone, vec![NewMessage::body("x")])
        .await
        .expect("send");
    t.store.delete_queue(&gone).await.expect("delete queue");
    let gone = t.queue("gone", QueueSettings::default()).await;
    agree(&t, &[gone], "a queue deleted and made again").await;
    t.advance(secs(3600));
    agree(&t, &queues, "an hour later").await;
    t.store.receive(&std_q, 1, None).await.expect("receive");
    agree(&t, &queues, "a receive that expires what is past retention").await;
    t.store.sweep().await.expect("sweep");
    agree(&t, &queues, "the sweep an hour later").await;
    t = t.restart().await;
    agree(&t, &queues, "a restart").await;
}
