//! `type = "command"` functions: one new process per invocation, started directly from its argv
//! (never through a shell), with the event on stdin and the response on stdout. The only file
//! that imports `tokio::process`.
//!
//! The child leads a process group of its own, and everything it starts carries its invocation's
//! mark ([`marked`]), so that all of it can be killed with it, also what left the group
//! (`setsid`): on timeout, when the invocation is abandoned (the future dropped), and when the
//! child exits leaving processes behind (as Lambda freezes a sandbox once the handler returns).
//! The outcome is the child's own exit status: once it has exited and what it left is killed,
//! its output is what it wrote, even if something esmd could not find still holds the pipe (then
//! esmd stops waiting after [`DRAIN`]). stdin is written while stdout and stderr are read, so a
//! child that never reads its input cannot deadlock esmd; stdout is read up to
//! [`MAX_RESPONSE_BYTES`]; stderr is forwarded to the log line by line.

pub(super) mod marked;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use super::{response, too_large, Invocation, InvokeTarget, MAX_RESPONSE_BYTES};
use crate::domain::error::chain;

/// The longest stderr line forwarded to the log; the rest of the line is dropped.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// How long to wait for a killed child to be reaped before leaving it to tokio's reaper.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// After the child exited and what it left was killed, how long its output pipes may stay open
/// (held by a process that could not be found) before esmd settles without the rest.
const DRAIN: Duration = Duration::from_secs(2);

/// How often, while the output drains, the invocation's marked processes are looked for again.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// A command function's configuration, borrowed from [`crate::config::FunctionTarget::Command`].
pub(super) struct CommandSpec<'a> {
    pub(super) argv: &'a [String],
    pub(super) env: &'a BTreeMap<String, String>,
    pub(super) working_dir: Option<&'a Path>,
}

/// Runs the command once with `payload` on stdin; see the module docs.
pub(super) async fn invoke(
    target: &InvokeTarget<'_>,
    spec: &CommandSpec<'_>,
    payload: Vec<u8>,
) -> Invocation {
    let Some((program, args)) = spec.argv.split_first() else {
        return Invocation::FunctionError("the command is empty".to_owned());
    };
    let timeout = target.config.timeout;
    let invocation_id = uuid::Uuid::new_v4().to_string();
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(spec.env)
        // Lambda's reserved variables win over the configured ones, as Lambda refuses to let
        // a function set them.
        .env("AWS_LAMBDA_FUNCTION_NAME", target.function)
        .env(
            "AWS_LAMBDA_FUNCTION_TIMEOUT",
            whole_seconds_up(timeout).to_string(),
        )
        .env("AWS_REGION", target.region)
        .env(marked::VARIABLE, &invocation_id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = spec.working_dir {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Invocation::FunctionError(format!("failed to start {program:?}: {}", chain(&e)))
        }
    };
    // From here on, every way out (return, timeout, or this future being dropped) kills the group.
    let mut group = GroupKiller::new(&child, invocation_id);
    let pipes = Pipes {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    };
    let outcome = tokio::time::timeout(
        timeout,
        drive(&mut child, &mut group, pipes, payload, target),
    )
    .await;
    group.kill();
    // The child is dead or dying; reap it now rather than leave a zombie behind. If it has
    // already been waited for, this returns its status at once.
    let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
    match outcome {
        Ok(invocation) => invocation,
        Err(_elapsed) => Invocation::TimedOut,
    }
}

/// The child's standard streams, taken out of [`Child`] so that they can be driven concurrently
/// with waiting for it.
struct Pipes {
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

/// Feeds stdin, collects stdout, forwards stderr and waits for the child, all at once.
async fn drive(
    child: &mut Child,
    group: &mut GroupKiller,
    pipes: Pipes,
    payload: Vec<u8>,
    target: &InvokeTarget<'_>,
) -> Invocation {
    let Pipes {
        stdin,
        stdout,
        stderr,
    } = pipes;
    let write = async move {
        if let Some(mut stdin) = stdin {
            // A child may exit without reading its input (EPIPE): that is its business.
            if let Err(e) = stdin.write_all(&payload).await {
                tracing::debug!(function = target.function, mapping = target.mapping, error = %chain(&e), "stdin not fully written");
            }
            // Dropping stdin closes it, so the child sees the end of the event.
        }
        Ok::<(), Oversize>(())
    };
    let read = async move {
        match stdout {
            Some(stdout) => read_bounded(stdout).await,
            None => Ok(Vec::new()),
        }
    };
    let forward = async move {
        if let Some(stderr) = stderr {
            forward_stderr(stderr, target).await;
        }
        Ok::<(), Oversize>(())
    };
    // Stops at the first error, so an oversized response does not wait for the other streams.
    let io = async { tokio::try_join!(write, read, forward).map(|((), out, ())| out) };
    tokio::pin!(io);
    let (status, out) = tokio::select! {
        status = child.wait() => {
            // Whatever the child left running could hold the pipes open forever: it is killed,
            // and the outcome is the child's own, however long a stray holds the pipes.
            group.kill();
            // A process caught between fork and exec may not be found by the first look; look
            // again while the output drains.
            let deadline = tokio::time::Instant::now() + DRAIN;
            let drained = loop {
                match tokio::time::timeout(SWEEP_EVERY, &mut io).await {
                    Ok(out) => break Some(out),
                    Err(_) if tokio::time::Instant::now() < deadline => group.sweep(),
                    Err(_) => break None,
                }
            };
            match drained {
                Some(out) => (status, out),
                None => {
                    let why = match status {
                        Ok(status) => exit_failure(status)
                            .unwrap_or_else(|| "exited with status 0".to_owned()),
                        Err(e) => format!("waiting for the process failed: {}", chain(&e)),
                    };
                    return Invocation::FunctionError(format!(
                        "{why}, but a process it started that esmd could not find (its \
                         environment replaced) still holds its output open"
                    ));
                }
            }
        }
        out = &mut io => match out {
            Err(Oversize) => return too_large(),
            Ok(out) => (child.wait().await, Ok(out)),
        },
    };
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            return Invocation::FunctionError(format!(
                "waiting for the process failed: {}",
                chain(&e)
            ))
        }
    };
    match (exit_failure(status), out) {
        (Some(why), _) => Invocation::FunctionError(why),
        (None, Err(Oversize)) => too_large(),
        (None, Ok(out)) => response(out),
    }
}

/// Why an exit status is a failure, or `None` for exit status 0.
fn exit_failure(status: ExitStatus) -> Option<String> {
    if let Some(code) = status.code() {
        return (code != 0).then(|| format!("exited with status {code}"));
    }
    let signal = status.signal().unwrap_or_default();
    Some(match Signal::try_from(signal) {
        Ok(name) => format!("killed by signal {signal} ({name})"),
        Err(_) => format!("killed by signal {signal}"),
    })
}

/// stdout was longer than [`MAX_RESPONSE_BYTES`].
#[derive(Debug)]
struct Oversize;

/// Reads `reader` to its end, or to the first byte past [`MAX_RESPONSE_BYTES`].
async fn read_bounded(reader: impl AsyncRead + Unpin) -> Result<Vec<u8>, Oversize> {
    let mut out = Vec::new();
    let limit = MAX_RESPONSE_BYTES as u64 + 1;
    // A read error (there is none on a pipe in practice) ends the response where it stands.
    let _ = reader.take(limit).read_to_end(&mut out).await;
    if out.len() > MAX_RESPONSE_BYTES {
        Err(Oversize)
    } else {
        Ok(out)
    }
}

/// Logs each stderr line at info level, each cut to [`MAX_STDERR_LINE`] bytes, until EOF.
async fn forward_stderr(stderr: impl AsyncRead + Unpin, target: &InvokeTarget<'_>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut truncated = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (chunk, ends_line) = match buf.iter().position(|&b| b == b'\n') {
            Some(idx) => (&buf[..idx], true),
            None => (buf, false),
        };
        let room = MAX_STDERR_LINE - line.len();
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        truncated |= chunk.len() > room;
        let consumed = chunk.len() + usize::from(ends_line);
        reader.consume(consumed);
        if ends_line {
            log_stderr_line(&line, truncated, target);
            line.clear();
            truncated = false;
        }
    }
    if !line.is_empty() {
        log_stderr_line(&line, truncated, target);
    }
}

fn log_stderr_line(line: &[u8], truncated: bool, target: &InvokeTarget<'_>) {
    let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
    if truncated {
        tracing::info!(function = target.function, mapping = target.mapping, stderr = %line, truncated, "function output");
    } else {
        tracing::info!(function = target.function, mapping = target.mapping, stderr = %line, "function output");
    }
}

/// `AWS_LAMBDA_FUNCTION_TIMEOUT`: whole seconds, rounded up.
fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Sends SIGKILL to the child's process group and to every process carrying the invocation's
/// mark (those that left the group too), once: explicitly, or when dropped (so an abandoned
/// invocation leaves no process behind).
pub(super) struct GroupKiller {
    pgid: Option<Pid>,
    invocation_id: String,
    done: bool,
}

impl GroupKiller {
    /// The child leads its group (`process_group(0)`), so the group id is its pid.
    pub(super) fn new(child: &Child, invocation_id: String) -> Self {
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        GroupKiller {
            pgid,
            invocation_id,
            done: false,
        }
    }

    /// Kills the invocation's marked processes found now (after [`GroupKiller::kill`]).
    fn sweep(&self) {
        let strays = marked::kill_marked(&self.invocation_id);
        if strays > 0 {
            tracing::debug!(
                processes = strays,
                "killed processes an invocation left outside its process group"
            );
        }
    }

    pub(super) fn kill(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (nobody left in the group) is the usual, happy case.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let strays = marked::kill_marked(&self.invocation_id);
        if strays > 0 {
            tracing::debug!(
                processes = strays,
                "killed processes an invocation left outside its process group"
            );
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds_up(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds_up(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::ZERO), 0);
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_failure(ExitStatus::from_raw(0)), None);
        assert_eq!(
            exit_failure(ExitStatus::from_raw(3 << 8)).unwrap(),
            "exited with status 3"
        );
        assert_eq!(
            exit_failure(ExitStatus::from_raw(9)).unwrap(),
            "killed by signal 9 (SIGKILL)"
        );
    }

    #[tokio::test]
    async fn stdout_is_bounded() {
        let exact = vec![b'x'; MAX_RESPONSE_BYTES];
        assert_eq!(
            read_bounded(&exact[..]).await.unwrap().len(),
            MAX_RESPONSE_BYTES
        );
        let over = vec![b'x'; MAX_RESPONSE_BYTES + 1];
        assert!(read_bounded(&over[..]).await.is_err());
    }
}
