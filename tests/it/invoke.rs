//! Function invocation against real things: shell and python scripts written into a temporary
//! directory (exit codes, signals, timeouts that must kill grandchildren, stdin/stdout limits),
//! a real axum server on 127.0.0.1:0 (status codes, `X-Amz-Function-Error`, slowness, refused
//! connections), and the SQS event read back with `aws_lambda_events`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use esmd::config::{FunctionConfig, FunctionTarget};
use esmd::domain::attributes::{md5_hex, AttributeData, AttributeValue, Attributes};
use esmd::domain::event::{
    assemble_event, encode_record, event_size, parse_batch_response, queue_arn, BatchResponse,
};
use esmd::domain::message::{Message, SENDER_ID};
use esmd::domain::queue::QueueName;
use esmd::domain::Timestamp;
use esmd::invoke::{Invocation, InvokeTarget, Invoker, MAX_RESPONSE_BYTES};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::common::within;

/// The outer bound on every invocation a test makes; function timeouts are all well below it.
const BOUND: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn target(config: &FunctionConfig) -> InvokeTarget<'_> {
    InvokeTarget {
        function: "resize",
        mapping: "resize-orders",
        region: "eu-west-1",
        config,
    }
}

fn command(argv: &[&str], timeout: Duration) -> FunctionConfig {
    FunctionConfig {
        timeout,
        async_config: Default::default(),
        target: FunctionTarget::Command {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            working_dir: None,
        },
    }
}

fn http(url: &str, timeout: Duration) -> FunctionConfig {
    FunctionConfig {
        timeout,
        async_config: Default::default(),
        target: FunctionTarget::Http {
            url: url.to_owned(),
        },
    }
}

/// Invokes once, bounded by [`BOUND`].
///
/// A script written just before it is executed can fail with ETXTBSY when another test thread
/// forks while the script's write descriptor is open (the child holds it until its exec). That
/// is a property of the test, not of esmd, so such a start is retried.
async fn invoke(config: &FunctionConfig, payload: &[u8]) -> Invocation {
    let invoker = Invoker::new();
    for _ in 0..5 {
        let invocation = within(
            BOUND,
            "the invocation",
            invoker.invoke(&target(config), payload.to_vec()),
        )
        .await;
        match &invocation {
            Invocation::FunctionError(why) if why.contains("Text file busy") => continue,
            _ => return invocation,
        }
    }
    panic!("the script stayed busy (ETXTBSY)");
}

/// Writes an executable script into `dir` and returns its path.
fn script(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    path.to_str().expect("utf-8 temp path").to_owned()
}

fn returned(invocation: Invocation) -> Option<Vec<u8>> {
    match invocation {
        Invocation::Returned(body) => body,
        other => panic!("expected Returned, got {other:?}"),
    }
}

fn function_error(invocation: Invocation) -> String {
    match invocation {
        Invocation::FunctionError(why) => why,
        other => panic!("expected FunctionError, got {other:?}"),
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
}

/// Watches a process that writes its pid and a newline into the FIFO at `path` and keeps it open
/// while it lives: the first receiver yields the pid once written, the second completes at EOF,
/// that is once every writer has exited. The reads run on a detached thread, so that a failing
/// test cannot hang the runtime's shutdown.
fn fifo_watch(
    path: PathBuf,
) -> (
    tokio::sync::oneshot::Receiver<String>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut fifo = BufReader::new(std::fs::File::open(&path).expect("open fifo"));
        let mut pid = String::new();
        fifo.read_line(&mut pid).expect("read pid from fifo");
        let _ = pid_tx.send(pid.trim().to_owned());
        let mut rest = Vec::new();
        fifo.read_to_end(&mut rest).expect("read fifo");
        let _ = eof_tx.send(());
    });
    (pid_rx, eof_rx)
}

/// A script whose background child writes its pid into `fifo` and then sleeps, holding `fifo`
/// open, while the script waits for it.
fn hanging_script(dir: &TempDir, fifo: &Path) -> String {
    let text = format!(
        "#!/bin/sh
sh -c 'echo $$; exec sleep 1000' > '{}' &
wait
",
        fifo.display()
    );
    script(dir, "hang.sh", &text)
}

/// A process is dead when /proc has no entry for it or shows it as a zombie (its parent, PID 1
/// here, may be slow to reap it). Called once its FIFO saw EOF, which only exit causes; the
/// loop covers the instant between a process closing its files and becoming a zombie.
async fn assert_dead(pid: &str) {
    let stat = format!("/proc/{pid}/stat");
    within(
        Duration::from_secs(10),
        "the grandchild to be gone",
        async {
            loop {
                match std::fs::read_to_string(&stat) {
                    Err(_) => return,
                    Ok(s) => {
                        // pid (comm) STATE ...: comm may contain spaces, so split after the last ')'.
                        let state = s
                            .rsplit_once(')')
                            .map(|(_, rest)| rest.trim_start())
                            .and_then(|r| r.chars().next());
                        if matches!(state, Some('Z' | 'X' | 'x')) {
                            return;
                        }
                    }
                }
                tokio::task::yield_now().await;
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Command functions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn command_stdout_is_the_response() {
    let dir = TempDir::new().unwrap();
    let path = script(
        &dir,
        "ok.sh",
        "#!/bin/sh\ncat >/dev/null\nprintf '{\"batchItemFailures\":[]}'\n",
    );
    let body = returned(
        invoke(
            &command(&[&path], Duration::from_secs(10)),
            b"{\"Records\":[]}",
        )
        .await,
    );
    assert_eq!(body.as_deref(), Some(&b"{\"batchItemFailures\":[]}"[..]));
}

#[tokio::test]
async fn command_empty_stdout_is_a_null_response() {
    let dir = TempDir::new().unwrap();
    let path = script(&dir, "quiet.sh", "#!/bin/sh\ncat >/dev/null\n");
    assert_eq!(
        returned(invoke(&command(&[&path], Duration::from_secs(10)), b"{}").await),
        None
    );
}

#[tokio::test]
async fn command_arguments_are_passed_without_a_shell() {
    let dir = TempDir::new().unwrap();
    let path = script(&dir, "args.sh", "#!/bin/sh\nprintf '%s|' \"$@\"\n");
    let body = returned(
        invoke(
            &command(&[&path, "a b", "$HOME", "*"], Duration::from_secs(10)),
            b"",
        )
        .await,
    );
    assert_eq!(body.as_deref(), Some(&b"a b|$HOME|*|"[..]));
}

#[tokio::test]
async fn command_nonzero_exit_is_a_function_error() {
    let dir = TempDir::new().unwrap();
    let path = script(
        &dir,
        "fail.sh",
        "#!/bin/sh\necho '{}'\necho 'boom' >&2\nexit 3\n",
    );
    assert_eq!(
        function_error(invoke(&command(&[&path], Duration::from_secs(10)), b"{}").await),
        "exited with status 3"
    );
}

#[tokio::test]
async fn command_killed_by_a_signal_is_a_function_error() {
    let dir = TempDir::new().unwrap();
    let path = script(&dir, "die.sh", "#!/bin/sh\nkill -KILL $$\n");
    let why = function_error(invoke(&command(&[&path], Duration::from_secs(10)), b"{}").await);
    assert_eq!(why, "killed by signal 9 (SIGKILL)");
}

#[tokio::test]
async fn command_missing_program_is_a_function_error_naming_it() {
    let program = "/nonexistent/esmd-no-such-program";
    let why = function_error(invoke(&command(&[program], Duration::from_secs(10)), b"{}").await);
    assert!(why.contains(program), "{why}");
    assert!(why.starts_with("failed to start"), "{why}");
}

#[tokio::test]
async fn command_timeout_kills_the_script_and_its_children() {
    let dir = TempDir::new().unwrap();
    let fifo = dir.path().join("alive");
    mkfifo(&fifo);
    let path = hanging_script(&dir, &fifo);
    let (pid, gone) = fifo_watch(fifo);
    let invocation = invoke(&command(&[&path], Duration::from_secs(3)), b"{}").await;
    assert_eq!(invocation, Invocation::TimedOut);
    let pid = within(Duration::from_secs(5), "the grandchild's pid", pid)
        .await
        .expect("grandchild wrote its pid");
    within(Duration::from_secs(10), "the grandchild to exit", gone)
        .await
        .expect("fifo watcher");
    assert_dead(&pid).await;
}

#[tokio::test]
async fn dropping_an_invocation_kills_the_script_and_its_children() {
    let dir = TempDir::new().unwrap();
    let fifo = dir.path().join("alive");
    mkfifo(&fifo);
    let path = hanging_script(&dir, &fifo);
    let (pid, gone) = fifo_watch(fifo);
    let config = command(&[&path], Duration::from_secs(600));
    let invoker = Invoker::new();
    let target = target(&config);
    let mut pid = std::pin::pin!(within(BOUND, "the grandchild to start", pid));
    // Run the invocation until the grandchild is alive, then abandon it (drop the future).
    let pid = loop {
        tokio::select! {
            result = invoker.invoke(&target, b"{}".to_vec()) => match result {
                // See `invoke` about ETXTBSY.
                Invocation::FunctionError(why) if why.contains("Text file busy") => continue,
                other => panic!("the invocation ended on its own: {other:?}"),
            },
            pid = &mut pid => break pid.expect("grandchild wrote its pid"),
        }
    };
    within(Duration::from_secs(10), "the grandchild to exit", gone)
        .await
        .expect("fifo watcher");
    assert_dead(&pid).await;
}

#[tokio::test]
async fn command_leftover_background_process_does_not_hold_the_invocation() {
    let dir = TempDir::new().unwrap();
    // The background sleep inherits stdout; esmd must not wait for it to close.
    let path = script(&dir, "bg.sh", "#!/bin/sh\nsleep 1000 &\nprintf ok\n");
    let body = returned(invoke(&command(&[&path], Duration::from_secs(30)), b"{}").await);
    assert_eq!(body.as_deref(), Some(&b"ok"[..]));
}

#[tokio::test]
async fn command_grandchild_that_calls_setsid_is_killed_and_does_not_hold_the_invocation() {
    let dir = TempDir::new().unwrap();
    let pidfile = dir.path().join("escaped.pid");
    // The grandchild leaves the process group and the session, keeps stdout open and would run
    // for a minute; the function itself exits 0 as soon as the grandchild has written its pid.
    let text = format!(
        "#!/bin/sh\nsetsid sh -c 'echo $$ > \"{pid}.tmp\"; mv \"{pid}.tmp\" \"{pid}\"; exec sleep 60' & # // sleep-ok: the escaped grandchild must outlive its function\n\
         while [ ! -s \"{pid}\" ]; do :; done\nprintf ok\n",
        pid = pidfile.display()
    );
    let path = script(&dir, "escape.sh", &text);
    let started = std::time::Instant::now();
    let body = returned(invoke(&command(&[&path], Duration::from_secs(30)), b"{}").await);
    assert_eq!(
        body.as_deref(),
        Some(&b"ok"[..]),
        "the function's own success"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "settled on the exit, not on stdout closing: {:?}",
        started.elapsed()
    );
    let pid = std::fs::read_to_string(&pidfile).expect("the grandchild's pid");
    let pid = pid.trim();
    // It did leave the group: its session is its own.
    assert_dead(pid).await;
}

#[tokio::test]
async fn command_gets_lambda_env_configured_env_and_working_dir() {
    let dir = TempDir::new().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let path = script(
        &dir,
        "env.sh",
        "#!/bin/sh\nprintf '%s|%s|%s|%s|%s' \"$AWS_LAMBDA_FUNCTION_NAME\" \"$AWS_LAMBDA_FUNCTION_TIMEOUT\" \"$AWS_REGION\" \"$STAGE\" \"$(pwd -P)\"\n",
    );
    let config = FunctionConfig {
        timeout: Duration::from_millis(1500),
        async_config: Default::default(),
        target: FunctionTarget::Command {
            argv: vec![path],
            env: BTreeMap::from([
                ("STAGE".to_owned(), "dev".to_owned()),
                ("AWS_REGION".to_owned(), "overridden".to_owned()),
            ]),
            working_dir: Some(work.clone()),
        },
    };
    let body = returned(invoke(&config, b"{}").await).expect("a response");
    let want = format!(
        "resize|2|eu-west-1|dev|{}",
        work.canonicalize().unwrap().display()
    );
    assert_eq!(String::from_utf8(body).unwrap(), want);
}

#[tokio::test]
async fn command_stdin_arrives_intact() {
    let dir = TempDir::new().unwrap();
    let path = script(&dir, "digest.sh", "#!/bin/sh\nsha256sum | cut -c1-64\n");
    // 3 MiB of every byte value, well beyond a pipe buffer.
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let body = returned(invoke(&command(&[&path], Duration::from_secs(30)), &payload).await)
        .expect("a digest");
    assert_eq!(
        String::from_utf8(body).unwrap().trim(),
        hex::encode(Sha256::digest(&payload))
    );
}

#[tokio::test]
async fn command_that_never_reads_stdin_does_not_deadlock() {
    let dir = TempDir::new().unwrap();
    let path = script(&dir, "ignore.sh", "#!/bin/sh\nprintf done\n");
    let payload = vec![b'x'; 5 * 1024 * 1024];
    let body = returned(invoke(&command(&[&path], Duration::from_secs(30)), &payload).await);
    assert_eq!(body.as_deref(), Some(&b"done"[..]));
}

#[tokio::test]
async fn command_chatty_stderr_is_drained() {
    let dir = TempDir::new().unwrap();
    // 2 MiB of stderr in long and short lines, then a response.
    let path = script(
        &dir,
        "chatty.sh",
        "#!/bin/sh\nhead -c 1048576 /dev/zero | tr '\\0' 'e' >&2\nseq 1 100000 >&2\nprintf ok\n",
    );
    let body = returned(invoke(&command(&[&path], Duration::from_secs(30)), b"{}").await);
    assert_eq!(body.as_deref(), Some(&b"ok"[..]));
}

#[tokio::test]
async fn command_stdout_up_to_the_limit_is_accepted_and_beyond_it_refused() {
    let dir = TempDir::new().unwrap();
    let exact = script(
        &dir,
        "exact.sh",
        &format!("#!/bin/sh\nhead -c {MAX_RESPONSE_BYTES} /dev/zero | tr '\\0' 'a'\n"),
    );
    let body = returned(invoke(&command(&[&exact], Duration::from_secs(30)), b"{}").await)
        .expect("a body");
    assert_eq!(body.len(), MAX_RESPONSE_BYTES);
    // The oversized writer is never drained to its end: it is killed instead.
    let over = script(&dir, "over.sh", "#!/bin/sh\nexec cat /dev/zero\n");
    let why = function_error(invoke(&command(&[&over], Duration::from_secs(30)), b"{}").await);
    assert!(why.starts_with("response too large"), "{why}");
}

#[tokio::test]
async fn python_handler_reads_the_event_and_reports_failures() {
    let dir = TempDir::new().unwrap();
    let path = script(
        &dir,
        "handler.py",
        "#!/usr/bin/env python3\nimport json, sys\nevent = json.load(sys.stdin)\n\
         failed = [{'itemIdentifier': r['messageId']} for r in event['Records'] if r['body'] == 'fail']\n\
         json.dump({'batchItemFailures': failed}, sys.stdout)\n",
    );
    let (a, b) = (message("m-1", "ok"), message("m-2", "fail"));
    let arn = queue_arn("eu-west-1", "000000000000", "orders");
    let payload = assemble_event(&[
        encode_record(&a, &arn, "eu-west-1"),
        encode_record(&b, &arn, "eu-west-1"),
    ]);
    let body = returned(invoke(&command(&[&path], Duration::from_secs(30)), &payload).await);
    let ids: HashSet<&str> = ["m-1", "m-2"].into();
    assert_eq!(
        parse_batch_response(body.as_deref(), &ids),
        BatchResponse::SomeFailed(["m-2".to_owned()].into())
    );
}

#[tokio::test]
async fn log_function_always_succeeds() {
    let config = FunctionConfig {
        timeout: Duration::from_secs(3),
        async_config: Default::default(),
        target: FunctionTarget::Log,
    };
    let arn = queue_arn("eu-west-1", "000000000000", "default");
    let payload = assemble_event(&[encode_record(
        &message("m-1", &"x".repeat(1000)),
        &arn,
        "eu-west-1",
    )]);
    assert_eq!(invoke(&config, &payload).await, Invocation::Returned(None));
    assert_eq!(
        invoke(&config, b"not json").await,
        Invocation::Returned(None)
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP functions
// ---------------------------------------------------------------------------------------------

/// One request as the fake function saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A fake Lambda Invoke API on 127.0.0.1:0. Returns the base URL and the request log.
async fn fake_lambda() -> (String, Log) {
    let log: Log = Arc::default();
    let record = |log: Log| {
        move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let content_type = headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            log.lock().unwrap().push(Seen {
                path: uri.path().to_owned(),
                content_type,
                body: body.to_vec(),
            });
        }
    };
    let ok = record(log.clone());
    let empty = record(log.clone());
    let elsewhere = record(log.clone());
    let app = Router::new()
        .route(
            "/2015-03-31/functions/ok/invocations",
            post(
                move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
                    ok(uri, headers, body);
                    r#"{"batchItemFailures":[{"itemIdentifier":"m-1"}]}"#
                },
            ),
        )
        .route(
            "/2015-03-31/functions/empty/invocations",
            post(
                move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
                    empty(uri, headers, body);
                    StatusCode::OK
                },
            ),
        )
        .route(
            "/2015-03-31/functions/redirect/invocations",
            post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", "/2015-03-31/functions/elsewhere/invocations")],
                )
            }),
        )
        .route(
            "/2015-03-31/functions/elsewhere/invocations",
            post(
                move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
                    elsewhere(uri, headers, body);
                    "null"
                },
            ),
        )
        .route(
            "/2015-03-31/functions/accepted/invocations",
            post(|| async { (StatusCode::ACCEPTED, "null") }),
        )
        .route(
            "/2015-03-31/functions/broken/invocations",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/2015-03-31/functions/throttled/invocations",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, "") }),
        )
        .route(
            "/2015-03-31/functions/unhandled/invocations",
            post(|| async {
                (
                    [("X-Amz-Function-Error", "Unhandled")],
                    r#"{"errorMessage":"boom","errorType":"Error"}"#,
                )
            }),
        )
        .route(
            "/2015-03-31/functions/slow/invocations",
            post(std::future::pending::<&'static str>),
        )
        .route(
            "/2015-03-31/functions/huge/invocations",
            post(|| async { vec![b' '; MAX_RESPONSE_BYTES + 1] }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/2015-03-31/functions"), log)
}

#[tokio::test]
async fn http_2xx_body_is_the_response_and_the_event_is_posted_as_json() {
    let (base, log) = fake_lambda().await;
    let payload = br#"{"Records":[]}"#;
    let body = returned(
        invoke(
            &http(&format!("{base}/ok/invocations"), Duration::from_secs(10)),
            payload,
        )
        .await,
    );
    assert_eq!(
        body.as_deref(),
        Some(&br#"{"batchItemFailures":[{"itemIdentifier":"m-1"}]}"#[..])
    );
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/2015-03-31/functions/ok/invocations");
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(seen[0].body, payload);
}

#[tokio::test]
async fn http_empty_and_null_answers_are_null_responses() {
    let (base, _log) = fake_lambda().await;
    assert_eq!(
        returned(
            invoke(
                &http(
                    &format!("{base}/empty/invocations"),
                    Duration::from_secs(10)
                ),
                b"{}"
            )
            .await
        ),
        None
    );
    assert_eq!(
        returned(
            invoke(
                &http(
                    &format!("{base}/accepted/invocations"),
                    Duration::from_secs(10)
                ),
                b"{}"
            )
            .await
        ),
        None
    );
}

#[tokio::test]
async fn http_error_status_is_a_function_error() {
    let (base, _log) = fake_lambda().await;
    let why = function_error(
        invoke(
            &http(
                &format!("{base}/broken/invocations"),
                Duration::from_secs(10),
            ),
            b"{}",
        )
        .await,
    );
    assert_eq!(why, "HTTP status 500 Internal Server Error: boom");
    let why = function_error(
        invoke(
            &http(
                &format!("{base}/throttled/invocations"),
                Duration::from_secs(10),
            ),
            b"{}",
        )
        .await,
    );
    assert!(why.starts_with("HTTP status 429"), "{why}");
}

#[tokio::test]
async fn http_redirect_is_a_function_error_and_is_not_followed() {
    let (base, log) = fake_lambda().await;
    let why = function_error(
        invoke(
            &http(
                &format!("{base}/redirect/invocations"),
                Duration::from_secs(10),
            ),
            b"{}",
        )
        .await,
    );
    assert!(
        why.starts_with("HTTP status 307 Temporary Redirect"),
        "{why}"
    );
    assert!(
        why.contains("/2015-03-31/functions/elsewhere/invocations, which is not followed"),
        "{why}"
    );
    assert!(
        log.lock().unwrap().is_empty(),
        "the event was not posted to where the redirect points"
    );
}

#[tokio::test]
async fn http_function_error_header_is_a_function_error() {
    let (base, _log) = fake_lambda().await;
    let why = function_error(
        invoke(
            &http(
                &format!("{base}/unhandled/invocations"),
                Duration::from_secs(10),
            ),
            b"{}",
        )
        .await,
    );
    assert_eq!(
        why,
        r#"function error (Unhandled): {"errorMessage":"boom","errorType":"Error"}"#
    );
}

#[tokio::test]
async fn http_slow_function_times_out() {
    let (base, _log) = fake_lambda().await;
    let invocation = invoke(
        &http(
            &format!("{base}/slow/invocations"),
            Duration::from_millis(300),
        ),
        b"{}",
    )
    .await;
    assert_eq!(invocation, Invocation::TimedOut);
}

#[tokio::test]
async fn http_oversized_response_is_a_function_error() {
    let (base, _log) = fake_lambda().await;
    let why = function_error(
        invoke(
            &http(&format!("{base}/huge/invocations"), Duration::from_secs(10)),
            b"{}",
        )
        .await,
    );
    assert!(why.starts_with("response too large"), "{why}");
}

#[tokio::test]
async fn http_connection_refused_is_a_function_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let why = function_error(
        invoke(
            &http(
                &format!("http://{addr}/2015-03-31/functions/x/invocations"),
                Duration::from_secs(10),
            ),
            b"{}",
        )
        .await,
    );
    assert!(why.starts_with("request failed"), "{why}");
    assert!(why.to_lowercase().contains("refused"), "{why}");
}

// ---------------------------------------------------------------------------------------------
// The event, as AWS's own Rust types read it
// ---------------------------------------------------------------------------------------------

fn message(id: &str, body: &str) -> Message {
    Message {
        message_id: id.to_owned(),
        receipt_handle: format!("handle-{id}"),
        body: body.to_owned(),
        md5_of_body: md5_hex(body.as_bytes()),
        attributes: Attributes::new(),
        trace_header: None,
        sent_at: Timestamp::from_millis(1_767_225_600_000),
        receive_count: 1,
        first_receive_at: Timestamp::from_millis(1_767_225_600_250),
        sender_id: SENDER_ID.to_owned(),
        group_id: None,
        dedup_id: None,
        sequence_number: None,
        dead_letter_source: None,
    }
}

#[test]
fn event_reads_as_an_aws_lambda_events_sqs_event() {
    let mut standard = message(
        "4f5c0f6c-7d1e-4f57-9f3e-0a5d1e2b7c11",
        r#"{"order":42,"note":"ünïcödé \"quoted\""}"#,
    );
    standard
        .attributes
        .insert("Title".into(), AttributeValue::string("The Whistler"));
    standard
        .attributes
        .insert("Author".into(), AttributeValue::string("John Grisham"));
    standard.attributes.insert(
        "WeeksOn".into(),
        AttributeValue {
            data_type: "Number".into(),
            value: AttributeData::String("6".into()),
        },
    );
    standard.attributes.insert(
        "Thumb".into(),
        AttributeValue {
            data_type: "Binary".into(),
            value: AttributeData::Binary(vec![0x89, b'P', b'N', b'G', 0]),
        },
    );
    standard.trace_header =
        Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into());
    standard.receive_count = 4;
    standard.dead_letter_source = Some(QueueName::parse("orders").unwrap());

    let mut fifo = message("9a1b2c3d-0000-4000-8000-000000000001", "plain text");
    fifo.group_id = Some("g1".into());
    fifo.dedup_id = Some("d1".into());
    fifo.sequence_number = Some("18849496460467696128".into());

    let dlq_arn = queue_arn("eu-west-1", "123456789012", "orders-dlq");
    let fifo_arn = queue_arn("eu-west-1", "123456789012", "events.fifo");
    let records = [
        encode_record(&standard, &dlq_arn, "eu-west-1"),
        encode_record(&fifo, &fifo_arn, "eu-west-1"),
    ];
    let payload = assemble_event(&records);
    assert_eq!(
        payload.len(),
        event_size(records.iter().map(String::len).sum(), records.len())
    );

    let event: SqsEvent = serde_json::from_slice(&payload).expect("an SqsEvent");
    assert_eq!(event.records.len(), 2);
    let (s, f) = (&event.records[0], &event.records[1]);

    assert_eq!(s.message_id.as_deref(), Some(standard.message_id.as_str()));
    assert_eq!(
        s.receipt_handle.as_deref(),
        Some(standard.receipt_handle.as_str())
    );
    assert_eq!(s.body.as_deref(), Some(standard.body.as_str()));
    assert_eq!(
        s.md5_of_body.as_deref(),
        Some(md5_hex(standard.body.as_bytes()).as_str())
    );
    // The attribute MD5 is AWS's, over all four attributes (Binary included).
    let md5_attrs = esmd::domain::attributes::md5_of_attributes(&standard.attributes).unwrap();
    assert_eq!(
        s.md5_of_message_attributes.as_deref(),
        Some(md5_attrs.as_str())
    );
    assert_eq!(s.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(
        s.event_source_arn.as_deref(),
        Some("arn:aws:sqs:eu-west-1:123456789012:orders-dlq")
    );
    assert_eq!(s.aws_region.as_deref(), Some("eu-west-1"));
    let attrs = &s.attributes;
    assert_eq!(attrs["ApproximateReceiveCount"], "4");
    assert_eq!(attrs["SentTimestamp"], "1767225600000");
    assert_eq!(attrs["ApproximateFirstReceiveTimestamp"], "1767225600250");
    assert_eq!(attrs["SenderId"], SENDER_ID);
    assert_eq!(
        attrs["AWSTraceHeader"],
        standard.trace_header.as_deref().unwrap()
    );
    assert_eq!(
        attrs["DeadLetterQueueSourceArn"],
        "arn:aws:sqs:eu-west-1:123456789012:orders"
    );
    assert_eq!(attrs.len(), 6);
    let title = &s.message_attributes["Title"];
    assert_eq!(title.string_value.as_deref(), Some("The Whistler"));
    assert_eq!(title.data_type.as_deref(), Some("String"));
    assert!(
        title.binary_value.is_none()
            && title.string_list_values.is_empty()
            && title.binary_list_values.is_empty()
    );
    let weeks = &s.message_attributes["WeeksOn"];
    assert_eq!(
        (weeks.string_value.as_deref(), weeks.data_type.as_deref()),
        (Some("6"), Some("Number"))
    );
    let thumb = &s.message_attributes["Thumb"];
    assert_eq!(
        thumb.binary_value.as_ref().map(|b| b.0.clone()),
        Some(vec![0x89, b'P', b'N', b'G', 0])
    );
    assert_eq!(thumb.data_type.as_deref(), Some("Binary"));
    assert!(thumb.string_value.is_none());
    assert_eq!(s.message_attributes.len(), 4);

    assert_eq!(f.md5_of_message_attributes, None);
    assert!(f.message_attributes.is_empty());
    assert_eq!(
        f.event_source_arn.as_deref(),
        Some("arn:aws:sqs:eu-west-1:123456789012:events.fifo")
    );
    assert_eq!(f.attributes["MessageGroupId"], "g1");
    assert_eq!(f.attributes["MessageDeduplicationId"], "d1");
    assert_eq!(f.attributes["SequenceNumber"], "18849496460467696128");
    assert_eq!(f.attributes.len(), 7);
}

#[test]
fn event_json_has_exactly_the_aws_keys() {
    let mut m = message("m-1", "hello");
    m.attributes.insert("k".into(), AttributeValue::string("v"));
    let payload = assemble_event(&[
        encode_record(
            &m,
            &queue_arn("us-east-1", "000000000000", "q"),
            "us-east-1",
        ),
        {
            encode_record(
                &message("m-2", "bye"),
                &queue_arn("us-east-1", "000000000000", "q"),
                "us-east-1",
            )
        },
    ]);
    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&v), ["Records"]);
    let mut want = [
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    ];
    want.sort_unstable();
    for record in v["Records"].as_array().unwrap() {
        let mut got = keys(record);
        got.sort_unstable();
        assert_eq!(got, want);
        let mut attrs = keys(&record["attributes"]);
        attrs.sort_unstable();
        assert_eq!(
            attrs,
            [
                "ApproximateFirstReceiveTimestamp",
                "ApproximateReceiveCount",
                "SenderId",
                "SentTimestamp"
            ]
        );
    }
    let mut attr_keys = keys(&v["Records"][0]["messageAttributes"]["k"]);
    attr_keys.sort_unstable();
    assert_eq!(
        attr_keys,
        [
            "binaryListValues",
            "dataType",
            "stringListValues",
            "stringValue"
        ]
    );
    assert_eq!(
        v["Records"][1]["md5OfMessageAttributes"],
        serde_json::Value::Null
    );
    assert_eq!(v["Records"][1]["messageAttributes"], serde_json::json!({}));
}

/// The real binary: a mapping whose function's grandchild escapes with `setsid` and holds stdout
/// gets a quick success (the message deleted, invoked once, outcome `success`), and the escaped
/// process is gone afterwards (issue 14 point 7).
#[tokio::test]
async fn the_binary_settles_a_function_whose_grandchild_escaped_on_its_exit_status() {
    use crate::common::process::EsmdProcess;
    let dir = TempDir::new().unwrap();
    let d = dir.path().display();
    script(
        &dir,
        "escape.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\necho called >> \"{d}/calls\"\n\
             setsid sh -c 'echo $$ > \"{d}/pid.tmp\"; mv \"{d}/pid.tmp\" \"{d}/pid\"; exec sleep 60' & # // sleep-ok: the escaped grandchild must outlive its function\n\
             while [ ! -s \"{d}/pid\" ]; do :; done\nprintf null\n"
        ),
    );
    let toml = r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "@DIR@/esmd.db"
[queues.q]
visibility_timeout = "60s"
[functions.escape]
type = "command"
command = ["@DIR@/escape.sh"]
timeout = "30s"
[mappings.q]
queue = "q"
function = "escape"
"#;
    let esmd = EsmdProcess::start(dir.path(), toml, &[]).await;
    let url = esmd.url();
    let sent = reqwest::Client::new()
        .post(format!("{url}/queues/q/messages"))
        .body("hello")
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status().as_u16(), 201);
    let started = std::time::Instant::now();
    let metrics = within(Duration::from_secs(20), "the invocation to settle", async {
        loop {
            let text = reqwest::get(format!("{url}/metrics"))
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("metrics text");
            if text
                .lines()
                .any(|l| l.starts_with("esmd_invocations_total{") && !l.ends_with(" 0"))
            {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // sleep-ok: polling interval of a bounded wait
        }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "settled on the exit, not at the 30 s timeout: {:?}",
        started.elapsed()
    );
    let outcomes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("esmd_invocations_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(
        outcomes.len() == 1 && outcomes[0].contains("outcome=\"success\""),
        "{outcomes:?}"
    );
    let pid = std::fs::read_to_string(dir.path().join("pid")).expect("the grandchild's pid");
    assert_dead(pid.trim()).await;
    let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
    assert_eq!(calls.lines().count(), 1, "invoked once, not retried");
    esmd.stop().await;
}
