//! What happens over a message's and a queue's life: retention, redrive to dead-letter queues,
//! purge, restarts, long polls, and the SQLite settings in force.

use crate::common::{q, secs, within, TestStore, T0};
use esmd::domain::attributes::AttributeValue;
use esmd::domain::message::NewMessage;
use esmd::domain::queue::{QueueSettings, Redrive};
use esmd::domain::RejectCode;
use std::collections::BTreeMap;

use super::{bodies, fifo_msg, rejection};

#[tokio::test]
async fn retention_in_every_state() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "short",
            QueueSettings {
                retention: secs(60),
                visibility_timeout: secs(600),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(
            &name,
            vec![NewMessage::body("in-flight"), NewMessage::body("visible")],
        )
        .await
        .unwrap();
    let inflight = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    t.advance(secs(30));
    t.store
        .send(
            &name,
            vec![NewMessage {
                delay: Some(secs(900)),
                ..NewMessage::body("delayed")
            }],
        )
        .await
        .unwrap();
    t.advance(secs(30));
    // The first two are 60 s old: gone whatever their state, and receives never return them.
    assert!(t.store.receive(&name, 10, None).await.unwrap().is_empty());
    assert_eq!(
        t.store
            .delete(&name, &[inflight.receipt_handle])
            .await
            .unwrap(),
        vec![Ok(())]
    );
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 0, 1));
    t.advance(secs(30));
    assert_eq!(
        t.store.sweep().await.unwrap(),
        1,
        "the delayed one expires too"
    );
    assert_eq!(t.store.counts(&name).await.unwrap().delayed, 0);
}

#[tokio::test]
async fn redrive_to_dead_letter_queue() {
    let t = TestStore::new().await;
    let dlq = t.queue("orders-dlq", QueueSettings::default()).await;
    let src = t
        .queue(
            "orders",
            QueueSettings {
                visibility_timeout: secs(5),
                redrive: Some(Redrive {
                    dead_letter_queue: dlq.clone(),
                    max_receive_count: 2,
                }),
                ..Default::default()
            },
        )
        .await;
    let mut attrs = BTreeMap::new();
    attrs.insert("k".to_string(), AttributeValue::string("v"));
    let sent = t
        .store
        .send(
            &src,
            vec![NewMessage {
                attributes: attrs.clone(),
                ..NewMessage::body("poison")
            }],
        )
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    for n in 1..=2 {
        let m = t.store.receive(&src, 1, None).await.unwrap().remove(0);
        assert_eq!(m.receive_count, n);
        assert!(
            t.store.counts(&dlq).await.unwrap().visible == 0,
            "not moved before the receive that exceeds"
        );
        t.advance(secs(5));
    }
    // The third receive moves it instead of returning it.
    assert!(t.store.receive(&src, 10, None).await.unwrap().is_empty());
    let c = t.store.counts(&src).await.unwrap();
    assert_eq!(c.visible + c.in_flight + c.delayed, 0);
    let moved = t.store.receive(&dlq, 1, None).await.unwrap().remove(0);
    assert_eq!(moved.message_id, sent.message_id);
    assert_eq!(moved.attributes, attrs);
    assert_eq!(moved.dead_letter_source.as_ref(), Some(&src));
    assert_eq!(moved.receive_count, 3, "the count carries over");
    assert_eq!(
        moved.sent_at.as_millis(),
        T0,
        "standard: the original send time is kept"
    );
    assert_eq!(
        t.store.dead_letter_sources(&dlq).await.unwrap(),
        vec![src.clone()]
    );
}

#[tokio::test]
async fn fifo_dead_letter_keeps_order_and_unblocks_the_group() {
    let t = TestStore::new().await;
    let dlq = t.queue("dead.fifo", QueueSettings::default()).await;
    let src = t
        .queue(
            "work.fifo",
            QueueSettings {
                visibility_timeout: secs(5),
                redrive: Some(Redrive {
                    dead_letter_queue: dlq.clone(),
                    max_receive_count: 1,
                }),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(&src, vec![fifo_msg("g", "1"), fifo_msg("g", "2")])
        .await
        .unwrap();
    assert_eq!(
        bodies(&t.store.receive(&src, 1, None).await.unwrap()),
        ["1"]
    );
    t.advance(secs(5));
    // "1" is moved; "2" becomes the head and is delivered in the same receive.
    assert_eq!(
        bodies(&t.store.receive(&src, 10, None).await.unwrap()),
        ["2"]
    );
    let moved = t.store.receive(&dlq, 10, None).await.unwrap().remove(0);
    assert_eq!(moved.body, "1");
    assert_eq!(
        moved.dedup_id.as_deref(),
        Some(moved.message_id.as_str()),
        "FIFO DLQ: dedup id := message id"
    );
    assert_eq!(moved.group_id.as_deref(), Some("g"));
    assert!(moved.sequence_number.is_some());
}

#[tokio::test]
async fn purge_clears_everything_once_a_minute() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "p.fifo",
            QueueSettings {
                content_based_deduplication: true,
                ..Default::default()
            },
        )
        .await;
    let m = || NewMessage {
        group_id: Some("g".into()),
        ..NewMessage::body("x")
    };
    t.store.send(&name, vec![m()]).await.unwrap();
    t.store.receive(&name, 1, None).await.unwrap();
    t.store.purge(&name).await.unwrap();
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!(c.visible + c.in_flight + c.delayed, 0);
    // Dedup cache cleared: the same body is delivered again.
    t.store.send(&name, vec![m()]).await.unwrap();
    assert_eq!(t.store.counts(&name).await.unwrap().visible, 1);
    let e = rejection(t.store.purge(&name).await.unwrap_err());
    assert_eq!(e.code, RejectCode::PurgeQueueInProgress);
    assert_eq!(
        e.message,
        "Only one PurgeQueue operation on p.fifo is allowed every 60 seconds."
    );
    t.advance(secs(60));
    t.store.purge(&name).await.unwrap();
}

#[tokio::test]
async fn restart_keeps_every_state() {
    let t = TestStore::new().await;
    let std_q = t
        .queue(
            "std",
            QueueSettings {
                visibility_timeout: secs(30),
                ..Default::default()
            },
        )
        .await;
    let fifo_q = t
        .queue(
            "f.fifo",
            QueueSettings {
                content_based_deduplication: true,
                ..Default::default()
            },
        )
        .await;
    let (runtime, created) = t
        .store
        .create_queue(
            &q("made-at-runtime"),
            &QueueSettings::default(),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    assert!(created);
    t.store
        .send(
            &std_q,
            vec![
                NewMessage::body("inflight"),
                NewMessage {
                    delay: Some(secs(60)),
                    ..NewMessage::body("delayed")
                },
            ],
        )
        .await
        .unwrap();
    let inflight = t.store.receive(&std_q, 1, None).await.unwrap().remove(0);
    t.store
        .send(&std_q, vec![NewMessage::body("visible")])
        .await
        .unwrap();
    let fifo_sent = t
        .store
        .send(
            &fifo_q,
            vec![NewMessage {
                group_id: Some("g".into()),
                ..NewMessage::body("dup")
            }],
        )
        .await
        .unwrap();
    t.store
        .send(&runtime.name, vec![NewMessage::body("r")])
        .await
        .unwrap();

    let t = t.restart().await;
    let c = t.store.counts(&std_q).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (1, 1, 1));
    // The visibility deadline survived: still hidden until 30 s after the receive.
    assert_eq!(
        bodies(&t.store.receive(&std_q, 10, None).await.unwrap()),
        ["visible"]
    );
    t.advance(secs(30));
    let again = t.store.receive(&std_q, 10, None).await.unwrap();
    let redelivered = again
        .iter()
        .find(|m| m.body == "inflight")
        .expect("redelivered after the deadline");
    assert_eq!(redelivered.receive_count, 2, "receive count survived");
    assert_eq!(redelivered.message_id, inflight.message_id);
    t.advance(secs(30));
    assert!(t
        .store
        .receive(&std_q, 10, None)
        .await
        .unwrap()
        .iter()
        .any(|m| m.body == "delayed"));
    // Deduplication entries survived.
    let dup = t
        .store
        .send(
            &fifo_q,
            vec![NewMessage {
                group_id: Some("g".into()),
                ..NewMessage::body("dup")
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        dup[0].as_ref().unwrap().message_id,
        fifo_sent[0].as_ref().unwrap().message_id
    );
    assert_eq!(t.store.counts(&fifo_q).await.unwrap().visible, 1);
    // The runtime queue and its message survived.
    assert_eq!(t.store.counts(&runtime.name).await.unwrap().visible, 1);
    assert!(t
        .store
        .queues()
        .await
        .unwrap()
        .iter()
        .any(|i| i.name == runtime.name));
}

#[tokio::test]
async fn long_poll_wakes_on_send_and_on_time() {
    let t = TestStore::new().await;
    let name = t.queue("lp", QueueSettings::default()).await;
    let store = t.store.clone();
    let n = name.clone();
    let waiter = tokio::spawn(async move { store.receive_wait(&n, 10, None, secs(20)).await });
    // Give the waiter no chance to miss the send: it either sees it on its first receive or is
    // woken by it.
    t.store
        .send(&name, vec![NewMessage::body("hello")])
        .await
        .unwrap();
    let got = within(secs(20), "the long poll to return", waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bodies(&got), ["hello"]);

    // A delayed message wakes the poll when the (manual) clock reaches its time.
    t.store
        .send(
            &name,
            vec![NewMessage {
                delay: Some(secs(3)),
                ..NewMessage::body("later")
            }],
        )
        .await
        .unwrap();
    let store = t.store.clone();
    let n = name.clone();
    let waiter = tokio::spawn(async move { store.receive_wait(&n, 10, None, secs(20)).await });
    let clock = t.clock.clone();
    let advancer = async move {
        // Whatever the waiter is doing when time moves (receiving, or waiting for the
        // message's visible_at), moving the manual clock past the delay wakes or satisfies it.
        clock.advance(secs(4));
    };
    let (got, _) = within(secs(20), "the delayed message", async {
        tokio::join!(waiter, advancer)
    })
    .await;
    assert_eq!(bodies(&got.unwrap().unwrap()), ["later"]);
}

#[tokio::test]
async fn wal_and_the_configured_synchronous_level_are_in_force() {
    use esmd::clock::Clock;
    use esmd::config::{StorageConfig, Synchronous};
    use esmd::store::Store;
    let t = TestStore::new().await;
    assert_eq!(
        t.store.storage_settings().await.unwrap(),
        ("wal".to_string(), 2),
        "default: FULL"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        postgres: None,
        path: dir.path().join("normal.db"),
        synchronous: Synchronous::Normal,
        max_size: None,
        max_queues: 1000,
        tombstone_retention: std::time::Duration::from_secs(3600),
    };
    let store = Store::open(&cfg, Clock::System).await.unwrap();
    assert_eq!(
        store.storage_settings().await.unwrap(),
        ("wal".to_string(), 1)
    );
}
