//! Failed invocations and ReportBatchItemFailures: what is deleted, what comes back, dead-lettering, a command killed at its timeout, a disabled mapping.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_report_batch_item_failures_a_failure_list_is_ignored_and_all_is_deleted() {
    let server = FunctionServer::start().await;
    server.respond(|call| Reply::failures(&call.ids()));
    let toml = config(
        &server,
        "1s",
        r#"
[queues.q]
visibility_timeout = "1s"

[mappings.m]
queue = "q"
function = "fn"
report_batch_item_failures = false
"#,
    );
    let d = TestDaemon::start(&toml).await;
    d.send_bodies("q", &["one", "two", "three"]).await;
    server.wait_bodies(&["one", "two", "three"], WAIT).await;
    d.wait_empty("q", WAIT).await;
    let calls = server.calls();
    assert_eq!(
        calls.iter().map(|c| c.records().len()).sum::<usize>(),
        3,
        "each message delivered once"
    );
    assert!(d.stop().await);
}

/// A failed invocation (whatever its body says) deletes nothing; the message comes back when
/// the visibility timeout runs out, not a millisecond before, with ApproximateReceiveCount 2.
async fn a_failed_invocation_deletes_nothing_and_the_message_returns(failure: Reply) {
    let server = FunctionServer::start().await;
    let first = Arc::new(AtomicBool::new(true));
    server.respond(move |_| {
        if first.swap(false, Ordering::SeqCst) {
            failure.clone()
        } else {
            Reply::ok()
        }
    });
    let d = TestDaemon::start_with_clock(&stepped_q(&server), manual_clock()).await;
    let m = d.stepper("m").await;
    let id = d.send_bodies("q", &["retry me"]).await.remove(0);

    let failed = d.poll_once(&m).await;
    assert_eq!(failed.invoked, std::slice::from_ref(&id));
    assert_eq!(failed.outcome, Some(Outcome::Error), "{failed:?}");
    assert!(failed.deleted.is_empty(), "nothing deleted: {failed:?}");
    assert_eq!(failed.kept, std::slice::from_ref(&id));
    let counts = d.counts("q").await;
    assert_eq!((counts.visible, counts.in_flight), (0, 1), "left in flight");

    d.clock().advance(Duration::from_millis(999));
    let early = d.poll_once(&m).await;
    assert_eq!(
        early,
        PollReport::default(),
        "not redelivered before the 1 s visibility timeout ran out"
    );
    d.clock().advance(Duration::from_millis(1));
    let retried = d.poll_once(&m).await;
    assert_eq!(
        retried.invoked,
        std::slice::from_ref(&id),
        "redelivered once it ran out"
    );
    assert_eq!(retried.outcome, Some(Outcome::Success));
    assert_eq!(retried.deleted, std::slice::from_ref(&id));

    let calls = server.calls();
    assert_eq!(calls.len(), 2, "two invocations");
    for (n, c) in calls.iter().enumerate() {
        assert_eq!(
            c.ids(),
            std::slice::from_ref(&id),
            "the same message both times"
        );
        assert_eq!(receive_count(&c.records()[0]), n as u32 + 1);
    }
    assert_eq!(total(&d.counts("q").await), 0);
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_500_deletes_nothing_and_the_message_is_redelivered_after_the_visibility_timeout() {
    // The body would mean "all succeeded" if it were read: the status wins.
    a_failed_invocation_deletes_nothing_and_the_message_returns(Reply {
        body: r#"{"batchItemFailures":[]}"#.into(),
        ..Reply::status(500)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x_amz_function_error_deletes_nothing_and_the_message_is_redelivered() {
    a_failed_invocation_deletes_nothing_and_the_message_returns(Reply {
        body: r#"{"batchItemFailures":[]}"#.into(),
        ..Reply::function_error()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_item_failure_leaves_exactly_that_message_and_deletes_the_rest() {
    let server = FunctionServer::start().await;
    server.respond(move |call| match call.record("fail-2") {
        Some(r) if receive_count(r) == 1 => {
            Reply::failures(&[r.message_id.clone().unwrap_or_default()])
        }
        _ => Reply::ok(),
    });
    let d = TestDaemon::start_with_clock(&stepped_q(&server), manual_clock()).await;
    let m = d.stepper("m").await;
    let ids = d.send_bodies("q", &["keep-1", "fail-2", "keep-3"]).await;

    let first = d.poll_once(&m).await;
    assert_eq!(first.invoked, ids, "the three messages were one batch");
    assert_eq!(first.outcome, Some(Outcome::PartialFailure));
    assert_eq!(first.deleted, [ids[0].clone(), ids[2].clone()]);
    assert_eq!(first.kept, [ids[1].clone()]);
    let counts = d.counts("q").await;
    assert_eq!(
        (counts.visible, counts.in_flight, counts.delayed),
        (0, 1, 0),
        "only the reported message is left"
    );

    d.clock().advance(Duration::from_secs(1));
    let retry = d.poll_once(&m).await;
    assert_eq!(
        retry.invoked,
        [ids[1].clone()],
        "only the reported message came back"
    );
    assert_eq!(retry.deleted, [ids[1].clone()]);
    assert_eq!(total(&d.counts("q").await), 0);

    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].ids(), ids);
    assert_eq!(
        calls[1].bodies(),
        ["fail-2"],
        "only the reported message came back"
    );
    assert_eq!(receive_count(&calls[1].records()[0]), 2);
    for keep in ["keep-1", "keep-3"] {
        assert_eq!(
            calls.iter().filter(|c| c.record(keep).is_some()).count(),
            1,
            "{keep} was deleted after its one delivery"
        );
    }
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_item_failure_fails_the_whole_batch() {
    let server = FunctionServer::start().await;
    server.respond(|call| {
        if call.records().iter().all(|r| receive_count(r) == 1) {
            Reply::body(r#"{"batchItemFailures":[{"foo":"x"}]}"#)
        } else {
            Reply::ok()
        }
    });
    let d = TestDaemon::start_with_clock(&stepped_q(&server), manual_clock()).await;
    let m = d.stepper("m").await;
    let ids = d.send_bodies("q", &["a", "b"]).await;

    let failed = d.poll_once(&m).await;
    assert_eq!(failed.invoked, ids);
    assert_eq!(failed.outcome, Some(Outcome::Error), "{failed:?}");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("malformed batchItemFailures")),
        "{failed:?}"
    );
    assert!(failed.deleted.is_empty(), "{failed:?}");
    assert_eq!(failed.kept, ids, "the whole batch stays");

    d.clock().advance(Duration::from_secs(1));
    let retried = d.poll_once(&m).await;
    assert_eq!(retried.invoked, ids, "both came back");
    assert_eq!(retried.deleted, ids);

    let calls = server.calls();
    for body in ["a", "b"] {
        let counts: Vec<u32> = calls
            .iter()
            .filter_map(|c| c.record(body))
            .map(receive_count)
            .collect();
        assert_eq!(
            counts,
            [1, 2],
            "{body}: delivered, failed with the whole batch, delivered again"
        );
    }
    assert_eq!(total(&d.counts("q").await), 0);
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_function_drives_the_message_to_the_dead_letter_queue_after_max_receive_count() {
    let server = FunctionServer::start().await;
    server.respond(|_| Reply::status(500));
    let toml = config(
        &server,
        "1s",
        r#"
[queues.src]
visibility_timeout = "1s"
dead_letter_queue = "dlq"
max_receive_count = 2

[queues.dlq]

[mappings.m]
queue = "src"
function = "fn"
enabled = false
"#,
    );
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    let m = d.stepper("m").await;
    let mut attrs = Attributes::new();
    attrs.insert("Kind".into(), AttributeValue::string("doomed"));
    let sent = d
        .send(
            "src",
            vec![NewMessage {
                attributes: attrs.clone(),
                ..NewMessage::body("doomed")
            }],
        )
        .await
        .remove(0);

    for n in 1..=2 {
        let r = d.poll_once(&m).await;
        assert_eq!(
            r.invoked,
            std::slice::from_ref(&sent.message_id),
            "receive {n}"
        );
        assert_eq!(r.outcome, Some(Outcome::Error), "receive {n}");
        d.clock().advance(Duration::from_secs(1));
    }
    // The third receive moves it to the dead-letter queue instead of returning it.
    assert_eq!(d.poll_once(&m).await, PollReport::default());

    let dead = d.receive_n("dlq", 1, WAIT).await.remove(0);
    assert_eq!(
        dead.message_id, sent.message_id,
        "the same message id in the dead-letter queue"
    );
    assert_eq!(dead.body, "doomed");
    assert_eq!(dead.attributes, attrs);
    assert_eq!(
        dead.receive_count, 3,
        "two receives in the source, one here"
    );
    assert_eq!(dead.dead_letter_source, Some(q("src")));
    assert_eq!(total(&d.counts("src").await), 0);
    let counts: Vec<u32> = server
        .calls()
        .iter()
        .filter_map(|c| c.record("doomed"))
        .map(receive_count)
        .collect();
    assert_eq!(
        counts,
        [1, 2],
        "the function saw the message exactly max_receive_count times"
    );
    assert_eq!(
        d.metric("esmd_messages_dead_lettered_total", &[("queue", "src")]),
        1.0
    );
    assert!(d.stop().await);
}

// ---------------------------------------------------------------------------------------------
// 5. Command functions
// ---------------------------------------------------------------------------------------------

/// A handler as a user would write it for Lambda: reports every record whose body says "fail".
const PYTHON_HANDLER: &str = r#"import json
import sys

event = json.load(sys.stdin)
failures = [
    {"itemIdentifier": record["messageId"]}
    for record in event["Records"]
    if "fail" in record["body"]
]
print(json.dumps({"batchItemFailures": failures}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_command_function_reports_item_failures_and_only_those_stay() {
    let scripts = tempfile::tempdir().expect("a directory for the handler");
    std::fs::write(scripts.path().join("handler.py"), PYTHON_HANDLER).expect("write handler.py");
    let toml = format!(
        r#"
[queues.jobs]
visibility_timeout = "3s"
dead_letter_queue = "jobs-dlq"
max_receive_count = 1

[queues.jobs-dlq]

[functions.py]
type = "command"
command = ["python3", "handler.py"]
working_dir = "{}"
timeout = "3s"

[mappings.jobs]
queue = "jobs"
function = "py"
report_batch_item_failures = true
enabled = false
"#,
        scripts.path().display()
    );
    let d = TestDaemon::start_with_clock(&toml, manual_clock()).await;
    let m = d.stepper("jobs").await;
    let ids = d
        .send_bodies("jobs", &["ok-1", "fail-2", "ok-3", "fail-4"])
        .await;

    let r = d.poll_once(&m).await;
    assert_eq!(r.invoked, ids);
    assert_eq!(r.outcome, Some(Outcome::PartialFailure), "{r:?}");
    assert_eq!(r.deleted, [ids[0].clone(), ids[2].clone()]);
    assert_eq!(r.kept, [ids[1].clone(), ids[3].clone()]);

    // The reported records stay, come back after the visibility timeout, and (max_receive_count
    // 1) move to the dead-letter queue; the others were deleted.
    d.clock().advance(Duration::from_secs(3));
    assert_eq!(d.poll_once(&m).await, PollReport::default());
    let dead = d.receive_n("jobs-dlq", 2, WAIT).await;
    let bodies: BTreeSet<&str> = dead.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, BTreeSet::from(["fail-2", "fail-4"]));
    assert_eq!(total(&d.counts("jobs").await), 0);
    assert_eq!(
        total(&d.counts("jobs-dlq").await),
        2,
        "nothing else was dead-lettered"
    );
    assert_eq!(
        d.metric(
            "esmd_invocations_total",
            &[("mapping", "jobs"), ("outcome", "partial_failure")]
        ),
        1.0
    );
    assert_eq!(
        d.metric(
            "esmd_invocations_total",
            &[("mapping", "jobs"), ("outcome", "error")]
        ),
        0.0
    );
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_killed_at_its_timeout_leaves_the_batch_in_the_queue() {
    let toml = r#"
[queues.slow]
visibility_timeout = "2s"
dead_letter_queue = "slow-dlq"
max_receive_count = 1

[queues.slow-dlq]

[functions.sleeper]
type = "command"
command = ["sleep", "30"]  # sleep-ok: the function hangs past its 1 s timeout on purpose
timeout = "1s"

[mappings.slow]
queue = "slow"
function = "sleeper"
enabled = false
"#;
    let d = TestDaemon::start_with_clock(toml, manual_clock()).await;
    let m = d.stepper("slow").await;
    let id = d.send_bodies("slow", &["too slow"]).await.remove(0);
    let r = d.poll_once(&m).await;
    assert_eq!(r.invoked, std::slice::from_ref(&id));
    assert_eq!(r.outcome, Some(Outcome::Timeout), "{r:?}");
    assert_eq!(r.kept, std::slice::from_ref(&id), "not deleted");
    // It returns after the visibility timeout and, past max_receive_count, is dead-lettered.
    d.clock().advance(Duration::from_secs(2));
    assert_eq!(d.poll_once(&m).await, PollReport::default());
    let dead = d.receive_n("slow-dlq", 1, WAIT).await.remove(0);
    assert_eq!(dead.message_id, id);
    assert_eq!(
        d.metric(
            "esmd_invocations_total",
            &[("mapping", "slow"), ("outcome", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        d.metric(
            "esmd_invocations_total",
            &[("mapping", "slow"), ("outcome", "success")]
        ),
        0.0
    );
    assert!(d.stop().await);
}

// ---------------------------------------------------------------------------------------------
// 6. Disabled mappings
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_mapping_leaves_its_queue_alone() {
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "5s",
        r#"
[queues.off]
[queues.on]

[mappings.off]
queue = "off"
function = "fn"
enabled = false

[mappings.on]
queue = "on"
function = "fn"
"#,
    );
    let d = TestDaemon::start(&toml).await;
    d.send_bodies("off", &["to-off"]).await;
    d.send_bodies("on", &["to-on"]).await;
    let calls = server.wait_bodies(&["to-on"], WAIT).await;
    d.wait_empty("on", WAIT).await;
    let queues: Vec<String> = calls.iter().map(Call::queue).collect();
    assert_eq!(
        queues,
        ["on"],
        "only the enabled mapping invoked the function"
    );
    let off = d.counts("off").await;
    assert_eq!(
        (off.visible, off.in_flight),
        (1, 0),
        "the disabled mapping's message is untouched"
    );
    assert!(d.stop().await);
}

// ---------------------------------------------------------------------------------------------
// 7. Shutdown
// ---------------------------------------------------------------------------------------------
