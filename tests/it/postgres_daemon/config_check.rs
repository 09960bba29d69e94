//! `esmd check-config` with `storage.backend = "postgres"`: the password masked (in the URL,
//! from `storage.password_file`, from `PGPASSWORD`), and every bad `[storage]` key named, with
//! exit 78 and no password in the message.

use crate::common::process::command;

use super::config;

fn check_config(
    dir: &std::path::Path,
    toml: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    std::fs::write(dir.join("esmd.toml"), toml).unwrap();
    let mut cmd = command(dir);
    cmd.arg("check-config")
        .arg("--config")
        .arg("esmd.toml")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out =
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(cmd.output()));
    out.expect("run esmd check-config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_masks_the_password_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // A password in the URL: masked, shown with --show-secrets.
    let with_pw = config("postgres://esmd:s3cr3t-pw@db.example:5432/esmd", "");
    let out = check_config(d, &with_pw, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    assert!(
        shown.contains("postgres://esmd:***@db.example:5432/esmd"),
        "{shown}"
    );
    assert!(shown.contains("backend = \"postgres\""), "{shown}");
    let out = check_config(d, &with_pw, &["--show-secrets"], &[]);
    assert!(text(&out).contains("s3cr3t-pw"), "{}", text(&out));
    // A password file is shown as the file; PGPASSWORD not at all.
    std::fs::write(d.join("pw"), "file-secret\n").unwrap();
    let with_file = config(
        "postgres://esmd@db.example/esmd",
        "password_file = \"pw\"\n",
    );
    let out = check_config(d, &with_file, &[], &[("PGPASSWORD", "env-secret")]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("password_file = "), "{shown}");
    assert!(
        !shown.contains("file-secret") && !shown.contains("env-secret"),
        "{shown}"
    );
    let plain = config("postgres://esmd@db.example/esmd", "");
    let out = check_config(
        d,
        &plain,
        &["--show-secrets"],
        &[("PGPASSWORD", "env-secret")],
    );
    assert!(!text(&out).contains("env-secret"), "{}", text(&out));

    // Errors name the key, exit 78, and never show the password.
    for (toml, key, fragment) in [
        (
            "[storage]\nbackend = \"postgres\"\n".to_owned(),
            "storage.url",
            "is required",
        ),
        (
            config("mysql://esmd:s3cr3t-pw@h/db", ""),
            "storage.url",
            "is not \"postgres\"",
        ),
        (
            config("not a url s3cr3t-pw", ""),
            "storage.url",
            "is not a URL",
        ),
        (
            config("postgres://esmd:s3cr3t-pw@/db", ""),
            "storage.url",
            "host",
        ),
        (
            "[storage]\nurl = \"postgres://h/db\"\n".to_owned(),
            "storage.url",
            "storage.backend is \"sqlite\"",
        ),
        (
            "[storage]\nbackend = \"oracle\"\n".to_owned(),
            "storage.backend",
            "is not one of",
        ),
        (
            config("postgres://h/db", "path = \"x.db\"\n"),
            "storage.path",
            "is SQLite's",
        ),
        (
            config("postgres://h/db", "synchronous = \"normal\"\n"),
            "storage.synchronous",
            "is SQLite's",
        ),
        (
            config("postgres://u:s3cr3t-pw@h/db", "password_file = \"pw\"\n"),
            "storage.password_file",
            "cannot be set together",
        ),
        (
            config("postgres://h/db", "password_file = \"missing\"\n"),
            "storage.password_file",
            "cannot read",
        ),
    ] {
        let out = check_config(d, &toml, &[], &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(78), "{toml}: {said}");
        assert!(
            said.lines()
                .any(|l| l.contains(key) && l.contains(fragment)),
            "{toml}: expected {key} … {fragment} in: {said}"
        );
        assert!(
            !said.contains("s3cr3t-pw"),
            "{toml}: the password leaked: {said}"
        );
    }
}
