//! The HTTP client behind `esmd send`, `esmd queues`, `esmd peek`, `esmd explain` and
//! `esmd redrive` (docs/interface.md §1; peek and explain in `peek.rs`, redrive in
//! `redrive.rs`): it talks to a running daemon through the REST shim
//! (`POST /queues/{name}/messages`, `GET /queues`), or for redrive the SQS JSON protocol, and
//! turns the answers into what the commands print. When no daemon answers it says so, naming the
//! endpoint, rather than showing a bare connection error.

mod peek;
mod redrive;

use std::time::Duration;

pub use peek::{explain, peek};
pub use redrive::{redrive, RedriveArgs};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

/// How long to wait for the daemon to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a whole answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One message for `esmd send`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendArgs {
    /// `--queue`
    pub queue: String,
    /// The body (the argument, or stdin for `-`).
    pub body: String,
    /// `--group`: the FIFO message group.
    pub group: Option<String>,
    /// `--dedup`: the FIFO deduplication id.
    pub dedup: Option<String>,
    /// `--delay`
    pub delay: Option<Duration>,
    /// `--attr NAME=TYPE:VALUE`, repeated; Binary values in base64.
    pub attrs: Vec<String>,
    /// `server.auth_token`, when the daemon requires one.
    pub auth_token: Option<String>,
}

/// Why a command against the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not an HTTP address.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// As given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered: the daemon is most likely not running.
    #[error(
        "cannot reach esmd at {endpoint}: is the daemon running (`esmd run`) and listening there?"
    )]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// The connection error.
        #[source]
        source: reqwest::Error,
    },
    /// The daemon refused the request.
    #[error("esmd refused the request ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code, e.g. `QueueDoesNotExist`.
        code: String,
        /// The daemon's explanation.
        message: String,
    },
    /// A message move task (`esmd redrive`) ended without completing.
    #[error(
        "the redrive ended {status} after moving {moved} of {to_move} messages{}",
        reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
    )]
    MoveTask {
        /// CANCELLED or FAILED.
        status: String,
        /// Messages moved.
        moved: u64,
        /// Messages there were to move when it started.
        to_move: u64,
        /// The task's FailureReason, if it failed.
        reason: Option<String>,
    },
    /// The answer was not what esmd sends: probably not esmd at that address.
    #[error("unexpected answer from {endpoint} (is it esmd?)")]
    BadAnswer {
        /// The endpoint asked.
        endpoint: String,
        /// What went wrong reading it.
        #[source]
        source: reqwest::Error,
    },
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(rename = "messageId")]
    message_id: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueRow {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    visible: u64,
    in_flight: u64,
    delayed: u64,
    oldest_message_age_seconds: Option<f64>,
    dead_letter_queue: Option<String>,
}

/// `http://host:port` from `host:port` or a URL; a wildcard listen address becomes loopback.
fn base_url(endpoint: &str) -> Result<String, ClientError> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let url = with_scheme
        .replacen("://0.0.0.0", "://127.0.0.1", 1)
        .replacen("://[::]", "://[::1]", 1);
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    let host_ok = url.split("://").nth(1).is_some_and(|h| !h.is_empty());
    if scheme_ok && host_ok {
        Ok(url)
    } else {
        Err(ClientError::BadEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "expected host:port or http://host:port".into(),
        })
    }
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters; everything else
/// (`/` included) is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path segment.
fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn http() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|source| ClientError::BadAnswer {
            endpoint: String::new(),
            source,
        })
}

/// Sends the request and checks the status; error answers become [`ClientError::Refused`].
async fn execute(
    endpoint: &str,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ClientError> {
    let resp = req.send().await.map_err(|source| {
        if source.is_connect() || source.is_timeout() {
            ClientError::Unreachable {
                endpoint: endpoint.to_owned(),
                source,
            }
        } else {
            ClientError::BadAnswer {
                endpoint: endpoint.to_owned(),
                source,
            }
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorAnswer>(&text) {
        Ok(e) => (e.error, e.message),
        Err(_) => (
            status.canonical_reason().unwrap_or("error").to_owned(),
            text.chars().take(500).collect(),
        ),
    };
    Err(ClientError::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

/// Sends one message to a running daemon at `endpoint` and returns its message id.
///
/// # Errors
/// [`ClientError::Unreachable`] when no daemon answers, [`ClientError::Refused`] when it
/// rejects the message (unknown queue, invalid attribute...).
pub async fn send(endpoint: &str, req: SendArgs) -> Result<String, ClientError> {
    let base = base_url(endpoint)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(g) = &req.group {
        query.push(("group", g.clone()));
    }
    if let Some(d) = &req.dedup {
        query.push(("dedup", d.clone()));
    }
    if let Some(d) = req.delay {
        query.push(("delay", humantime::format_duration(d).to_string()));
    }
    query.extend(req.attrs.iter().map(|a| ("attr", a.clone())));
    let mut builder = http()?
        .post(format!("{base}/queues/{}/messages", segment(&req.queue)))
        .query(&query)
        .body(req.body);
    if let Some(t) = &req.auth_token {
        builder = builder.bearer_auth(t);
    }
    let resp = execute(&base, builder).await?;
    let answer: SendAnswer = resp.json().await.map_err(|source| ClientError::BadAnswer {
        endpoint: base,
        source,
    })?;
    Ok(answer.message_id)
}

/// Lists the queues of a running daemon at `endpoint` as a printable table.
///
/// # Errors
/// [`ClientError::Unreachable`] when no daemon answers.
pub async fn queues(endpoint: &str) -> Result<String, ClientError> {
    queues_with_token(endpoint, None).await
}

/// [`queues`] for a daemon that requires `server.auth_token`.
///
/// # Errors
/// As [`queues`].
pub async fn queues_with_token(
    endpoint: &str,
    auth_token: Option<&str>,
) -> Result<String, ClientError> {
    let base = base_url(endpoint)?;
    let mut builder = http()?.get(format!("{base}/queues"));
    if let Some(t) = auth_token {
        builder = builder.bearer_auth(t);
    }
    let resp = execute(&base, builder).await?;
    let rows: Vec<QueueRow> = resp.json().await.map_err(|source| ClientError::BadAnswer {
        endpoint: base,
        source,
    })?;
    Ok(table(&rows))
}

fn table(rows: &[QueueRow]) -> String {
    if rows.is_empty() {
        return "no queues\n".to_owned();
    }
    let header = [
        "NAME",
        "TYPE",
        "VISIBLE",
        "IN FLIGHT",
        "DELAYED",
        "OLDEST",
        "DEAD-LETTER QUEUE",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.clone(),
                r.visible.to_string(),
                r.in_flight.to_string(),
                r.delayed.to_string(),
                r.oldest_message_age_seconds.map_or_else(
                    || "-".to_owned(),
                    |s| {
                        humantime::format_duration(Duration::from_secs(s.max(0.0) as u64))
                            .to_string()
                    },
                ),
                r.dead_letter_queue
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |values: [&str; 7]| {
        let mut l = String::new();
        for (i, (v, w)) in values.iter().zip(widths).enumerate() {
            // Counts are right-aligned, text left-aligned.
            if (2..=4).contains(&i) {
                l.push_str(&format!("{v:>w$}  "));
            } else {
                l.push_str(&format!("{v:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &cells {
        line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(base_url("127.0.0.1:9324").unwrap(), "http://127.0.0.1:9324");
        assert_eq!(
            base_url("http://localhost:1/").unwrap(),
            "http://localhost:1"
        );
        assert_eq!(base_url("0.0.0.0:9324").unwrap(), "http://127.0.0.1:9324");
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("").is_err());
    }

    #[test]
    fn segments_keep_only_unreserved_characters() {
        assert_eq!(segment("orders-1_a.b~c"), "orders-1_a.b~c");
        assert_eq!(segment("a b/c%é"), "a%20b%2Fc%25%C3%A9");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [QueueRow {
            name: "orders".into(),
            kind: "standard".into(),
            visible: 12,
            in_flight: 0,
            delayed: 1,
            oldest_message_age_seconds: Some(65.2),
            dead_letter_queue: Some("orders-dlq".into()),
        }];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME    TYPE      VISIBLE  IN FLIGHT"));
        assert!(lines[1].contains("orders-dlq") && lines[1].contains("1m 5s"));
    }
}
