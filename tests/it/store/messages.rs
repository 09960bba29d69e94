//! Standard-queue message rules: send, receive, delete, visibility, stale handles, delays,
//! per-entry validation, and receives whose caller went away.

use crate::common::{q, secs, within, TestStore, T0};
use esmd::domain::attributes::{AttributeData, AttributeValue};
use esmd::domain::message::NewMessage;
use esmd::domain::queue::QueueSettings;
use esmd::domain::RejectCode;
use futures_util::FutureExt as _;
use std::collections::BTreeMap;
use std::time::Duration;

use super::{bodies, fifo_msg, rejection};

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

/// A message whose lease ran out goes out before messages sent after it was received, as AWS
/// hands it out (LocalStack's validated test_inflight_message_requeue), and before older
/// messages never received; with several requeued, the first to come back goes first.
#[tokio::test]
async fn a_requeued_message_goes_out_before_later_ones() {
    let t = TestStore::new().await;
    let name = t
        .queue(
            "requeue",
            QueueSettings {
                visibility_timeout: secs(3),
                ..Default::default()
            },
        )
        .await;
    let send = |body: &'static str| {
        let store = t.store.clone();
        let name = name.clone();
        async move {
            store
                .send(&name, vec![NewMessage::body(body)])
                .await
                .unwrap()
        }
    };
    send("test1").await;
    assert_eq!(
        t.store.receive(&name, 1, None).await.unwrap()[0].body,
        "test1"
    );
    t.advance(Duration::from_millis(1500));
    send("test2").await;
    t.advance(secs(3));
    let got = t.store.receive(&name, 1, None).await.unwrap();
    assert_eq!(got[0].body, "test1");
    let got = t.store.receive(&name, 10, None).await.unwrap();
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["test2"]);
    // Both leases run out, test2's later: test1 comes back first, then test2, then a new one.
    t.advance(secs(1));
    send("test3").await;
    t.advance(secs(5));
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(
            t.store.receive(&name, 1, None).await.unwrap()[0]
                .body
                .clone(),
        );
    }
    assert_eq!(order, ["test1", "test2", "test3"]);
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
    // On a standard queue an earlier receive's handle changes the current lease, as AWS does
    // (LocalStack's validated test_terminate_visibility_timeout_after_receive): b is visible
    // again at once.
    let changed = t
        .store
        .change_visibility(&name, &[(b_old.receipt_handle.clone(), secs(0))])
        .await
        .unwrap();
    assert_eq!(changed, vec![Ok(())]);
    let counts = t.store.counts(&name).await.unwrap();
    assert_eq!((counts.visible, counts.in_flight), (1, 0));
    let b_new = t.store.receive(&name, 10, None).await.unwrap().remove(0);
    assert_eq!(b_new.body, "b");
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
