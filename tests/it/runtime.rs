//! `type = "runtime"` functions against real Lambda runtimes (docs/interface.md §4.4): the
//! Python `awslambdaric` (from the venv named by `ESMD_TEST_PYTHON`, which `.ci/run` installs),
//! a Rust `lambda_runtime` binary built from tests/data/lambda-rust in release mode, and a shell
//! `bootstrap` (tests/data/runtime-shell). Each is driven through `Invoker::invoke_with`: warm
//! reuse, handler errors kept warm, init errors, timeouts killing the process group, crashes,
//! oversized responses, scale-out and throttling, the log tail and the process environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use esmd::config::{FunctionConfig, FunctionTarget, RuntimeConfig};
use esmd::invoke::{Invocation, InvokeOptions, InvokeTarget, Invoked, Invoker};
use serde_json::{json, Value};

use crate::common::{eventually, within};

/// The outer bound of every invocation (Init of a cold Python included).
const BOUND: Duration = Duration::from_secs(60);

/// The repository's test data.
pub fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// The venv Python with awslambdaric and Powertools: `ESMD_TEST_PYTHON`. Outside CI the tests
/// that need it are skipped, loudly; in CI (`ESMD_CI` or `CI` set) its absence fails them.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ESMD_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let in_ci = std::env::var_os("ESMD_CI").is_some() || std::env::var_os("CI").is_some();
    assert!(
        !in_ci,
        "ESMD_TEST_PYTHON is not set in CI: .ci/run installs awslambdaric and exports it"
    );
    eprintln!(
        "\n!!! SKIPPED: ESMD_TEST_PYTHON is not set (a python with awslambdaric and \
         aws-lambda-powertools, as .ci/run installs); runtime tests against Python did not run\n"
    );
    None
}

/// The Rust fixture, built once per test run in release mode under `<target>/fixtures`.
pub fn rust_fixture() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = &*built {
        return path.clone();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/debug/deps/it-…
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the target directory")
        .join("fixtures");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--locked",
            "--manifest-path",
        ])
        .arg(data("lambda-rust/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo to build the lambda_runtime fixture");
    assert!(status.success(), "building tests/data/lambda-rust failed");
    let path = target.join("release/lambda-fixture");
    *built = Some(path.clone());
    path
}

/// Which runtime a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Python,
    Rust,
    Shell,
}

/// A runtime function's configuration: `kind`'s bootstrap, `handler` (Python), the timeout and
/// at most `max` environments. `None` when the runtime is not available (Python outside CI).
pub fn function(kind: Kind, handler: &str, timeout: Duration, max: u32) -> Option<FunctionConfig> {
    let (argv, working_dir) = match kind {
        Kind::Python => {
            let python = python()?;
            (
                vec![
                    python.display().to_string(),
                    "-m".into(),
                    "awslambdaric".into(),
                    handler.into(),
                ],
                data("runtime-python"),
            )
        }
        Kind::Rust => (
            vec![rust_fixture().display().to_string()],
            data("lambda-rust"),
        ),
        Kind::Shell => (
            vec![data("runtime-shell/bootstrap").display().to_string()],
            data("runtime-shell"),
        ),
    };
    Some(FunctionConfig {
        timeout,
        async_config: Default::default(),
        target: FunctionTarget::Runtime(RuntimeConfig {
            argv,
            handler: Some(handler.to_owned()),
            working_dir: Some(working_dir),
            env: BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            memory_size: 256,
            init_timeout: Duration::from_secs(30),
            max_environments: max,
            idle_timeout: Duration::from_secs(600),
        }),
    })
}

pub fn target(config: &FunctionConfig) -> InvokeTarget<'_> {
    InvokeTarget {
        function: "orders",
        mapping: "test",
        region: "eu-west-1",
        config,
    }
}

/// One invocation with its log tail, bounded by [`BOUND`].
pub async fn call(invoker: &Invoker, config: &FunctionConfig, event: Value) -> Invoked {
    let options = InvokeOptions {
        tail: true,
        ..InvokeOptions::default()
    };
    within(
        BOUND,
        "a runtime invocation",
        invoker.invoke_with(&target(config), event.to_string().into_bytes(), options),
    )
    .await
}

/// The JSON a successful invocation returned.
pub fn returned(invoked: &Invoked) -> Value {
    match &invoked.invocation {
        Invocation::Returned(Some(body)) => serde_json::from_slice(body).expect("a JSON response"),
        other => panic!(
            "expected a response, got {other:?}; log:\n{:?}",
            invoked.log
        ),
    }
}

/// The error document of a failed invocation, parsed.
pub fn error_doc(invoked: &Invoked, timeout: Duration) -> Value {
    let doc = invoked
        .invocation
        .error_document(&invoked.request_id, timeout)
        .unwrap_or_else(|| panic!("expected an error, got {:?}", invoked.invocation));
    serde_json::from_slice(&doc).expect("a JSON error document")
}

fn pid_alive(pid: u64) -> bool {
    // A zombie still has a /proc entry; its state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z'))
    })
}

// ---------------------------------------------------------------------------------------------
// Scenarios, each for every runtime that has the behaviour
// ---------------------------------------------------------------------------------------------

/// §6.2 #1 and #12: two successes in the same process (Python counts 1 then 2), the event and the
/// context reach the handler, and the tail holds START, the handler's output, END and REPORT
/// (Init Duration on the cold start only).
async fn warm_reuse(kind: Kind) {
    let Some(config) = function(kind, "app.handler", Duration::from_secs(10), 2) else {
        return;
    };
    let invoker = Invoker::new();
    let first = call(&invoker, &config, json!({"mode": "ok", "n": 1})).await;
    let second = call(&invoker, &config, json!({"mode": "ok", "n": 2})).await;
    let (a, b) = (returned(&first), returned(&second));
    assert_eq!(a["pid"], b["pid"], "the same process serves both");
    assert_eq!(
        (a["count"].as_u64(), b["count"].as_u64()),
        (Some(1), Some(2))
    );
    let log = first.log.as_deref().expect("a tail");
    let id = &first.request_id;
    assert!(
        log.starts_with(&format!("START RequestId: {id} Version: $LATEST\n")),
        "{log}"
    );
    assert!(log.contains(&format!("\nEND RequestId: {id}\n")), "{log}");
    assert!(
        log.contains(&format!("REPORT RequestId: {id}\tDuration: ")),
        "{log}"
    );
    assert!(
        log.contains("Memory Size: 256 MB\tMax Memory Used: "),
        "{log}"
    );
    assert!(log.contains("Init Duration: "), "cold start: {log}");
    assert!(log.len() <= 4096);
    let printed = match kind {
        Kind::Shell => format!("shell got {id} count=1"),
        _ => format!("mode=ok count=1 rid={id}"),
    };
    assert!(
        log.contains(&printed),
        "the handler's output is in the tail: {log}"
    );
    let warm = second.log.as_deref().expect("a tail");
    assert!(!warm.contains("Init Duration"), "warm: {warm}");
    if kind != Kind::Shell {
        assert_eq!(a["echo"]["n"], 1);
        assert_eq!(a["function_name"], "orders");
    }
    invoker.shutdown();
}

#[tokio::test]
async fn python_success_twice_in_one_warm_process() {
    warm_reuse(Kind::Python).await;
}

#[tokio::test]
async fn rust_success_twice_in_one_warm_process() {
    warm_reuse(Kind::Rust).await;
}

#[tokio::test]
async fn shell_success_twice_in_one_warm_process() {
    warm_reuse(Kind::Shell).await;
}

/// §6.2 #2 and #3: a handler error (or a Rust panic) is the runtime's document verbatim and
/// leaves the environment warm.
async fn handler_error_keeps_warm(kind: Kind, mode: &str, expect: (&str, &str)) {
    let Some(config) = function(kind, "app.handler", Duration::from_secs(10), 1) else {
        return;
    };
    let invoker = Invoker::new();
    let ok = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    let failed = call(&invoker, &config, json!({"mode": mode})).await;
    let doc = error_doc(&failed, config.timeout);
    assert_eq!(doc["errorType"], expect.0, "{doc}");
    assert!(
        doc["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains(expect.1)),
        "{doc}"
    );
    let again = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    assert_eq!(ok["pid"], again["pid"], "still the same process");
    assert_eq!(again["count"].as_u64(), Some(3));
    invoker.shutdown();
}

#[tokio::test]
async fn python_handler_error_is_the_runtime_document_and_stays_warm() {
    handler_error_keeps_warm(Kind::Python, "err", ("ValueError", "boom from python")).await;
}

#[tokio::test]
async fn rust_handler_error_and_panic_stay_warm() {
    let rust_error =
        "&alloc::boxed::Box<dyn core::error::Error + core::marker::Send + core::marker::Sync>";
    handler_error_keeps_warm(Kind::Rust, "err", (rust_error, "boom from rust")).await;
    let Some(config) = function(Kind::Rust, "app.handler", Duration::from_secs(10), 1) else {
        return;
    };
    let invoker = Invoker::new();
    let ok = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    let panicked = call(&invoker, &config, json!({"mode": "panic"})).await;
    let doc = error_doc(&panicked, config.timeout);
    assert!(
        doc["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("Lambda panicked")),
        "{doc}"
    );
    let again = returned(&call(&invoker, &config, json!({"mode": "ok"})).await);
    assert_eq!(ok["pid"], again["pid"]);
    invoker.shutdown();
}

#[tokio::test]
async fn shell_error_document_is_passed_verbatim() {
    let Some(config) = function(Kind::Shell, "bootstrap", Duration::from_secs(10), 1) else {
        return;
    };
    let invoker = Invoker::new();
    let failed = call(&invoker, &config, json!({"mode": "err"})).await;
    let doc = failed
        .invocation
        .error_document(&failed.request_id, config.timeout)
        .expect("an error");
    assert_eq!(
        doc,
        br#"{"errorType":"Function.ShellError","errorMessage":"boom from shell"}"#.to_vec()
    );
    invoker.shutdown();
}

/// §6.2 #4: an import error is awslambdaric's `/init/error` document; the next call starts a
/// new process that fails the same way.
#[tokio::test]
async fn python_init_error_is_served_and_retried_fresh() {
    let Some(config) = function(
        Kind::Python,
        "nosuchmod.handler",
        Duration::from_secs(10),
        1,
    ) else {
        return;
    };
    let invoker = Invoker::new();
    for _ in 0..2 {
        let failed = call(&invoker, &config, json!({})).await;
        let doc = error_doc(&failed, config.timeout);
        assert_eq!(doc["errorType"], "Runtime.ImportModuleError", "{doc}");
        assert!(
            doc["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("Unable to import module 'nosuchmod'")),
            "{doc}"
        );
    }
    invoker.shutdown();
}

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
