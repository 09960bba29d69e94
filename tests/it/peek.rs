//! Peek and explain (issue #17 point 3): `GET /queues/{name}/messages` and
//! `GET /queues/{name}/messages/{id}` on a whole esmd started in-process on a manual clock, each
//! state reached for real (a mapping driven one poll at a time, an SDK client, the sweep), and
//! the `esmd peek` / `esmd explain` commands of the real binary against a real daemon.

use std::time::Duration;

use esmd::clock::Clock;
use esmd::domain::message::NewMessage;
use esmd::domain::Timestamp;
use serde_json::Value;
use tempfile::TempDir;

use crate::common::api::sdk_client;
use crate::common::daemon::{http_function, FunctionServer, Reply, TestDaemon};
use crate::common::process::{command, EsmdProcess};
use crate::common::T0;

async fn get(d: &TestDaemon, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("{}{path}", d.url))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON answer"))
}

/// The explain answer for `id` of `queue`, which must be 200.
async fn explain(d: &TestDaemon, queue: &str, id: &str) -> Value {
    let (status, v) = get(d, &format!("/queues/{queue}/messages/{id}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["messageId"], id, "{v}");
    assert_eq!(v["queue"], queue, "{v}");
    v
}

/// `ms` after the manual clock's start, as explain writes it.
fn at(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis((T0 + ms) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

const CONFIG: &str = r#"
[storage]
tombstone_retention = "10min"
[queues.work-dlq]
[queues.work]
visibility_timeout = "30s"
dead_letter_queue = "work-dlq"
max_receive_count = 2
[queues.short]
retention = "60s"
[queues."ev.fifo"]
content_based_deduplication = true
[mappings.m]
queue = "work"
function = "fn"
enabled = false
filters = ['{"body": {"kind": ["order", "fail"]}}']
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_is_reached_and_reported_and_peeking_changes_nothing() {
    let server = FunctionServer::start().await;
    server.respond(|call| {
        if call.bodies().iter().any(|b| b.contains("fail")) {
            Reply::function_error()
        } else {
            Reply::ok()
        }
    });
    let toml = format!("{}{CONFIG}", http_function(&server.url, "5s"));
    let clock = Clock::manual(Timestamp::from_millis(T0));
    let d = TestDaemon::start_with_clock(&toml, clock.clone()).await;
    let sqs = sdk_client(&d.url, "x");
    let url = |q: &str| format!("{}/000000000000/{q}", d.url);

    // Visible and delayed, in send order, with nothing received.
    let plain = d.send_bodies("work", &["plain"]).await.remove(0);
    let later = d
        .send(
            "work",
            vec![NewMessage {
                delay: Some(Duration::from_secs(60)),
                ..NewMessage::body("later")
            }],
        )
        .await
        .remove(0)
        .message_id;
    let (status, list) = get(&d, "/queues/work/messages?limit=5").await;
    assert_eq!(status, 200, "{list}");
    let msgs = list["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2, "{list}");
    assert_eq!(msgs[0]["messageId"], plain.as_str());
    assert_eq!(msgs[0]["state"], "visible");
    assert_eq!(msgs[0]["body"], "plain");
    assert_eq!(msgs[1]["messageId"], later.as_str());
    assert_eq!(msgs[1]["state"], "delayed");
    assert_eq!(msgs[1]["until"], at(60_000));
    assert_eq!(msgs[1]["secondsLeft"], 60.0);
    let (_, one) = get(&d, "/queues/work/messages?limit=1").await;
    assert_eq!(one["messages"].as_array().map(Vec::len), Some(1), "{one}");

    // Peeking and explaining received nothing: the first receive sees receive count 1, and the
    // message is then in flight, received by a client.
    for _ in 0..3 {
        explain(&d, "work", &plain).await;
    }
    let got = sqs
        .receive_message()
        .queue_url(url("work"))
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let m = &got.messages()[0];
    assert_eq!(m.message_id(), Some(plain.as_str()));
    let count = m
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        })
        .cloned();
    assert_eq!(
        count.as_deref(),
        Some("1"),
        "peeks did not count as receives"
    );
    let v = explain(&d, "work", &plain).await;
    assert_eq!(v["state"], "in_flight", "{v}");
    assert_eq!(v["until"], at(30_000), "{v}");
    assert_eq!(v["by"], "client", "{v}");
    assert_eq!(v["mapping"], Value::Null, "{v}");
    assert_eq!(v["receiveCount"], 1, "{v}");

    // Deleted by that client: a tombstone.
    clock.advance(Duration::from_secs(1));
    sqs.delete_message()
        .queue_url(url("work"))
        .receipt_handle(m.receipt_handle().expect("handle"))
        .send()
        .await
        .expect("delete");
    let v = explain(&d, "work", &plain).await;
    assert_eq!(v["state"], "deleted", "{v}");
    assert_eq!(v["at"], at(1_000), "{v}");
    assert_eq!(v["by"], "client", "{v}");
    assert_eq!(v["receiveCount"], 1, "{v}");
    assert_eq!(v["tombstoneUntil"], at(1_000 + 600_000), "{v}");

    // Through the mapping: an order invoked and deleted, a record no filter matches, and one
    // whose invocation fails, in flight by the mapping, then dead-lettered after 2 receives.
    let m = d.stepper("m").await;
    let order = d
        .send_bodies("work", &[r#"{"kind": "order"}"#])
        .await
        .remove(0);
    let report = d.poll_once(&m).await;
    assert_eq!(report.deleted, vec![order.clone()], "{report:?}");
    let v = explain(&d, "work", &order).await;
    assert_eq!(v["state"], "deleted", "{v}");
    assert_eq!(
        (v["by"].as_str(), v["mapping"].as_str()),
        (Some("mapping"), Some("m")),
        "{v}"
    );
    let noise = d.send_bodies("work", &["noise"]).await.remove(0);
    let report = d.poll_once(&m).await;
    assert_eq!(report.filtered, vec![noise.clone()], "{report:?}");
    let v = explain(&d, "work", &noise).await;
    assert_eq!(v["state"], "filtered_out", "{v}");
    assert_eq!(
        (v["by"].as_str(), v["mapping"].as_str()),
        (Some("mapping"), Some("m")),
        "{v}"
    );
    let fail = &d
        .send_bodies("work", &[r#"{"kind": "fail"}"#])
        .await
        .remove(0);
    let report = d.poll_once(&m).await;
    assert_eq!(report.kept, vec![fail.clone()], "{report:?}");
    let v = explain(&d, "work", fail).await;
    assert_eq!(v["state"], "in_flight", "{v}");
    assert_eq!(
        (v["by"].as_str(), v["mapping"].as_str()),
        (Some("mapping"), Some("m")),
        "{v}"
    );
    assert_eq!(v["until"], at(1_000 + 30_000), "{v}");
    clock.advance(Duration::from_secs(31));
    d.poll_once(&m).await;
    clock.advance(Duration::from_secs(31));
    // The third receive moves it to the dead-letter queue.
    let report = d.poll_once(&m).await;
    assert!(report.invoked.is_empty(), "{report:?}");
    let v = explain(&d, "work", fail).await;
    assert_eq!(v["state"], "dead_lettered", "{v}");
    assert_eq!(v["deadLetterQueue"], "work-dlq", "{v}");
    assert_eq!(v["receiveCount"], 2, "{v}");
    assert_eq!(v["at"], at(63_000), "{v}");
    let v = explain(&d, "work-dlq", fail).await;
    assert_eq!(v["state"], "visible", "{v}");
    assert_eq!(v["deadLetterSource"], "work", "{v}");

    // A FIFO message behind the in-flight head of its group is blocked.
    let fifo = d
        .send_fifo("ev.fifo", &[("g1", "one"), ("g1", "two"), ("g2", "free")])
        .await;
    sqs.receive_message()
        .queue_url(url("ev.fifo"))
        .max_number_of_messages(1)
        .send()
        .await
        .expect("FIFO receive");
    let v = explain(&d, "ev.fifo", &fifo[1]).await;
    assert_eq!(v["state"], "blocked", "{v}");
    assert_eq!(v["behind"], fifo[0].as_str(), "{v}");
    assert_eq!(v["head"], fifo[0].as_str(), "{v}");
    assert_eq!(v["groupId"], "g1", "{v}");
    assert_eq!(explain(&d, "ev.fifo", &fifo[0]).await["state"], "in_flight");
    assert_eq!(explain(&d, "ev.fifo", &fifo[2]).await["state"], "visible");

    // Expired: past retention it is reported so before the sweep, and by its tombstone after.
    let old = d.send_bodies("short", &["old"]).await.remove(0);
    clock.advance(Duration::from_secs(61));
    let v = explain(&d, "short", &old).await;
    assert_eq!(v["state"], "expired", "{v}");
    assert_eq!(v["at"], at(63_000 + 60_000), "{v}");
    d.store().sweep().await.expect("sweep");
    let v = explain(&d, "short", &old).await;
    assert_eq!(v["state"], "expired", "{v}");
    assert!(v.get("body").is_none(), "a tombstone, not the message: {v}");
    assert_eq!(v["at"], at(124_000), "{v}");

    // Unknown ids and queues are 404; a bad limit is 400 naming it.
    let (status, v) = get(&d, "/queues/work/messages/never-sent").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("MessageNotFound")),
        "{v}"
    );
    let (status, v) = get(&d, "/queues/nope/messages/x").await;
    assert_eq!(status, 404, "{v}");
    for bad in ["0", "1001", "ten"] {
        let (status, v) = get(&d, &format!("/queues/work/messages?limit={bad}")).await;
        assert_eq!(status, 400, "{v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains("limit"),
            "{v}"
        );
    }

    // Tombstones go after storage.tombstone_retention, and the sweep removes them.
    let written = d.metric("esmd_tombstones_total", &[("event", "written")]);
    assert!(written >= 5.0, "written {written}");
    clock.advance(Duration::from_secs(600));
    let (status, v) = get(&d, &format!("/queues/work/messages/{plain}")).await;
    assert_eq!(status, 404, "the tombstone is past its retention: {v}");
    d.store().sweep().await.expect("sweep");
    assert!(d.metric("esmd_tombstones_total", &[("event", "swept")]) >= 5.0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_tombstone_retention_keeps_none() {
    let toml = "[storage]\ntombstone_retention = \"0s\"\n[queues.q]\n";
    let d = TestDaemon::start_with_clock(toml, Clock::manual(Timestamp::from_millis(T0))).await;
    let id = d.send_bodies("q", &["x"]).await.remove(0);
    let got = d
        .store()
        .receive(&crate::common::q("q"), 1, None)
        .await
        .expect("receive");
    d.store()
        .delete(&crate::common::q("q"), &[got[0].receipt_handle.clone()])
        .await
        .expect("delete");
    let (status, v) = get(&d, &format!("/queues/q/messages/{id}")).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(
        d.metric("esmd_tombstones_total", &[("event", "written")]),
        0.0
    );
    d.stop().await;
}

const CLI: &str = r#"
[server]
listen = "127.0.0.1:0"
auth_token = "s3cret-token"
[storage]
path = "@DIR@/esmd.db"
[queues.orders]
[queues."ev.fifo"]
content_based_deduplication = true
"#;

/// Runs the real `esmd` with `args` against the daemon; (exit code, stdout, stderr).
async fn cli(esmd: &EsmdProcess, dir: &TempDir, args: &[&str]) -> (i32, String, String) {
    let out = command(dir.path())
        .args(args)
        .arg("--endpoint")
        .arg(esmd.url())
        .arg("--config")
        .arg(esmd.config())
        .output()
        .await
        .expect("run esmd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esmd_peek_and_explain_print_for_a_person_with_the_token_from_the_configuration() {
    let dir = TempDir::new().expect("temp dir");
    let esmd = EsmdProcess::start(dir.path(), CLI, &[]).await;
    let (rc, id, err) = cli(&esmd, &dir, &["send", "--queue", "orders", "hello there"]).await;
    assert_eq!(rc, 0, "{err}");
    let id = id.trim().to_owned();
    let (rc, _, err) = cli(
        &esmd,
        &dir,
        &["send", "--queue", "orders", "--delay", "5min", "later"],
    )
    .await;
    assert_eq!(rc, 0, "{err}");
    for (body, dedup) in [("first", "a"), ("second", "b")] {
        let args = [
            "send", "--queue", "ev.fifo", "--group", "g1", "--dedup", dedup, body,
        ];
        assert_eq!(cli(&esmd, &dir, &args).await.0, 0);
    }

    let (rc, out, err) = cli(&esmd, &dir, &["peek", "--queue", "orders"]).await;
    assert_eq!(rc, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&id)
            && lines[0].contains("visible: the next receive can take it, 0 receives"),
        "{out}"
    );
    assert_eq!(lines[1].trim(), "body: hello there", "{out}");
    assert!(lines[2].contains("delayed until "), "{out}");
    let left: f64 = lines[2]
        .split_once("(in ")
        .and_then(|(_, rest)| rest.split_once("s)"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("seconds left in {out}"));
    assert!((240.0..=300.0).contains(&left), "{out}");

    // A client receives the first FIFO message: the second is blocked behind it.
    let sqs = sdk_client(&esmd.url(), "s3cret-token");
    let got = sqs
        .receive_message()
        .queue_url(format!("{}/000000000000/ev.fifo", esmd.url()))
        .send()
        .await
        .expect("receive");
    let head = got.messages()[0].message_id().expect("id").to_owned();
    let (rc, out, err) = cli(&esmd, &dir, &["peek", "--queue", "ev.fifo", "--limit", "5"]).await;
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("in flight until ") && out.contains("received by a client, 1 receive"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "blocked behind message {head}, the head of FIFO group g1, which is not visible"
        )),
        "{out}"
    );

    let (rc, out, err) = cli(&esmd, &dir, &["explain", "--queue", "orders", &id]).await;
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        out.lines().take(3).collect::<Vec<_>>(),
        [
            format!("message {id} of queue orders").as_str(),
            "  visible: the next receive can take it",
            "  0 receives so far",
        ],
        "{out}"
    );
    assert!(out.contains("  body: hello there"), "{out}");

    let (rc, out, err) = cli(&esmd, &dir, &["explain", "--queue", "orders", "no-such-id"]).await;
    assert_eq!(rc, 1, "{out}");
    assert!(
        err.contains("404 MessageNotFound") && err.contains("no-such-id"),
        "{err}"
    );
    // Without the token the daemon refuses, and the command says so.
    let out = command(dir.path())
        .args(["peek", "--queue", "orders", "--endpoint", &esmd.url()])
        .output()
        .await
        .expect("run esmd");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    esmd.stop().await;
}
