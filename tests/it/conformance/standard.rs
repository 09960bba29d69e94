//! Standard-queue rules of the contract: send, receive, delete, visibility timeouts and their
//! changes, stale handles, delays, counts by state, per-entry validation, queue lifecycle, and
//! long polls woken by a send and by time.

use std::collections::BTreeMap;
use std::time::Duration;

use esmd::domain::attributes::AttributeValue;
use esmd::domain::message::NewMessage;
use esmd::domain::queue::{QueueSettings, Redrive};
use esmd::domain::RejectCode;
use esmd::store::QueueStore;

use super::harness::Fixture;
use super::{bodies, rejection};
use crate::common::{q, secs, within, T0};

pub async fn send_receive_delete_with_attributes<S: QueueStore>(t: &Fixture<S>) {
    let name = t.queue("orders", QueueSettings::default()).await;
    let mut attrs = BTreeMap::new();
    attrs.insert("Title".to_string(), AttributeValue::string("The Whistler"));
    attrs.insert("Author".to_string(), AttributeValue::string("John Grisham"));
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
    assert_eq!(sent.sequence_number, None);
    t.advance(secs(1));
    let got = t.store.receive(&name, 10, None).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id, sent.message_id);
    assert_eq!(m.attributes, attrs);
    assert_eq!(m.md5_of_body, sent.md5_of_body);
    assert_eq!(m.receive_count, 1);
    assert_eq!(m.sent_at.as_millis(), T0);
    assert_eq!(m.first_receive_at.as_millis(), T0 + 1000);
    assert!(
        t.store.receive(&name, 10, None).await.unwrap().is_empty(),
        "in flight"
    );
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 1, 0));
    let handle = std::slice::from_ref(&m.receipt_handle);
    assert_eq!(t.store.delete(&name, handle).await.unwrap(), vec![Ok(())]);
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 0, 0));
    // Deleting again with the same handle succeeds; garbage is refused.
    assert_eq!(t.store.delete(&name, handle).await.unwrap(), vec![Ok(())]);
    let bad = t
        .store
        .delete(&name, &["garbage".to_string()])
        .await
        .unwrap();
    assert_eq!(
        bad[0].as_ref().unwrap_err().code,
        RejectCode::ReceiptHandleIsInvalid
    );
    // A handle of another queue is refused too.
    let other = t.queue("other", QueueSettings::default()).await;
    let e = t.store.delete(&other, handle).await.unwrap();
    assert_eq!(
        e[0].as_ref().unwrap_err().code,
        RejectCode::ReceiptHandleIsInvalid
    );
}

pub async fn visibility_timeout_and_override<S: QueueStore>(t: &Fixture<S>) {
    let name = t
        .queue(
            "vt",
            QueueSettings {
                visibility_timeout: secs(10),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(&name, vec![NewMessage::body("a")])
        .await
        .unwrap();
    let first = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    t.advance(secs(9));
    assert!(t.store.receive(&name, 1, None).await.unwrap().is_empty());
    t.advance(secs(1));
    // The queue's timeout ran out: delivered again, counted, with a new handle.
    let again = t
        .store
        .receive(&name, 1, Some(secs(2)))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.receive_count, 2);
    assert_ne!(again.receipt_handle, first.receipt_handle);
    assert_eq!(again.first_receive_at, first.first_receive_at);
    // The override (2 s) applies instead of the queue's 10 s.
    t.advance(secs(2));
    let third = t.store.receive(&name, 1, None).await.unwrap();
    assert_eq!(third.len(), 1, "visible again after the 2 s override");
    assert_eq!(third[0].receive_count, 3);
}

/// A message whose lease ran out goes out before messages never received.
pub async fn a_requeued_message_goes_out_before_later_ones<S: QueueStore>(t: &Fixture<S>) {
    let name = t
        .queue(
            "requeue",
            QueueSettings {
                visibility_timeout: secs(3),
                ..Default::default()
            },
        )
        .await;
    t.store
        .send(&name, vec![NewMessage::body("test1")])
        .await
        .unwrap();
    assert_eq!(
        t.store.receive(&name, 1, None).await.unwrap()[0].body,
        "test1"
    );
    t.store
        .send(&name, vec![NewMessage::body("test2")])
        .await
        .unwrap();
    t.advance(secs(3));
    assert_eq!(
        t.store.receive(&name, 1, None).await.unwrap()[0].body,
        "test1"
    );
    assert_eq!(
        t.store.receive(&name, 1, None).await.unwrap()[0].body,
        "test2"
    );
}

pub async fn stale_handles_standard<S: QueueStore>(t: &Fixture<S>) {
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
    let r = t
        .store
        .delete(&name, std::slice::from_ref(&a.receipt_handle))
        .await;
    assert_eq!(r.unwrap(), vec![Ok(())]);
    // b: received again; the old handle succeeds but deletes nothing: the new receiver owns it.
    let b_old = got.iter().find(|m| m.body == "b").unwrap();
    let b_new = t.store.receive(&name, 10, None).await.unwrap().remove(0);
    assert_eq!(b_new.body, "b");
    let r = t
        .store
        .delete(&name, std::slice::from_ref(&b_old.receipt_handle))
        .await;
    assert_eq!(r.unwrap(), vec![Ok(())]);
    assert_eq!(t.store.counts(&name).await.unwrap().in_flight, 1);
    // An earlier receive's handle changes the current lease while in flight.
    let changed = t
        .store
        .change_visibility(&name, &[(b_old.receipt_handle.clone(), secs(0))])
        .await
        .unwrap();
    assert_eq!(changed, vec![Ok(())]);
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight), (1, 0));
    let b_new = t.store.receive(&name, 10, None).await.unwrap().remove(0);
    let r = t
        .store
        .delete(&name, std::slice::from_ref(&b_new.receipt_handle))
        .await;
    assert_eq!(r.unwrap(), vec![Ok(())]);
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!(c.visible + c.in_flight + c.delayed, 0);
}

pub async fn change_visibility_rules<S: QueueStore>(t: &Fixture<S>) {
    let name = t.queue("cmv", QueueSettings::default()).await;
    t.store
        .send(&name, vec![NewMessage::body("a")])
        .await
        .unwrap();
    let m = t.store.receive(&name, 1, None).await.unwrap().remove(0);
    let (store, name2, handle) = (&t.store, &name, &m.receipt_handle);
    let change = |d: Duration| async move {
        let entries = [(handle.clone(), d)];
        store
            .change_visibility(name2, &entries)
            .await
            .unwrap()
            .remove(0)
    };
    assert!(
        change(secs(43_200)).await.is_ok(),
        "12 h right at the receive"
    );
    t.advance(secs(5));
    let over = change(secs(43_200)).await.unwrap_err();
    assert!(
        over.message.contains("Total VisibilityTimeout"),
        "{}",
        over.message
    );
    assert!(change(secs(43_195)).await.is_ok());
    // Zero makes it visible at once.
    assert!(change(Duration::ZERO).await.is_ok());
    assert_eq!(t.store.counts(&name).await.unwrap().visible, 1);
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

pub async fn delays_and_counts_by_state<S: QueueStore>(t: &Fixture<S>) {
    let name = t
        .queue(
            "delayed",
            QueueSettings {
                delay: secs(10),
                ..Default::default()
            },
        )
        .await;
    let now = NewMessage {
        delay: Some(Duration::ZERO),
        ..NewMessage::body("now")
    };
    let later = NewMessage {
        delay: Some(secs(20)),
        ..NewMessage::body("later")
    };
    t.store
        .send(&name, vec![NewMessage::body("queue-delay"), now, later])
        .await
        .unwrap();
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (1, 0, 2));
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["now"]
    );
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 1, 2));
    t.advance(secs(10));
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["queue-delay"]
    );
    t.advance(secs(10));
    assert_eq!(
        bodies(&t.store.receive(&name, 10, None).await.unwrap()),
        ["later"]
    );
    let c = t.store.counts(&name).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 3, 0));
    assert_eq!(c.oldest_sent_at.map(|s| s.as_millis()), Some(T0));
}

pub async fn validation_happens_per_entry<S: QueueStore>(t: &Fixture<S>) {
    let name = t
        .queue(
            "valid",
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
        .contains("shorter than 1024"));
    assert_eq!(
        r[2].as_ref().unwrap_err().code,
        RejectCode::MissingParameter
    );
    assert_eq!(t.store.counts(&name).await.unwrap().visible, 1);
    // A message to a queue that does not exist is refused as a whole.
    let e = rejection(
        t.store
            .send(&q("nowhere"), vec![NewMessage::body("x")])
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, RejectCode::QueueDoesNotExist);
}

pub async fn queues_are_created_listed_and_deleted<S: QueueStore>(t: &Fixture<S>) {
    let dlq = q("b-dlq");
    let settings = QueueSettings {
        visibility_timeout: secs(45),
        delay: secs(3),
        retention: secs(3600),
        max_message_size: 2048,
        receive_wait: secs(7),
        redrive: Some(Redrive {
            dead_letter_queue: dlq.clone(),
            max_receive_count: 4,
        }),
        ..Default::default()
    };
    // The dead-letter queue must exist.
    let e = rejection(
        t.store
            .create_queue(&q("a"), &settings, &BTreeMap::new())
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("Dead letter target does not exist"),
        "{}",
        e.message
    );
    let (_, created) = t
        .store
        .create_queue(&dlq, &QueueSettings::default(), &BTreeMap::new())
        .await
        .unwrap();
    assert!(created);
    let mut tags = BTreeMap::new();
    tags.insert("team".to_string(), "core".to_string());
    let (info, created) = t
        .store
        .create_queue(&q("a"), &settings, &tags)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(info.settings, settings);
    assert_eq!(info.tags, tags);
    assert_eq!(info.created_at.as_millis(), T0);
    // Creating it again returns the existing queue unchanged.
    let (same, created) = t
        .store
        .create_queue(&q("a"), &QueueSettings::default(), &BTreeMap::new())
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(same, info);
    assert_eq!(t.store.queue(&q("a")).await.unwrap(), info);
    // Settings change.
    t.advance(secs(1));
    let changed = QueueSettings {
        visibility_timeout: secs(5),
        ..settings.clone()
    };
    let after = t.store.set_settings(&q("a"), &changed).await.unwrap();
    assert_eq!(after.settings, changed);
    assert_eq!(after.last_modified_at.as_millis(), T0 + 1000);
    let names: Vec<String> = t
        .store
        .queues()
        .await
        .unwrap()
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names, ["a", "b-dlq"]);
    // Deleted: gone, with its messages.
    t.store
        .send(&q("a"), vec![NewMessage::body("x")])
        .await
        .unwrap();
    t.store.delete_queue(&q("a")).await.unwrap();
    let e = rejection(t.store.queue(&q("a")).await.unwrap_err());
    assert_eq!(e.code, RejectCode::QueueDoesNotExist);
    let e = rejection(t.store.delete_queue(&q("a")).await.unwrap_err());
    assert_eq!(e.code, RejectCode::QueueDoesNotExist);
    let e = rejection(t.store.receive(&q("a"), 1, None).await.unwrap_err());
    assert_eq!(e.code, RejectCode::QueueDoesNotExist);
    // Created again, it is empty.
    t.store
        .create_queue(&q("a"), &QueueSettings::default(), &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(t.store.counts(&q("a")).await.unwrap().visible, 0);
}

pub async fn long_poll_is_woken_by_a_send<S: QueueStore>(t: &Fixture<S>) {
    let name = t.queue("lp", QueueSettings::default()).await;
    let store = t.store.clone();
    let n = name.clone();
    // The clock is manual and never moves here: only a wake-up can end this wait.
    let waiter = tokio::spawn(async move { store.receive_wait(&n, 10, None, secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await; // sleep-ok: lets the poll reach its wait; it holds either way, and a missed wake-up fails by the bound
    t.store
        .send(&name, vec![NewMessage::body("hello")])
        .await
        .unwrap();
    let got = within(secs(10), "the long poll to be woken by the send", waiter).await;
    assert_eq!(bodies(&got.unwrap().unwrap()), ["hello"]);
}

pub async fn long_poll_is_woken_by_time<S: QueueStore>(t: &Fixture<S>) {
    let name = t.queue("lpt", QueueSettings::default()).await;
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
    // Whatever the waiter is doing when time moves, the clock passing the delay satisfies it.
    t.advance(secs(4));
    let got = within(secs(10), "the delayed message", waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bodies(&got), ["later"]);
    t.store
        .delete(&name, std::slice::from_ref(&got[0].receipt_handle))
        .await
        .unwrap();
    // With nothing to come, the wait ends at its deadline.
    let store = t.store.clone();
    let n = name.clone();
    let waiter = tokio::spawn(async move { store.receive_wait(&n, 10, None, secs(5)).await });
    let clock = t.clock.clone();
    let got = within(secs(10), "the empty long poll's deadline", async move {
        let mut waiter = waiter;
        loop {
            // Moves the manual clock until the waiter, timed by it, sees its deadline pass.
            clock.advance(secs(1));
            tokio::select! {
                r = &mut waiter => return r,
                () = tokio::task::yield_now() => {}
            }
        }
    })
    .await;
    assert!(got.unwrap().unwrap().is_empty());
}
