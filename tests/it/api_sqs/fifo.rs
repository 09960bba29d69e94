//! FIFO queues through the AWS SDK: group order, sequence numbers, deduplication (explicit and
//! content-based), and the FIFO-only send rules.

use aws_sdk_sqs::types::{
    MessageSystemAttributeName as Sys, QueueAttributeName as A,
    SendMessageBatchRequestEntry as SendEntry,
};

use super::code_and_message;
use crate::common::api::TestApi;

#[tokio::test]
async fn fifo_order_groups_and_deduplication() {
    let api = TestApi::start().await;
    let url = api.create_fifo("jobs.fifo", false).await;
    let mut seqs = Vec::new();
    for (group, body) in [
        ("g1", "g1-m1"),
        ("g2", "g2-m1"),
        ("g1", "g1-m2"),
        ("g1", "g1-m3"),
    ] {
        let out = api
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(body)
            .send()
            .await
            .unwrap();
        seqs.push(
            out.sequence_number()
                .expect("FIFO sends have a sequence number")
                .parse::<u128>()
                .unwrap(),
        );
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // A duplicate is accepted but not delivered again.
    let dup = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("g1-m1")
        .message_group_id("g1")
        .message_deduplication_id("g1-m1");
    dup.send().await.unwrap();

    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(Sys::All)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    let g1: Vec<&str> = bodies
        .iter()
        .copied()
        .filter(|b| b.starts_with("g1"))
        .collect();
    assert_eq!(g1, ["g1-m1", "g1-m2", "g1-m3"]);
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    let first = got.messages()[0].attributes().unwrap();
    for k in [
        Sys::MessageGroupId,
        Sys::MessageDeduplicationId,
        Sys::SequenceNumber,
    ] {
        assert!(first.contains_key(&k), "{k:?} missing");
    }
    // Everything is in flight: nothing more, even though a duplicate was sent.
    let more = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert!(more.messages().is_empty());

    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_deduplication_id("d")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "MissingParameter".into(),
            "The request must contain the parameter MessageGroupId.".into()
        )
    );
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_group_id("g")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidParameterValue".into(),
            "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into()
        )
    );
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_group_id("g")
        .message_deduplication_id("d")
        .delay_seconds(2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err).1,
        "Value 2 for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type."
    );
    // In a batch, an entry without a group id, or without a deduplication id on a queue
    // without content-based deduplication, fails the whole request, as AWS answers (LocalStack's
    // validated test_send_batch_missing_*_for_fifo_queue), even beside a valid entry.
    let valid = SendEntry::builder()
        .id("ok")
        .message_body("x")
        .message_group_id("g")
        .message_deduplication_id("d1")
        .build()
        .unwrap();
    let err = api
        .sqs
        .send_message_batch()
        .queue_url(&url)
        .entries(valid.clone())
        .entries(
            SendEntry::builder()
                .id("nogroup")
                .message_body("x")
                .message_deduplication_id("d2")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidParameterValue".to_owned(),
            "The request must contain the parameter MessageGroupId.".to_owned()
        )
    );
    let err = api
        .sqs
        .send_message_batch()
        .queue_url(&url)
        .entries(valid)
        .entries(
            SendEntry::builder()
                .id("nodedup")
                .message_body("x")
                .message_group_id("g")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidParameterValue".to_owned(),
            "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".to_owned()
        )
    );
    // Neither was stored.
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert!(got.messages().is_empty(), "{got:?}");
}

#[tokio::test]
async fn content_based_deduplication() {
    let api = TestApi::start().await;
    let url = api.create_fifo("cbd.fifo", true).await;
    let a = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("same")
        .message_group_id("g")
        .send()
        .await
        .unwrap();
    let b = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("same")
        .message_group_id("g")
        .send()
        .await
        .unwrap();
    assert_eq!(a.message_id(), b.message_id());
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 1);
}

/// AWS keeps deduplicating in the scope a queue was created with after `DeduplicationScope`
/// changes (LocalStack's validated test_fifo_change_to_high_throughput_after_creation): the
/// attribute reads back as set, but a deduplication id seen in one group still suppresses it
/// in another, old ids and new.
#[tokio::test]
async fn deduplication_keeps_the_creation_scope_after_a_switch() {
    let api = TestApi::start().await;
    let url = api.create_fifo("switch.fifo", false).await;
    let send = |group: &'static str, dedup: &'static str, body: &'static str| {
        let sqs = api.sqs.clone();
        let url = url.clone();
        async move {
            sqs.send_message()
                .queue_url(url)
                .message_body(body)
                .message_group_id(group)
                .message_deduplication_id(dedup)
                .send()
                .await
                .unwrap()
        }
    };
    let first = send("g1", "same", "one").await;
    let mut attrs = std::collections::HashMap::new();
    attrs.insert(A::DeduplicationScope, "messageGroup".to_owned());
    attrs.insert(A::FifoThroughputLimit, "perMessageGroupId".to_owned());
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(Some(attrs))
        .send()
        .await
        .unwrap();
    let got = super::attributes(&api, &url, &[A::DeduplicationScope]).await;
    assert_eq!(got["DeduplicationScope"], "messageGroup");
    // Another group, the same id: still a duplicate of the first.
    let again = send("g2", "same", "two").await;
    assert_eq!(again.message_id(), first.message_id());
    // A new id, then the same new id in another group: a duplicate too.
    let fresh = send("g3", "new", "three").await;
    let dup = send("g4", "new", "four").await;
    assert_eq!(dup.message_id(), fresh.message_id());
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["one", "three"]);
}

/// A FIFO receive retried with the same `ReceiveRequestAttemptId` gets the same messages and
/// handles while they are held; once one is deleted, the same id is a new receive. A standard
/// queue ignores the id.
#[tokio::test]
async fn a_retried_receive_attempt_gets_the_same_messages() {
    let api = TestApi::start().await;
    let url = api.create_fifo("retry.fifo", true).await;
    for (group, body) in [("a", "a1"), ("a", "a2"), ("b", "b1")] {
        api.sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id(group)
            .send()
            .await
            .unwrap();
    }
    let receive = |attempt: &'static str| {
        let sqs = api.sqs.clone();
        let url = url.clone();
        async move {
            sqs.receive_message()
                .queue_url(url)
                .max_number_of_messages(2)
                .receive_request_attempt_id(attempt)
                .send()
                .await
                .unwrap()
                .messages()
                .iter()
                .map(|m| {
                    (
                        m.body().unwrap().to_owned(),
                        m.receipt_handle().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let first = receive("attempt-1").await;
    assert_eq!(first.len(), 2);
    let again = receive("attempt-1").await;
    assert_eq!(
        again, first,
        "the retry answers the same messages and handles"
    );
    // Another attempt id is a new receive: what is left (b1 or nothing of group a).
    let other = receive("attempt-2").await;
    assert!(other
        .iter()
        .all(|(b, _)| !first.iter().any(|(f, _)| f == b)));
    // Once one of the first messages is deleted, the first id is a new receive too.
    api.sqs
        .delete_message()
        .queue_url(&url)
        .receipt_handle(&first[0].1)
        .send()
        .await
        .unwrap();
    let after = receive("attempt-1").await;
    assert_ne!(after, first);

    let std_url = api.create("plain").await;
    for body in ["s1", "s2"] {
        api.sqs
            .send_message()
            .queue_url(&std_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let got = api
            .sqs
            .receive_message()
            .queue_url(&std_url)
            .receive_request_attempt_id("same")
            .send()
            .await
            .unwrap();
        seen.extend(got.messages().iter().map(|m| m.body().unwrap().to_owned()));
    }
    seen.sort();
    assert_eq!(
        seen,
        ["s1", "s2"],
        "a standard queue ignores the attempt id"
    );
}
