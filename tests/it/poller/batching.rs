//! Batches: the batching window across the mapping, full batches, the payload limit and the carry, concurrency, and deletes of several invocations in one commit.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_batches_flush_long_before_the_batching_window() {
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "5s",
        r#"
[queues.bulk]

[mappings.bulk]
queue = "bulk"
function = "fn"
batch_size = 10
batching_window = "300s"
"#,
    );
    let d = TestDaemon::start(&toml).await;
    let first: Vec<String> = (0..10).map(|i| format!("first-{i}")).collect();
    let second: Vec<String> = (0..10).map(|i| format!("second-{i}")).collect();
    d.send_bodies(
        "bulk",
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    d.send_bodies(
        "bulk",
        &second.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;

    // WAIT is far below the 300 s window: only full batches can have been flushed.
    let calls = server.wait_calls(2, WAIT).await;
    d.wait_empty("bulk", WAIT).await;
    let calls_after = server.calls();
    assert_eq!(
        calls_after.len(),
        2,
        "exactly two invocations: {:?}",
        calls_after.iter().map(Call::bodies).collect::<Vec<_>>()
    );
    let mut seen = BTreeSet::new();
    for c in &calls {
        assert_eq!(
            c.records().len(),
            10,
            "a full batch of 10: {:?}",
            c.bodies()
        );
        for b in c.bodies() {
            assert!(seen.insert(b.clone()), "{b} delivered twice");
        }
    }
    assert_eq!(seen.len(), 20);
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_under_max_payload_and_overflow_is_carried_not_dropped() {
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "5s",
        r#"
[queues.big]

[mappings.big]
queue = "big"
function = "fn"
batch_size = 100
batching_window = "1s"
max_payload = "4KiB"
"#,
    );
    let d = TestDaemon::start(&toml).await;
    let bodies: Vec<String> = (0..30)
        .map(|i| format!("{i:04}-{}", "x".repeat(1024 - 5)))
        .collect();
    for chunk in bodies.chunks(10) {
        d.send_bodies("big", &chunk.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
    }
    let all: Vec<&str> = bodies.iter().map(String::as_str).collect();
    server.wait_bodies(&all, WAIT).await;
    d.wait_empty("big", WAIT).await;

    let calls = server.calls();
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for c in &calls {
        assert!(
            c.raw.len() <= 4096,
            "call {} is {} bytes, over max_payload 4096",
            c.index,
            c.raw.len()
        );
        for r in c.records() {
            assert_eq!(receive_count(r), 1, "no message was redelivered");
            *delivered
                .entry(r.body.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    assert_eq!(delivered.len(), 30, "every message was delivered");
    assert!(
        delivered.values().all(|&n| n == 1),
        "each exactly once: {delivered:?}"
    );
    assert!(
        calls.iter().any(|c| c.records().len() >= 2),
        "the cap packs more than one record per batch"
    );
    assert!(
        calls.len() >= 10,
        "30 records of about 1.5 KB cannot fit in fewer than 10 events of 4 KiB"
    );
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carried_message_taken_over_by_another_receive_is_not_invoked_again() {
    // Queue time is manual: the test decides when the visibility timeout of a carried message
    // runs out while every invocation slot is busy (functions running about as long as the
    // visibility timeout).
    let server = FunctionServer::start().await;
    let gate = Gate::new();
    let held = gate.clone();
    server.respond(move |_| Reply::ok().held(&held));
    let clock = esmd::clock::Clock::manual(esmd::domain::Timestamp::from_millis(now_ms()));
    let d = TestDaemon::start_with_clock(&one_record_batches(&server, ""), clock).await;
    let bodies: Vec<String> = ["m1", "m2", "m3"].map(kib_body).to_vec();
    d.send_bodies("q", &bodies.iter().map(String::as_str).collect::<Vec<_>>())
        .await;

    // One claim took all three; m1 and m2 fill both slots (one record per batch under the
    // 2 KiB cap) and m3 is carried, in flight, until a slot is free.
    let calls = server.next(2, WAIT).await;
    let mut invoked: Vec<String> = calls.iter().flat_map(|c| c.bodies()).collect();
    invoked.sort();
    assert!(invoked == bodies[..2], "m1 and m2 in the two slots");
    assert_eq!(d.counts("q").await.in_flight, 3);
    // m3's visibility timeout runs out and another consumer takes it over and deletes it.
    d.clock().advance(Duration::from_secs(31));
    let taken = d.receive_n("q", 3, WAIT).await;
    let handles: Vec<String> = taken.iter().map(|m| m.receipt_handle.clone()).collect();
    assert_eq!(
        taken.len(),
        3,
        "all three came back after their visibility timeout"
    );
    d.store()
        .delete(&q("q"), &handles)
        .await
        .expect("the other consumer deletes them");
    // The slots free up: the collector must not invoke the m3 it no longer holds.
    gate.open();
    d.send_bodies("q", &["sentinel"]).await;
    let calls = server.wait_bodies(&["sentinel"], WAIT).await;
    let m3: Vec<&Call> = calls
        .iter()
        .filter(|c| c.record(&bodies[2]).is_some())
        .collect();
    assert!(
        m3.is_empty(),
        "m3 was not invoked after it was taken over: {} calls",
        m3.len()
    );
    d.wait_empty("q", WAIT).await;
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_invocations_run_at_once_and_never_more() {
    let server = FunctionServer::start().await;
    let gate = Gate::new();
    let held = gate.clone();
    // Every call waits until the gate opens, then "works" a little so the pressure stays on.
    server.respond(move |_| Reply::ok().held(&held).delayed(Duration::from_millis(30)));
    let toml = config(
        &server,
        "10s",
        r#"
[queues.work]

[mappings.work]
queue = "work"
function = "fn"
batch_size = 1
max_concurrency = 3
"#,
    );
    let d = TestDaemon::start(&toml).await;
    let bodies: Vec<String> = (0..12).map(|i| format!("job-{i}")).collect();
    let all: Vec<&str> = bodies.iter().map(String::as_str).collect();
    d.send_bodies("work", &all).await;

    server.wait_in_flight(3, WAIT).await;
    gate.open();
    let calls = server.wait_bodies(&all, WAIT).await;
    d.wait_empty("work", WAIT).await;
    assert!(calls.iter().all(|c| c.records().len() == 1), "batch_size 1");
    let max = server.with_seen(|s| s.max_in_flight);
    assert_eq!(max, 3, "exactly max_concurrency calls at once, never more");
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_collected_in_a_window_longer_than_the_visibility_timeout_stay_invisible() {
    // Queue VT 1 s, window 3 s: without Lambda's effective visibility timeout (window + function
    // timeout + 30 s) the message would reappear mid-window and a second worker would take it.
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "1s",
        r#"
[queues.q]
visibility_timeout = "1s"

[mappings.m]
queue = "q"
function = "fn"
batch_size = 100
batching_window = "3s"
max_concurrency = 2
"#,
    );
    let d = TestDaemon::start(&toml).await;
    d.send_bodies("q", &["once"]).await;
    let call = server.next(1, WAIT).await.remove(0);
    assert_eq!(receive_count(&call.records()[0]), 1);
    d.wait_empty("q", WAIT).await;
    assert_eq!(server.calls().len(), 1, "delivered exactly once");
    assert!(d.stop().await);
}

// ---------------------------------------------------------------------------------------------
// 8. One step (the seam the tests above drive)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_invokes_one_batch_and_carries_what_does_not_fit_into_the_next() {
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "5s",
        r#"
[queues.q]
visibility_timeout = "30s"

[mappings.m]
queue = "q"
function = "fn"
batch_size = 10
max_payload = "2KiB"
enabled = false
"#,
    );
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    let m = d.stepper("m").await;
    assert_eq!(
        d.poll_once(&m).await,
        PollReport::default(),
        "an empty queue: no invocation, no waiting"
    );
    let bodies: Vec<String> = ["s1", "s2", "s3"].map(kib_body).to_vec();
    let ids = d
        .send_bodies("q", &bodies.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    // One record fits under the 2 KiB cap; the rest are carried, in flight, into the next steps.
    for (n, id) in ids.iter().enumerate() {
        let r = d.poll_once(&m).await;
        assert_eq!(
            r.invoked,
            std::slice::from_ref(id),
            "step {n}: one record per batch"
        );
        assert_eq!(r.outcome, Some(Outcome::Success));
        assert_eq!(r.deleted, std::slice::from_ref(id));
        assert_eq!(r.carried, ids[n + 1..], "step {n}: the rest carried");
        assert!(r.kept.is_empty(), "{r:?}");
        let counts = d.counts("q").await;
        assert_eq!(
            (counts.visible, counts.in_flight),
            (0, (ids.len() - n - 1) as u64),
            "step {n}: the carried records stay in flight"
        );
    }
    assert_eq!(d.poll_once(&m).await, PollReport::default());
    assert_eq!(total(&d.counts("q").await), 0);
    let calls = server.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.records().len() == 1 && receive_count(&c.records()[0]) == 1),
        "each delivered once, on its first receive: {:?}",
        calls.iter().map(Call::bodies).collect::<Vec<_>>()
    );
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_within_one_window_go_into_one_invocation_whatever_max_concurrency() {
    // Queue time is manual: the window ends only when the test moves the clock past it.
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "5s",
        r#"
[queues.q]
visibility_timeout = "60s"

[mappings.m]
queue = "q"
function = "fn"
batch_size = 100
batching_window = "8s"
max_concurrency = 5
"#,
    );
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    d.send_bodies("q", &["first"]).await;
    d.wait_counts("q", WAIT, "the first message collected", |c| {
        c.in_flight == 1
    })
    .await;
    d.clock().advance(Duration::from_millis(300));
    d.send_bodies("q", &["second"]).await;
    d.wait_counts("q", WAIT, "the second message collected", |c| {
        c.in_flight == 2
    })
    .await;
    assert!(
        server.calls().is_empty(),
        "nothing is invoked while the window is open"
    );
    d.clock().advance(Duration::from_secs(8));
    let calls = server.next(1, WAIT).await;
    assert_eq!(
        calls[0].bodies(),
        ["first", "second"],
        "both messages of the window in one invocation, in order"
    );
    // The batch's oldest message was 8.3 s old (queue time) when it was invoked.
    let labels = [("mapping", "m")];
    assert_eq!(
        d.metric("esmd_batch_oldest_message_age_seconds_count", &labels),
        1.0
    );
    let age = d.metric("esmd_batch_oldest_message_age_seconds_sum", &labels);
    assert!((8.2..8.4).contains(&age), "oldest message age {age}");
    d.wait_empty("q", WAIT).await;
    assert_eq!(server.calls().len(), 1, "one invocation in all");
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_of_several_invocations_share_a_commit() {
    let server = FunctionServer::start().await;
    let gate = Gate::new();
    let held = gate.clone();
    server.respond(move |_| Reply::ok().held(&held));
    let toml = config(
        &server,
        "10s",
        r#"
[queues.q]

[mappings.m]
queue = "q"
function = "fn"
batch_size = 1
max_concurrency = 5
"#,
    );
    let d = TestDaemon::start(&toml).await;
    d.send_bodies("q", &["d1", "d2", "d3", "d4", "d5"]).await;
    server.next(5, WAIT).await;
    let commits = |d: &TestDaemon| {
        (
            d.metric("esmd_store_commit_operations_count", &[]),
            d.metric("esmd_store_commit_operations_bucket", &[("le", "2")]),
        )
    };
    let (count0, small0) = commits(&d);
    // The five deletes queue up behind another process's write lock, as they would behind a
    // slow fsync, and go through together once it is released.
    let lock = WriteLock::take(d.db_path()).await;
    gate.open();
    // The five invocations end while their deletes wait behind the lock.
    d.wait_metric(
        "esmd_invocations_in_flight",
        &[("mapping", "m")],
        WAIT,
        |n| n == 0.0,
    )
    .await;
    // The slots are free while the deletes wait for the writer.
    assert_eq!(d.counts("q").await.in_flight, 5, "nothing deleted yet");
    lock.release().await;
    d.wait_empty("q", WAIT).await;
    let (count1, small1) = commits(&d);
    let shared = (count1 - count0) - (small1 - small0);
    assert!(
        shared >= 1.0,
        "at least one commit held more than two operations: the deletes of several invocations \
         ({} commits, {} of them of one or two operations)",
        count1 - count0,
        small1 - small0
    );
    assert!(d.stop().await);
}
