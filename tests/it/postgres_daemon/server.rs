//! A PostgreSQL server of one test's own, which the test stops and starts again on the same
//! port and data directory (the shared server of `conformance::harness` must never stop).
//!
//! The server runs under a small shell (as the harness's does) that reads commands on its
//! stdin: `stop` stops the server by its pid (`kill -INT`, a fast shutdown) and answers
//! `stopped` once it exited; `start` starts it again. When stdin closes (the test is done or its
//! process exited, however), the shell stops the server and removes the directory.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use crate::conformance::harness::{self, Cluster};

pub struct Dedicated {
    cluster: Cluster,
    shell: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

const SCRIPT: &str = r#"
    run() {
        "$1/postgres" -D "$2/data" -k "$2" -p "$3" -c listen_addresses=127.0.0.1 \
            -c fsync=off -c full_page_writes=off >>"$2/postgres.log" 2>&1 &
        pg=$!
    }
    run "$1" "$2" "$3"
    while read -r cmd; do
        case "$cmd" in
            stop) kill -INT "$pg"; wait "$pg"; echo stopped ;;
            start) run "$1" "$2" "$3"; echo started ;;
        esac
    done
    kill -INT "$pg" 2>/dev/null
    wait "$pg"
    rm -rf "$2"
"#;

impl Dedicated {
    /// A new server, running; `None` (the test is skipped) without PostgreSQL, except under
    /// `ESMD_CI=1`.
    pub fn start() -> Option<Dedicated> {
        let cluster = match harness::init() {
            Ok(c) => c,
            Err(why) if std::env::var("ESMD_CI").is_ok_and(|v| v == "1") => {
                panic!("PostgreSQL is required under ESMD_CI=1: {why}")
            }
            Err(why) => {
                eprintln!("skipped: no PostgreSQL to test against ({why})");
                return None;
            }
        };
        let mut shell = cluster
            .command(Path::new("/bin/sh"))
            .args(["-c", SCRIPT, "sh"])
            .arg(&cluster.bin)
            .arg(&cluster.root)
            .arg(cluster.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the PostgreSQL shell");
        let stdin = shell.stdin.take();
        let stdout = BufReader::new(shell.stdout.take().expect("the shell's stdout"));
        cluster.wait_ready().expect("PostgreSQL starts");
        Some(Dedicated {
            cluster,
            shell,
            stdin,
            stdout,
        })
    }

    /// `postgres://esmd@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://esmd@127.0.0.1:{}/postgres", self.cluster.port)
    }

    fn command(&mut self, cmd: &str, answer: &str) {
        let stdin = self.stdin.as_mut().expect("the shell's stdin");
        writeln!(stdin, "{cmd}").expect("write to the PostgreSQL shell");
        stdin.flush().expect("flush the PostgreSQL shell's stdin");
        let mut line = String::new();
        tokio::task::block_in_place(|| self.stdout.read_line(&mut line))
            .expect("read the PostgreSQL shell's answer");
        assert_eq!(
            line.trim(),
            answer,
            "the PostgreSQL shell's answer to {cmd}"
        );
    }

    /// Stops the server (a fast shutdown by its pid); returns once it exited.
    pub fn stop(&mut self) {
        self.command("stop", "stopped");
    }

    /// Starts the server again on the same port and data; returns once it accepts connections.
    pub fn restart(&mut self) {
        self.command("start", "started");
        tokio::task::block_in_place(|| self.cluster.wait_ready()).expect("PostgreSQL restarts");
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        // Closing stdin stops the server and removes its directory.
        drop(self.stdin.take());
        let _ = self.shell.wait();
    }
}
