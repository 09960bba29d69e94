//! Queue URLs and ARNs. A URL is `http://<host>/<account_id>/<name>`, the host being the one the
//! client addressed (its `Host` header) or else the listen address; a `QueueUrl` is resolved by
//! its last two path segments whatever its host (or is a bare queue name, which AWS accepts too),
//! and a foreign account id names no queue here.
//! ARNs are `arn:aws:sqs:<region>:<account_id>:<name>`.

use axum::http::{header, HeaderMap};

use super::Ctx;
use crate::domain::queue::QueueName;
use crate::domain::Rejection;

/// The `Host` header, if it is a plausible `host[:port]` (anything else is ignored rather than
/// echoed into URLs).
pub(crate) fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let plausible = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    plausible.then(|| host.to_owned())
}

impl Ctx {
    /// The URL of queue `name`.
    pub(crate) fn queue_url(&self, name: &QueueName) -> String {
        format!(
            "http://{}/{}/{}",
            self.host, self.state.server.account_id, name
        )
    }

    /// The ARN of queue `name`.
    pub(crate) fn queue_arn(&self, name: &QueueName) -> String {
        format!(
            "arn:aws:sqs:{}:{}:{}",
            self.state.server.region, self.state.server.account_id, name
        )
    }

    /// The queue a `QueueUrl` names: its last two path segments are the account id and the
    /// name, or, as AWS also accepts, it is the queue's bare name (no `/`). Anything else is
    /// `QueueDoesNotExist`.
    pub(crate) fn resolve(&self, url: &str) -> Result<QueueName, Rejection> {
        if !url.is_empty() && !url.contains('/') {
            return QueueName::parse(url).map_err(|_| Rejection::no_queue());
        }
        let path = url.split(['?', '#']).next().unwrap_or("");
        let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
        let (Some(name), Some(account)) = (segments.next(), segments.next()) else {
            return Err(Rejection::no_queue());
        };
        if account != self.state.server.account_id {
            return Err(Rejection::no_queue());
        }
        QueueName::parse(name).map_err(|_| Rejection::no_queue())
    }

    /// The queue an ARN names, if it is an SQS ARN of this region and account.
    pub(crate) fn resolve_arn(&self, arn: &str) -> Option<QueueName> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _partition, "sqs", region, account, name]
                if *region == self.state.server.region
                    && *account == self.state.server.account_id =>
            {
                QueueName::parse(name).ok()
            }
            _ => None,
        }
    }
}
