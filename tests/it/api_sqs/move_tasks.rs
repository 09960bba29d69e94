//! Message move tasks (a dead-letter queue's redrive) through the `aws-sdk-sqs` client against a
//! whole daemon (the runner is the daemon's): moves to the original sources and to a given
//! queue, AWS's errors with their codes, statuses and messages (as recorded from AWS in
//! LocalStack's validated tests), the rate and cancellation on a manual clock, a task resumed
//! after a restart, and a destination deleted while the task runs.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName as Sys, QueueAttributeName as A,
};
use aws_sdk_sqs::Client;
use base64::Engine as _;
use esmd::clock::Clock;
use esmd::domain::Timestamp;
use serde_json::{json, Value};

use super::code_and_message;
use crate::common::api::sdk_client;
use crate::common::daemon::TestDaemon;
use crate::common::{eventually, within};

const CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\n";
const LIMIT: Duration = Duration::from_secs(10);

async fn create(sqs: &Client, name: &str, attrs: &[(A, String)]) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), v);
    }
    req.send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("url")
        .to_owned()
}

async fn arn(sqs: &Client, url: &str) -> String {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::QueueArn)
        .send()
        .await;
    out.expect("queue arn").attributes().expect("attributes")[&A::QueueArn].clone()
}

async fn visible(sqs: &Client, url: &str) -> u64 {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("counts");
    out.attributes().expect("attributes")[&A::ApproximateNumberOfMessages]
        .parse()
        .expect("a count")
}

/// A queue whose messages go to `dlq_arn` on their second receive.
async fn source_of(sqs: &Client, name: &str, dlq_arn: &str) -> String {
    let policy = json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1 }).to_string();
    let mut attrs = vec![(A::RedrivePolicy, policy)];
    if name.ends_with(".fifo") {
        attrs.push((A::FifoQueue, "true".into()));
        attrs.push((A::ContentBasedDeduplication, "true".into()));
    }
    create(sqs, name, &attrs).await
}

/// Receives `source`'s messages until `n` more are in `dlq` (each message's second receive
/// moves it there).
async fn dead_letter(sqs: &Client, source: &str, dlq: &str, n: u64) {
    let before = visible(sqs, dlq).await;
    within(
        LIMIT,
        "the messages to reach the dead-letter queue",
        async {
            while visible(sqs, dlq).await < before + n {
                let req = sqs
                    .receive_message()
                    .queue_url(source)
                    .max_number_of_messages(10);
                req.visibility_timeout(0).send().await.expect("receive");
            }
        },
    )
    .await;
}

/// Receives every message of `url` (at most `n`), keeping them in flight.
async fn drain(sqs: &Client, url: &str, n: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    while all.len() < n {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(Sys::All)
            .visibility_timeout(300)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            break;
        }
        all.extend(out.messages().iter().cloned());
    }
    all
}

fn bodies(messages: &[aws_sdk_sqs::types::Message]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| m.body().expect("body").to_owned())
        .collect()
}

/// The source's most recent task, once `done` accepts it.
async fn task_when(
    sqs: &Client,
    source_arn: &str,
    what: &str,
    done: impl Fn(&aws_sdk_sqs::types::ListMessageMoveTasksResultEntry) -> bool,
) -> aws_sdk_sqs::types::ListMessageMoveTasksResultEntry {
    eventually(LIMIT, what, || async {
        let out = sqs
            .list_message_move_tasks()
            .source_arn(source_arn)
            .send()
            .await
            .ok()?;
        out.results().first().filter(|t| done(t)).cloned()
    })
    .await
}

/// A raw JSON-protocol call: (status, body, `x-amzn-query-error`).
async fn call(url: &str, action: &str, body: Value) -> (u16, Value, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(body.to_string())
        .send()
        .await
        .expect("a response");
    let status = resp.status().as_u16();
    let query = resp
        .headers()
        .get("x-amzn-query-error")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    (
        status,
        resp.json().await.expect("a JSON body"),
        query.unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_redrive_to_the_original_sources_moves_each_message_back_as_a_new_message() {
    let d = TestDaemon::start(CONFIG).await;
    let sqs = sdk_client(&d.url, "x");
    let dlq = create(&sqs, "dlq", &[]).await;
    let dlq_arn = arn(&sqs, &dlq).await;
    let (one, two) = (
        source_of(&sqs, "one", &dlq_arn).await,
        source_of(&sqs, "two", &dlq_arn).await,
    );
    let colour = MessageAttributeValue::builder()
        .data_type("String")
        .string_value("red")
        .build()
        .expect("attribute");
    let mut sent = BTreeSet::new();
    for (url, body) in [(&one, "one-1"), (&one, "one-2"), (&two, "two-1")] {
        let out = sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .message_attributes("colour", colour.clone());
        sent.insert(
            out.send()
                .await
                .expect("send")
                .message_id()
                .expect("id")
                .to_owned(),
        );
    }
    dead_letter(&sqs, &one, &dlq, 2).await;
    dead_letter(&sqs, &two, &dlq, 1).await;

    let started = sqs
        .start_message_move_task()
        .source_arn(&dlq_arn)
        .send()
        .await
        .expect("start");
    let handle = base64::engine::general_purpose::STANDARD
        .decode(started.task_handle().expect("handle"))
        .expect("base64");
    let handle: Value = serde_json::from_slice(&handle).expect("a JSON handle");
    assert_eq!(handle["sourceArn"], dlq_arn.as_str());
    uuid::Uuid::parse_str(handle["taskId"].as_str().expect("taskId")).expect("a UUID task id");

    let task = task_when(&sqs, &dlq_arn, "the task to complete", |t| {
        t.status() == Some("COMPLETED")
    })
    .await;
    assert_eq!(
        (
            task.approximate_number_of_messages_moved(),
            task.approximate_number_of_messages_to_move()
        ),
        (3, Some(3))
    );
    assert_eq!(task.source_arn(), Some(dlq_arn.as_str()));
    // As AWS answers a finished task moved to the original sources: no handle, destination,
    // rate or failure reason.
    assert_eq!(
        (
            task.task_handle(),
            task.destination_arn(),
            task.max_number_of_messages_per_second(),
            task.failure_reason()
        ),
        (None, None, None, None)
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    assert!(
        (now - 60_000..=now).contains(&task.started_timestamp()),
        "{task:?}"
    );

    let back = drain(&sqs, &one, 10).await;
    assert_eq!(
        bodies(&back),
        BTreeSet::from(["one-1".into(), "one-2".into()])
    );
    assert_eq!(
        bodies(&drain(&sqs, &two, 10).await),
        BTreeSet::from(["two-1".into()])
    );
    for m in &back {
        // A new message, as AWS's redrive makes it: a new id, never received before this one.
        assert!(!sent.contains(m.message_id().expect("id")), "{m:?}");
        assert_eq!(
            m.attributes().expect("system attributes")[&Sys::ApproximateReceiveCount],
            "1"
        );
        assert!(!m
            .attributes()
            .expect("system attributes")
            .contains_key(&Sys::DeadLetterQueueSourceArn));
        assert_eq!(
            m.message_attributes().expect("attributes")["colour"],
            colour
        );
    }
    assert_eq!(visible(&sqs, &dlq).await, 0);
    d.stop().await;
}

#[tokio::test]
async fn refusals_carry_awss_codes_statuses_and_messages() {
    let d = TestDaemon::start(CONFIG).await;
    let sqs = sdk_client(&d.url, "x");
    let plain = create(&sqs, "plain", &[]).await;
    let plain_arn = arn(&sqs, &plain).await;
    let dlq = create(&sqs, "dlq", &[]).await;
    let dlq_arn = arn(&sqs, &dlq).await;
    source_of(&sqs, "src", &dlq_arn).await;
    let fifo = create(&sqs, "f.fifo", &[(A::FifoQueue, "true".into())]).await;
    let fifo_arn = arn(&sqs, &fifo).await;
    let handle = |id: &str, arn: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(json!({ "taskId": id, "sourceArn": arn }).to_string())
    };
    let invalid = (400, "InvalidParameterValue;Sender".to_owned());
    let not_found = (404, "ResourceNotFoundException;Sender".to_owned());
    let cases: Vec<(&str, Value, (u16, String), String)> = vec![
        ("CancelMessageMoveTask", json!({ "TaskHandle": "foobared" }), invalid.clone(), "Value for parameter TaskHandle is invalid.".into()),
        (
            "CancelMessageMoveTask",
            json!({ "TaskHandle": handle("10f57157-fc38-4da9-a113-4de7e12d05dd", "arn:aws:sqs:us-east-1:878966065785:test-queue-doesnt-exist-123456") }),
            not_found.clone(),
            "The resource that you specified for the SourceArn parameter doesn't exist.".into(),
        ),
        ("CancelMessageMoveTask", json!({ "TaskHandle": handle("10f57157-fc38-4da9-a113-4de7e12d05aa", &plain_arn) }), not_found.clone(), "Task does not exist.".into()),
        ("StartMessageMoveTask", json!({ "SourceArn": plain_arn, "DestinationArn": dlq_arn }), invalid.clone(), "Source queue must be configured as a Dead Letter Queue.".into()),
        (
            "StartMessageMoveTask",
            json!({ "SourceArn": dlq_arn, "DestinationArn": format!("{plain_arn}doesntexist") }),
            not_found.clone(),
            "The resource that you specified for the DestinationArn parameter doesn't exist.".into(),
        ),
        ("StartMessageMoveTask", json!({ "SourceArn": "dlq" }), invalid.clone(), "You must use this format to specify the SourceArn: arn:<partition>:<service>:<region>:<account-id>:<resource-id>".into()),
        (
            "StartMessageMoveTask",
            json!({ "SourceArn": dlq_arn, "MaxNumberOfMessagesPerSecond": 501 }),
            invalid.clone(),
            "Value 501 for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: It must be between 1 and 500.".into(),
        ),
        (
            "StartMessageMoveTask",
            json!({ "SourceArn": dlq_arn, "DestinationArn": fifo_arn }),
            invalid.clone(),
            "The source queue dlq and the destination queue f.fifo must be of the same type (both standard or both FIFO).".into(),
        ),
        ("ListMessageMoveTasks", json!({ "SourceArn": dlq_arn, "MaxResults": 11 }), invalid.clone(), "Value 11 for parameter MaxResults is invalid. Reason: It must be between 1 and 10.".into()),
        ("ListMessageMoveTasks", json!({ "SourceArn": format!("{dlq_arn}-gone") }), not_found.clone(), "The resource that you specified for the SourceArn parameter doesn't exist.".into()),
        ("StartMessageMoveTask", json!({}), (400, "MissingParameter;Sender".into()), "The request must contain the parameter SourceArn.".into()),
    ];
    for (action, body, (status, query), message) in cases {
        let (got_status, got, got_query) = call(&d.url, action, body.clone()).await;
        assert_eq!(
            (
                got_status,
                got_query.as_str(),
                got["message"].as_str().unwrap_or("")
            ),
            (status, query.as_str(), message.as_str()),
            "{action} {body}"
        );
    }
    // The SDK reads the same codes.
    let err = sqs
        .cancel_message_move_task()
        .task_handle("foobared")
        .send()
        .await
        .expect_err("refused");
    assert_eq!(code_and_message(&err).0, "InvalidParameterValue");
    // A source without tasks lists none; nothing was started by the refusals.
    let out = sqs
        .list_message_move_tasks()
        .source_arn(&dlq_arn)
        .max_results(10)
        .send()
        .await
        .expect("list");
    assert!(out.results().is_empty(), "{out:?}");
    d.stop().await;
}

#[tokio::test]
async fn the_rate_holds_on_the_clock_a_task_resumes_after_a_restart_and_cancelling_stops_it() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let clock = Clock::manual(Timestamp::from_millis(now));
    let d = TestDaemon::start_with_clock(CONFIG, clock.clone()).await;
    let sqs = sdk_client(&d.url, "x");
    let dlq = create(&sqs, "dlq", &[]).await;
    let dlq_arn = arn(&sqs, &dlq).await;
    let src = source_of(&sqs, "src", &dlq_arn).await;
    let dest = create(&sqs, "dest", &[]).await;
    let dest_arn = arn(&sqs, &dest).await;
    for i in 0..5 {
        sqs.send_message()
            .queue_url(&src)
            .message_body(format!("m{i}"))
            .send()
            .await
            .expect("send");
    }
    dead_letter(&sqs, &src, &dlq, 5).await;
    let start = || {
        sqs.start_message_move_task()
            .source_arn(&dlq_arn)
            .destination_arn(&dest_arn)
            .max_number_of_messages_per_second(1)
    };
    let handle = start()
        .send()
        .await
        .expect("start")
        .task_handle()
        .expect("handle")
        .to_owned();

    // The first message moves at once; the next only when the clock has moved a second.
    let moved = |n: i64| {
        move |t: &aws_sdk_sqs::types::ListMessageMoveTasksResultEntry| {
            t.approximate_number_of_messages_moved() == n
        }
    };
    let task = task_when(&sqs, &dlq_arn, "one message moved", moved(1)).await;
    assert_eq!(
        (
            task.status(),
            task.task_handle(),
            task.max_number_of_messages_per_second(),
            task.destination_arn()
        ),
        (
            Some("RUNNING"),
            Some(handle.as_str()),
            Some(1),
            Some(dest_arn.as_str())
        )
    );
    let err = start()
        .send()
        .await
        .expect_err("one active task per source");
    assert_eq!(code_and_message(&err), ("InvalidParameterValue".into(), "There is already a task running. Only one active task is allowed for a source queue arn at a given time.".into()));
    clock.advance(Duration::from_secs(1));
    task_when(&sqs, &dlq_arn, "a second message moved", moved(2)).await;

    // Shut down mid-move: the task is still RUNNING in the file and resumes at the next start.
    let (_, stopped) = d.halt().await;
    let d = stopped.restart().await;
    let sqs = sdk_client(&d.url, "x");
    task_when(
        &sqs,
        &dlq_arn,
        "the resumed task to move its next message",
        moved(3),
    )
    .await;

    let out = sqs
        .cancel_message_move_task()
        .task_handle(&handle)
        .send()
        .await
        .expect("cancel");
    assert_eq!(out.approximate_number_of_messages_moved(), 3);
    let task = task_when(&sqs, &dlq_arn, "the task to be cancelled", |t| {
        t.status() == Some("CANCELLED")
    })
    .await;
    assert_eq!(
        (
            task.approximate_number_of_messages_moved(),
            task.task_handle()
        ),
        (3, None)
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        (visible(&sqs, &dest).await, visible(&sqs, &dlq).await),
        (3, 2),
        "nothing moves after the cancel"
    );

    // A new task, without a rate, moves the rest; the list is newest first.
    sqs.start_message_move_task()
        .source_arn(&dlq_arn)
        .destination_arn(&dest_arn)
        .send()
        .await
        .expect("start again");
    task_when(&sqs, &dlq_arn, "the second task to complete", |t| {
        t.status() == Some("COMPLETED")
    })
    .await;
    let all = sqs
        .list_message_move_tasks()
        .source_arn(&dlq_arn)
        .max_results(10)
        .send()
        .await
        .expect("list");
    let seen: Vec<_> = all
        .results()
        .iter()
        .map(|t| {
            (
                t.status().unwrap_or(""),
                t.approximate_number_of_messages_moved(),
                t.approximate_number_of_messages_to_move(),
            )
        })
        .collect();
    assert_eq!(seen, [("COMPLETED", 2, Some(2)), ("CANCELLED", 3, Some(5))]);
    let moved = drain(&sqs, &dest, 10).await;
    assert_eq!(
        bodies(&moved),
        (0..5).map(|i| format!("m{i}")).collect(),
        "every message exactly once"
    );
    assert_eq!(moved.len(), 5);
    d.stop().await;
}

#[tokio::test]
async fn a_destination_deleted_while_the_task_runs_fails_it_and_keeps_the_rest_in_the_source() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let clock = Clock::manual(Timestamp::from_millis(now));
    let d = TestDaemon::start_with_clock(CONFIG, clock.clone()).await;
    let sqs = sdk_client(&d.url, "x");
    let dlq = create(&sqs, "dlq", &[]).await;
    let dlq_arn = arn(&sqs, &dlq).await;
    let src = source_of(&sqs, "src", &dlq_arn).await;
    let dest = create(&sqs, "dest", &[]).await;
    let dest_arn = arn(&sqs, &dest).await;
    for i in 0..3 {
        sqs.send_message()
            .queue_url(&src)
            .message_body(format!("m{i}"))
            .send()
            .await
            .expect("send");
    }
    dead_letter(&sqs, &src, &dlq, 3).await;
    let req = sqs
        .start_message_move_task()
        .source_arn(&dlq_arn)
        .destination_arn(&dest_arn);
    req.max_number_of_messages_per_second(1)
        .send()
        .await
        .expect("start");
    task_when(&sqs, &dlq_arn, "one message moved", |t| {
        t.approximate_number_of_messages_moved() == 1
    })
    .await;
    sqs.delete_queue()
        .queue_url(&dest)
        .send()
        .await
        .expect("delete the destination");
    clock.advance(Duration::from_secs(1));
    let task = task_when(&sqs, &dlq_arn, "the task to fail", |t| {
        t.status() == Some("FAILED")
    })
    .await;
    assert_eq!(
        (
            task.failure_reason(),
            task.approximate_number_of_messages_moved()
        ),
        (Some("AWS.SimpleQueueService.NonExistentQueue"), 1)
    );
    assert_eq!(visible(&sqs, &dlq).await, 2);
    d.stop().await;
}

#[tokio::test]
async fn a_fifo_redrive_keeps_each_groups_order_and_the_query_protocol_lists_tasks_as_xml() {
    let d = TestDaemon::start(CONFIG).await;
    let sqs = sdk_client(&d.url, "x");
    let dlq = create(&sqs, "dlq.fifo", &[(A::FifoQueue, "true".into())]).await;
    let dlq_arn = arn(&sqs, &dlq).await;
    let src = source_of(&sqs, "src.fifo", &dlq_arn).await;
    for (group, body) in [
        ("g1", "a"),
        ("g2", "x"),
        ("g1", "b"),
        ("g1", "c"),
        ("g2", "y"),
    ] {
        sqs.send_message()
            .queue_url(&src)
            .message_group_id(group)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }
    dead_letter(&sqs, &src, &dlq, 5).await;
    sqs.start_message_move_task()
        .source_arn(&dlq_arn)
        .send()
        .await
        .expect("start");
    task_when(&sqs, &dlq_arn, "the task to complete", |t| {
        t.status() == Some("COMPLETED")
    })
    .await;
    let mut order = std::collections::BTreeMap::<String, Vec<String>>::new();
    let mut sequences = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&src)
            .max_number_of_messages(10)
            .message_system_attribute_names(Sys::All)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let attrs = m.attributes().expect("system attributes");
            order
                .entry(attrs[&Sys::MessageGroupId].clone())
                .or_default()
                .push(m.body().expect("body").to_owned());
            sequences.push(attrs[&Sys::SequenceNumber].clone());
            sqs.delete_message()
                .queue_url(&src)
                .receipt_handle(m.receipt_handle().expect("handle"))
                .send()
                .await
                .expect("delete");
        }
    }
    assert_eq!(order["g1"], ["a", "b", "c"]);
    assert_eq!(order["g2"], ["x", "y"]);
    assert_eq!(sequences.len(), 5);

    let xml = reqwest::Client::new()
        .post(&d.url)
        .form(&[
            ("Action", "ListMessageMoveTasks"),
            ("SourceArn", dlq_arn.as_str()),
        ])
        .send()
        .await
        .expect("a query-protocol answer")
        .text()
        .await
        .expect("text");
    for part in [
        "<ListMessageMoveTasksResultEntry>",
        "<Status>COMPLETED</Status>",
        "<ApproximateNumberOfMessagesMoved>5</ApproximateNumberOfMessagesMoved>",
    ] {
        assert!(xml.contains(part), "{part} in {xml}");
    }
    d.stop().await;
}
