//! The SQS JSON protocol through a real client, the `aws-sdk-sqs` crate: every queue action
//! here, messages in `messages`, FIFO in `fifo`, long polling in `long_poll`, MD5 digests
//! checked as the Java SDK checks them in `md5`, wire details (headers, omitted members, error
//! shapes, hostile input) with raw HTTP in `wire`, and random bodies against every action in
//! `fuzz`, message move tasks (redrive) in `move_tasks`. The query protocol (form parameters,
//! XML answers) with raw HTTP in `query` and `query_errors`. Queues of several regions in
//! `regions`.

mod fifo;
mod fuzz;
mod long_poll;
mod md5;
mod messages;
mod move_tasks;
mod policy;
mod query;
mod query_errors;
mod regions;
mod wire;

use std::collections::BTreeMap;

use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::QueueAttributeName as A;

use crate::common::api::TestApi;

/// The legacy (query) code and the message of an SDK error.
pub(crate) fn code_and_message<E: ProvideErrorMetadata>(e: &E) -> (String, String) {
    (
        e.code().unwrap_or("<none>").to_owned(),
        e.message().unwrap_or("<none>").to_owned(),
    )
}

/// A queue's attributes as a sorted map of plain strings.
async fn attributes(api: &TestApi, url: &str, names: &[A]) -> BTreeMap<String, String> {
    let mut req = api.sqs.get_queue_attributes().queue_url(url);
    for n in names {
        req = req.attribute_names(n.clone());
    }
    let out = req.send().await.expect("get queue attributes");
    out.attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect()
}

#[tokio::test]
async fn queue_lifecycle_urls_and_listing() {
    let api = TestApi::start().await;
    let url = api.create("orders").await;
    assert_eq!(url, api.queue_url("orders"));
    api.create("orders-dlq").await;
    api.create("payments").await;

    let got = api
        .sqs
        .get_queue_url()
        .queue_name("orders")
        .send()
        .await
        .unwrap();
    assert_eq!(got.queue_url(), Some(url.as_str()));

    let all = api.sqs.list_queues().send().await.unwrap();
    assert_eq!(all.queue_urls().len(), 3);
    assert_eq!(all.next_token(), None);
    let some = api
        .sqs
        .list_queues()
        .queue_name_prefix("orders")
        .send()
        .await
        .unwrap();
    assert_eq!(
        some.queue_urls(),
        [api.queue_url("orders"), api.queue_url("orders-dlq")]
    );

    // Pagination with MaxResults and NextToken.
    let page1 = api.sqs.list_queues().max_results(2).send().await.unwrap();
    assert_eq!(page1.queue_urls().len(), 2);
    let token = page1.next_token().expect("a next token").to_owned();
    let page2 = api
        .sqs
        .list_queues()
        .max_results(2)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(page2.queue_urls(), [api.queue_url("payments")]);
    assert_eq!(page2.next_token(), None);
    let err = api
        .sqs
        .list_queues()
        .max_results(1001)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err).0, "InvalidParameterValue");

    // A URL is resolved by its last two segments, whatever the host; a foreign account is unknown.
    let other_host = url.replace("127.0.0.1", "localhost.example");
    api.sqs
        .get_queue_attributes()
        .queue_url(&other_host)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .unwrap();
    let foreign = url.replace("000000000000", "111111111111");
    let err = api
        .sqs
        .get_queue_attributes()
        .queue_url(foreign)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");

    api.sqs.delete_queue().queue_url(&url).send().await.unwrap();
    let err = api
        .sqs
        .get_queue_url()
        .queue_name("orders")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_queue_does_not_exist());
    assert_eq!(
        code_and_message(&err),
        (
            "AWS.SimpleQueueService.NonExistentQueue".into(),
            "The specified queue does not exist.".into()
        )
    );
    let err = api
        .sqs
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_queue_does_not_exist());
}

#[tokio::test]
async fn create_queue_is_idempotent_only_for_equal_attributes() {
    let api = TestApi::start().await;
    let create = |delay: &str| {
        api.sqs
            .create_queue()
            .queue_name("q")
            .attributes(A::DelaySeconds, delay)
            .send()
    };
    let first = create("5").await.unwrap();
    let again = create("5").await.unwrap();
    assert_eq!(first.queue_url(), again.queue_url());
    // No attributes at all also matches.
    api.sqs.create_queue().queue_name("q").send().await.unwrap();
    let err = create("6").await.unwrap_err().into_service_error();
    assert!(err.is_queue_name_exists(), "{err:?}");
    assert_eq!(
        code_and_message(&err),
        (
            "QueueAlreadyExists".into(),
            "A queue already exists with the same name and a different value for attribute DelaySeconds".into()
        )
    );
    // Created queues persist: the store sees it, tags included.
    api.sqs
        .create_queue()
        .queue_name("tagged")
        .tags("team", "core")
        .send()
        .await
        .unwrap();
    let stored = api
        .store
        .queue(&esmd::domain::queue::QueueName::parse("tagged").unwrap())
        .await
        .unwrap();
    assert_eq!(stored.tags.get("team").map(String::as_str), Some("core"));
}

#[tokio::test]
async fn fifo_and_standard_creation_rules() {
    let api = TestApi::start().await;
    // (queue name, attributes, expected code, expected message)
    type Case<'a> = (&'a str, Vec<(A, &'a str)>, &'a str, &'a str);
    let cases: [Case; 6] = [
        (
            "nosuffix",
            vec![(A::FifoQueue, "true")],
            "InvalidParameterValue",
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length",
        ),
        (
            "x.fifo",
            vec![],
            "InvalidParameterValue",
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ),
        ("std", vec![(A::FifoQueue, "false")], "InvalidAttributeName", "Unknown Attribute FifoQueue."),
        (
            "std",
            vec![(A::ContentBasedDeduplication, "true")],
            "InvalidAttributeName",
            "Unknown Attribute ContentBasedDeduplication.",
        ),
        (
            "std",
            vec![(A::DeduplicationScope, "messageGroup")],
            "InvalidAttributeName",
            "You can specify the DeduplicationScope only when FifoQueue is set to true.",
        ),
        ("bad name!", vec![], "InvalidParameterValue", "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"),
    ];
    for (name, attrs, code, message) in cases {
        let mut req = api.sqs.create_queue().queue_name(name);
        for (k, v) in attrs {
            req = req.attributes(k, v);
        }
        let err = req.send().await.unwrap_err();
        assert_eq!(
            code_and_message(&err),
            (code.to_owned(), message.to_owned()),
            "creating {name}"
        );
    }
    let url = api.create_fifo("events.fifo", true).await;
    let err = api
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(A::FifoQueue, "false")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidAttributeValue".into(),
            "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.".into()
        )
    );
}

#[tokio::test]
async fn get_queue_attributes_reports_aws_exact_sets() {
    let api = TestApi::start().await;
    let std_url = api.create("plain").await;
    let fifo_url = api.create_fifo("ordered.fifo", false).await;
    let standard = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
        "CreatedTimestamp",
        "DelaySeconds",
        "LastModifiedTimestamp",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "QueueArn",
        "ReceiveMessageWaitTimeSeconds",
        "SqsManagedSseEnabled",
        "VisibilityTimeout",
    ];
    let got = attributes(&api, &std_url, &[A::All]).await;
    assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), standard);
    assert_eq!(got["VisibilityTimeout"], "30");
    assert_eq!(got["MaximumMessageSize"], "1048576");
    assert_eq!(got["MessageRetentionPeriod"], "345600");
    assert_eq!(got["QueueArn"], "arn:aws:sqs:us-east-1:000000000000:plain");
    assert_eq!(got["SqsManagedSseEnabled"], "true");
    let created: i64 = got["CreatedTimestamp"].parse().unwrap();
    assert!(
        created > 1_600_000_000 && created < 10_000_000_000,
        "seconds, not millis: {created}"
    );

    let got = attributes(&api, &fifo_url, &[A::All]).await;
    let mut fifo: Vec<&str> = standard.to_vec();
    fifo.extend([
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoQueue",
        "FifoThroughputLimit",
    ]);
    fifo.sort_unstable();
    assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), fifo);
    assert_eq!(got["FifoQueue"], "true");
    assert_eq!(got["ContentBasedDeduplication"], "false");
    assert_eq!(got["DeduplicationScope"], "queue");
    assert_eq!(got["FifoThroughputLimit"], "perQueue");

    // Named attributes only; none requested gives none; an unknown name is refused.
    let got = attributes(&api, &std_url, &[A::VisibilityTimeout, A::FifoQueue]).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["VisibilityTimeout"]);
    assert!(attributes(&api, &std_url, &[]).await.is_empty());
    let err = api
        .sqs
        .get_queue_attributes()
        .queue_url(&std_url)
        .attribute_names(A::from("Bogus"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidAttributeName".into(),
            "Unknown Attribute Bogus.".into()
        )
    );
}

#[tokio::test]
async fn set_queue_attributes_and_redrive_policy() {
    let api = TestApi::start().await;
    let url = api.create("work").await;
    let dlq = api.create("work-dlq").await;
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:work-dlq","maxReceiveCount":"3"}"#;
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(A::VisibilityTimeout, "60")
        .attributes(A::RedrivePolicy, policy)
        .send()
        .await
        .unwrap();
    let got = attributes(&api, &url, &[A::All]).await;
    assert_eq!(got["VisibilityTimeout"], "60");
    assert_eq!(
        got["RedrivePolicy"],
        r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:work-dlq","maxReceiveCount":3}"#
    );
    let sources = api
        .sqs
        .list_dead_letter_source_queues()
        .queue_url(&dlq)
        .send()
        .await
        .unwrap();
    assert_eq!(sources.queue_urls(), std::slice::from_ref(&url));

    // "" removes the policy.
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(A::RedrivePolicy, "")
        .send()
        .await
        .unwrap();
    assert!(!attributes(&api, &url, &[A::All])
        .await
        .contains_key("RedrivePolicy"));
    let sources = api
        .sqs
        .list_dead_letter_source_queues()
        .queue_url(&dlq)
        .send()
        .await
        .unwrap();
    assert!(sources.queue_urls().is_empty());

    let refused: [(A, &str, &str, &str); 5] = [
        (A::from("Bogus"), "1", "InvalidAttributeName", "Unknown Attribute Bogus."),
        (A::QueueArn, "x", "InvalidAttributeName", "Unknown Attribute QueueArn."),
        (
            A::VisibilityTimeout,
            "43201",
            "InvalidAttributeValue",
            "Invalid value for the parameter VisibilityTimeout. Reason: Must be an integer from 0 to 43200.",
        ),
        (
            A::RedrivePolicy,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:work-dlq","maxReceiveCount":0}"#,
            "InvalidParameterValue",
            r#"Value {"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:work-dlq","maxReceiveCount":0} for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: 0, valid values are from 1 to 1000 both inclusive."#,
        ),
        (A::ContentBasedDeduplication, "true", "InvalidAttributeName", "Unknown Attribute ContentBasedDeduplication."),
    ];
    for (name, value, code, message) in refused {
        let err = api
            .sqs
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(name.clone(), value)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            code_and_message(&err),
            (code.to_owned(), message.to_owned()),
            "setting {name:?}"
        );
    }
    // A dead-letter queue that does not exist is refused by the store.
    let err = api
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(A::RedrivePolicy, r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:nope","maxReceiveCount":3}"#)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err).0, "InvalidParameterValue");
}

#[tokio::test]
async fn tags_and_purge() {
    let api = TestApi::start().await;
    let url = api.create("tagged").await;
    let tags = api
        .sqs
        .list_queue_tags()
        .queue_url(&url)
        .send()
        .await
        .unwrap();
    assert!(tags.tags().is_none_or(|t| t.is_empty()));
    api.sqs
        .tag_queue()
        .queue_url(&url)
        .tags("team", "core")
        .tags("env", "dev")
        .send()
        .await
        .unwrap();
    api.sqs
        .untag_queue()
        .queue_url(&url)
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    let tags = api
        .sqs
        .list_queue_tags()
        .queue_url(&url)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<_, _> = tags.tags().into_iter().flatten().collect();
    assert_eq!(tags.len(), 1);
    assert_eq!(
        tags.get(&"team".to_owned()).map(|s| s.as_str()),
        Some("core")
    );

    api.sqs
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .send()
        .await
        .unwrap();
    api.sqs.purge_queue().queue_url(&url).send().await.unwrap();
    let counts = attributes(&api, &url, &[A::ApproximateNumberOfMessages]).await;
    assert_eq!(counts["ApproximateNumberOfMessages"], "0");
    let err = api
        .sqs
        .purge_queue()
        .queue_url(&url)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    let err = err.into_service_error();
    assert!(err.is_purge_queue_in_progress(), "{err:?}");
    assert_eq!(
        code_and_message(&err),
        (
            "AWS.SimpleQueueService.PurgeQueueInProgress".into(),
            "Only one PurgeQueue operation on tagged is allowed every 60 seconds.".into()
        )
    );
}

/// The request path keeps a copy of each queue's settings (src/store/cache.rs); a change must
/// be in force for the very next request, and a deleted queue must be gone at once.
#[tokio::test]
async fn sends_follow_queue_changes_at_once() {
    let api = TestApi::start().await;
    let url = api
        .sqs
        .create_queue()
        .queue_name("changing")
        .attributes(A::MaximumMessageSize, "1024")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let set_max = |bytes: &'static str| {
        api.sqs
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(A::MaximumMessageSize, bytes)
            .send()
    };
    // SendMessageBatch checks its entries against the queue's settings before the store does.
    let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
        .id("only")
        .message_body("x".repeat(2000))
        .build()
        .unwrap();
    let send = || {
        api.sqs
            .send_message_batch()
            .queue_url(&url)
            .entries(entry.clone())
            .send()
    };
    let out = send().await.unwrap();
    assert_eq!(out.failed().len(), 1, "2000 bytes exceed 1024: {out:?}");
    set_max("4096").await.unwrap();
    let out = send().await.unwrap();
    assert_eq!(
        out.successful().len(),
        1,
        "the raised maximum applies at once: {out:?}"
    );
    api.sqs.delete_queue().queue_url(&url).send().await.unwrap();
    let err = send().await.expect_err("the queue is gone");
    assert_eq!(
        code_and_message(&err).0,
        "AWS.SimpleQueueService.NonExistentQueue"
    );
}
