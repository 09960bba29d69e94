//! A mapping's `filters` and `retry_backoff` end to end (issue #17 points 1 and 2): a whole esmd
//! started in-process, an axum server standing in for the function, and the real `esmd` binary
//! for the start-up refusal. Filtering is checked one poll at a time (`Poller::poll_once`) and
//! with the background workers; back-off delays are measured on a manual clock, one millisecond
//! either side of when each message must come back.

use std::time::Duration;

use esmd::clock::Clock;
use esmd::domain::Timestamp;
use esmd::metrics::Outcome;
use esmd::poller::PollReport;
use tempfile::TempDir;

use crate::common::daemon::{
    http_function, receive_count, total, FunctionServer, Reply, TestDaemon,
};
use crate::common::process::EsmdProcess;
use crate::common::T0;

const WAIT: Duration = Duration::from_secs(20);

fn manual_clock() -> Clock {
    Clock::manual(Timestamp::from_millis(T0))
}

const ORDERS_ONLY: &str =
    r#"filters = ['{"body": {"kind": ["order"]}}', '{"body": [{"prefix": "ping"}]}']"#;

fn events(d: &TestDaemon, event: &str) -> f64 {
    d.metric(
        "esmd_mapping_events_total",
        &[("mapping", "m"), ("event", event)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_no_filter_matches_are_deleted_uninvoked_counted_and_take_no_batch_room() {
    let server = FunctionServer::start().await;
    let toml = format!(
        "{}\n[queues.q]\n[mappings.m]\nqueue = \"q\"\nfunction = \"fn\"\nbatch_size = 2\nenabled = false\n{ORDERS_ONLY}\n",
        http_function(&server.url, "5s")
    );
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    let m = d.stepper("m").await;
    // Odd spacing: the function must get the body exactly as sent, not re-serialised.
    let bodies = [
        r#"{"kind":  "order", "n": 1}"#,
        r#"{"kind": "refund"}"#,
        "plain text",
        r#"{"kind": "order", "n": 2}"#,
        "ping 1",
        r#"{"kind": ["refund"]}"#,
        r#"{"kind": "order", "n": 3}"#,
    ];
    let ids = d.send_bodies("q", &bodies).await;

    let first = d.poll_once(&m).await;
    assert_eq!(
        first.invoked,
        [ids[0].clone(), ids[3].clone()],
        "two matching records fill batch_size 2; the filtered ones took no room: {first:?}"
    );
    assert_eq!(first.filtered, [ids[1].clone(), ids[2].clone()]);
    assert_eq!(first.deleted, first.invoked);
    let second = d.poll_once(&m).await;
    assert_eq!(
        second.invoked,
        [ids[4].clone(), ids[6].clone()],
        "{second:?}"
    );
    assert_eq!(second.filtered, [ids[5].clone()]);
    assert_eq!(
        total(&d.counts("q").await),
        0,
        "filtered records are deleted"
    );

    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].bodies(), [bodies[0], bodies[3]], "bodies as sent");
    assert_eq!(calls[1].bodies(), [bodies[4], bodies[6]]);
    assert_eq!(events(&d, "polled"), 7.0);
    assert_eq!(events(&d, "filtered_out"), 3.0);
    assert_eq!(events(&d, "invoked"), 4.0);
    assert_eq!(
        events(&d, "deleted"),
        4.0,
        "deleted counts invoked records only"
    );
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_whose_records_are_all_filtered_invokes_nothing() {
    let server = FunctionServer::start().await;
    let toml = format!(
        "{}\n[queues.q]\n[queues.\"g.fifo\"]\ncontent_based_deduplication = true\n[mappings.m]\nqueue = \"q\"\nfunction = \"fn\"\n{ORDERS_ONLY}\n\
         [mappings.f]\nqueue = \"g.fifo\"\nfunction = \"fn\"\nenabled = false\n{ORDERS_ONLY}\n",
        http_function(&server.url, "5s")
    );
    let d = TestDaemon::start(&toml).await;
    // The background workers: three records, none matching.
    d.send_bodies("q", &["a", r#"{"kind": "refund"}"#, "[1, 2]"])
        .await;
    d.wait_metric(
        "esmd_mapping_events_total",
        &[("mapping", "m"), ("event", "filtered_out")],
        WAIT,
        |v| v == 3.0,
    )
    .await;
    d.wait_counts("q", WAIT, "the filtered records deleted", |c| total(c) == 0)
        .await;
    assert!(server.calls().is_empty(), "no invocation");
    assert_eq!(events(&d, "invoked"), 0.0);
    // A matching record afterwards is invoked alone.
    d.send_bodies("q", &[r#"{"kind": "order"}"#]).await;
    let calls = server.wait_calls(1, WAIT).await;
    assert_eq!(calls[0].bodies(), [r#"{"kind": "order"}"#]);

    // One step on a FIFO queue: nothing to invoke, and a filtered head does not hold back its
    // group.
    let f = d.stepper("f").await;
    d.send_fifo("g.fifo", &[("g", "nope")]).await;
    let all_filtered = d.poll_once(&f).await;
    assert_eq!(all_filtered.invoked, Vec::<String>::new());
    assert_eq!(
        all_filtered.outcome, None,
        "no invocation: {all_filtered:?}"
    );
    assert_eq!(all_filtered.filtered.len(), 1);
    let ids = d
        .send_fifo(
            "g.fifo",
            &[("g", "nope again"), ("g", r#"{"kind":"order"}"#)],
        )
        .await;
    let next = d.poll_once(&f).await;
    assert_eq!(next.filtered, [ids[0].clone()]);
    assert_eq!(next.invoked, [ids[1].clone()], "{next:?}");
    assert_eq!(total(&d.counts("g.fifo").await), 0);
    assert!(d.stop().await);
}

#[tokio::test]
async fn an_invalid_filter_pattern_is_refused_at_start_with_exit_78_naming_the_key() {
    let dir = TempDir::new().expect("temp dir");
    let toml = r#"
[queues.q]
[functions.f]
type = "log"
[mappings.m]
queue = "q"
function = "f"
filters = ['{"body": {"kind": ["order"]}}', '{"body": {"x": [{"numeric": [">", 10, "<", 5]}]}}']
"#;
    let mut esmd = EsmdProcess::spawn(dir.path(), toml, &[]);
    assert_eq!(esmd.wait_exit(Duration::from_secs(30)).await, Some(78));
    let log = esmd.tail(10);
    assert!(
        log.contains("mappings.m.filters: pattern 2")
            && log.contains("Invalid filter pattern definition"),
        "{log}"
    );
}

/// A stepped mapping `m` on queue `q` (visibility timeout 30 s) whose function fails every
/// time, with `extra` added to the mapping.
async fn failing(extra: &str, queue: &str) -> (FunctionServer, TestDaemon) {
    let server = FunctionServer::start().await;
    server.respond(|_| Reply::status(500));
    let dedup = if queue.ends_with(".fifo") {
        "content_based_deduplication = true"
    } else {
        ""
    };
    let toml = format!(
        "{}\n[queues.\"{queue}\"]\nvisibility_timeout = \"30s\"\n{dedup}\n[mappings.m]\nqueue = \"{queue}\"\n\
         function = \"fn\"\nbatch_size = 1\nenabled = false\n{extra}\n",
        http_function(&server.url, "5s")
    );
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    (server, d)
}

/// Fails `id` once more, then checks it stays invisible until exactly `delay` has passed.
async fn fails_then_returns_after(
    d: &TestDaemon,
    m: &esmd::poller::Poller,
    id: &str,
    delay: Duration,
) {
    let r = d.poll_once(m).await;
    assert_eq!(r.invoked, [id.to_owned()], "{r:?}");
    assert_eq!(r.outcome, Some(Outcome::Error));
    d.clock().advance(delay - Duration::from_millis(1));
    assert_eq!(
        d.poll_once(m).await,
        PollReport::default(),
        "not back before {delay:?}"
    );
    d.clock().advance(Duration::from_millis(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_delays_grow_by_the_multiplier_and_stop_at_max() {
    let (server, d) = failing(
        r#"retry_backoff = { initial = "1s", max = "5s", multiplier = 2.0, jitter = false }"#,
        "q",
    )
    .await;
    let m = d.stepper("m").await;
    let id = d.send_bodies("q", &["fails"]).await.remove(0);
    for secs in [1, 2, 4, 5, 5] {
        fails_then_returns_after(&d, &m, &id, Duration::from_secs(secs)).await;
    }
    let counts: Vec<u32> = server
        .calls()
        .iter()
        .map(|c| receive_count(&c.records()[0]))
        .collect();
    assert_eq!(counts, [1, 2, 3, 4, 5], "one receive per back-off step");
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_backoff_a_failed_message_returns_after_the_visibility_timeout() {
    for queue in ["q", "g.fifo"] {
        let (server, d) = failing("", queue).await;
        let m = d.stepper("m").await;
        let id = if queue.ends_with(".fifo") {
            d.send_fifo(queue, &[("g", "fails")]).await.remove(0)
        } else {
            d.send_bodies(queue, &["fails"]).await.remove(0)
        };
        for _ in 0..3 {
            fails_then_returns_after(&d, &m, &id, Duration::from_secs(30)).await;
        }
        assert_eq!(
            server.calls().len(),
            3,
            "{queue}: one invocation per return"
        );
        assert!(d.stop().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_applies_to_reported_item_failures_and_keeps_a_fifo_group_blocked() {
    let server = FunctionServer::start().await;
    server.respond(|call| match call.record("fail") {
        Some(r) => Reply::failures(&[r.message_id.clone().unwrap_or_default()]),
        None => Reply::ok(),
    });
    let toml = format!(
        "{}\n[queues.\"g.fifo\"]\ncontent_based_deduplication = true\nvisibility_timeout = \"30s\"\n[mappings.m]\nqueue = \"g.fifo\"\n\
         function = \"fn\"\nbatch_size = 1\nenabled = false\nreport_batch_item_failures = true\n\
         retry_backoff = {{ initial = \"3s\", max = \"1h\", multiplier = 10.0, jitter = false }}\n",
        http_function(&server.url, "5s")
    );
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    let m = d.stepper("m").await;
    let ids = d.send_fifo("g.fifo", &[("g", "fail"), ("g", "next")]).await;
    // 3 s, then 30 s: the group's next message waits behind the failed one all along.
    for delay in [3, 30] {
        let r = d.poll_once(&m).await;
        assert_eq!(r.invoked, [ids[0].clone()], "{r:?}");
        assert_eq!(r.outcome, Some(Outcome::PartialFailure));
        d.clock().advance(Duration::from_millis(delay * 1000 - 1));
        assert_eq!(
            d.poll_once(&m).await,
            PollReport::default(),
            "group blocked"
        );
        d.clock().advance(Duration::from_millis(1));
    }
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_jitter_a_failed_message_is_back_by_the_capped_delay() {
    let (_server, d) = failing(
        r#"retry_backoff = { initial = "2s", max = "8s", multiplier = 2.0, jitter = true }"#,
        "q",
    )
    .await;
    let m = d.stepper("m").await;
    let id = d.send_bodies("q", &["fails"]).await.remove(0);
    for secs in [2, 4, 8, 8, 8] {
        let r = d.poll_once(&m).await;
        assert_eq!(r.invoked, std::slice::from_ref(&id), "{r:?}");
        // A random delay up to the computed one: back by then, never at the 30 s timeout.
        d.clock().advance(Duration::from_secs(secs));
    }
    assert_eq!(d.poll_once(&m).await.invoked, [id]);
    assert!(d.stop().await);
}
