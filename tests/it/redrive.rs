//! Message move tasks through the real binary as a process: `esmd redrive` (its progress, exit
//! codes and messages), and a move killed with SIGKILL half-way, which must resume after the
//! restart and end with every message exactly once across the source and the destination.

use std::time::Duration;

use aws_sdk_sqs::types::{QueueAttributeName as A, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use tempfile::TempDir;

use crate::common::api::sdk_client;
use crate::common::eventually;
use crate::common::process::{command, EsmdProcess};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "@DIR@/esmd.db"
[queues.dlq]
[queues.src]
dead_letter_queue = "dlq"
max_receive_count = 1
[queues.dest]
"#;

const LIMIT: Duration = Duration::from_secs(30);

fn url(esmd: &EsmdProcess, queue: &str) -> String {
    format!("{}/000000000000/{queue}", esmd.url())
}

fn arn(queue: &str) -> String {
    format!("arn:aws:sqs:us-east-1:000000000000:{queue}")
}

/// Sends `bodies` straight to `queue`, ten at a time.
async fn fill(sqs: &Client, queue: &str, bodies: &[String]) {
    for chunk in bodies.chunks(10) {
        let entries = chunk.iter().enumerate().map(|(i, b)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(b)
                .build()
                .expect("entry")
        });
        let out = sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries.collect()))
            .send()
            .await;
        assert!(out.expect("send batch").failed().is_empty());
    }
}

/// Receives (and deletes) everything `queue` holds.
async fn take_all(sqs: &Client, queue: &str) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            return all;
        }
        for m in out.messages() {
            all.push(m.body().expect("body").to_owned());
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().expect("handle"))
                .send()
                .await
                .expect("delete");
        }
    }
}

/// The dead-letter queue's most recent task: (status, moved).
async fn task(sqs: &Client) -> Option<(String, i64)> {
    let out = sqs
        .list_message_move_tasks()
        .source_arn(arn("dlq"))
        .send()
        .await
        .ok()?;
    let t = out.results().first()?;
    Some((
        t.status()?.to_owned(),
        t.approximate_number_of_messages_moved(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_killed_half_way_resumes_after_the_restart_and_moves_every_message_exactly_once() {
    let dir = TempDir::new().expect("temp dir");
    let mut esmd = EsmdProcess::start(dir.path(), CONFIG, &[]).await;
    let sqs = sdk_client(&esmd.url(), "x");
    let bodies: Vec<String> = (0..400).map(|i| format!("message-{i:03}")).collect();
    fill(&sqs, &url(&esmd, "dlq"), &bodies).await;
    let start = sqs
        .start_message_move_task()
        .source_arn(arn("dlq"))
        .destination_arn(arn("dest"));
    start
        .max_number_of_messages_per_second(100)
        .send()
        .await
        .expect("start");
    let moved = eventually(LIMIT, "a quarter of the messages moved", || async {
        task(&sqs).await.filter(|(_, n)| *n >= 100).map(|(_, n)| n)
    })
    .await;
    esmd.kill().await;
    assert!(moved < 400, "killed half-way ({moved} moved)");

    let esmd = EsmdProcess::start(dir.path(), CONFIG, &[]).await;
    let sqs = sdk_client(&esmd.url(), "x");
    let (status, moved) = eventually(LIMIT, "the resumed task to complete", || async {
        task(&sqs).await.filter(|(s, _)| s != "RUNNING")
    })
    .await;
    assert_eq!(
        (status.as_str(), moved),
        ("COMPLETED", 400),
        "the count stayed exact across the kill"
    );
    let mut seen = take_all(&sqs, &url(&esmd, "dest")).await;
    let left = take_all(&sqs, &url(&esmd, "dlq")).await;
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    seen.sort();
    assert_eq!(
        seen, bodies,
        "every message exactly once: none lost, none repeated"
    );
    esmd.stop().await;
}

/// Runs `esmd redrive` with `args` against the daemon; (exit code, stdout, stderr).
async fn redrive(esmd: &EsmdProcess, dir: &TempDir, args: &[&str]) -> (i32, String, String) {
    let out = command(dir.path())
        .arg("redrive")
        .args(args)
        .arg("--endpoint")
        .arg(esmd.url())
        .arg("--config")
        .arg(esmd.config())
        .output()
        .await
        .expect("run esmd redrive");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esmd_redrive_moves_a_dead_letter_queue_back_and_says_how_it_ended() {
    let dir = TempDir::new().expect("temp dir");
    let esmd = EsmdProcess::start(dir.path(), CONFIG, &[]).await;
    let sqs = sdk_client(&esmd.url(), "x");
    // Five messages reach the dead-letter queue from `src` (their second receive moves them).
    let bodies: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    fill(&sqs, &url(&esmd, "src"), &bodies).await;
    eventually(LIMIT, "the messages to be dead-lettered", || async {
        let r = sqs
            .receive_message()
            .queue_url(url(&esmd, "src"))
            .max_number_of_messages(10);
        r.visibility_timeout(0).send().await.expect("receive");
        let out = sqs
            .get_queue_attributes()
            .queue_url(url(&esmd, "dlq"))
            .attribute_names(A::ApproximateNumberOfMessages)
            .send()
            .await
            .ok()?;
        (out.attributes()?[&A::ApproximateNumberOfMessages] == "5").then_some(())
    })
    .await;

    let (rc, out, err) = redrive(&esmd, &dir, &["--from", "dlq"]).await;
    assert_eq!(
        (rc, out.trim()),
        (
            0,
            "moved 5 messages from dlq to their original source queues"
        ),
        "{err}"
    );
    let mut back = take_all(&sqs, &url(&esmd, "src")).await;
    back.sort();
    assert_eq!(back, bodies);

    let (rc, _, err) = redrive(&esmd, &dir, &["--from", "dest"]).await;
    assert_eq!(rc, 1);
    assert!(
        err.contains("InvalidParameterValue")
            && err.contains("Source queue must be configured as a Dead Letter Queue."),
        "{err}"
    );
    let (rc, _, err) = redrive(&esmd, &dir, &["--from", "dlq", "--to", "nowhere"]).await;
    assert_eq!(rc, 1);
    assert!(err.contains("QueueDoesNotExist"), "{err}");
    let (rc, _, err) = redrive(&esmd, &dir, &["--from", "dlq", "--rate", "501"]).await;
    assert_eq!(rc, 2, "clap refuses the rate: {err}");
    assert!(err.contains("--rate"), "{err}");

    // A redrive cancelled from elsewhere ends with exit 1, saying how far it got.
    fill(&sqs, &url(&esmd, "dlq"), &bodies).await;
    let running = tokio::spawn({
        let (esmd_url, config) = (esmd.url(), esmd.config().to_owned());
        let dir = dir.path().to_owned();
        async move {
            let out = command(&dir)
                .args([
                    "redrive",
                    "--from",
                    "dlq",
                    "--to",
                    "dest",
                    "--rate",
                    "1",
                    "--endpoint",
                    &esmd_url,
                    "--config",
                ])
                .arg(config)
                .output()
                .await
                .expect("run esmd redrive");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    });
    let handle = eventually(LIMIT, "the redrive's task to run", || async {
        let out = sqs
            .list_message_move_tasks()
            .source_arn(arn("dlq"))
            .send()
            .await
            .ok()?;
        out.results().first()?.task_handle().map(str::to_owned)
    })
    .await;
    sqs.cancel_message_move_task()
        .task_handle(handle)
        .send()
        .await
        .expect("cancel");
    let (rc, err) = crate::common::within(LIMIT, "esmd redrive to end", running)
        .await
        .expect("join");
    assert_eq!(rc, Some(1), "{err}");
    assert!(
        err.contains("the redrive ended CANCELLED after moving") && err.contains("of 5 messages"),
        "{err}"
    );
    esmd.stop().await;
}
