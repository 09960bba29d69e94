//! One execution environment: a runtime process (in a process group of its own, its
//! descendants marked so that those leaving the group are found too) with its own Runtime API
//! server, its output forwarded, and the lifecycle of docs/interface.md §4.4: Init up to the
//! first `/next`, then one invocation at a time until it is killed (timeout, crash, idle, reload,
//! shutdown). Dropping an [`Environment`] kills its whole process group.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use tokio::process::Command;
use tokio::sync::watch;

use super::api::{self, Event, Reported, Shared};
use super::output::Output;
use crate::config::RuntimeConfig;
use crate::domain::error::chain;
use crate::invoke::command::{marked, GroupKiller};

/// What an environment needs to know about its function.
pub(super) struct Spec<'a> {
    pub function: &'a str,
    pub region: &'a str,
    pub runtime: &'a RuntimeConfig,
}

/// A running environment, between invocations.
pub(super) struct Environment {
    shared: Arc<Shared>,
    output: Arc<Output>,
    exited: watch::Receiver<Option<ExitStatus>>,
    killer: GroupKiller,
    server: tokio::task::JoinHandle<()>,
    pid: u32,
    /// Init's duration, reported once, by the first invocation.
    pub init_duration: Option<Duration>,
}

/// Why Init failed: an error document as a caller gets it, a line for the log, and what the
/// runtime wrote during Init (the invocation's log tail).
pub(super) struct InitFailure {
    pub document: Vec<u8>,
    pub why: String,
    pub log: String,
    /// Init overran its limit (rather than failing): Lambda retries such an Init once, within
    /// the invocation's own timeout.
    pub timed_out: bool,
}

/// How one invocation ended, in Runtime API terms.
pub(super) enum Ended {
    Response(Vec<u8>),
    /// A function error with its document; `keep` says whether the environment is still usable.
    Error {
        document: Vec<u8>,
        why: String,
        keep: bool,
    },
    TimedOut,
    /// The runtime exited while idle, before taking the event: it was never invoked.
    Gone(Event),
}

impl Environment {
    /// Starts a runtime and waits for its first `/next` (Init), at most `init_limit`
    /// (`init_timeout`, or what is left of the invocation's timeout when Init is retried). The
    /// `request_id` is the invocation that triggered the start, named in esmd's errors.
    pub(super) async fn start(
        spec: &Spec<'_>,
        request_id: &str,
        init_limit: Duration,
    ) -> Result<Self, InitFailure> {
        let started = Instant::now();
        let failure = |why: String, kind: &str| InitFailure {
            document: serde_json::json!({
                "errorType": kind,
                "errorMessage": format!("RequestId: {request_id} Error: {why}"),
            })
            .to_string()
            .into_bytes(),
            why,
            log: String::new(),
            timed_out: false,
        };
        let shared = Arc::new(Shared::default());
        let (addr, server) = api::bind(shared.clone()).await.map_err(|e| {
            failure(
                format!("cannot serve the Runtime API: {}", chain(&e)),
                "Runtime.Unknown",
            )
        })?;
        let (output, write) = Output::pipe(spec.function).map_err(|e| {
            failure(
                format!("cannot create a pipe: {}", chain(&e)),
                "Runtime.Unknown",
            )
        })?;
        let write2 = write.try_clone().map_err(|e| {
            failure(
                format!("cannot create a pipe: {}", chain(&e)),
                "Runtime.Unknown",
            )
        })?;
        let r = spec.runtime;
        let Some((program, args)) = r.argv.split_first() else {
            server.abort();
            return Err(failure(
                "the command is empty".into(),
                "Runtime.InvalidEntrypoint",
            ));
        };
        let environment_id = uuid::Uuid::new_v4().to_string();
        let mut command = Command::new(program);
        command.args(args).envs(&r.env);
        for (var, value) in [
            ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", spec.function.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", r.memory_size.to_string()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", spec.function),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("esmd/{environment_id}"),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_REGION", spec.region.to_owned()),
            ("AWS_DEFAULT_REGION", spec.region.to_owned()),
        ] {
            command.env(var, value);
        }
        if !r.env.contains_key("TZ") {
            command.env("TZ", ":UTC");
        }
        if let Some(handler) = &r.handler {
            command.env("_HANDLER", handler);
        }
        let task_root = match &r.working_dir {
            Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
            None => std::env::current_dir().unwrap_or_default(),
        };
        command
            .env("LAMBDA_TASK_ROOT", &task_root)
            .env("LAMBDA_RUNTIME_DIR", &task_root)
            .current_dir(&task_root)
            // What a Lambda runtime must never see, even when esmd itself was given it.
            .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
            .env_remove("_LAMBDA_TELEMETRY_LOG_FD")
            .env_remove("_X_AMZN_TRACE_ID")
            .env(marked::VARIABLE, &environment_id)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write2))
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                server.abort();
                return Err(failure(
                    format!("cannot start {program:?}: {}", chain(&e)),
                    "Runtime.InvalidEntrypoint",
                ));
            }
        };
        // The parent's copies of the pipe's write end are gone with `command`.
        drop(command);
        tokio::spawn(output.clone().forward());
        let killer = GroupKiller::new(&child, environment_id);
        let pid = child.id().unwrap_or_default();
        let (exit_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = exit_tx.send(Some(status));
            }
        });
        let mut env = Environment {
            shared,
            output,
            exited,
            killer,
            server,
            pid,
            init_duration: None,
        };
        let failed = match env.wait_ready(started + init_limit).await {
            Ready::Next => {
                env.init_duration = Some(started.elapsed());
                return Ok(env);
            }
            Ready::InitError(document) => {
                let why = String::from_utf8_lossy(&document).into_owned();
                InitFailure {
                    document,
                    why,
                    log: String::new(),
                    timed_out: false,
                }
            }
            Ready::Exited(status) => failure(exit_message(status), "Runtime.ExitError"),
            Ready::Deadline => InitFailure {
                timed_out: true,
                ..failure(
                    format!(
                        "Init timed out after {:.2} seconds",
                        init_limit.as_secs_f64()
                    ),
                    "Sandbox.Timedout",
                )
            },
        };
        Err(InitFailure {
            log: env.output.take_init(),
            ..failed
        })
    }

    /// The runtime's process id.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the runtime process is still running.
    pub(super) fn alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    /// Waits for a `/next`, an `/init/error`, the process's exit, or `deadline`.
    async fn wait_ready(&mut self, deadline: Instant) -> Ready {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (waiting, init_error) = self.shared.ready();
            if let Some(document) = init_error {
                return Ready::InitError(document);
            }
            if waiting {
                return Ready::Next;
            }
            if let Some(status) = *self.exited.borrow() {
                return Ready::Exited(status);
            }
            tokio::select! {
                () = &mut changed => {}
                _ = self.exited.changed() => {}
                () = tokio::time::sleep_until(deadline) => return Ready::Deadline,
            }
        }
    }

    /// Runs one invocation; the environment is idle (its runtime waits, or soon will, on
    /// `/next`). The timeout counts from now.
    pub(super) async fn invoke(&mut self, mut event: Event, timeout: Duration) -> Ended {
        let started = Instant::now();
        let deadline = started + timeout;
        let request_id = event.request_id.clone();
        self.output.start(&request_id);
        event.deadline_ms = SystemTime::now()
            .checked_add(timeout)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let report = loop {
            match self.wait_ready(deadline).await {
                Ready::Next => match self.shared.dispatch(event) {
                    Ok(rx) => break rx,
                    Err(back) => event = *back,
                },
                Ready::InitError(_) | Ready::Exited(_) => {
                    self.output.abandon();
                    return Ended::Gone(event);
                }
                Ready::Deadline => return Ended::TimedOut,
            }
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let reported = tokio::select! {
            reported = report => reported.ok(),
            _ = self.exited.wait_for(Option::is_some) => None,
            () = tokio::time::sleep_until(deadline) => {
                self.shared.release();
                return Ended::TimedOut;
            }
        };
        self.shared.release();
        match reported {
            Some(Reported::Response(body)) => Ended::Response(body),
            Some(Reported::Error(document)) => Ended::Error {
                why: String::from_utf8_lossy(&document).into_owned(),
                document,
                keep: true,
            },
            Some(Reported::TooLarge(size)) => {
                let why = format!(
                    "Response payload size ({size} bytes) exceeded maximum allowed payload size \
                     ({} bytes).",
                    api::MAX_PAYLOAD
                );
                Ended::Error {
                    document: serde_json::json!({
                        "errorType": "Function.ResponseSizeTooLarge",
                        "errorMessage": why,
                    })
                    .to_string()
                    .into_bytes(),
                    why,
                    keep: true,
                }
            }
            Some(Reported::InvalidResponseMode) => {
                let why =
                    "Invalid function response mode: esmd does not stream responses".to_owned();
                Ended::Error {
                    document: serde_json::json!({
                        "errorType": "Runtime.InvalidResponseModeHeader",
                        "errorMessage": format!("RequestId: {request_id} Error: {why}"),
                    })
                    .to_string()
                    .into_bytes(),
                    why,
                    keep: true,
                }
            }
            None => {
                let status = self
                    .exited
                    .borrow()
                    .unwrap_or_else(|| ExitStatus::from_raw(0));
                crashed(&request_id, status)
            }
        }
    }

    /// Ends the log of the invocation in flight with `report`; returns its tail.
    pub(super) fn finish_log(&self, report: &str) -> String {
        self.output.finish(report)
    }

    /// The runtime's peak resident memory, in MB (`VmHWM`), 0 when unknown.
    pub(super) fn max_memory_mb(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb.div_ceil(1024))
    }

    /// Kills the runtime and everything it started.
    pub(super) fn kill(&mut self) {
        self.killer.kill();
        self.server.abort();
        self.shared.close();
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Ready {
    Next,
    InitError(Vec<u8>),
    Exited(ExitStatus),
    Deadline,
}

/// `Runtime.ExitError` for a runtime that exited with `status` during invocation `request_id`.
fn crashed(request_id: &str, status: ExitStatus) -> Ended {
    let why = exit_message(status);
    Ended::Error {
        document: serde_json::json!({
            "errorType": "Runtime.ExitError",
            "errorMessage": format!("RequestId: {request_id} Error: {why}"),
        })
        .to_string()
        .into_bytes(),
        why,
        keep: false,
    }
}

/// Lambda's wording for a runtime's exit.
fn exit_message(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(0), _) => "Runtime exited without providing a reason".to_owned(),
        (Some(code), _) => format!("Runtime exited with error: exit status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(name) => format!("Runtime exited with error: signal: {name}"),
            Err(_) => format!("Runtime exited with error: signal: {signal}"),
        },
        (None, None) => "Runtime exited without providing a reason".to_owned(),
    }
}
