//! FIFO queues through the AWS SDK: group order, sequence numbers, deduplication (explicit and
//! content-based), and the FIFO-only send rules.

use aws_sdk_sqs::types::{
    MessageSystemAttributeName as Sys, SendMessageBatchRequestEntry as SendEntry,
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
    let out = api
        .sqs
        .send_message_batch()
        .queue_url(&url)
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
        .unwrap();
    assert_eq!(out.failed()[0].code(), "InvalidParameterValue");
    assert_eq!(
        out.failed()[0].message(),
        Some("The request must contain the parameter MessageGroupId.")
    );
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
