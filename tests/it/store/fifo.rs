//! FIFO rules: group order and blocking, redelivery in order, deduplication.

use crate::common::{secs, TestStore};
use esmd::domain::attributes::AttributeValue;
use esmd::domain::message::NewMessage;
use esmd::domain::queue::{DedupScope, QueueSettings};
use std::collections::BTreeMap;
use std::time::Duration;

use super::{bodies, fifo_msg};

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
