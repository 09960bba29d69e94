//! `storage.backend = "postgres"` (docs/interface.md §2, docs/postgres.md): the database's URL
//! and its password, which is a secret like `server.auth_token`.
//!
//! The password comes from the URL (`postgres://user:password@host/db`), or from
//! `storage.password_file` (read at start and on every reload, as `server.auth_token_file`
//! is), or from the standard `PGPASSWORD` variable, in that order; the URL and the file
//! together are refused. The URL is kept without its password, so that it can be printed and
//! logged; the password is a [`Password`], whose `Debug` shows `***`.
//!
//! SQLite's keys (`storage.path`, `storage.synchronous`, `storage.max_size`) mean nothing on
//! PostgreSQL: set to anything but their defaults with `backend = "postgres"`, they are refused,
//! so that a half-switched file is noticed. `storage.url` and `storage.password_file` with the
//! SQLite backend are refused for the same reason.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use super::env::Env;
use super::raw::{default, RawStorage};
use super::read::Problems;
use super::Config;

/// `storage.backend = "postgres"`: where the database is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `storage.url` without its password: `postgres://user@host:port/db?options`.
    pub url: String,
    /// The password, if any (the URL's, the file's or `PGPASSWORD`).
    pub password: Option<Password>,
    /// Where the password came from.
    pub password_from: PasswordSource,
}

/// Where the PostgreSQL password came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// No password (trust, peer or certificate authentication).
    None,
    /// The URL's `user:password@`.
    Url,
    /// `storage.password_file` (resolved against the working directory once read).
    File(PathBuf),
    /// The `PGPASSWORD` environment variable.
    Environment,
}

/// A password: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A password.
    pub fn new(secret: impl Into<String>) -> Password {
        Password(secret.into())
    }

    /// The secret itself, for the connection (and `check-config --show-secrets`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Checks `storage.backend` and the keys that go with it; `Some` for PostgreSQL.
pub(super) fn validate(raw: &RawStorage, p: &mut Problems<'_>) -> Option<PostgresConfig> {
    match raw.backend.as_str() {
        "sqlite" => {
            for (key, set) in [
                ("url", raw.url.is_some()),
                ("password_file", raw.password_file.is_some()),
            ] {
                if set {
                    p.at(
                        &["storage", key],
                        "is PostgreSQL's, but storage.backend is \"sqlite\": set \
                         storage.backend = \"postgres\", or remove it",
                    );
                }
            }
            None
        }
        "postgres" => postgres(raw, p),
        other => {
            p.at(
                &["storage", "backend"],
                format!("{other:?} is not one of \"sqlite\", \"postgres\""),
            );
            None
        }
    }
}

fn postgres(raw: &RawStorage, p: &mut Problems<'_>) -> Option<PostgresConfig> {
    for (key, set) in [
        ("path", raw.path != default::STORAGE_PATH),
        ("synchronous", raw.synchronous != default::SYNCHRONOUS),
        ("max_size", raw.max_size.is_some()),
    ] {
        if set {
            p.at(
                &["storage", key],
                "is SQLite's and means nothing with storage.backend = \"postgres\": remove it",
            );
        }
    }
    if raw.password_file.as_deref() == Some("") {
        p.at(&["storage", "password_file"], "must not be empty when set");
    }
    let Some(text) = raw.url.as_deref() else {
        p.at(
            &["storage", "url"],
            "is required with storage.backend = \"postgres\" \
             (e.g. \"postgres://esmd@localhost:5432/esmd\")",
        );
        return None;
    };
    let mut url = match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => u,
        Ok(u) => {
            p.at(
                &["storage", "url"],
                format!(
                    "the scheme {:?} is not \"postgres\" or \"postgresql\" \
                     (e.g. \"postgres://esmd@localhost:5432/esmd\")",
                    u.scheme()
                ),
            );
            return None;
        }
        Err(e) => {
            // The text is not shown: it may hold a password.
            p.at(
                &["storage", "url"],
                format!(
                    "is not a URL ({e}); expected e.g. \"postgres://esmd@localhost:5432/esmd\""
                ),
            );
            return None;
        }
    };
    let in_url = url.password().map(|pw| {
        percent_encoding::percent_decode_str(pw)
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = url.set_password(None);
    if let Err(e) = sqlx::postgres::PgConnectOptions::from_str(url.as_str()) {
        p.at(
            &["storage", "url"],
            format!("{} is not a PostgreSQL connection URL: {e}", url.as_str()),
        );
        return None;
    }
    if url.host_str().is_none_or(str::is_empty) {
        p.at(
            &["storage", "url"],
            format!("{} names no host", url.as_str()),
        );
    }
    if in_url.is_some() && raw.password_file.is_some() {
        p.at(
            &["storage", "password_file"],
            "cannot be set together with a password in storage.url: set one of them",
        );
    }
    let (password, password_from) = match (in_url, &raw.password_file) {
        (Some(pw), _) => (Some(Password(pw)), PasswordSource::Url),
        (None, Some(file)) => (None, PasswordSource::File(PathBuf::from(file))),
        (None, None) => (None, PasswordSource::None),
    };
    Some(PostgresConfig {
        url: url.into(),
        password,
        password_from,
    })
}

/// Reads `storage.password_file` (resolved against `cwd`), trimmed of surrounding whitespace,
/// or else takes `PGPASSWORD`, when the URL holds no password. An unreadable or blank file is a
/// problem naming the key and the path, never the contents.
pub(super) fn read_password(
    config: &mut Config,
    cwd: &Path,
    env: &Env,
    problems: &mut Vec<String>,
) {
    let Some(pg) = &mut config.storage.postgres else {
        return;
    };
    match &pg.password_from {
        PasswordSource::File(file) => {
            let path = cwd.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) if text.trim().is_empty() => problems.push(format!(
                    "storage.password_file: {} is empty",
                    path.display()
                )),
                Ok(text) => {
                    pg.password = Some(Password(text.trim().to_owned()));
                    pg.password_from = PasswordSource::File(path);
                }
                Err(e) => problems.push(format!(
                    "storage.password_file: cannot read {}: {e}",
                    path.display()
                )),
            }
        }
        PasswordSource::None => {
            if let Some(pw) = env.get("PGPASSWORD") {
                pg.password = Some(Password(pw.to_owned()));
                pg.password_from = PasswordSource::Environment;
            }
        }
        PasswordSource::Url | PasswordSource::Environment => {}
    }
}

/// What `storage.url` renders as: the URL with its password (masked by the caller unless
/// `--show-secrets`) when the password came from the URL, else the URL as kept.
pub(super) fn render_url(pg: &PostgresConfig) -> String {
    match (&pg.password_from, &pg.password) {
        (PasswordSource::Url, Some(pw)) => match url::Url::parse(&pg.url) {
            Ok(mut u) => {
                let _ = u.set_password(Some(pw.expose()));
                u.into()
            }
            Err(_) => pg.url.clone(),
        },
        _ => pg.url.clone(),
    }
}

impl super::StorageConfig {
    /// The PostgreSQL password, if any.
    pub fn password(&self) -> Option<&Password> {
        self.postgres.as_ref().and_then(|pg| pg.password.as_ref())
    }

    /// Whether `self` and `other` differ in more than the PostgreSQL password (what a reload
    /// cannot apply without a restart; a new password it can).
    pub fn differs_beyond_password(&self, other: &super::StorageConfig) -> bool {
        let without = |s: &super::StorageConfig| {
            let mut s = s.clone();
            if let Some(pg) = &mut s.postgres {
                pg.password = None;
            }
            s
        };
        without(self) != without(other)
    }
}

impl Config {
    /// Replaces every secret by [`MASKED`](super::MASKED) (what `esmd check-config` prints
    /// without `--show-secrets`): `server.auth_token` and a password given in `storage.url`.
    /// A secret read from a file is rendered as that file anyway, and `PGPASSWORD` not at all.
    pub fn mask_secrets(&mut self) {
        if self.server.auth_token.is_some() {
            self.server.auth_token = Some(super::MASKED.to_owned());
        }
        if let Some(pg) = &mut self.storage.postgres {
            if pg.password.is_some() {
                pg.password = Some(Password(super::MASKED.to_owned()));
            }
        }
    }
}
