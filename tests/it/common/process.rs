//! The binary fixture: `esmd` as a child process, the one way every test runs the real binary.
//!
//! [`command`] is `esmd` with the developer's environment cleaned out (`ESMD*`, `RUST_LOG`,
//! `STATE_DIRECTORY` and the systemd variables), for one-shot commands such as `check-config`.
//! [`EsmdProcess`] is `esmd run` in a directory: its stderr (the log) is read line by line on a
//! thread of its own, so a chatty daemon never blocks on a full pipe whatever the test is doing,
//! and waiters are notified of each new line (no polling). Configurations listen on
//! `127.0.0.1:0`; [`EsmdProcess::ready`] learns the bound address from the daemon's own
//! `esmd ready address=...` log line ([`ready_address`]), so parallel tests never race for a port
//! and a restarted daemon simply reports its new one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a daemon may take to log that it is ready, and to exit after SIGTERM.
pub const BOUND: Duration = Duration::from_secs(30);

/// The name of the configuration file [`EsmdProcess::spawn`] writes.
pub const CONFIG_FILE: &str = "esmd.toml";

/// `esmd` in `cwd` with the developer's environment removed (every `ESMD*` variable,
/// `STATE_DIRECTORY`, `RUST_LOG`, `JOURNAL_STREAM`, `NOTIFY_SOCKET`, `WATCHDOG_*`), stdin
/// closed, killed if dropped. Add arguments and variables to it.
pub fn command(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esmd"));
    cmd.current_dir(cwd).stdin(Stdio::null()).kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("ESMD")
            || name.starts_with("WATCHDOG_")
            || [
                "STATE_DIRECTORY",
                "RUST_LOG",
                "JOURNAL_STREAM",
                "NOTIFY_SOCKET",
            ]
            .contains(&name.as_ref())
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// The address in esmd's `esmd ready` log line, in the text format (`... esmd ready
/// address=127.0.0.1:40123`) or the JSON one (`"message":"esmd ready","address":"..."`).
/// This line is the daemon's report of where it listens: it is logged once the listener is
/// bound and the mappings run, at INFO (a test that needs the address must not filter it out).
pub fn ready_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("esmd ready") {
        return None;
    }
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        return (json["message"] == "esmd ready")
            .then(|| json["address"].as_str()?.parse().ok())
            .flatten();
    }
    let (_, rest) = line.split_once("esmd ready")?;
    let (_, addr) = rest.split_once("address=")?;
    addr.split_whitespace().next()?.parse().ok()
}

/// The log as read so far, and whether the pipe reached its end.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
    ready: Option<SocketAddr>,
}

struct Shared {
    log: Mutex<Log>,
    /// Bumped on every new line and at the end of the pipe.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running `esmd run` with its log captured. Killed (SIGKILL) when dropped.
pub struct EsmdProcess {
    child: Child,
    pid: u32,
    config: PathBuf,
    shared: Arc<Shared>,
    addr: Option<SocketAddr>,
    status: Option<ExitStatus>,
}

impl EsmdProcess {
    /// Writes `toml` into `dir/esmd.toml`, `@DIR@` replaced by `dir`, and spawns `esmd run` on
    /// it in `dir` with `env` added to the cleaned environment ([`command`]). Does not wait: see
    /// [`EsmdProcess::ready`], or [`EsmdProcess::start`] for both.
    pub fn spawn(dir: &Path, toml: &str, env: &[(&str, &str)]) -> EsmdProcess {
        let config = dir.join(CONFIG_FILE);
        let text = toml.replace("@DIR@", &dir.display().to_string());
        std::fs::write(&config, text).expect("write the daemon's configuration");
        Self::spawn_config(dir, &config, env)
    }

    /// Spawns `esmd run --config <config>` in `dir` on a configuration file that exists
    /// (`config` may be relative to `dir`).
    pub fn spawn_config(dir: &Path, config: &Path, env: &[(&str, &str)]) -> EsmdProcess {
        let mut cmd = command(dir);
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn esmd run");
        let pid = child.id().expect("a pid for the new process");
        let stderr = child
            .stderr
            .take()
            .expect("esmd's stderr")
            .into_owned_fd()
            .expect("esmd's stderr as a file descriptor");
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            changed: watch::channel(0).0,
        });
        let sink = shared.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let reader = std::io::BufReader::new(std::fs::File::from(stderr));
            for line in reader.lines().map_while(Result::ok) {
                {
                    let mut log = sink.log();
                    if log.ready.is_none() {
                        log.ready = ready_address(&line);
                    }
                    log.lines.push(line);
                }
                sink.changed.send_modify(|v| *v += 1);
            }
            sink.log().closed = true;
            sink.changed.send_modify(|v| *v += 1);
        });
        EsmdProcess {
            child,
            pid,
            config: dir.join(config),
            shared,
            addr: None,
            status: None,
        }
    }

    /// [`EsmdProcess::spawn`], then [`EsmdProcess::ready`].
    pub async fn start(dir: &Path, toml: &str, env: &[(&str, &str)]) -> EsmdProcess {
        let mut esmd = Self::spawn(dir, toml, env);
        esmd.ready().await;
        esmd
    }

    /// Waits (at most [`BOUND`]) until the daemon logs that it is ready, and returns the address
    /// it reports. Panics with the log if it exits or stays silent instead.
    pub async fn ready(&mut self) -> SocketAddr {
        let found = self
            .wait_log(BOUND, |log| {
                log.ready.map(Some).or_else(|| log.closed.then_some(None))
            })
            .await;
        match found {
            Some(Some(addr)) => {
                self.addr = Some(addr);
                addr
            }
            Some(None) => panic!(
                "esmd exited before it was ready; its log:\n{}",
                self.tail(40)
            ),
            None => panic!(
                "esmd did not report ready within {BOUND:?}; its log:\n{}",
                self.tail(40)
            ),
        }
    }

    /// Waits until `check` answers for the log, for at most `limit`; `None` if it did not.
    async fn wait_log<T>(
        &self,
        limit: Duration,
        mut check: impl FnMut(&Log) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.shared.changed.subscribe();
        let waiting = async {
            loop {
                rx.borrow_and_update();
                if let Some(out) = check(&self.shared.log()) {
                    return out;
                }
                rx.changed().await.expect("the log outlives its waiters");
            }
        };
        tokio::time::timeout(limit, waiting).await.ok()
    }

    /// Waits until a log line satisfies `matches`, for at most `limit`; returns the first such
    /// line. Panics with the log's tail if none comes.
    pub async fn wait_for_line(
        &self,
        limit: Duration,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_log(limit, |log| log.lines.iter().find(|l| matches(l)).cloned())
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no log line showed {what} within {limit:?}; the log's tail:\n{}",
                    self.tail(40)
                )
            })
    }

    /// The address the daemon reported (after [`EsmdProcess::ready`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .expect("the address is known once the daemon is ready (EsmdProcess::ready)")
    }

    /// `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The configuration file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Every log line so far.
    pub fn lines(&self) -> Vec<String> {
        self.shared.log().lines.clone()
    }

    /// The log lines that are JSON objects (configurations with `log.format = "json"`).
    pub fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The last `n` log lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let log = self.shared.log();
        log.lines[log.lines.len().saturating_sub(n)..].join("\n")
    }

    /// Sends `sig` to the daemon. Panics if it already exited (its pid may have been reused).
    pub fn signal(&mut self, sig: Signal) {
        assert!(
            self.status.is_none() && self.child.try_wait().ok().flatten().is_none(),
            "esmd already exited; not sending {sig}"
        );
        let pid = Pid::from_raw(i32::try_from(self.pid).expect("a pid fits in i32"));
        kill(pid, sig).unwrap_or_else(|e| panic!("send {sig} to esmd: {e}"));
    }

    /// Waits (at most `limit`) for the daemon to exit, then for its log to be read to the end
    /// (bounded too); returns the exit code, `None` if a signal ended it. Panics with the log's
    /// tail if it does not exit in time.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let status = match self.status {
            Some(s) => s,
            None => {
                let s = tokio::time::timeout(limit, self.child.wait())
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "esmd did not exit within {limit:?}; the log's tail:\n{}",
                            self.tail(40)
                        )
                    })
                    .expect("wait for esmd");
                self.status = Some(s);
                s
            }
        };
        // The pipe ends when the last holder of its write end is gone: esmd, and any function
        // process that inherited it. Bounded, so a straggler cannot hang the test.
        self.wait_log(Duration::from_secs(5), |log| log.closed.then_some(()))
            .await;
        status.code()
    }

    /// SIGTERM, then expects a clean exit (status 0) within [`BOUND`].
    pub async fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        let code = self.wait_exit(BOUND).await;
        assert_eq!(
            code,
            Some(0),
            "esmd exits 0 on SIGTERM; the log's tail:\n{}",
            self.tail(40)
        );
    }

    /// SIGKILL, reaped, the log read to its end.
    pub async fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        assert_eq!(
            self.wait_exit(BOUND).await,
            None,
            "SIGKILL ends esmd by a signal"
        );
    }
}

#[test]
fn ready_address_reads_the_text_and_the_json_log_line() {
    let addr: SocketAddr = "127.0.0.1:40123".parse().expect("an address");
    let text = "2026-01-01T00:00:00.000000Z  INFO esmd::daemon: esmd ready address=127.0.0.1:40123";
    assert_eq!(ready_address(text), Some(addr));
    let journald = " INFO esmd::daemon: esmd ready address=127.0.0.1:40123";
    assert_eq!(ready_address(journald), Some(addr));
    let json = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","address":"127.0.0.1:40123","message":"esmd ready","target":"esmd::daemon"}"#;
    assert_eq!(ready_address(json), Some(addr));
    assert_eq!(ready_address("INFO esmd::daemon: shutting down"), None);
    assert_eq!(
        ready_address(r#"{"message":"a body saying esmd ready","address":"127.0.0.1:1"}"#),
        None
    );
}
