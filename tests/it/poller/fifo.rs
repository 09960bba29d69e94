//! FIFO queues through a mapping: a group never in two invocations, order kept, carried and with deletes in flight.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carried_fifo_messages_keep_their_order_whatever_their_sizes() {
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "5s",
        r#"
[queues."sized.fifo"]
content_based_deduplication = true

[mappings.m]
queue = "sized.fifo"
function = "fn"
batch_size = 10
max_payload = "4KiB"
"#,
    );
    let d = TestDaemon::start(&toml).await;
    // With about 500 bytes of metadata per record: A-1 and A-2 do not fit together, nor do A-2
    // and A-3, but A-2 and the small A-4 would.
    let sizes = [("A-1", 2000), ("A-2", 1500), ("A-3", 2600), ("A-4", 10)];
    let bodies: Vec<String> = sizes
        .iter()
        .map(|(name, n)| format!("{name}-{}", "x".repeat(n - name.len() - 1)))
        .collect();
    let pairs: Vec<(&str, &str)> = bodies.iter().map(|b| ("A", b.as_str())).collect();
    d.send_fifo("sized.fifo", &pairs).await;
    let all: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let calls = server.wait_bodies(&all, WAIT).await;
    d.wait_empty("sized.fifo", WAIT).await;

    let order: Vec<String> = calls
        .iter()
        .flat_map(|c| c.bodies())
        .map(|b| b[..3].to_owned())
        .collect();
    let sizes: Vec<usize> = calls.iter().map(|c| c.raw.len()).collect();
    assert_eq!(
        order,
        ["A-1", "A-2", "A-3", "A-4"],
        "delivered in send order (event sizes {sizes:?})"
    );
    assert!(
        sizes.iter().all(|&n| n <= 4096),
        "every event within max_payload: {sizes:?}"
    );
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_groups_are_never_in_flight_twice_keep_their_order_and_a_failed_group_retries_first() {
    let server = FunctionServer::start().await;
    let failed_a = Arc::new(AtomicBool::new(false));
    let flag = failed_a.clone();
    server.respond(move |call| {
        let work = Duration::from_millis(100);
        if call.groups().iter().any(|g| g == "A") && !flag.swap(true, Ordering::SeqCst) {
            Reply::status(500).delayed(work)
        } else {
            Reply::ok().delayed(work)
        }
    });
    let toml = config(
        &server,
        "2s",
        r#"
[queues."ordered.fifo"]
visibility_timeout = "2s"
content_based_deduplication = true

[mappings.ordered]
queue = "ordered.fifo"
function = "fn"
batch_size = 2
max_concurrency = 5
"#,
    );
    // Queue time is manual: group A's failed batch stays in flight until the test moves the
    // clock, after B and C have flowed.
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    let groups = ["A", "B", "C"];
    let mut sends: Vec<(String, String)> = Vec::new();
    for i in 1..=4 {
        for g in groups {
            sends.push((g.to_owned(), format!("{g}-{i}")));
        }
    }
    let pairs: Vec<(&str, &str)> = sends
        .iter()
        .map(|(g, b)| (g.as_str(), b.as_str()))
        .collect();
    d.send_fifo("ordered.fifo", &pairs).await;
    let all: Vec<&str> = sends.iter().map(|(_, b)| b.as_str()).collect();

    // While A's failed batch is in flight, the rest of A waits behind it and the other groups
    // flow to the end: only the messages of the failed call's groups are left.
    let blocked = server
        .wait_for(
            WAIT,
            "A's failed call to finish and the other groups to be delivered",
            |s| {
                let failed = s
                    .calls
                    .iter()
                    .find(|c| c.groups().iter().any(|g| g == "A"))?;
                let blocked = failed.groups();
                let others: Vec<&str> = sends
                    .iter()
                    .filter(|(g, _)| !blocked.contains(g))
                    .map(|(_, b)| b.as_str())
                    .collect();
                (s.in_flight == 0 && s.has_bodies(&others)).then_some(blocked)
            },
        )
        .await;
    let left = sends.iter().filter(|(g, _)| blocked.contains(g)).count() as u64;
    d.wait_counts(
        "ordered.fifo",
        WAIT,
        "every other group to be deleted",
        |c| total(c) == left,
    )
    .await;
    // A's visibility timeout runs out: its failed batch comes back first.
    d.clock().advance(Duration::from_secs(2));
    // Everything delivered, and A's first batch delivered a second time.
    let calls = server
        .wait_for(
            WAIT,
            "every message, and group A's failed batch retried",
            |s| (s.has_bodies(&all) && s.deliveries_of("A-1").len() >= 2).then(|| s.calls.clone()),
        )
        .await;
    d.wait_empty("ordered.fifo", WAIT).await;
    let overlaps = server.with_seen(|s| s.group_overlaps.clone());
    assert!(
        overlaps.is_empty(),
        "two in-flight invocations held the same group: {overlaps:?}"
    );

    // Per group, first deliveries in send order.
    for g in groups {
        let mut firsts: Vec<String> = Vec::new();
        for c in &calls {
            for b in bodies_with(c, &format!("{g}-")) {
                if !firsts.contains(&b) {
                    firsts.push(b);
                }
            }
        }
        let expected: Vec<String> = (1..=4).map(|i| format!("{g}-{i}")).collect();
        assert_eq!(firsts, expected, "group {g} delivered out of order");
    }

    // A's failed batch came back first, before any later message of A, with count 2.
    let f = calls
        .iter()
        .position(|c| c.groups().iter().any(|g| g == "A"))
        .expect("a call with group A");
    let failed = bodies_with(&calls[f], "A-");
    assert_eq!(failed.first().map(String::as_str), Some("A-1"));
    let r = f
        + 1
        + calls[f + 1..]
            .iter()
            .position(|c| !bodies_with(c, "A-").is_empty())
            .expect("group A delivered again");
    let retried = bodies_with(&calls[r], "A-");
    assert_eq!(
        retried[..failed.len()],
        failed[..],
        "the retry starts with the failed batch"
    );
    for b in &failed {
        let rec = calls[r]
            .record(b)
            .expect("the failed record is in the retry");
        assert_eq!(receive_count(rec), 2, "{b} is on its second receive");
    }
    assert!(
        calls[f + 1..r]
            .iter()
            .all(|c| bodies_with(c, "A-").is_empty()),
        "no message of A between its failure and its retry"
    );
    // B kept flowing while A was blocked.
    assert!(
        calls[f + 1..r]
            .iter()
            .any(|c| !bodies_with(c, "B-").is_empty()),
        "group B was delivered while group A waited for its visibility timeout"
    );
    assert!(d.stop().await);
}

// ---------------------------------------------------------------------------------------------
// 4. Results
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_group_waits_for_its_delete_to_commit_before_its_next_batch() {
    let server = FunctionServer::start().await;
    let gate = Gate::new();
    let held = gate.clone();
    server.respond(move |call| {
        if call.index == 0 {
            Reply::ok().held(&held)
        } else {
            Reply::ok()
        }
    });
    let toml = config(
        &server,
        "10s",
        r#"
[queues."g.fifo"]
content_based_deduplication = true

[mappings.m]
queue = "g.fifo"
function = "fn"
batch_size = 1
max_concurrency = 5
"#,
    );
    let d = TestDaemon::start(&toml).await;
    d.send_fifo("g.fifo", &[("A", "a1"), ("A", "a2"), ("A", "a3")])
        .await;
    // One claim took the group's run; a1 is invoked (held), a2 and a3 are carried.
    server.next(1, WAIT).await;
    // Another process holds the write lock: a1's delete cannot commit when a1 returns.
    let lock = WriteLock::take(d.db_path()).await;
    gate.open();
    // a1's invocation ends (its function answered) while its delete waits behind the lock.
    d.wait_metric(
        "esmd_invocations_in_flight",
        &[("mapping", "m")],
        WAIT,
        |n| n == 0.0,
    )
    .await;
    // A slot is free and a2 is carried, but group A is not settled: a2 must wait. A wrong
    // collector would invoke it at once; this pause only gives it the time to show.
    tokio::time::sleep(Duration::from_millis(300)).await; // sleep-ok: a window for a violation to show; passing does not depend on it
    assert_eq!(
        server.calls().len(),
        1,
        "a2 is not invoked while a1's delete has not committed"
    );
    lock.release().await;
    let calls = server.wait_bodies(&["a1", "a2", "a3"], WAIT).await;
    let order: Vec<String> = calls.iter().flat_map(|c| c.bodies()).collect();
    assert_eq!(order, ["a1", "a2", "a3"], "in order, one batch at a time");
    d.wait_empty("g.fifo", WAIT).await;
    assert!(d.stop().await);
}
