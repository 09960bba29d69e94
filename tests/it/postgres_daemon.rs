//! The real `esmd` binary on PostgreSQL (`storage.backend = "postgres"`, docs/postgres.md),
//! served to `aws-sdk-sqs`: the SQS API and a mapping on one instance; two instances sharing
//! one database; PostgreSQL stopped and started again under a running daemon (and absent at
//! its start); the configuration's errors and the password's masking in `check-config`.
//! PostgreSQL comes from `conformance::harness` (skipped without it, except under
//! `ESMD_CI=1`).

mod config_check;
mod kill;
mod server;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use crate::common::api::sdk_client;
use crate::common::daemon::{http_function, FunctionServer};
use crate::common::eventually;
use crate::common::process::EsmdProcess;
use crate::conformance::harness;

const LIMIT: Duration = Duration::from_secs(30);

/// The URL of a fresh database on the shared test server; `None` when skipped.
async fn database_url() -> Option<String> {
    let o = harness::database().await?;
    Some(format!(
        "postgres://esmd@127.0.0.1:{}/{}",
        o.get_port(),
        o.get_database().expect("the test database's name")
    ))
}

pub(super) fn config(url: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\n{extra}"
    )
}

async fn readyz(base: &str) -> u16 {
    reqwest::get(format!("{base}/readyz"))
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// A SendMessage in the JSON protocol, without the SDK's retries: the HTTP status.
async fn raw_send(base: &str, queue_url: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .post(base)
        .header("x-amz-target", "AmazonSQS.SendMessage")
        .header("content-type", "application/x-amz-json-1.0")
        .body(json!({ "QueueUrl": queue_url, "MessageBody": body }).to_string())
        .send()
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

async fn count(sqs: &aws_sdk_sqs::Client, url: &str, attr: QueueAttributeName) -> u64 {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(attr.clone())
        .send()
        .await
        .expect("GetQueueAttributes");
    out.attributes().expect("attributes")[&attr]
        .parse()
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_api_and_a_mapping_run_on_postgres() {
    let Some(url) = database_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let function = FunctionServer::start().await;
    let extra = format!(
        "[queues.work]\n{}[mappings.m]\nqueue = \"work\"\nfunction = \"fn\"\nbatch_size = 5\n",
        http_function(&function.url, "5s")
    );
    let esmd = EsmdProcess::start(dir.path(), &config(&url, &extra), &[]).await;
    assert_eq!(readyz(&esmd.url()).await, 200);
    let sqs = sdk_client(&esmd.url(), "secret");

    // A standard queue: send, receive, delete.
    let std_url = sqs
        .create_queue()
        .queue_name("plain")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue URL");
    for i in 0..3 {
        sqs.send_message()
            .queue_url(&std_url)
            .message_body(format!("s{i}"))
            .send()
            .await
            .expect("SendMessage");
    }
    let got = sqs
        .receive_message()
        .queue_url(&std_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("ReceiveMessage");
    let msgs = got.messages();
    assert_eq!(msgs.len(), 3, "every message sent is received");
    for m in msgs {
        sqs.delete_message()
            .queue_url(&std_url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .expect("DeleteMessage");
    }
    assert_eq!(
        count(
            &sqs,
            &std_url,
            QueueAttributeName::ApproximateNumberOfMessages
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &sqs,
            &std_url,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible
        )
        .await,
        0,
        "deleted messages are gone"
    );

    // A FIFO queue: order within a group, and deduplication.
    let fifo_url = sqs
        .create_queue()
        .queue_name("orders.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("CreateQueue FIFO")
        .queue_url
        .expect("a queue URL");
    for body in ["f1", "f2", "f2"] {
        sqs.send_message()
            .queue_url(&fifo_url)
            .message_body(body)
            .message_group_id("g")
            .message_deduplication_id(body)
            .send()
            .await
            .expect("SendMessage FIFO");
    }
    let got = sqs
        .receive_message()
        .queue_url(&fifo_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("ReceiveMessage FIFO");
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["f1", "f2"], "in order, the duplicate dropped");

    // The mapping delivers to the HTTP function and deletes what it took.
    let sent: Vec<String> = (0..7).map(|i| format!("w{i}")).collect();
    let work_url = format!("{}/000000000000/work", esmd.url());
    for body in &sent {
        sqs.send_message()
            .queue_url(&work_url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage to the mapped queue");
    }
    let refs: Vec<&str> = sent.iter().map(String::as_str).collect();
    function.wait_bodies(&refs, LIMIT).await;
    eventually(LIMIT, "the mapping deletes what it delivered", || async {
        let left = count(
            &sqs,
            &work_url,
            QueueAttributeName::ApproximateNumberOfMessages,
        )
        .await
            + count(
                &sqs,
                &work_url,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .await;
        (left == 0).then_some(())
    })
    .await;
    // The metrics show what PostgreSQL did.
    let metrics = reqwest::get(format!("{}/metrics", esmd.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("esmd_messages_sent_total{queue=\"plain\"} 3"),
        "{metrics}"
    );
    esmd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_receive_each_message_once() {
    let Some(url) = database_url().await else {
        return;
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = EsmdProcess::start(da.path(), &config(&url, ""), &[]).await;
    let b = EsmdProcess::start(db.path(), &config(&url, ""), &[]).await;
    let (sa, sb) = (sdk_client(&a.url(), "s"), sdk_client(&b.url(), "s"));
    sa.create_queue()
        .queue_name("shared")
        .attributes(QueueAttributeName::VisibilityTimeout, "600")
        .send()
        .await
        .expect("CreateQueue through a");
    let url_b = sb
        .get_queue_url()
        .queue_name("shared")
        .send()
        .await
        .expect("the queue created through a is visible through b")
        .queue_url
        .unwrap();
    let url_a = format!("{}/000000000000/shared", a.url());
    for chunk in 0..50 {
        let mut batch = sa.send_message_batch().queue_url(&url_a);
        for i in 0..10 {
            let n = chunk * 10 + i;
            batch = batch.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(format!("m{n}"))
                    .build()
                    .unwrap(),
            );
        }
        let out = batch.send().await.expect("SendMessageBatch");
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
    // Four receivers, two on each instance, until 500 distinct messages came.
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let mut tasks = Vec::new();
    for (client, url) in [(&sa, &url_a), (&sa, &url_a), (&sb, &url_b), (&sb, &url_b)] {
        let (client, url, seen) = (client.clone(), url.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                if seen.lock().unwrap().len() >= 500 {
                    return;
                }
                let got = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .expect("ReceiveMessage");
                for m in got.messages() {
                    *seen
                        .lock()
                        .unwrap()
                        .entry(m.body().unwrap().to_owned())
                        .or_default() += 1;
                    client
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .expect("DeleteMessage");
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("the receivers finish")
            .expect("a receiver");
    }
    let seen = seen.lock().unwrap().clone();
    let expected: BTreeSet<String> = (0..500).map(|n| format!("m{n}")).collect();
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "received more than once: {twice:?}");
    a.stop().await;
    b.stop().await;
}

/// The address of a daemon still waiting for its database (its log says where it listens).
async fn waiting_address(esmd: &EsmdProcess) -> SocketAddr {
    let line = esmd
        .wait_for_line(LIMIT, "the daemon waiting for the database", |l| {
            l.contains("waiting for the database")
        })
        .await;
    let at = line.find("address=").expect("the line names the address") + "address=".len();
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .parse()
        .expect("an address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_start_and_while_running_is_waited_out() {
    let Some(mut pg) = server::Dedicated::start() else {
        return;
    };
    // Down at start: esmd waits, serving 503.
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let extra = "[queues.q]\n";
    let mut esmd = EsmdProcess::spawn(dir.path(), &config(&pg.url(), extra), &[]);
    let base = format!("http://{}", waiting_address(&esmd).await);
    assert_eq!(readyz(&base).await, 503, "not ready without the database");
    let q_url = format!("{base}/000000000000/q");
    assert_eq!(raw_send(&base, &q_url, "early").await, 503);
    esmd.wait_for_line(LIMIT, "a retry logged", |l| {
        l.contains("cannot connect to PostgreSQL")
    })
    .await;
    pg.restart();
    esmd.ready().await;
    assert_eq!(readyz(&base).await, 200);

    // Down while running: 503 and not ready, then back by itself.
    let mut acked = Vec::new();
    for i in 0..20 {
        let body = format!("before{i}");
        assert_eq!(raw_send(&base, &q_url, &body).await, 200);
        acked.push(body);
    }
    pg.stop();
    eventually(LIMIT, "/readyz 503 once PostgreSQL is gone", || async {
        (readyz(&base).await == 503).then_some(())
    })
    .await;
    for i in 0..5 {
        let status = raw_send(&base, &q_url, &format!("down{i}")).await;
        assert_eq!(status, 503, "a send while PostgreSQL is down is refused");
    }
    pg.restart();
    eventually(LIMIT, "/readyz 200 once PostgreSQL is back", || async {
        (readyz(&base).await == 200).then_some(())
    })
    .await;
    for i in 0..20 {
        let body = format!("after{i}");
        assert_eq!(raw_send(&base, &q_url, &body).await, 200);
        acked.push(body);
    }
    // Every acknowledged message is there, once; nothing refused was stored.
    let sqs = sdk_client(&base, "s");
    let mut got = BTreeSet::new();
    while got.len() < acked.len() {
        let out = sqs
            .receive_message()
            .queue_url(&q_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        assert!(
            !out.messages().is_empty(),
            "missing: {} of {}",
            acked.len() - got.len(),
            acked.len()
        );
        for m in out.messages() {
            assert!(got.insert(m.body().unwrap().to_owned()), "received twice");
        }
    }
    assert_eq!(got, acked.iter().cloned().collect::<BTreeSet<_>>());
    esmd.stop().await;
}

/// A mapping's `max_concurrency` holds across instances: two processes on one database, each
/// with the same mapping at `max_concurrency = 2`, never have more than two invocations in
/// flight together, and deliver every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_bounds_a_mapping_across_instances() {
    let Some(url) = database_url().await else {
        return;
    };
    let function = FunctionServer::start().await;
    let gate = crate::common::daemon::Gate::new();
    let held = gate.clone();
    function.respond(move |_| crate::common::daemon::Reply::ok().held(&held));
    let extra = format!(
        "[queues.work]\n{}[mappings.m]\nqueue = \"work\"\nfunction = \"fn\"\nbatch_size = 1\n\
         max_concurrency = 2\n",
        http_function(&function.url, "30s")
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = EsmdProcess::start(da.path(), &config(&url, &extra), &[]).await;
    let b = EsmdProcess::start(db.path(), &config(&url, &extra), &[]).await;
    let sqs = sdk_client(&a.url(), "s");
    let queue = format!("{}/000000000000/work", a.url());
    for i in 0..10 {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(format!("m{i}"))
            .send()
            .await
            .expect("SendMessage");
    }
    function.wait_in_flight(2, LIMIT).await;
    // A bound can only be seen not to be crossed over a while: without shared slots each
    // instance would start its own two invocations at once.
    tokio::time::sleep(Duration::from_secs(1)).await; // sleep-ok: watching for a third invocation that must never come
    assert_eq!(
        function.with_seen(|s| s.max_in_flight),
        2,
        "two instances together hold at most max_concurrency invocations"
    );
    gate.open();
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    function.wait_bodies(&refs, LIMIT).await;
    assert!(function.with_seen(|s| s.max_in_flight) <= 2);
    let sqs_b = sdk_client(&b.url(), "s");
    eventually(LIMIT, "every message deleted", || async {
        let left = count(
            &sqs_b,
            &format!("{}/000000000000/work", b.url()),
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .await
            + count(
                &sqs,
                &queue,
                QueueAttributeName::ApproximateNumberOfMessages,
            )
            .await;
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(function.with_seen(|s| s.records()), 10, "each message once");
    a.stop().await;
    b.stop().await;
}
