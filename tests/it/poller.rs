//! The event source mapping end to end (issue #4 points 1 to 7): a whole esmd started in-process
//! from a TOML text, messages sent through its store, and real functions on the other side: an
//! axum server standing in for the Lambda Invoke API, and `command` functions written in Python
//! as a user would write them. Each test waits on conditions with bounded timeouts (the function
//! server's notifications, long-polling receives, the queue counts) and never sleeps to let
//! something happen.
//!
//! Redelivery is never waited for: a test about what happens when a visibility timeout runs out
//! runs on a manual clock and moves it. Tests of one invocation's result (failures, partial
//! failures, dead-lettering) drive a disabled mapping one step at a time with
//! `Poller::poll_once` ([`TestDaemon::stepper`]); tests of the background workers themselves
//! (concurrency, FIFO groups across workers, batching windows, shutdown) run the real workers.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esmd::clock::Clock;
use esmd::domain::attributes::{AttributeData, AttributeValue, Attributes};
use esmd::domain::message::{NewMessage, SENDER_ID};
use esmd::domain::Timestamp;
use esmd::metrics::Outcome;
use esmd::poller::PollReport;
use md5::{Digest as _, Md5};
use serde_json::Value;

use crate::common::daemon::{
    http_function, receive_count, total, Call, FunctionServer, Gate, Reply, TestDaemon,
};
use crate::common::{q, WriteLock, T0};

/// The bound on every wait for something that should happen within a second or two.
const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit in i64")
}

/// A manual clock: queue time, visibility timeouts included, moves only when the test says so.
fn manual_clock() -> Clock {
    Clock::manual(Timestamp::from_millis(T0))
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// SQS's MD5 of message attributes (docs/semantics.md §7.5), written here independently of esmd:
/// for each attribute sorted by name, the length-prefixed name, the length-prefixed data type,
/// a transport byte (1 string, 2 binary) and the length-prefixed value.
fn md5_of_attributes(attrs: &Attributes) -> String {
    let mut h = Md5::new();
    let put = |h: &mut Md5, b: &[u8]| {
        h.update(u32::try_from(b.len()).expect("short value").to_be_bytes());
        h.update(b);
    };
    for (name, v) in attrs {
        put(&mut h, name.as_bytes());
        put(&mut h, v.data_type.as_bytes());
        match &v.value {
            AttributeData::String(s) => {
                h.update([1]);
                put(&mut h, s.as_bytes());
            }
            AttributeData::Binary(b) => {
                h.update([2]);
                put(&mut h, b);
            }
        }
    }
    hex::encode(h.finalize())
}

fn attr(data_type: &str, value: AttributeData) -> AttributeValue {
    AttributeValue {
        data_type: data_type.into(),
        value,
    }
}

/// A config with one http function `fn` at `server` (timeout `timeout`) and `rest` appended.
fn config(server: &FunctionServer, timeout: &str, rest: &str) -> String {
    format!("{}\n{rest}", http_function(&server.url, timeout))
}

/// `call`'s bodies that start with `prefix`, in record order.
fn bodies_with(call: &Call, prefix: &str) -> Vec<String> {
    call.bodies()
        .into_iter()
        .filter(|b| b.starts_with(prefix))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. The event
// ---------------------------------------------------------------------------------------------

#[test]
fn the_independent_attribute_md5_matches_the_aws_recorded_vector() {
    let mut a = Attributes::new();
    a.insert(
        "Title".into(),
        attr("String", AttributeData::String("The Whistler".into())),
    );
    a.insert(
        "Author".into(),
        attr("String", AttributeData::String("John Grisham".into())),
    );
    a.insert(
        "WeeksOn".into(),
        attr("Number", AttributeData::String("6".into())),
    );
    assert_eq!(md5_of_attributes(&a), "d25a6aea97eb8f585bfa92d314504a92");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_function_as_an_aws_sqs_event_and_is_deleted_after_success() {
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "5s",
        r#"
[server]
region = "eu-west-1"
account_id = "123456789012"

[queues.plain]

[queues."ordered.fifo"]

[mappings.plain]
queue = "plain"
function = "fn"

[mappings.ordered]
queue = "ordered.fifo"
function = "fn"
"#,
    );
    let d = TestDaemon::start(&toml).await;

    // A standard message with one attribute of each type.
    let mut attrs = Attributes::new();
    attrs.insert(
        "Title".into(),
        attr("String", AttributeData::String("The Whistler".into())),
    );
    attrs.insert(
        "Weeks".into(),
        attr("Number", AttributeData::String("6".into())),
    );
    attrs.insert(
        "Blob".into(),
        attr("Binary", AttributeData::Binary(vec![0, 1, 2, 0xfe, 0xff])),
    );
    let body = "Test message.";
    let before = now_ms();
    let sent = d
        .send(
            "plain",
            vec![NewMessage {
                body: body.into(),
                attributes: attrs.clone(),
                ..Default::default()
            }],
        )
        .await;
    let after = now_ms();
    let sent = &sent[0];

    let call = server.next(1, WAIT).await.remove(0);
    let arrived = now_ms();
    assert_eq!(call.records().len(), 1, "one message, one record");
    let r = &call.records()[0];
    assert_eq!(r.message_id.as_deref(), Some(sent.message_id.as_str()));
    assert!(
        r.receipt_handle.as_deref().is_some_and(|h| !h.is_empty()),
        "a receipt handle: {r:?}"
    );
    assert_eq!(r.body.as_deref(), Some(body));
    assert_eq!(
        r.md5_of_body.as_deref(),
        Some(md5_hex(body.as_bytes()).as_str())
    );
    assert_eq!(
        r.md5_of_body.as_deref(),
        Some("e4e68fb7bd0e697a0ae8f1bb342846b3"),
        "AWS's documented example"
    );
    let md5_attrs = md5_of_attributes(&attrs);
    assert_eq!(
        r.md5_of_message_attributes.as_deref(),
        Some(md5_attrs.as_str())
    );
    assert_eq!(
        sent.md5_of_attributes.as_deref(),
        Some(md5_attrs.as_str()),
        "the send and the event agree"
    );
    assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(
        r.event_source_arn.as_deref(),
        Some("arn:aws:sqs:eu-west-1:123456789012:plain")
    );
    assert_eq!(r.aws_region.as_deref(), Some("eu-west-1"));

    let title = &r.message_attributes["Title"];
    assert_eq!(
        (title.data_type.as_deref(), title.string_value.as_deref()),
        (Some("String"), Some("The Whistler"))
    );
    assert!(title.binary_value.is_none());
    let weeks = &r.message_attributes["Weeks"];
    assert_eq!(
        (weeks.data_type.as_deref(), weeks.string_value.as_deref()),
        (Some("Number"), Some("6"))
    );
    let blob = &r.message_attributes["Blob"];
    assert_eq!(blob.data_type.as_deref(), Some("Binary"));
    assert_eq!(
        blob.binary_value.as_ref().map(|b| b.0.clone()),
        Some(vec![0, 1, 2, 0xfe, 0xff])
    );
    assert!(blob.string_value.is_none());
    assert_eq!(r.message_attributes.len(), 3);

    let a = &r.attributes;
    assert_eq!(a["ApproximateReceiveCount"], "1");
    assert_eq!(a["SenderId"], SENDER_ID);
    let sent_ts: i64 = a["SentTimestamp"]
        .parse()
        .expect("SentTimestamp in milliseconds");
    let first_ts: i64 = a["ApproximateFirstReceiveTimestamp"]
        .parse()
        .expect("ApproximateFirstReceiveTimestamp in ms");
    assert!(
        (before..=after).contains(&sent_ts),
        "SentTimestamp {sent_ts} is the send time ({before}..={after})"
    );
    assert!(
        (sent_ts..=arrived).contains(&first_ts),
        "first receive {first_ts} between the send and the arrival"
    );
    let mut keys: Vec<&str> = a.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "ApproximateFirstReceiveTimestamp",
            "ApproximateReceiveCount",
            "SenderId",
            "SentTimestamp"
        ]
    );

    // The exact key set of a record, as AWS sends it: no more, no fewer.
    let raw = &call.json["Records"][0];
    let mut raw_keys: Vec<&str> = raw
        .as_object()
        .expect("a record is an object")
        .keys()
        .map(String::as_str)
        .collect();
    raw_keys.sort_unstable();
    assert_eq!(
        raw_keys,
        [
            "attributes",
            "awsRegion",
            "body",
            "eventSource",
            "eventSourceARN",
            "md5OfBody",
            "md5OfMessageAttributes",
            "messageAttributes",
            "messageId",
            "receiptHandle"
        ]
    );
    assert_eq!(
        raw["messageAttributes"]["Title"]["stringListValues"],
        Value::Array(vec![])
    );
    assert_eq!(
        raw["messageAttributes"]["Blob"]["binaryListValues"],
        Value::Array(vec![])
    );
    d.wait_empty("plain", WAIT).await;

    // A FIFO message: the three FIFO attributes, and a null md5OfMessageAttributes.
    let fifo = d
        .send(
            "ordered.fifo",
            vec![NewMessage {
                group_id: Some("g1".into()),
                dedup_id: Some("d1".into()),
                ..NewMessage::body("fifo body")
            }],
        )
        .await
        .remove(0);
    let call = server.next(1, WAIT).await.remove(0);
    let r = &call.records()[0];
    assert_eq!(r.message_id.as_deref(), Some(fifo.message_id.as_str()));
    assert_eq!(
        r.event_source_arn.as_deref(),
        Some("arn:aws:sqs:eu-west-1:123456789012:ordered.fifo")
    );
    assert_eq!(
        Some(&r.attributes["SequenceNumber"]),
        fifo.sequence_number.as_ref()
    );
    assert_eq!(r.attributes["MessageGroupId"], "g1");
    assert_eq!(r.attributes["MessageDeduplicationId"], "d1");
    assert_eq!(r.attributes["ApproximateReceiveCount"], "1");
    assert!(r.message_attributes.is_empty());
    assert_eq!(
        call.json["Records"][0]["md5OfMessageAttributes"],
        Value::Null
    );
    d.wait_empty("ordered.fifo", WAIT).await;

    assert_eq!(server.calls().len(), 2, "each message was delivered once");
    assert!(d.stop().await, "nothing was in flight at shutdown");
}

// ---------------------------------------------------------------------------------------------
// 2. Batching
// ---------------------------------------------------------------------------------------------

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

/// A config whose batches hold one record of [`kib_body`] (max_payload 2 KiB), so that every
/// receive of several messages leaves the rest carried into the worker's next batches.
fn one_record_batches(server: &FunctionServer, extra_server: &str) -> String {
    config(
        server,
        "10s",
        &format!(
            r#"
[server]
{extra_server}

[queues.q]
visibility_timeout = "30s"

[mappings.m]
queue = "q"
function = "fn"
batch_size = 10
max_payload = "2KiB"
max_concurrency = 2
"#
        ),
    )
}

/// A body of 1000 bytes starting with `name-`: one fits under a 2 KiB payload, two do not.
fn kib_body(name: &str) -> String {
    let head = format!("{name}-");
    format!("{head}{}", "x".repeat(1000 - head.len()))
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

/// A stepped mapping `m` on queue `q` (visibility timeout 1 s) with the http function at
/// `server` and report_batch_item_failures on: the test drives it with `poll_once`.
fn stepped_q(server: &FunctionServer) -> String {
    config(
        server,
        "1s",
        r#"
[queues.q]
visibility_timeout = "1s"

[mappings.m]
queue = "q"
function = "fn"
report_batch_item_failures = true
enabled = false
"#,
    )
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
command = ["sleep", "30"]
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
command = ["sh", "-c", "sleep 60 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"]
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
