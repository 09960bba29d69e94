//! `type = "runtime"` functions against real Lambda runtimes (docs/interface.md §4.4): the
//! Python `awslambdaric` (from the venv named by `ESMD_TEST_PYTHON`, which `.ci/run` installs),
//! a Rust `lambda_runtime` binary built from tests/data/lambda-rust in release mode, and a shell
//! `bootstrap` (tests/data/runtime-shell). Each is driven through `Invoker::invoke_with`. Here:
//! the shared helpers, warm reuse with the log tail, handler errors kept warm, init errors; the
//! rest of the lifecycle is in `runtime_lifecycle`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use esmd::config::{FunctionConfig, FunctionTarget, RuntimeConfig};
use esmd::invoke::{Invocation, InvokeOptions, InvokeTarget, Invoked, Invoker};
use serde_json::{json, Value};

use crate::common::within;

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

pub fn pid_alive(pid: u64) -> bool {
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
        let log = failed.log.as_deref().unwrap_or_default();
        assert!(
            log.contains("Runtime.ImportModuleError"),
            "what awslambdaric printed during Init is the tail: {log:?}"
        );
        assert!(
            doc["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("Unable to import module 'nosuchmod'")),
            "{doc}"
        );
    }
    invoker.shutdown();
}
