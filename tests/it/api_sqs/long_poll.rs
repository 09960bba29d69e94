//! Long polling through the AWS SDK: a waiting receive is woken by a send (and returns well
//! before its wait), an empty one waits out its time, the queue's default wait applies, and
//! shutdown ends a waiting receive at once.

use std::time::{Duration, Instant};

use crate::common::api::TestApi;
use crate::common::within;

#[tokio::test]
async fn long_poll_is_woken_by_a_send() {
    let api = TestApi::start().await;
    let url = api.create("lp").await;
    let sqs = api.sqs.clone();
    let poll_url = url.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        sqs.receive_message()
            .queue_url(poll_url)
            .wait_time_seconds(20)
            .send()
            .await
    });
    api.sqs
        .send_message()
        .queue_url(&url)
        .message_body("wake up")
        .send()
        .await
        .unwrap();
    let got = within(Duration::from_secs(10), "the long poll to return", poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.messages().len(), 1);
    assert_eq!(got.messages()[0].body(), Some("wake up"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn long_poll_waits_then_returns_empty_and_uses_the_queue_default() {
    let api = TestApi::start().await;
    let url = api.create("slow").await;
    let started = Instant::now();
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(got.messages().is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "returned after {:?}",
        started.elapsed()
    );

    // With ReceiveMessageWaitTimeSeconds on the queue, an omitted WaitTimeSeconds long-polls too.
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::ReceiveMessageWaitTimeSeconds,
            "20",
        )
        .send()
        .await
        .unwrap();
    let sqs = api.sqs.clone();
    let poll_url = url.clone();
    let poll = tokio::spawn(async move { sqs.receive_message().queue_url(poll_url).send().await });
    api.sqs
        .send_message()
        .queue_url(&url)
        .message_body("late")
        .send()
        .await
        .unwrap();
    let got = within(Duration::from_secs(10), "the default long poll", poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.messages().len(), 1);
}

#[tokio::test]
async fn long_poll_ends_at_shutdown() {
    let api = TestApi::start().await;
    let url = api.create("quiet").await;
    let sqs = api.sqs.clone();
    let poll = tokio::spawn(async move {
        sqs.receive_message()
            .queue_url(url)
            .wait_time_seconds(20)
            .send()
            .await
    });
    // Make sure the poll has reached the server before shutting down: a later request is
    // answered, and the server keeps the long poll open.
    api.sqs.list_queues().send().await.unwrap();
    let started = Instant::now();
    api.cancel.cancel();
    let result = within(
        Duration::from_secs(10),
        "the long poll to end at shutdown",
        poll,
    )
    .await
    .unwrap();
    if let Ok(out) = result {
        assert!(out.messages().is_empty());
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
