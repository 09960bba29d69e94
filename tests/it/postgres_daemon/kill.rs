//! Killing one instance under load loses nothing: two processes on one database share a mapping
//! (each calling a function server of its own, which holds every call); A is killed with SIGKILL
//! while its invocations are held, more messages are sent to B, and B's function gets every
//! message, A's claimed ones once their visibility timeout runs out, until the queue is empty.

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};

use super::{config, count, database_url, LIMIT};
use crate::common::api::sdk_client;
use crate::common::daemon::{http_function, FunctionServer, Gate, Reply};
use crate::common::eventually;
use crate::common::process::EsmdProcess;

async fn send_batch(sqs: &aws_sdk_sqs::Client, queue: &str, from: usize) {
    let mut batch = sqs.send_message_batch().queue_url(queue);
    for i in 0..10 {
        batch = batch.entries(
            SendMessageBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .message_body(format!("m{}", from + i))
                .build()
                .unwrap(),
        );
    }
    let out = batch.send().await.expect("SendMessageBatch");
    assert!(out.failed().is_empty(), "{:?}", out.failed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_instance_under_load_loses_nothing() {
    let Some(url) = database_url().await else {
        return;
    };
    // Each instance calls a function server of its own, so that what B delivered is known.
    let (fa, fb) = (FunctionServer::start().await, FunctionServer::start().await);
    let gate = Gate::new();
    for f in [&fa, &fb] {
        let held = gate.clone();
        f.respond(move |_| Reply::ok().held(&held));
    }
    let extra = |f: &FunctionServer| {
        format!(
            "[queues.work]\nvisibility_timeout = \"3s\"\n{}[mappings.m]\nqueue = \"work\"\n\
             function = \"fn\"\nbatch_size = 10\nmax_concurrency = 4\n",
            http_function(&f.url, "3s")
        )
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = EsmdProcess::start(da.path(), &config(&url, &extra(&fa)), &[]).await;
    let b = EsmdProcess::start(db.path(), &config(&url, &extra(&fb)), &[]).await;
    let (sa, sb) = (sdk_client(&a.url(), "s"), sdk_client(&b.url(), "s"));
    let (qa, qb) = (
        format!("{}/000000000000/work", a.url()),
        format!("{}/000000000000/work", b.url()),
    );
    for n in (0..100).step_by(10) {
        send_batch(&sa, &qa, n).await;
    }
    // Every slot busy, A's among them, with the functions holding each call.
    eventually(LIMIT, "A and B invoking, four in all", || async {
        let (ia, ib) = (fa.with_seen(|s| s.in_flight), fb.with_seen(|s| s.in_flight));
        (ia >= 1 && ia + ib == 4).then_some(())
    })
    .await;
    a.kill().await;
    for n in (100..150).step_by(10) {
        send_batch(&sb, &qb, n).await;
    }
    gate.open();
    eventually(LIMIT, "every message delivered and deleted", || async {
        let left = count(&sb, &qb, QueueAttributeName::ApproximateNumberOfMessages).await
            + count(
                &sb,
                &qb,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .await
            + count(
                &sb,
                &qb,
                QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            )
            .await;
        (left == 0).then_some(())
    })
    .await;
    let bodies: Vec<String> = (0..150).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    // A answered nothing: everything, A's claims included, was delivered by B.
    assert!(
        fb.with_seen(|s| s.has_bodies(&refs)),
        "every acknowledged message reached B's function"
    );
    b.stop().await;
}
