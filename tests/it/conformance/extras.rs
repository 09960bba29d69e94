//! Queue extras, on every backend: tags, dead-letter sources, peek and explain (where a message
//! stands, who holds it, its tombstone once gone: deleted, filtered out, expired,
//! dead-lettered; swept after the tombstone retention), and the counts of every queue, which
//! must agree with a scan of the rows after every kind of change.

use std::collections::BTreeMap;

use esmd::domain::message::NewMessage;
use esmd::domain::queue::{QueueSettings, Redrive};
use esmd::store::{Explained, Fate, MessageState, Receiver};

use super::control::Control;
use super::fifo_msg;
use super::harness::Fixture;
use super::moves::{back, dead_lettered};
use crate::common::secs;

pub async fn tags_and_dead_letter_sources<S: Control>(t: &Fixture<S>) {
    let dlq = t.queue("dead", QueueSettings::default()).await;
    let redrive = |max| QueueSettings {
        redrive: Some(Redrive {
            dead_letter_queue: dlq.clone(),
            max_receive_count: max,
        }),
        ..Default::default()
    };
    let b = t.queue("b-src", redrive(3)).await;
    let a = t.queue("a-src", redrive(5)).await;
    t.queue("unrelated", QueueSettings::default()).await;
    assert_eq!(
        t.store.dead_letter_sources(&dlq).await.unwrap(),
        [a.clone(), b]
    );
    assert!(t.store.dead_letter_sources(&a).await.unwrap().is_empty());
    let tags = BTreeMap::from([
        ("team".to_string(), "x".to_string()),
        ("env".into(), "dev".into()),
    ]);
    t.store.tag(&a, &tags).await.unwrap();
    t.store
        .tag(
            &a,
            &BTreeMap::from([("env".to_string(), "prod".to_string())]),
        )
        .await
        .unwrap();
    t.store.untag(&a, &["team".to_string()]).await.unwrap();
    let stored = t.store.queue(&a).await.unwrap().tags;
    assert_eq!(
        stored,
        BTreeMap::from([("env".to_string(), "prod".to_string())])
    );
    assert!(t
        .store
        .tag(&crate::common::q("missing"), &tags)
        .await
        .is_err());
}

pub async fn peek_and_explain_tell_where_a_message_stands<S: Control>(t: &Fixture<S>) {
    let f = t.queue("peek.fifo", QueueSettings::default()).await;
    let sent = t
        .store
        .send(
            &f,
            vec![fifo_msg("g", "1"), fifo_msg("g", "2"), fifo_msg("h", "3")],
        )
        .await
        .unwrap();
    let id = |i: usize| sent[i].as_ref().unwrap().message_id.clone();
    let first = t.store.receive(&f, 1, None).await.unwrap().remove(0);
    let peeked = t.store.peek(&f, 10).await.unwrap();
    assert_eq!(peeked.len(), 3);
    assert!(matches!(
        &peeked[0].state,
        MessageState::InFlight {
            by: Receiver::Client,
            ..
        }
    ));
    assert_eq!(
        peeked[1].state,
        MessageState::Blocked {
            group: "g".into(),
            behind: id(0),
            head: id(0)
        }
    );
    assert_eq!(peeked[2].state, MessageState::Visible);
    assert_eq!(
        t.store.peek(&f, 1).await.unwrap().len(),
        1,
        "the limit holds"
    );
    // Peek changed nothing: h's message is still receivable, never received.
    assert_eq!(peeked[2].receive_count, 0);
    t.store.delete(&f, &[first.receipt_handle]).await.unwrap();
    match t.store.explain(&f, &id(0)).await.unwrap() {
        Explained::Gone(tomb) => {
            assert_eq!((tomb.fate, tomb.receive_count), (Fate::Deleted, 1));
            assert_eq!(tomb.by, Some(Receiver::Client));
        }
        other => panic!("expected a tombstone, got {other:?}"),
    }
    // A mapping's receive names it; its filtered delete says so.
    let s = t
        .queue(
            "plain",
            QueueSettings {
                delay: secs(0),
                ..Default::default()
            },
        )
        .await;
    let m = t
        .store
        .send(&s, vec![NewMessage::body("x")])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let got = t
        .store
        .receive_wait_for_mapping("orders-mapping", &s, 10, None, secs(0))
        .await
        .unwrap();
    match t.store.explain(&s, &m.message_id).await.unwrap() {
        Explained::Stored(p) => assert!(matches!(
            p.state,
            MessageState::InFlight { by: Receiver::Mapping(ref n), .. } if n == "orders-mapping"
        )),
        other => panic!("expected it stored, got {other:?}"),
    }
    let handles: Vec<String> = got.into_iter().map(|m| m.receipt_handle).collect();
    assert!(t.store.delete_filtered(&s, &handles).await.unwrap()[0].is_ok());
    match t.store.explain(&s, &m.message_id).await.unwrap() {
        Explained::Gone(tomb) => {
            assert_eq!(tomb.fate, Fate::FilteredOut);
            assert_eq!(tomb.by, Some(Receiver::Mapping("orders-mapping".into())));
        }
        other => panic!("expected a tombstone, got {other:?}"),
    }
    assert_eq!(
        t.store.explain(&s, "never-sent").await.unwrap(),
        Explained::Unknown
    );
}

pub async fn tombstones_of_expiry_and_dead_letters_are_swept<S: Control>(t: &Fixture<S>) {
    let (src, dlq) = dead_lettered(t, 1).await;
    let moved = t.store.peek(&dlq, 1).await.unwrap().remove(0);
    match t.store.explain(&src, &moved.message_id).await.unwrap() {
        Explained::Gone(tomb) => {
            assert_eq!((tomb.fate, tomb.receive_count), (Fate::DeadLettered, 1));
            assert_eq!(tomb.dead_letter_queue.as_deref(), Some(dlq.as_str()));
        }
        other => panic!("expected a dead-letter tombstone, got {other:?}"),
    }
    let short = QueueSettings {
        retention: secs(60),
        ..Default::default()
    };
    let q = t.queue("short", short).await;
    let m = t
        .store
        .send(&q, vec![NewMessage::body("old")])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    t.advance(secs(61));
    assert!(matches!(
        t.store.peek(&q, 1).await.unwrap()[0].state,
        MessageState::Expired { .. }
    ));
    assert_eq!(t.store.sweep().await.unwrap(), 1);
    match t.store.explain(&q, &m.message_id).await.unwrap() {
        Explained::Gone(tomb) => assert_eq!((tomb.fate, tomb.by), (Fate::Expired, None)),
        other => panic!("expected an expiry tombstone, got {other:?}"),
    }
    // Past the tombstone retention (an hour in these fixtures) the sweep forgets them.
    t.advance(secs(3601));
    t.store.sweep().await.unwrap();
    assert_eq!(
        t.store.explain(&q, &m.message_id).await.unwrap(),
        Explained::Unknown
    );
    assert_eq!(
        t.store.explain(&src, &moved.message_id).await.unwrap(),
        Explained::Unknown
    );
}

/// Every queue's counts from `all_counts` equal a scan of its rows.
async fn agree<S: Control>(t: &Fixture<S>, when: &str) {
    let all = t.store.all_counts().await.unwrap();
    assert_eq!(
        all.len(),
        t.store.queues().await.unwrap().len(),
        "{when}: every queue"
    );
    for (name, counts) in all {
        let scanned = t.store.counts_scanned(&name).await.unwrap();
        assert_eq!(counts, scanned, "{when}: {name}");
    }
}

pub async fn all_counts_agree_with_a_scan<S: Control>(t: &Fixture<S>) {
    let (src, dlq) = dead_lettered(t, 4).await;
    agree(t, "after dead-lettering").await;
    let f = t
        .queue(
            "c.fifo",
            QueueSettings {
                delay: secs(10),
                ..Default::default()
            },
        )
        .await;
    let q = t.queue("c", QueueSettings::default()).await;
    t.store
        .send(&f, vec![fifo_msg("g", "1"), fifo_msg("g", "2")])
        .await
        .unwrap();
    let batch = (0..6).map(|i| NewMessage {
        delay: Some(secs(i % 2 * 30)),
        ..NewMessage::body(format!("{i}"))
    });
    t.store.send(&q, batch.collect()).await.unwrap();
    let got = t.store.receive(&q, 2, None).await.unwrap();
    agree(t, "after sends and a receive").await;
    let c = t.store.all_counts().await.unwrap();
    let of = |n: &esmd::domain::queue::QueueName| c.iter().find(|(q, _)| q == n).unwrap().1;
    assert_eq!(
        (of(&q).visible, of(&q).in_flight, of(&q).delayed),
        (1, 2, 3)
    );
    assert_eq!(of(&f).delayed, 2);
    t.store
        .delete(&q, &[got[0].receipt_handle.clone()])
        .await
        .unwrap();
    agree(t, "after a delete").await;
    let task = t.store.start_move_task(&back(&dlq)).await.unwrap();
    t.store.move_step(&task.task_id, 3).await.unwrap();
    agree(t, "after a move step").await;
    assert_eq!(of_now(t, &src).await.visible, 3);
    t.store.purge(&q).await.unwrap();
    agree(t, "after a purge").await;
    t.advance(secs(5 * 24 * 3600));
    agree(t, "with expired messages not yet swept").await;
    t.store.sweep().await.unwrap();
    agree(t, "after the sweep").await;
    let total: u64 = t
        .store
        .all_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, c)| c.visible + c.in_flight + c.delayed)
        .sum();
    assert_eq!(total, 0, "everything expired after five days");
}

async fn of_now<S: Control>(
    t: &Fixture<S>,
    name: &esmd::domain::queue::QueueName,
) -> esmd::store::QueueCounts {
    let all = t.store.all_counts().await.unwrap();
    all.into_iter().find(|(q, _)| q == name).expect("listed").1
}
