//! Shutdown: carried and collecting batches given back, in-flight invocations settled or abandoned past the grace, commands killed with their children.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_carried_messages_back_at_once() {
    let server = FunctionServer::start().await;
    let gate = Gate::new();
    let held = gate.clone();
    server.respond(move |_| Reply::ok().held(&held));
    let toml = one_record_batches(&server, r#"shutdown_grace = "10s""#);
    let d = TestDaemon::start(&toml).await;
    let bodies: Vec<String> = ["c1", "c2", "c3", "c4"].map(kib_body).to_vec();
    d.send_bodies("q", &bodies.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    // c1 and c2 are being invoked (one record per batch, two slots); c3 and c4 are carried, in
    // flight, waiting for a slot.
    server.next(2, WAIT).await;
    assert_eq!(d.counts("q").await.in_flight, 4);
    assert_eq!(
        d.metric("esmd_mapping_claimed_messages", &[("mapping", "m")]),
        2.0,
        "claimed but not yet invoked"
    );

    let url = d.url.clone();
    let halting = tokio::spawn(d.halt());
    TestDaemon::wait_not_ready(&url, WAIT).await;
    gate.open();
    let (drained, stopped) = halting.await.expect("the shutdown task");
    assert!(
        drained,
        "the invocations of c1 and c2 finished within the grace period"
    );
    assert_eq!(
        server.calls().len(),
        2,
        "nothing carried was invoked after the shutdown began"
    );

    // Restarted with the mapping disabled: c1 and c2 were deleted, the carried ones are visible
    // now, not in flight until their 30 s visibility timeout.
    let d = stopped
        .restart_with(&toml.replace(
            "max_concurrency = 2",
            "max_concurrency = 2\nenabled = false",
        ))
        .await;
    let counts = d.counts("q").await;
    assert_eq!(
        (counts.visible, counts.in_flight),
        (2, 0),
        "the carried messages were given back"
    );
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_back_a_batch_still_filling_its_window() {
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
batch_size = 100
batching_window = "300s"
"#,
    );
    let d = TestDaemon::start(&toml).await;
    d.send_bodies("q", &["w1", "w2", "w3"]).await;
    // A worker claimed them and waits for more until its window closes.
    d.wait_counts("q", WAIT, "the three messages to be collected", |c| {
        c.in_flight == 3
    })
    .await;
    let (drained, stopped) = d.halt().await;
    assert!(drained);
    assert!(
        server.calls().is_empty(),
        "a window cut short by the shutdown is not invoked"
    );
    let d = stopped
        .restart_with(&toml.replace(
            "batching_window = \"300s\"",
            "batching_window = \"300s\"\nenabled = false",
        ))
        .await;
    let counts = d.counts("q").await;
    assert_eq!(
        (counts.visible, counts.in_flight),
        (3, 0),
        "the collected messages were given back"
    );
    assert!(d.stop().await);
}

// ---------------------------------------------------------------------------------------------
// 3. Concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_invocation_finish_and_settles_it() {
    let server = FunctionServer::start().await;
    server.respond(|_| Reply::ok().delayed(Duration::from_secs(1)));
    let toml = config(
        &server,
        "5s",
        r#"
[server]
shutdown_grace = "10s"

[queues.q]

[mappings.m]
queue = "q"
function = "fn"
"#,
    );
    let d = TestDaemon::start(&toml).await;
    d.send_bodies("q", &["in flight at shutdown"]).await;
    server.next(1, WAIT).await;
    let (drained, stopped) = d.halt().await;
    assert!(drained, "the invocation finished within the grace period");

    let d = stopped.restart().await;
    assert_eq!(
        total(&d.counts("q").await),
        0,
        "the message was deleted before the database closed"
    );
    assert_eq!(server.calls().len(), 1);
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_past_the_shutdown_grace_is_abandoned_and_its_message_comes_back() {
    let server = FunctionServer::start().await;
    let gate = Gate::new();
    let held = gate.clone();
    let first = Arc::new(AtomicBool::new(true));
    server.respond(move |_| {
        if first.swap(false, Ordering::SeqCst) {
            Reply::ok().held(&held)
        } else {
            Reply::ok()
        }
    });
    let toml = config(
        &server,
        "3s",
        r#"
[server]
shutdown_grace = "1s"

[queues.q]
visibility_timeout = "3s"

[mappings.m]
queue = "q"
function = "fn"
"#,
    );
    // Queue time is manual: the message stays in flight across the restart until the test
    // lets its visibility timeout run out.
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    let id = d.send_bodies("q", &["hangs"]).await.remove(0);
    server.next(1, WAIT).await;
    let (drained, stopped) = d.halt().await;
    assert!(
        !drained,
        "the hanging invocation did not finish within the 1 s grace period"
    );

    let d = stopped.restart().await;
    let counts = d.counts("q").await;
    assert_eq!(
        (counts.visible, counts.in_flight),
        (0, 1),
        "still there, in flight until its visibility timeout"
    );
    d.clock().advance(Duration::from_secs(3));
    let again = server.next(1, WAIT).await.remove(0);
    assert_eq!(again.ids(), [id]);
    assert_eq!(
        receive_count(&again.records()[0]),
        2,
        "delivered again by the restarted daemon"
    );
    d.wait_empty("q", WAIT).await;
    gate.open();
    assert!(d.stop().await);
}

/// Whether a process is gone (or a zombie waiting to be reaped).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_the_shutdown_grace_is_killed_with_its_children() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let pids = scratch.path().join("pids");
    let toml = format!(
        r#"
[server]
shutdown_grace = "1s"
[queues.q]
visibility_timeout = "30s"
[functions.slow]
type = "command"
command = ["sh", "-c", "sleep 60 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"]  # sleep-ok: a function and its child that outlive the shutdown grace on purpose
timeout = "30s"
[mappings.m]
queue = "q"
function = "slow"
"#,
        pids = pids.display()
    );
    let d = TestDaemon::start(&toml).await;
    d.send_bodies("q", &["hangs"]).await;
    let text = crate::common::within(WAIT, "the command to start", async {
        loop {
            if let Ok(t) = std::fs::read_to_string(&pids) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: waiting for another process's file
        }
    })
    .await;
    let pids: Vec<u32> = text
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2, "the shell and its child");
    assert!(!d.stop().await, "the command outlived the grace period");
    for pid in pids {
        crate::common::within(
            WAIT,
            "the abandoned command's processes to be killed",
            async {
                while !process_gone(pid) {
                    tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: waiting for a kill to land
                }
            },
        )
        .await;
    }
}
