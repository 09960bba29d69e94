//! The two backends under test: a [`Fixture`] holds a store on a manual clock, on a fresh
//! SQLite file or a fresh PostgreSQL database.
//!
//! PostgreSQL is a real server from the distribution's packages, one per test binary run:
//! `initdb` into a temporary directory, then `postgres -D <dir>/data -k <dir> -p <free port>`,
//! each test in a database of its own (`CREATE DATABASE`). The binaries are found in
//! `$ESMD_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `PATH`. `initdb` refuses
//! to run as root, so as root the server runs as the `postgres` user (else `nobody`) through
//! `setpriv`. The server is started under a small shell that stops it by its pid (`kill -INT`,
//! a fast shutdown) and removes the directory when its stdin closes, which happens when this
//! test process exits however it exits. Without PostgreSQL the PostgreSQL tests are skipped
//! with a message, unless `ESMD_CI=1`, where they fail.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use esmd::clock::Clock;
use esmd::domain::queue::{QueueName, QueueSettings};
use esmd::domain::Timestamp;
use esmd::store::{PgOptions, PgStore, QueueStore, Store};
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions as _;

use crate::common::{q, storage, T0};

/// A store under test on a manual clock, and what must live as long as it.
pub struct Fixture<S> {
    pub store: S,
    pub clock: Clock,
    /// The SQLite file's directory, or the PostgreSQL database's connect options.
    pub keep: Keep,
}

/// What a fixture keeps alive or needs to open a second store on the same data.
pub enum Keep {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Database(Box<PgConnectOptions>),
}

impl<S: QueueStore> Fixture<S> {
    /// Creates (or overwrites) a queue with `settings`.
    pub async fn queue(&self, name: &str, settings: QueueSettings) -> QueueName {
        let name = q(name);
        self.store
            .ensure_queue(&name, &settings)
            .await
            .expect("create queue");
        name
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// A SQLite store on a fresh file.
pub async fn sqlite() -> Option<Fixture<Store>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::manual(Timestamp::from_millis(T0));
    let store = Store::open(&storage(&dir), clock.clone())
        .await
        .expect("open store");
    Some(Fixture {
        store,
        clock,
        keep: Keep::Dir(dir),
    })
}

/// A PostgreSQL store on a fresh database; `None` (the test is skipped) when there is no
/// PostgreSQL on this machine, except under `ESMD_CI=1`.
pub async fn postgres() -> Option<Fixture<PgStore>> {
    let options = database().await?;
    let clock = Clock::manual(Timestamp::from_millis(T0));
    let store = open(&options, &clock).await;
    Some(Fixture {
        store,
        clock,
        keep: Keep::Database(Box::new(options)),
    })
}

/// Another store on the database `options` names (a second esmd instance).
pub async fn open(options: &PgConnectOptions, clock: &Clock) -> PgStore {
    // The SQLite fixture's tombstone retention (`common::storage`).
    let pg = PgOptions {
        tombstone_retention: Duration::from_secs(3600),
        ..PgOptions::default()
    };
    PgStore::connect(options.clone(), clock.clone(), pg)
        .await
        .expect("connect to the test database")
}

/// A fresh database on the shared server.
pub async fn database() -> Option<PgConnectOptions> {
    let port = match server() {
        Ok(port) => port,
        Err(why) if std::env::var("ESMD_CI").is_ok_and(|v| v == "1") => {
            panic!("PostgreSQL is required under ESMD_CI=1 and could not be started: {why}")
        }
        Err(why) => {
            eprintln!("skipped: no PostgreSQL to test against ({why})");
            return None;
        }
    };
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("esmd_t{}", N.fetch_add(1, Ordering::SeqCst));
    let base = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("esmd")
        .database("postgres");
    let mut admin = base.connect().await.expect("connect to the test server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    Some(base.database(&name))
}

/// The shared server's port, started on first use.
fn server() -> Result<u16, String> {
    static SERVER: OnceLock<Result<u16, String>> = OnceLock::new();
    static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);
    SERVER
        .get_or_init(|| {
            let (port, child) = start()?;
            // Kept until the process exits: its stdin closing stops the server.
            *WATCHDOG.lock().unwrap() = Some(child);
            Ok(port)
        })
        .clone()
}

/// The directory holding `initdb`, `postgres` and `pg_isready`.
pub fn binaries() -> Result<PathBuf, String> {
    let has = |d: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Ok(d) = std::env::var("ESMD_PG_BIN") {
        let d = PathBuf::from(d);
        return if has(&d) {
            Ok(d)
        } else {
            Err(format!(
                "ESMD_PG_BIN={} lacks initdb, postgres or pg_isready",
                d.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| has(d))
        .ok_or_else(|| {
            "no initdb/postgres/pg_isready in $ESMD_PG_BIN, /usr/lib/postgresql/*/bin or PATH \
             (Debian: apt-get install postgresql)"
                .into()
        })
}

/// The user to run the server as when this process is root (initdb refuses root), with its
/// uid and gid.
fn server_user() -> Result<Option<(String, u32, u32)>, String> {
    let euid = std::fs::metadata("/proc/self")
        .map_err(|e| e.to_string())?
        .uid();
    if euid != 0 {
        return Ok(None);
    }
    let id = |user: &str, flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    for user in ["postgres", "nobody"] {
        if let (Some(uid), Some(gid)) = (id(user, "-u"), id(user, "-g")) {
            return Ok(Some((user.to_owned(), uid, gid)));
        }
    }
    Err("running as root, and there is no postgres or nobody user to run PostgreSQL as".into())
}

/// `program` as the server user (see [`server_user`]).
fn as_user(user: &Option<(String, u32, u32)>, program: &Path) -> Command {
    match user {
        None => Command::new(program),
        Some((name, _, _)) => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", name, "--regid", name, "--init-groups", "--"])
                .arg(program);
            c
        }
    }
}

/// A fresh cluster from `initdb` (not started): the binaries, the user to run them as, the
/// directory holding `data/` (and the socket and log), and a free port to start it on.
pub struct Cluster {
    pub bin: PathBuf,
    pub user: Option<(String, u32, u32)>,
    pub root: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// `program` run as the cluster's user (see [`server_user`]).
    pub fn command(&self, program: &Path) -> Command {
        as_user(&self.user, program)
    }

    /// Waits (at most 30 s) until the server accepts connections.
    pub fn wait_ready(&self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let log =
                    std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default();
                return Err(format!("postgres did not start within 30 s: {log}"));
            }
            std::thread::sleep(Duration::from_millis(50)); // sleep-ok: pg_isready is the only readiness signal a server started this way gives
        }
    }
}

/// Runs initdb into a fresh temporary directory (owned by the server user) and picks a port.
pub fn init() -> Result<Cluster, String> {
    let bin = binaries()?;
    let user = server_user()?;
    let root = tempfile::Builder::new()
        .prefix("esmd-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    if let Some((_, uid, gid)) = &user {
        std::os::unix::fs::chown(&root, Some(*uid), Some(*gid)).map_err(|e| e.to_string())?;
    }
    let data = root.join("data");
    let out = as_user(&user, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "esmd", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .map_err(|e| format!("run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    Ok(Cluster {
        bin,
        user,
        root,
        port,
    })
}

/// Runs initdb and starts the server under its watchdog shell; returns once it accepts
/// connections.
fn start() -> Result<(u16, Child), String> {
    let cluster = init()?;
    let (bin, root, port) = (&cluster.bin, &cluster.root, cluster.port);
    // The watchdog: starts the server, waits for its stdin to close, then stops the server by
    // its pid and removes the directory.
    let script = r#"
        "$1/postgres" -D "$2/data" -k "$2" -p "$3" -c listen_addresses=127.0.0.1 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
            >"$2/postgres.log" 2>&1 &
        pg=$!
        read -r _
        kill -INT "$pg"
        wait "$pg"
        rm -rf "$2"
    "#;
    let child = cluster
        .command(Path::new("/bin/sh"))
        .args(["-c", script, "sh"])
        .arg(bin)
        .arg(root)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("start postgres: {e}"))?;
    cluster.wait_ready()?;
    Ok((port, child))
}
