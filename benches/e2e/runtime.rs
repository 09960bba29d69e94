//! `runtime` functions (issue 16 point 8): what the Runtime API costs and how fast a mapping
//! drives a warm function.
//!
//! - **Warm invocation**: the same handler of the same Rust binary (tests/data/lambda-rust),
//!   invoked through `Invoker::invoke_with` in this process, once as a `runtime` function (the
//!   event handed over on the runtime's pending `/next`, the answer POSTed to `/response`) and
//!   once as an `http` function (the binary's `FIXTURE_DIRECT_ADDR` mode: a plain hyper server
//!   running the same handler, keep-alive, TCP_NODELAY). Both cross a process boundary over
//!   loopback HTTP once each way; the difference is the Runtime API's own cost. Sequential, one
//!   at a time, after a warm-up; the two are interleaved in rounds so that drift hits both.
//! - **Cold start**: process start to the first `/next` (the `Init Duration` of the REPORT line)
//!   for awslambdaric (`ESMD_TEST_PYTHON`), `lambda_runtime` and the shell bootstrap of
//!   tests/data/runtime-shell: each a fresh invoker, so a fresh process.
//! - **Mapping throughput**: a daemon (in process) with a mapping (batch 10, `max_concurrency` 5)
//!   into the Rust binary as a `runtime` function (`max_environments` 5); senders push
//!   `ESMD_BENCH_RT_MESSAGES` [50000] messages in SendMessageBatch calls while it consumes;
//!   first send to an empty queue.
//!
//! Knobs: `ESMD_BENCH_RT_WARM` [5000] invocations per kind; `ESMD_BENCH_RT_COLD` [10] starts per
//! runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use esmd::config::{FunctionConfig, FunctionTarget, RuntimeConfig};
use esmd::invoke::{Invocation, InvokeOptions, InvokeTarget, Invoker};

use crate::harness::{env_or, percentile, temp_dir, Sqs};
use crate::say;

/// What the scenario measured.
pub struct Outcome {
    /// Warm round trips in ms, sorted: through the Runtime API, and direct.
    pub warm_runtime: Vec<f64>,
    pub warm_direct: Vec<f64>,
    /// Init durations in ms, sorted, per runtime.
    pub cold: Vec<(&'static str, Vec<f64>)>,
    /// Messages per second, first send to an empty queue.
    pub mapping_rate: f64,
    pub mapping_messages: u64,
}

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// Builds the fixture in release mode under `<target>/fixtures` and returns its path.
fn fixture() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("fixtures");
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
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
        .expect("cargo");
    assert!(
        status.success(),
        "building the lambda_runtime fixture failed"
    );
    target.join("release/lambda-fixture")
}

fn runtime(argv: Vec<String>, dir: PathBuf, max: u32) -> FunctionConfig {
    FunctionConfig {
        timeout: Duration::from_secs(30),
        async_config: Default::default(),
        target: FunctionTarget::Runtime(RuntimeConfig {
            argv,
            handler: Some("app.handler".into()),
            working_dir: Some(dir),
            env: BTreeMap::new(),
            memory_size: 128,
            init_timeout: Duration::from_secs(30),
            max_environments: max,
            idle_timeout: Duration::from_secs(600),
        }),
    }
}

fn target(config: &FunctionConfig) -> InvokeTarget<'_> {
    InvokeTarget {
        function: "bench",
        mapping: "bench",
        region: "us-east-1",
        config,
    }
}

async fn once(invoker: &Invoker, config: &FunctionConfig, payload: &[u8]) -> f64 {
    let started = Instant::now();
    let invocation = invoker.invoke(&target(config), payload.to_vec()).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        matches!(invocation, Invocation::Returned(Some(_))),
        "{invocation:?}"
    );
    ms
}

async fn warm(binary: &Path) -> (Vec<f64>, Vec<f64>) {
    let n: usize = env_or("ESMD_BENCH_RT_WARM", 5000);
    let invoker = Invoker::new();
    let through = runtime(vec![binary.display().to_string()], data("lambda-rust"), 1);
    // The direct baseline: the same binary serving the same handler over plain HTTP.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = tokio::process::Command::new(binary)
        .env("FIXTURE_DIRECT_ADDR", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the direct server");
    let direct = FunctionConfig {
        timeout: Duration::from_secs(30),
        async_config: Default::default(),
        target: FunctionTarget::Http {
            url: format!("http://127.0.0.1:{port}/"),
        },
    };
    let payload = br#"{"mode":"ok"}"#;
    // Warm-up: the runtime's Init, the direct server's start and both connection pools.
    let start = Instant::now();
    loop {
        let probe = invoker.invoke(&target(&direct), payload.to_vec()).await;
        if matches!(probe, Invocation::Returned(Some(_))) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "direct server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: waiting for a child's port, bench only
    }
    for _ in 0..200 {
        once(&invoker, &through, payload).await;
        once(&invoker, &direct, payload).await;
    }
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for round in 0..n / 100 {
        // Alternate which goes first in each round of 100 pairs.
        for _ in 0..100 {
            if round % 2 == 0 {
                a.push(once(&invoker, &through, payload).await);
                b.push(once(&invoker, &direct, payload).await);
            } else {
                b.push(once(&invoker, &direct, payload).await);
                a.push(once(&invoker, &through, payload).await);
            }
        }
    }
    invoker.shutdown();
    let _ = server.kill().await;
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    (a, b)
}

async fn cold(name: &'static str, config: &FunctionConfig) -> (&'static str, Vec<f64>) {
    let n: usize = env_or("ESMD_BENCH_RT_COLD", 10);
    let mut out = Vec::new();
    for _ in 0..n {
        let invoker = Invoker::new();
        let options = InvokeOptions {
            tail: true,
            ..InvokeOptions::default()
        };
        let invoked = invoker
            .invoke_with(&target(config), br#"{"mode":"ok"}"#.to_vec(), options)
            .await;
        let log = invoked.log.unwrap_or_default();
        let init = log
            .split("Init Duration: ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no Init Duration for {name}: {log}"));
        out.push(init);
        invoker.shutdown();
    }
    out.sort_by(f64::total_cmp);
    (name, out)
}

async fn mapping(binary: &Path) -> (f64, u64) {
    let total: u64 = env_or("ESMD_BENCH_RT_MESSAGES", 50_000);
    let dir = temp_dir();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"
[storage]
path = "{db}"
synchronous = "{sync}"
[log]
level = "warn"
[queues.bench]
visibility_timeout = "60s"
[functions.sink]
type = "runtime"
command = ["{binary}"]
timeout = "30s"
max_environments = 5
[mappings.bench]
queue = "bench"
function = "sink"
batch_size = 10
max_concurrency = 5
report_batch_item_failures = true
"#,
        db = dir.path().join("esmd.db").display(),
        sync = crate::harness::synchronous(),
        binary = binary.display(),
    );
    let path = dir.path().join("esmd.toml");
    std::fs::write(&path, &toml).expect("write config");
    let loaded = esmd::config::load(&esmd::config::LoadOptions {
        config_path: Some(path),
        env: Some(Default::default()),
        cwd: Some(dir.path().to_owned()),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let daemon = esmd::daemon::start(
        loaded.config,
        esmd::daemon::StartOptions {
            listener: Some(listener),
            ..Default::default()
        },
    )
    .await
    .expect("daemon");
    let queue = esmd::domain::queue::QueueName::parse("bench").expect("name");
    let sqs = Sqs::new(
        daemon.addr(),
        format!("http://{}/000000000000/bench", daemon.addr()),
    );
    // Warm the environments first: one message, consumed.
    sqs.send("warm").await;
    loop {
        let c = daemon.store().counts(&queue).await.expect("counts");
        if c.visible + c.in_flight + c.delayed == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await; // sleep-ok: polling the store, bench only
    }
    let senders = 16u64;
    let per = total / senders / 10;
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let sqs = sqs.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    let bodies: Vec<String> = (0..10).map(|j| format!("{s}-{i}-{j}")).collect();
                    sqs.send_batch(&bodies).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    let sent = senders * per * 10;
    loop {
        let c = daemon.store().counts(&queue).await.expect("counts");
        if c.visible + c.in_flight + c.delayed == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await; // sleep-ok: polling the store, bench only
    }
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    daemon.shutdown().await;
    drop(dir);
    (rate, sent)
}

pub async fn run() -> Outcome {
    let binary = fixture();
    say!("runtime: warm invocations, Runtime API vs direct HTTP to the same handler");
    let (warm_runtime, warm_direct) = warm(&binary).await;
    let mut cold_starts = Vec::new();
    if let Some(python) = std::env::var_os("ESMD_TEST_PYTHON") {
        let argv = vec![
            PathBuf::from(python).display().to_string(),
            "-m".into(),
            "awslambdaric".into(),
            "app.handler".into(),
        ];
        cold_starts.push(
            cold(
                "python awslambdaric",
                &runtime(argv, data("runtime-python"), 1),
            )
            .await,
        );
    } else {
        say!("runtime: ESMD_TEST_PYTHON not set, no Python cold starts");
    }
    let rust = runtime(vec![binary.display().to_string()], data("lambda-rust"), 1);
    cold_starts.push(cold("rust lambda_runtime", &rust).await);
    let shell = runtime(
        vec![data("runtime-shell/bootstrap").display().to_string()],
        data("runtime-shell"),
        1,
    );
    cold_starts.push(cold("shell bootstrap (curl)", &shell).await);
    say!("runtime: mapping throughput into a warm lambda_runtime function");
    let (mapping_rate, mapping_messages) = mapping(&binary).await;
    Outcome {
        warm_runtime,
        warm_direct,
        cold: cold_starts,
        mapping_rate,
        mapping_messages,
    }
}

/// The summary lines.
pub fn summary(o: &Outcome) -> Vec<String> {
    let mut lines = vec![format!(
        "| runtime warm ({} each) | Runtime API p50 {:.3} ms, p99 {:.3} ms; direct HTTP p50 {:.3} ms, p99 {:.3} ms; added p50 {:.3} ms | <= 1 ms added at p50 |",
        o.warm_runtime.len(),
        percentile(&o.warm_runtime, 50.0),
        percentile(&o.warm_runtime, 99.0),
        percentile(&o.warm_direct, 50.0),
        percentile(&o.warm_direct, 99.0),
        percentile(&o.warm_runtime, 50.0) - percentile(&o.warm_direct, 50.0),
    )];
    for (name, ms) in &o.cold {
        lines.push(format!(
            "| runtime cold start {name} ({} starts) | p50 {:.1} ms, min {:.1} ms, max {:.1} ms | (report) |",
            ms.len(),
            percentile(ms, 50.0),
            ms.first().copied().unwrap_or(f64::NAN),
            ms.last().copied().unwrap_or(f64::NAN),
        ));
    }
    lines.push(format!(
        "| runtime mapping throughput (batch 10, 5 environments) | {:.0} msg/s ({} messages, first send to empty queue) | (report) |",
        o.mapping_rate, o.mapping_messages
    ));
    lines
}
