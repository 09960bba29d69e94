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

mod batching;
mod event;
mod failures;
mod fifo;
mod shutdown;

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
