//! What happens over a message's and a queue's life, on every backend: redrive to dead-letter
//! queues (standard and FIFO), retention in every state and the sweep, purge.

use std::collections::BTreeMap;

use esmd::domain::attributes::AttributeValue;
use esmd::domain::message::NewMessage;
use esmd::domain::queue::{QueueSettings, Redrive};
use esmd::domain::RejectCode;
use esmd::store::QueueStore;

use super::harness::Fixture;
use super::{bodies, fifo_msg, rejection};
use crate::common::{secs, T0};

pub async fn redrive_to_dead_letter_queue<S: QueueStore>(t: &Fixture<S>) {
    let dlq = t.queue("orders-dlq", QueueSettings::default()).await;
    let settings = QueueSettings {
        visibility_timeout: secs(5),
        redrive: Some(Redrive {
            dead_letter_queue: dlq.clone(),
            max_receive_count: 2,
        }),
        ..Default::default()
    };
    let src = t.queue("orders", settings).await;
    let mut attrs = BTreeMap::new();
    attrs.insert("k".to_string(), AttributeValue::string("v"));
    let poison = NewMessage {
        attributes: attrs.clone(),
        ..NewMessage::body("poison")
    };
    let sent = t
        .store
        .send(&src, vec![poison])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    for n in 1..=2 {
        let m = t.store.receive(&src, 1, None).await.unwrap().remove(0);
        assert_eq!(m.receive_count, n);
        assert_eq!(
            t.store.counts(&dlq).await.unwrap().visible,
            0,
            "not moved yet"
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
        "standard: the send time is kept"
    );
}

pub async fn fifo_dead_letter_keeps_order_and_unblocks_the_group<S: QueueStore>(t: &Fixture<S>) {
    let dlq = t.queue("dead.fifo", QueueSettings::default()).await;
    let settings = QueueSettings {
        visibility_timeout: secs(5),
        redrive: Some(Redrive {
            dead_letter_queue: dlq.clone(),
            max_receive_count: 1,
        }),
        ..Default::default()
    };
    let src = t.queue("work.fifo", settings).await;
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
    assert_eq!(moved.dedup_id.as_deref(), Some(moved.message_id.as_str()));
    assert_eq!(moved.group_id.as_deref(), Some("g"));
    assert!(moved.sequence_number.is_some());
}

pub async fn retention_in_every_state<S: QueueStore>(t: &Fixture<S>) {
    let settings = QueueSettings {
        retention: secs(60),
        visibility_timeout: secs(600),
        ..Default::default()
    };
    let name = t.queue("short", settings).await;
    let batch = vec![NewMessage::body("in-flight"), NewMessage::body("visible")];
    t.store.send(&name, batch).await.unwrap();
    let inflight = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    t.advance(secs(30));
    let delayed = NewMessage {
        delay: Some(secs(900)),
        ..NewMessage::body("delayed")
    };
    t.store.send(&name, vec![delayed]).await.unwrap();
    t.advance(secs(30));
    // The first two are 60 s old: gone whatever their state, and never handed out.
    assert!(t.store.receive(&name, 10, None).await.unwrap().is_empty());
    let r = t
        .store
        .delete(&name, &[inflight.receipt_handle])
        .await
        .unwrap();
    assert_eq!(r, vec![Ok(())]);
    t.store.sweep().await.unwrap();
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

pub async fn purge_clears_everything_once_a_minute<S: QueueStore>(t: &Fixture<S>) {
    let settings = QueueSettings {
        content_based_deduplication: true,
        ..Default::default()
    };
    let name = t.queue("p.fifo", settings).await;
    let m = || NewMessage {
        group_id: Some("g".into()),
        ..NewMessage::body("x")
    };
    t.store.send(&name, vec![m()]).await.unwrap();
    t.store.receive(&name, 1, None).await.unwrap();
    t.store.purge(&name).await.unwrap();
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!(c.visible + c.in_flight + c.delayed, 0);
    // The deduplication entries are cleared: the same body is delivered again.
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
    assert_eq!(t.store.counts(&name).await.unwrap().visible, 0);
}
