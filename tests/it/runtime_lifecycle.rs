//! The lifecycle of `runtime` functions' execution environments against real runtimes (see
//! `runtime` for the fixtures): exits during Init, timeouts killing the process group, crashes,
//! oversized responses, scale-out and throttling, the process environment, idle reaping.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use esmd::config::FunctionTarget;
use esmd::invoke::{Invocation, InvokeOptions, Invoker};
use serde_json::json;

use crate::common::eventually;
use crate::runtime::{call, data, error_doc, function, pid_alive, returned, target, Kind};

/// An exit before the first `/next` is `Runtime.ExitError`; a bootstrap that cannot start is
/// `Runtime.InvalidEntrypoint`.
#[tokio::test]
async fn exits_during_init_and_missing_bootstraps_fail_the_invocation() {
    let mut config = function(Kind::Shell, "h", Duration::from_secs(5), 1).expect("shell");
    let FunctionTarget::Runtime(r) = &mut config.target else {
        unreachable!()
    };
    r.argv = vec!["sh".into(), "-c".into(), "exit 7".into()];
    let invoker = Invoker::new();
    let failed = call(&invoker, &config, json!({})).await;
    let doc = error_doc(&failed, config.timeout);
    assert_eq!(doc["errorType"], "Runtime.ExitError");
    assert!(
        doc["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("exit status 7")),
        "{doc}"
    );
    let FunctionTarget::Runtime(r) = &mut config.target else {
        unreachable!()
    };
    r.argv = vec!["/nonexistent/bootstrap".into()];
    let failed = call(&invoker, &config, json!({})).await;
    assert_eq!(
        error_doc(&failed, config.timeout)["errorType"],
        "Runtime.InvalidEntrypoint"
    );
    invoker.shutdown();
}

/// §6.2 #5: past the timeout the environment is killed with everything it started (a forked
/// grandchild too), the caller gets `Sandbox.Timedout`, and the next call is a cold start.
#[tokio::test]
async fn python_timeout_kills_the_group_and_replaces_the_environment() {
    let Some(config) = function(Kind::Python, "app.handler", Duration::from_secs(1), 1) else {
        return;
    };
    let invoker = Invoker::new();
    let before = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    let started = std::time::Instant::now();
    let timed_out = call(&invoker, &config, json!({"mode": "spawn", "s": 30})).await;
    assert_eq!(timed_out.invocation, Invocation::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "killed at about 1 s"
    );
    let doc = error_doc(&timed_out, config.timeout);
    assert_eq!(doc["errorType"], "Sandbox.Timedout");
    assert!(
        doc["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("Task timed out after 1.00 seconds")),
        "{doc}"
    );
    let old = before["pid"].as_u64().expect("a pid");
    eventually(
        Duration::from_secs(10),
        "the timed-out process is gone",
        || async { (!pid_alive(old)).then_some(()) },
    )
    .await;
    // The grandchild the handler forked printed nothing; find it through the log: it is in the
    // old process group, which must be empty now.
    let group_empty = || async {
        let pgid = old;
        let alive = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
            .filter(|pid| pid_alive(*pid))
            .any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    // Field 5 is the process group (after the parenthesised name).
                    stat.rsplit_once(") ")
                        .and_then(|(_, rest)| rest.split(' ').nth(2)?.parse::<u64>().ok())
                        == Some(pgid)
                })
            });
        (!alive).then_some(())
    };
    eventually(
        Duration::from_secs(10),
        "the process group is gone",
        group_empty,
    )
    .await;
    let after = call(&invoker, &config, json!({"mode": "ok"})).await;
    let fresh = returned(&after);
    assert_ne!(fresh["pid"], before["pid"], "a new process");
    assert_eq!(fresh["count"].as_u64(), Some(1), "a fresh interpreter");
    assert!(after
        .log
        .as_deref()
        .is_some_and(|l| l.contains("Init Duration")));
    invoker.shutdown();
}

/// §6.2 #6: a crash mid-invocation is `Runtime.ExitError` with the exit status; next call cold.
async fn crash_is_exit_error(kind: Kind) {
    let Some(config) = function(kind, "app.handler", Duration::from_secs(10), 1) else {
        return;
    };
    let invoker = Invoker::new();
    let before = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    let crashed = call(&invoker, &config, json!({"mode": "exit"})).await;
    let doc = error_doc(&crashed, config.timeout);
    assert_eq!(doc["errorType"], "Runtime.ExitError", "{doc}");
    let expected = format!(
        "RequestId: {} Error: Runtime exited with error: exit status 3",
        crashed.request_id
    );
    assert_eq!(doc["errorMessage"], expected.as_str());
    let after = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(after["count"].as_u64(), Some(1));
    invoker.shutdown();
}

#[tokio::test]
async fn python_crash_mid_invocation_is_an_exit_error() {
    crash_is_exit_error(Kind::Python).await;
}

#[tokio::test]
async fn rust_crash_mid_invocation_is_an_exit_error() {
    crash_is_exit_error(Kind::Rust).await;
}

/// §6.2 #7: a 7 MiB response is `Function.ResponseSizeTooLarge`; Python exits and is replaced,
/// Rust keeps its process.
async fn oversized_response(kind: Kind) {
    let Some(config) = function(kind, "app.handler", Duration::from_secs(20), 1) else {
        return;
    };
    let invoker = Invoker::new();
    let before = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    let big = call(&invoker, &config, json!({"mode": "big"})).await;
    let doc = error_doc(&big, config.timeout);
    assert_eq!(doc["errorType"], "Function.ResponseSizeTooLarge", "{doc}");
    assert!(
        doc["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("exceeded maximum allowed payload size (6291556 bytes).")),
        "{doc}"
    );
    let after = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    match kind {
        Kind::Rust => assert_eq!(after["pid"], before["pid"], "Rust keeps running"),
        _ => assert_ne!(
            after["pid"], before["pid"],
            "Python exited and was replaced"
        ),
    }
    invoker.shutdown();
}

#[tokio::test]
async fn python_oversized_response_replaces_the_environment() {
    oversized_response(Kind::Python).await;
}

#[tokio::test]
async fn rust_oversized_response_keeps_the_environment() {
    oversized_response(Kind::Rust).await;
}

/// §6.2 #10: N parallel invocations with max_environments k run in at most k processes, one
/// invocation at a time each; the rest wait. A caller asking not to wait is throttled.
#[tokio::test]
async fn rust_scale_out_stops_at_max_environments_and_throttles_on_request() {
    let Some(config) = function(Kind::Rust, "app.handler", Duration::from_secs(20), 2) else {
        return;
    };
    let invoker = Invoker::new();
    let calls = (0..6).map(|i| {
        call(
            &invoker,
            &config,
            // sleep-ok: each handler holds its environment, so that the calls overlap
            json!({"mode": "sleep", "s": 0.3, "i": i}),
        )
    });
    let slow = futures_util::future::join_all(calls);
    let probe = async {
        // While both environments are busy (Init takes a while; retry until throttled).
        eventually(Duration::from_secs(20), "a throttled call", || async {
            let options = InvokeOptions {
                throttle_when_busy: true,
                ..InvokeOptions::default()
            };
            let invoked = invoker
                .invoke_with(&target(&config), br#"{"mode":"ok"}"#.to_vec(), options)
                .await;
            (invoked.invocation == Invocation::Throttled).then_some(())
        })
        .await;
    };
    let (results, ()) = tokio::join!(slow, probe);
    for invoked in &results {
        assert!(
            matches!(invoked.invocation, Invocation::Returned(Some(_))),
            "{invoked:?}"
        );
    }
    let counts: Vec<u64> = results
        .iter()
        .filter_map(|i| {
            let log = i.log.clone()?;
            let line = log
                .lines()
                .find(|l| l.starts_with("mode=sleep"))?
                .to_owned();
            line.split("count=").nth(1)?.split(' ').next()?.parse().ok()
        })
        .collect();
    // Each environment counts its own invocations: two environments for six invocations give
    // two 1s (two cold starts, never a third), and the counts add up to six.
    assert_eq!(
        counts.len(),
        6,
        "every invocation logged its count: {counts:?}"
    );
    assert_eq!(
        counts.iter().filter(|&&c| c == 1).count(),
        2,
        "two environments: {counts:?}"
    );
    for c in counts.iter().filter(|&&c| c > 1) {
        assert!(
            counts.contains(&(c - 1)),
            "each environment counts 1, 2, …: {counts:?}"
        );
    }
    invoker.shutdown();
}

/// §6.2 #15: the variables of docs/interface.md §4.4 are set, never AWS_LAMBDA_MAX_CONCURRENCY
/// (not even when configured); Python's context sees the function's name.
#[tokio::test]
async fn python_environment_has_the_lambda_variables_and_never_the_forbidden_ones() {
    let Some(mut config) = function(Kind::Python, "app.handler", Duration::from_secs(10), 1) else {
        return;
    };
    let FunctionTarget::Runtime(r) = &mut config.target else {
        unreachable!()
    };
    // Bypasses the configuration's validation, which refuses it.
    r.env
        .insert("AWS_LAMBDA_MAX_CONCURRENCY".into(), "4".into());
    let invoker = Invoker::new();
    let out = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    assert_eq!(out["function_name"], "orders");
    assert_eq!(out["memory"], "256");
    let remaining = out["remaining_ms"].as_u64().expect("remaining time");
    assert!(remaining > 0 && remaining <= 10_000, "{remaining}");
    let pid = out["pid"].as_u64().expect("pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    let vars: BTreeMap<String, String> = environ
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect();
    assert!(!vars.contains_key("AWS_LAMBDA_MAX_CONCURRENCY"), "{vars:?}");
    assert!(!vars.contains_key("_LAMBDA_TELEMETRY_LOG_FD"));
    assert!(vars["AWS_LAMBDA_RUNTIME_API"].starts_with("127.0.0.1:"));
    assert_eq!(vars["_HANDLER"], "app.handler");
    assert_eq!(vars["AWS_LAMBDA_FUNCTION_NAME"], "orders");
    assert_eq!(vars["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(vars["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(vars["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
    assert_eq!(vars["AWS_REGION"], "eu-west-1");
    assert_eq!(vars["GREETING"], "hi");
    assert_eq!(
        Path::new(&vars["LAMBDA_TASK_ROOT"]),
        data("runtime-python").as_path()
    );
    invoker.shutdown();
    eventually(
        Duration::from_secs(10),
        "shutdown kills the environment",
        || async { (!pid_alive(pid)).then_some(()) },
    )
    .await;
}

/// Idle environments are shut down after idle_timeout; the next call is a cold start.
#[tokio::test]
async fn shell_idle_environments_are_reaped() {
    let Some(mut config) = function(Kind::Shell, "h", Duration::from_secs(10), 1) else {
        return;
    };
    let FunctionTarget::Runtime(r) = &mut config.target else {
        unreachable!()
    };
    r.idle_timeout = Duration::from_millis(200);
    let invoker = Invoker::new();
    let first = returned(&call(&invoker, &config, json!({})).await);
    let pid = first["pid"].as_u64().expect("pid");
    eventually(
        Duration::from_secs(10),
        "the idle environment is reaped",
        || async { (!pid_alive(pid)).then_some(()) },
    )
    .await;
    let second = returned(&call(&invoker, &config, json!({})).await);
    assert_ne!(second["pid"], first["pid"]);
    invoker.shutdown();
}

/// An invocation abandoned mid-way (its future dropped, as at the end of the shutdown grace
/// period) kills its environment and frees its slot: with one environment allowed, the next call
/// gets a new process.
#[tokio::test]
async fn rust_abandoned_invocation_kills_its_environment_and_frees_the_slot() {
    let Some(config) = function(Kind::Rust, "h", Duration::from_secs(30), 1) else {
        return;
    };
    let invoker = Invoker::new();
    let before = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    let pid = before["pid"].as_u64().expect("pid");
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        // sleep-ok: a handler still running when the caller gives up on it
        invoker.invoke(&target(&config), br#"{"mode":"sleep","s":30}"#.to_vec()),
    )
    .await;
    assert!(abandoned.is_err(), "the invocation was still running");
    eventually(
        Duration::from_secs(10),
        "the abandoned environment is killed",
        || async { (!pid_alive(pid)).then_some(()) },
    )
    .await;
    let after = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(after["count"].as_u64(), Some(1));
    invoker.shutdown();
}

/// A runtime whose Init overruns `init_timeout` gets one more Init inside the invocation, bounded
/// by the function's timeout, as Lambda does; one that overruns that too times the invocation out
/// (`Sandbox.Timedout`, "Task timed out"), and every runtime started for it is killed.
#[tokio::test]
async fn init_timeout_retries_init_within_the_invocation_then_times_out() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let pids = dir.path().join("pids");
    let mut config = function(Kind::Shell, "h", Duration::from_secs(1), 1).expect("shell");
    let FunctionTarget::Runtime(r) = &mut config.target else {
        unreachable!()
    };
    r.argv = vec![
        "sh".into(),
        "-c".into(),
        // sleep-ok: a runtime that never calls /next, so that Init overruns every limit
        format!("echo $$ >> {}; exec sleep 600", pids.display()),
    ];
    r.init_timeout = Duration::from_millis(300);
    let invoker = Invoker::new();
    let failed = call(&invoker, &config, json!({})).await;
    let doc = error_doc(&failed, config.timeout);
    assert_eq!(doc["errorType"], "Sandbox.Timedout", "{doc}");
    assert!(
        doc["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("Task timed out after 1.00 seconds")),
        "{doc}"
    );
    let started: Vec<u64> = std::fs::read_to_string(&pids)
        .expect("the runtime started")
        .lines()
        .map(|l| l.trim().parse().expect("a pid"))
        .collect();
    assert_eq!(
        started.len(),
        2,
        "Init ran, then was retried once: {started:?}"
    );
    eventually(
        Duration::from_secs(10),
        "both runtimes are killed",
        || async { started.iter().all(|&pid| !pid_alive(pid)).then_some(()) },
    )
    .await;
    invoker.shutdown();
}

/// The retried Init is a fresh runtime: when it reaches `/next` within the function's timeout,
/// the invocation runs in it and succeeds, and the environment stays warm.
#[tokio::test]
async fn init_that_overruns_once_succeeds_on_the_retry() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let marker = dir.path().join("first-start");
    let mut config = function(Kind::Shell, "h", Duration::from_secs(10), 1).expect("shell");
    let FunctionTarget::Runtime(r) = &mut config.target else {
        unreachable!()
    };
    let bootstrap = r.argv[0].clone();
    r.argv = vec![
        "sh".into(),
        "-c".into(),
        format!(
            // sleep-ok: only the first start hangs in Init; the retry runs the real bootstrap
            "if [ ! -e {m} ]; then touch {m}; exec sleep 600; fi; exec {bootstrap}",
            m = marker.display()
        ),
    ];
    r.init_timeout = Duration::from_millis(300);
    let invoker = Invoker::new();
    let first = returned(&call(&invoker, &config, json!({"n": 1})).await);
    assert!(marker.exists(), "the first start did run and hang");
    let again = call(&invoker, &config, json!({"n": 2})).await;
    let warm = returned(&again);
    assert_eq!(
        warm["pid"], first["pid"],
        "the retried environment stays warm"
    );
    assert_eq!(warm["count"].as_u64(), Some(2));
    let log = again.log.as_deref().expect("a tail");
    assert!(
        !log.contains("Init Duration"),
        "warm after the retry: {log}"
    );
    invoker.shutdown();
}
