//! `[server]` safety settings with the real binary (issue 14 points 9g, 9h, 9i): a non-loopback
//! `listen` without a token is refused unless `allow_unauthenticated`, `esmd check-config` masks
//! the token unless `--show-secrets`, and the token can come from `auth_token_file` (read at
//! start and on reload, trimmed; an unreadable file is a clear error).

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::common::process::{self, EsmdProcess};

/// `esmd check-config --config <toml written to dir>` plus `args`: exit code, stdout, stderr.
async fn check_config(dir: &Path, toml: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let config = dir.join("check.toml");
    std::fs::write(&config, toml).expect("write config");
    let out = process::command(dir)
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .args(args)
        .output()
        .await
        .expect("run check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_public_listen_without_a_token_is_refused_unless_explicitly_allowed() {
    let dir = TempDir::new().expect("temp dir");
    let public = "[server]\nlisten = \"0.0.0.0:0\"\n";
    let mut esmd = EsmdProcess::spawn(dir.path(), public, &[]);
    assert_eq!(esmd.wait_exit(Duration::from_secs(30)).await, Some(78));
    let log = esmd.tail(20);
    assert!(
        log.contains("server.listen") && log.contains("server.allow_unauthenticated = true"),
        "{log}"
    );
    assert!(
        !dir.path().join("esmd.db").exists(),
        "refused before any database"
    );
    // Explicitly allowed, or with a token: accepted.
    let allowed = format!("{public}allow_unauthenticated = true\n");
    let (code, out, err) = check_config(dir.path(), &allowed, &[]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("allow_unauthenticated = true"), "{out}");
    let (code, _, err) =
        check_config(dir.path(), &format!("{public}auth_token = \"t\"\n"), &[]).await;
    assert_eq!(code, Some(0), "{err}");
    // Loopback needs neither.
    let (code, _, err) = check_config(dir.path(), "[server]\nlisten = \"[::1]:9324\"\n", &[]).await;
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test]
async fn check_config_masks_the_token_unless_asked() {
    let dir = TempDir::new().expect("temp dir");
    let toml = "[server]\nauth_token = \"tok-MASK-ME-42\"\n";
    let (code, out, err) = check_config(dir.path(), toml, &[]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("auth_token = \"***\""), "{out}");
    assert!(!out.contains("tok-MASK-ME-42"), "{out}");
    let (code, out, _) = check_config(dir.path(), toml, &["--show-secrets"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("auth_token = \"tok-MASK-ME-42\""), "{out}");
    // The token from the environment is masked the same way.
    let config = dir.path().join("check.toml");
    let out = process::command(dir.path())
        .args(["check-config", "--config"])
        .arg(&config)
        .env("ESMD__SERVER__AUTH_TOKEN", "tok-FROM-ENV-43")
        .output()
        .await
        .expect("check-config");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.contains("tok-FROM-ENV-43") && out.contains("\"***\""),
        "{out}"
    );
}

#[tokio::test]
async fn the_token_can_come_from_a_file_read_at_start_and_on_reload() {
    let dir = TempDir::new().expect("temp dir");
    let token_file = dir.path().join("credentials").join("esmd-token");
    std::fs::create_dir_all(token_file.parent().unwrap()).expect("mkdir");
    std::fs::write(&token_file, "tok-FROM-FILE-7\n").expect("write token");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nauth_token_file = {:?}\n[storage]\npath = \"@DIR@/esmd.db\"\n",
        token_file.display().to_string()
    );
    let mut esmd = EsmdProcess::start(dir.path(), &toml, &[]).await;
    let url = esmd.url();
    let http = reqwest::Client::new();
    let status = |token: &'static str| {
        let req = http.get(format!("{url}/queues")).bearer_auth(token);
        async move { req.send().await.expect("GET /queues").status().as_u16() }
    };
    assert_eq!(status("tok-FROM-FILE-7").await, 200, "trimmed file token");
    assert_eq!(status("something-else").await, 401);
    // check-config renders the file, never its contents, even with --show-secrets.
    let out = process::command(dir.path())
        .args(["check-config", "--show-secrets", "--config"])
        .arg(esmd.config())
        .output()
        .await
        .expect("check-config");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("auth_token_file") && !shown.contains("tok-FROM-FILE-7"),
        "{shown}"
    );
    // On reload the file is read again: gone, the reload is refused naming key and path.
    std::fs::remove_file(&token_file).expect("remove token");
    esmd.signal(Signal::SIGHUP);
    esmd.wait_for_line(Duration::from_secs(10), "the refused reload", |l| {
        l.contains("reload refused") && l.contains("server.auth_token_file: cannot read")
    })
    .await;
    assert_eq!(
        status("tok-FROM-FILE-7").await,
        200,
        "the running token stays"
    );
    esmd.stop().await;
    // Unreadable at start: exit 78 naming the key; both keys set: refused too.
    let mut esmd = EsmdProcess::spawn(dir.path(), &toml, &[]);
    assert_eq!(esmd.wait_exit(Duration::from_secs(30)).await, Some(78));
    assert!(
        esmd.tail(5).contains("server.auth_token_file: cannot read"),
        "{}",
        esmd.tail(5)
    );
    std::fs::write(&token_file, "t").expect("write token");
    let both = toml.replace("[storage]", "auth_token = \"x\"\n[storage]");
    let (code, _, err) = check_config(dir.path(), &both, &[]).await;
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("server.auth_token_file: cannot be set together with server.auth_token"),
        "{err}"
    );
    std::fs::write(&token_file, "  \n").expect("write token");
    let (code, _, err) = check_config(dir.path(), &toml, &[]).await;
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("is empty"), "{err}");
}
