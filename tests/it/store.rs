//! The queue engine against a real SQLite file with a manual clock: every rule of docs/semantics.md
//! §6 that needs stored state, and restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use esmd::domain::attributes::{AttributeData, AttributeValue};
use esmd::domain::message::NewMessage;
use esmd::domain::queue::{DedupScope, QueueSettings, Redrive};
use esmd::domain::RejectCode;
use esmd::store::StoreError;
use futures_util::FutureExt as _;

use crate::common::{q, secs, within, TestStore, T0};

fn fifo_msg(group: &str, body: &str) -> NewMessage {
    NewMessage {
        group_id: Some(group.into()),
        dedup_id: Some(format!("{group}-{body}")),
        ..NewMessage::body(body)
    }
}

fn bodies(msgs: &[esmd::domain::message::Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.body.as_str()).collect()
}

fn rejection(e: StoreError) -> esmd::domain::Rejection {
    match e {
        StoreError::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn send_receive_delete_with_attributes() {
    let t = TestStore::new().await;
    let name = t.queue("orders", QueueSettings::default()).await;
    let mut attrs = BTreeMap::new();
    attrs.insert("Title".to_string(), AttributeValue::string("The Whistler"));
    attrs.insert("Author".to_string(), AttributeValue::string("John Grisham"));
    attrs.insert(
        "WeeksOn".to_string(),
        AttributeValue {
            data_type: "Number".into(),
            value: AttributeData::String("6".into()),
        },
    );
    let sent = t
        .store
        .send(
            &name,
            vec![NewMessage {
                attributes: attrs.clone(),
                ..NewMessage::body("Test message.")
            }],
        )
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(sent.md5_of_body, "e4e68fb7bd0e697a0ae8f1bb342846b3");
    assert_eq!(
        sent.md5_of_attributes.as_deref(),
        Some("d25a6aea97eb8f585bfa92d314504a92")
    );
    assert_eq!(sent.sequence_number, None);

    t.advance(secs(1));
    let got = t.store.receive(&name, 10, None).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id, sent.message_id);
    assert_eq!(m.attributes, attrs);
    assert_eq!(m.receive_count, 1);
    assert_eq!(m.sent_at.as_millis(), T0);
    assert_eq!(m.first_receive_at.as_millis(), T0 + 1000);
    assert!(
        t.store.receive(&name, 10, None).await.unwrap().is_empty(),
        "in flight"
    );

    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 1, 0));
    assert_eq!(
        t.store
            .delete(&name, std::slice::from_ref(&m.receipt_handle))
            .await
            .unwrap(),
        vec![Ok(())]
    );
    assert_eq!(t.store.counts(&name).await.unwrap().in_flight, 0);
    // Deleting again with the same handle succeeds.
    assert_eq!(
        t.store
            .delete(&name, std::slice::from_ref(&m.receipt_handle))
            .await
            .unwrap(),
        vec![Ok(())]
    );
    let bad = t
        .store
        .delete(&name, &["garbage".to_string()])
        .await
        .unwrap()
        .remove(0)
        .unwrap_err();
    assert_eq!(bad.code, RejectCode::ReceiptHandleIsInvalid);
}

#[tokio::test]
async fn visibility_timeout_and_redelivery() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "vt",
            QueueSettings {
                visibility_timeout: secs(30),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(&name, vec![NewMessage::body("a")])
        .await
        .unwrap();
    let first = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    t.advance(secs(29));
    assert!(t.store.receive(&name, 1, None).await.unwrap().is_empty());
    t.advance(secs(1));
    let second = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    assert_eq!(second.receive_count, 2);
    assert_eq!(second.first_receive_at, first.first_receive_at);
    assert_ne!(second.receipt_handle, first.receipt_handle);
    // An override applies to this receive only; 0 leaves the message visible.
    t.advance(secs(30));
    assert_eq!(
        t.store
            .receive(&name, 1, Some(Duration::ZERO))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        t.store.receive(&name, 1, None).await.unwrap()[0].receive_count,
        4
    );
}

#[tokio::test]
async fn stale_handles_standard() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "stale",
            QueueSettings {
                visibility_timeout: secs(10),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(&name, vec![NewMessage::body("a"), NewMessage::body("b")])
        .await
        .unwrap();
    let got = t.store.receive(&name, 10, None).await.unwrap();
    t.advance(secs(11));
    // a: not received again, so the old handle still deletes it.
    let a = got.iter().find(|m| m.body == "a").unwrap();
    assert_eq!(
        t.store
            .delete(&name, std::slice::from_ref(&a.receipt_handle))
            .await
            .unwrap(),
        vec![Ok(())]
    );
    // b: received again by someone else; the old handle succeeds but the new receiver owns it.
    let b_old = got.iter().find(|m| m.body == "b").unwrap();
    let b_new = t.store.receive(&name, 10, None).await.unwrap().remove(0);
    assert_eq!(b_new.body, "b");
    assert_eq!(
        t.store
            .delete(&name, std::slice::from_ref(&b_old.receipt_handle))
            .await
            .unwrap(),
        vec![Ok(())]
    );
    assert_eq!(t.store.counts(&name).await.unwrap().in_flight, 1);
    let err = t
        .store
        .change_visibility(&name, &[(b_old.receipt_handle.clone(), secs(5))])
        .await
        .unwrap();
    assert!(err[0]
        .as_ref()
        .unwrap_err()
        .message
        .contains("not available for visibility timeout change"));
    assert_eq!(
        t.store
            .delete(&name, std::slice::from_ref(&b_new.receipt_handle))
            .await
            .unwrap(),
        vec![Ok(())]
    );
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!(c.visible + c.in_flight + c.delayed, 0);
}

#[tokio::test]
async fn stale_handles_fifo() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "stale.fifo",
            QueueSettings {
                visibility_timeout: secs(10),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(&name, vec![fifo_msg("g", "a"), fifo_msg("g", "b")])
        .await
        .unwrap();
    let got = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    t.advance(secs(11));
    let e = t
        .store
        .delete(&name, std::slice::from_ref(&got.receipt_handle))
        .await
        .unwrap()
        .remove(0)
        .unwrap_err();
    assert_eq!(e.code, RejectCode::InvalidParameterValue);
    assert!(
        e.message
            .ends_with("Reason: The receipt handle has expired."),
        "{}",
        e.message
    );
    // Received again and extended: the new handle deletes.
    let again = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    assert_eq!(again.body, "a");
    t.advance(secs(9));
    assert_eq!(
        t.store
            .change_visibility(&name, &[(again.receipt_handle.clone(), secs(20))])
            .await
            .unwrap(),
        vec![Ok(())]
    );
    t.advance(secs(15));
    assert_eq!(
        t.store
            .delete(&name, std::slice::from_ref(&again.receipt_handle))
            .await
            .unwrap(),
        vec![Ok(())]
    );
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["b"]
    );
}

#[tokio::test]
async fn change_visibility_rules() {
    let t = TestStore::new().await;
    let name = t.queue("cmv", QueueSettings::default()).await;
    t.store
        .send(&name, vec![NewMessage::body("a")])
        .await
        .unwrap();
    let m = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    // Twelve hours from the receive is the cap.
    let over = t
        .store
        .change_visibility(&name, &[(m.receipt_handle.clone(), secs(43_200))])
        .await
        .unwrap();
    assert!(
        over[0].is_ok(),
        "exactly 12h right at the receive is allowed"
    );
    t.advance(secs(5));
    let over = t
        .store
        .change_visibility(&name, &[(m.receipt_handle.clone(), secs(43_200))])
        .await
        .unwrap();
    assert!(over[0]
        .as_ref()
        .unwrap_err()
        .message
        .contains("Total VisibilityTimeout"));
    assert!(t
        .store
        .change_visibility(&name, &[(m.receipt_handle.clone(), secs(43_195))])
        .await
        .unwrap()[0]
        .is_ok());
    // Zero makes it visible at once.
    assert!(t
        .store
        .change_visibility(&name, &[(m.receipt_handle.clone(), Duration::ZERO)])
        .await
        .unwrap()[0]
        .is_ok());
    let again = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    t.store
        .delete(&name, std::slice::from_ref(&again.receipt_handle))
        .await
        .unwrap();
    let gone = t
        .store
        .change_visibility(&name, &[(again.receipt_handle.clone(), secs(5))])
        .await
        .unwrap();
    assert_eq!(
        gone[0].as_ref().unwrap_err().code,
        RejectCode::InvalidParameterValue
    );
}

#[tokio::test]
async fn delays() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "delayed",
            QueueSettings {
                delay: secs(10),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(
            &name,
            vec![
                NewMessage::body("queue-delay"),
                NewMessage {
                    delay: Some(secs(2)),
                    ..NewMessage::body("own-delay")
                },
            ],
        )
        .await
        .unwrap();
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.delayed), (0, 2));
    t.advance(secs(2));
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["own-delay"]
    );
    t.advance(secs(8));
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["queue-delay"]
    );
}

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
async fn fifo_fills_from_one_group_first_in_send_order() {
    let t = TestStore::new().await;
    let name = t.queue("order.fifo", QueueSettings::default()).await;
    for (g, b) in [
        ("g1", "g1-m1"),
        ("g2", "g2-m1"),
        ("g1", "g1-m2"),
        ("g1", "g1-m3"),
    ] {
        t.store.send(&name, vec![fifo_msg(g, b)]).await.unwrap();
    }
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["g1-m1", "g1-m2", "g1-m3", "g2-m1"]
    );
}

#[tokio::test]
async fn fifo_group_blocks_while_in_flight() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "block.fifo",
            QueueSettings {
                visibility_timeout: secs(30),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(
            &name,
            vec![
                fifo_msg("g1", "a1"),
                fifo_msg("g1", "a2"),
                fifo_msg("g2", "b1"),
            ],
        )
        .await
        .unwrap();
    let first = t.store.receive(&name, 1, None).await.unwrap();
    assert_eq!(bodies(&first), ["a1"]);
    // g1 is blocked while a1 is in flight, even for new sends to g1.
    t.store
        .send(&name, vec![fifo_msg("g1", "a3")])
        .await
        .unwrap();
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["b1"]
    );
    assert!(t.store.receive(&name, 10, None).await.unwrap().is_empty());
    // Deleting the in-flight head releases the group at once, in order.
    t.store
        .delete(&name, std::slice::from_ref(&first[0].receipt_handle))
        .await
        .unwrap();
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["a2", "a3"]
    );
}

#[tokio::test]
async fn fifo_terminating_the_head_redelivers_it_first() {
    // AWS-recorded: g1-m1, g1-m2 received; g1-m1 set to VT 0 → the next receive returns g1-m1
    // (not g1-m2, still in flight) plus other groups.
    let t = TestStore::new().await;
    let name = t.queue("term.fifo", QueueSettings::default()).await;
    t.store
        .send(
            &name,
            vec![fifo_msg("g1", "g1-m1"), fifo_msg("g1", "g1-m2")],
        )
        .await
        .unwrap();
    let got = t.store.receive(&name, 2, None).await.unwrap();
    t.store
        .send(&name, vec![fifo_msg("g2", "g2-m1")])
        .await
        .unwrap();
    t.store
        .change_visibility(&name, &[(got[0].receipt_handle.clone(), Duration::ZERO)])
        .await
        .unwrap();
    let mut again = bodies(&t.store.receive(&name, 3, None).await.unwrap())
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    again.sort();
    assert_eq!(again, ["g1-m1", "g2-m1"]);
}

#[tokio::test]
async fn fifo_extension_of_one_message_stops_the_group_there() {
    // AWS-recorded (test_fifo_group_visibility_extends_with_change_message_visibility): foo, bar,
    // baz received with VT 1 s, one extended to 4 s; after 2.5 s a receive returns the prefix
    // before the extended one.
    for (extended, expect) in [(0usize, vec![]), (1, vec!["foo"]), (2, vec!["foo", "bar"])] {
        let t = TestStore::new().await;
        let name = t
            .queue(
                "ext.fifo",
                QueueSettings {
                    visibility_timeout: secs(1),
                    ..Default::default()
                },
            )
            .await;
        t.store
            .send(
                &name,
                vec![
                    fifo_msg("g", "foo"),
                    fifo_msg("g", "bar"),
                    fifo_msg("g", "baz"),
                ],
            )
            .await
            .unwrap();
        let got = t.store.receive(&name, 10, None).await.unwrap();
        assert_eq!(bodies(&got), ["foo", "bar", "baz"]);
        t.store
            .change_visibility(&name, &[(got[extended].receipt_handle.clone(), secs(4))])
            .await
            .unwrap();
        t.advance(Duration::from_millis(2500));
        assert_eq!(
            bodies(&t.store.receive(&name, 10, None).await.unwrap()),
            expect,
            "extended #{extended}"
        );
    }
}

#[tokio::test]
async fn fifo_redelivers_in_order_after_timeout() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "again.fifo",
            QueueSettings {
                visibility_timeout: secs(5),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(
            &name,
            (1..=5).map(|i| fifo_msg("g", &i.to_string())).collect(),
        )
        .await
        .unwrap();
    assert_eq!(
        bodies(&t.store.receive(&name, 3, None).await.unwrap()),
        ["1", "2", "3"]
    );
    t.advance(secs(5));
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["1", "2", "3", "4", "5"]
    );
}

#[tokio::test]
async fn fifo_deduplication_window_and_scopes() {
    let t = TestStore::new().await;
    let name = t.queue("dedup.fifo", QueueSettings::default()).await;
    let m = |g: &str, d: &str, body: &str| NewMessage {
        group_id: Some(g.into()),
        dedup_id: Some(d.into()),
        ..NewMessage::body(body)
    };
    let first = t
        .store
        .send(&name, vec![m("g1", "d", "one")])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    // Same dedup id in another group: queue scope, so a duplicate; same id and sequence back.
    let dup = t
        .store
        .send(&name, vec![m("g2", "d", "two")])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(dup.message_id, first.message_id);
    assert_eq!(dup.sequence_number, first.sequence_number);
    let got = t.store.receive(&name, 10, None).await.unwrap();
    assert_eq!(bodies(&got), ["one"]);
    t.store
        .delete(&name, std::slice::from_ref(&got[0].receipt_handle))
        .await
        .unwrap();
    // Deduplication continues after the original is deleted, for 5 minutes.
    t.advance(secs(299));
    t.store
        .send(&name, vec![m("g1", "d", "three")])
        .await
        .unwrap();
    assert!(t.store.receive(&name, 10, None).await.unwrap().is_empty());
    t.advance(secs(1));
    let fresh = t
        .store
        .send(&name, vec![m("g1", "d", "four")])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_ne!(fresh.message_id, first.message_id);
    assert!(fresh.sequence_number.as_deref().unwrap() > first.sequence_number.as_deref().unwrap());
    assert_eq!(fresh.sequence_number.as_ref().unwrap().len(), 20);
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["four"]
    );

    // messageGroup scope: the same id in two groups is two messages.
    let per_group = t
        .queue(
            "pg.fifo",
            QueueSettings {
                deduplication_scope: DedupScope::MessageGroup,
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(
            &per_group,
            vec![m("g1", "d", "a"), m("g2", "d", "b"), m("g1", "d", "c")],
        )
        .await
        .unwrap();
    let mut got = bodies(&t.store.receive(&per_group, 10, None).await.unwrap())
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, ["a", "b"]);
}

#[tokio::test]
async fn content_based_deduplication_hashes_the_body_only() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "cbd.fifo",
            QueueSettings {
                content_based_deduplication: true,
                ..Default::default()
            },
        )
        .await;
    let m = |body: &str, attr: &str| {
        let mut attrs = BTreeMap::new();
        attrs.insert("a".to_string(), AttributeValue::string(attr));
        NewMessage {
            group_id: Some("g".into()),
            attributes: attrs,
            ..NewMessage::body(body)
        }
    };
    let r = t
        .store
        .send(&name, vec![m("same", "x"), m("same", "y"), m("other", "x")])
        .await
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap().message_id,
        r[1].as_ref().unwrap().message_id
    );
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["same", "other"]
    );
    // An explicit id overrides the content hash.
    let explicit = NewMessage {
        dedup_id: Some("e".into()),
        ..m("same", "x")
    };
    t.store.send(&name, vec![explicit]).await.unwrap();
    assert_eq!(t.store.counts(&name).await.unwrap().visible, 1);
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
async fn validation_happens_per_entry() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "small",
            QueueSettings {
                max_message_size: 1024,
                ..Default::default()
            },
        )
        .await;
    let r = t
        .store
        .send(
            &name,
            vec![
                NewMessage::body("ok"),
                NewMessage::body("x".repeat(1025)),
                NewMessage::body(""),
            ],
        )
        .await
        .unwrap();
    assert!(r[0].is_ok());
    assert!(r[1]
        .as_ref()
        .unwrap_err()
        .message
        .contains("Message must be shorter than 1024 bytes."));
    assert_eq!(
        r[2].as_ref().unwrap_err().code,
        RejectCode::MissingParameter
    );
    assert_eq!(t.store.counts(&name).await.unwrap().visible, 1);
    let missing = rejection(
        t.store
            .send(&q("nope"), vec![NewMessage::body("x")])
            .await
            .unwrap_err(),
    );
    assert_eq!(missing.code, RejectCode::QueueDoesNotExist);
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
        // Whatever the waiter is doing when time moves (receiving, or sleeping until the
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
        path: dir.path().join("normal.db"),
        synchronous: Synchronous::Normal,
        max_size: None,
    };
    let store = Store::open(&cfg, Clock::System).await.unwrap();
    assert_eq!(
        store.storage_settings().await.unwrap(),
        ("wal".to_string(), 1)
    );
}

#[tokio::test]
async fn a_receive_whose_caller_went_away_releases_what_it_claimed() {
    let t = TestStore::new().await;
    let standard = t
        .queue(
            "gone",
            QueueSettings {
                visibility_timeout: secs(30),
                ..Default::default()
            },
        )
        .await;
    let fifo = t.queue("gone.fifo", QueueSettings::default()).await;
    t.store
        .send(
            &standard,
            vec![NewMessage::body("a"), NewMessage::body("b")],
        )
        .await
        .unwrap();
    t.store
        .send(&fifo, vec![fifo_msg("g", "first"), fifo_msg("g", "second")])
        .await
        .unwrap();
    for (queue, want) in [
        (&standard, vec!["a", "b"]),
        (&fifo, vec!["first", "second"]),
    ] {
        // Polled once: the claim is handed to the writer, then the caller is gone (a long
        // poll cancelled mid-claim, a client that hung up) before the answer.
        let gone = t.store.receive(queue, 10, None).now_or_never();
        assert!(gone.is_none(), "the receive was dropped before its answer");
        // Without the release these would stay hidden for the visibility timeout (the manual
        // clock does not move); with it, a waiting receive is woken and gets them, FIFO group
        // order kept.
        let got = within(
            secs(20),
            "the released messages",
            t.store.receive_wait(queue, 10, None, secs(20)),
        )
        .await
        .unwrap();
        assert_eq!(bodies(&got), want, "{queue}");
        assert!(
            got.iter().all(|m| m.receive_count == 2),
            "the lost receive still counts, as on SQS: {got:?}"
        );
    }
}
