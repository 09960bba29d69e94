//! FIFO rules of the contract: group order, the in-flight blocking rule, redelivery in order,
//! the deduplication window and its scopes, content-based deduplication, stale handles.

use std::collections::BTreeMap;

use esmd::domain::attributes::AttributeValue;
use esmd::domain::message::NewMessage;
use esmd::domain::queue::{DedupScope, QueueSettings};
use esmd::domain::RejectCode;
use esmd::store::QueueStore;

use super::harness::Fixture;
use super::{bodies, fifo_msg};
use crate::common::secs;

fn sorted(v: Vec<&str>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().map(String::from).collect();
    v.sort();
    v
}

pub async fn fifo_fills_from_one_group_first_in_send_order<S: QueueStore>(t: &Fixture<S>) {
    let name = t.queue("order.fifo", QueueSettings::default()).await;
    for (g, b) in [
        ("g1", "g1-m1"),
        ("g2", "g2-m1"),
        ("g1", "g1-m2"),
        ("g1", "g1-m3"),
    ] {
        t.store.send(&name, vec![fifo_msg(g, b)]).await.unwrap();
    }
    let got = t.store.receive(&name, 10, None).await.unwrap();
    assert_eq!(bodies(&got), ["g1-m1", "g1-m2", "g1-m3", "g2-m1"]);
    let seqs: Vec<&str> = got
        .iter()
        .map(|m| m.sequence_number.as_deref().unwrap())
        .collect();
    assert!(seqs[0] < seqs[1] && seqs[1] < seqs[2], "{seqs:?}");
}

pub async fn fifo_group_blocks_while_in_flight<S: QueueStore>(t: &Fixture<S>) {
    let name = t.queue("block.fifo", QueueSettings::default()).await;
    let batch = vec![
        fifo_msg("g1", "a1"),
        fifo_msg("g1", "a2"),
        fifo_msg("g2", "b1"),
    ];
    t.store.send(&name, batch).await.unwrap();
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

pub async fn fifo_redelivers_in_order_after_timeout<S: QueueStore>(t: &Fixture<S>) {
    let name = t
        .queue(
            "redeliver.fifo",
            QueueSettings {
                visibility_timeout: secs(5),
                ..Default::default()
            },
        )
        .await;
    let batch = vec![fifo_msg("g", "1"), fifo_msg("g", "2"), fifo_msg("g", "3")];
    t.store.send(&name, batch).await.unwrap();
    assert_eq!(
        bodies(&t.store.receive(&name, 2, None).await.unwrap()),
        ["1", "2"]
    );
    assert!(
        t.store.receive(&name, 10, None).await.unwrap().is_empty(),
        "3 waits behind 1 and 2"
    );
    t.advance(secs(5));
    let again = t.store.receive(&name, 10, None).await.unwrap();
    assert_eq!(bodies(&again), ["1", "2", "3"]);
    assert_eq!(again[0].receive_count, 2);
    assert_eq!(again[2].receive_count, 1);
    // Terminating the head's visibility redelivers it first, before the rest of the run.
    t.store
        .change_visibility(&name, &[(again[0].receipt_handle.clone(), secs(0))])
        .await
        .unwrap();
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["1"]
    );
}

pub async fn fifo_deduplication_window_and_scopes<S: QueueStore>(t: &Fixture<S>) {
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
    // Same id in another group: queue scope, so a duplicate, answered with the original's ids.
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
    assert!(fresh.sequence_number > first.sequence_number);
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
    let batch = vec![m("g1", "d", "a"), m("g2", "d", "b"), m("g1", "d", "c")];
    t.store.send(&per_group, batch).await.unwrap();
    let got = t.store.receive(&per_group, 10, None).await.unwrap();
    assert_eq!(sorted(bodies(&got)), ["a", "b"]);
}

pub async fn content_based_deduplication_hashes_the_body_only<S: QueueStore>(t: &Fixture<S>) {
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
    let got = t.store.receive(&name, 10, None).await.unwrap();
    assert_eq!(bodies(&got), ["same", "other"]);
    assert_eq!(
        got[0].dedup_id.as_ref().map(String::len),
        Some(64),
        "the body's SHA-256"
    );
    // An explicit id overrides the content hash.
    let explicit = NewMessage {
        dedup_id: Some("e".into()),
        ..m("same", "x")
    };
    t.store.send(&name, vec![explicit]).await.unwrap();
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight), (1, 2));
}

pub async fn stale_handles_fifo<S: QueueStore>(t: &Fixture<S>) {
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
    // Received again and extended: the new handle deletes; the old one still does not.
    let again = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    assert_eq!(again.body, "a");
    t.advance(secs(9));
    let r = t
        .store
        .change_visibility(&name, &[(again.receipt_handle.clone(), secs(20))])
        .await
        .unwrap();
    assert_eq!(r, vec![Ok(())]);
    let r = t
        .store
        .change_visibility(&name, &[(got.receipt_handle.clone(), secs(20))])
        .await
        .unwrap();
    assert!(
        r[0].is_err(),
        "a FIFO queue takes only the latest receive's handle"
    );
    t.advance(secs(15));
    let old = t
        .store
        .delete(&name, std::slice::from_ref(&got.receipt_handle))
        .await
        .unwrap();
    assert!(old[0].is_err());
    let new = t
        .store
        .delete(&name, std::slice::from_ref(&again.receipt_handle))
        .await
        .unwrap();
    assert_eq!(new, vec![Ok(())]);
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["b"]
    );
}
