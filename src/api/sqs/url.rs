//! Queue URLs and ARNs, per region (docs/interface.md §3.7).
//!
//! The region of a request is its SigV4 credential scope's (SDKs sign every request, whether or
//! not esmd checks signatures; a presigned URL carries it in `X-Amz-Credential`), else the region label of its `Host` (`sqs.<region>.…` or
//! `<region>.queue.…`), else `server.region`. A queue name in a request (CreateQueue,
//! GetQueueUrl, a bare-name `QueueUrl`) names that region's queue.
//!
//! A queue's URL keeps the host the client addressed (its `Host` header, else the listen
//! address). If that host carries a region label, the queue's region replaces it
//! (`http://sqs.<region>.<rest>/<account>/<name>`), as AWS's endpoints are named. Otherwise a
//! default-region queue's URL is `http://<host>/<account>/<name>` (what esmd always answered),
//! and another region's is `http://<host>/queue/<region>/<account>/<name>`, a path esmd serves
//! too.
//!
//! A `QueueUrl` names the region its path (`/queue/<region>/…`) or host label gives; a URL with
//! neither (the plain `http://<host>/<account>/<name>`) names the request's region, so that a
//! client configured for one region reaches its own queues with any URL that does not say
//! otherwise. Its account must be this esmd's. ARNs are `arn:aws:sqs:<region>:<account>:<name>`
//! of the queue's region; an ARN names the queue of its region.

use axum::http::{header, HeaderMap};

use super::Ctx;
use crate::api::scope::scope_region;
use crate::domain::queue::{is_region, QueueName};
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

/// The region of a request (`query` is its URI's query string): its credential scope's, else
/// its host's label, else `""` (the default region); `default` (`server.region`) is also
/// written `""`.
pub(crate) fn request_region(
    headers: &HeaderMap,
    query: Option<&str>,
    host: &str,
    default: &str,
) -> String {
    let signed = scope_region(headers, query).filter(|r| is_region(r));
    let region = signed
        .as_deref()
        .or_else(|| host_region(host).map(|(_, r, _)| r))
        .unwrap_or("");
    local(region, default).to_owned()
}

/// `""` for the default region, else `region`.
fn local<'a>(region: &'a str, default: &str) -> &'a str {
    if region == default {
        ""
    } else {
        region
    }
}

/// Whether a DNS label is a region's name as AWS spells them: letters, then hyphenated parts,
/// the last of them digits (`us-east-1`, `us-gov-west-1`); `localhost` is not one.
fn looks_like_region(label: &str) -> bool {
    let parts: Vec<&str> = label.split('-').collect();
    is_region(label)
        && parts.len() >= 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A host with a region label, split around it: `sqs.<region>.<rest>` or
/// `<region>.queue.<rest>`, as `(before, region, after)`.
fn host_region(host: &str) -> Option<(&str, &str, &str)> {
    if let Some(rest) = host.strip_prefix("sqs.") {
        if let Some((label, _)) = rest.split_once('.') {
            if looks_like_region(label) {
                return Some(("sqs.", label, &rest[label.len()..]));
            }
        }
    }
    let (label, after) = host.split_once('.')?;
    (looks_like_region(label) && after.starts_with("queue."))
        .then(|| ("", label, &host[label.len()..]))
}

impl Ctx {
    /// The queue a plain name names in this request: the request's region's.
    pub(crate) fn named(&self, name: QueueName) -> QueueName {
        name.in_region(&self.region)
    }

    /// The URL of queue `name`.
    pub(crate) fn queue_url(&self, name: &QueueName) -> String {
        let account = &self.state.server.account_id;
        let region = name.region_or(&self.state.server.region);
        match host_region(&self.host) {
            Some((before, _, after)) => {
                format!("http://{before}{region}{after}/{account}/{}", name.name())
            }
            None if name.region().is_empty() => {
                format!("http://{}/{account}/{}", self.host, name.name())
            }
            None => format!(
                "http://{}/queue/{region}/{account}/{}",
                self.host,
                name.name()
            ),
        }
    }

    /// The ARN of queue `name`.
    pub(crate) fn queue_arn(&self, name: &QueueName) -> String {
        format!(
            "arn:aws:sqs:{}:{}:{}",
            name.region_or(&self.state.server.region),
            self.state.server.account_id,
            name.name()
        )
    }

    /// The queue a `QueueUrl` names: its last two path segments are the account id and the
    /// name, the region that of its path (`/queue/<region>/…`) or host label, else the
    /// request's; or, as AWS also accepts, it is the queue's bare name (no `/`), of the
    /// request's region. Anything else is `QueueDoesNotExist`.
    pub(crate) fn resolve(&self, url: &str) -> Result<QueueName, Rejection> {
        if !url.is_empty() && !url.contains('/') {
            return QueueName::parse(url)
                .map(|n| self.named(n))
                .map_err(|_| Rejection::no_queue());
        }
        let url = url.split(['?', '#']).next().unwrap_or("");
        let lower = url
            .get(..8)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let rest = if lower.starts_with("http://") {
            &url[7..]
        } else if lower.starts_with("https://") {
            &url[8..]
        } else {
            url
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let [.., account, name] = segments[..] else {
            return Err(Rejection::no_queue());
        };
        if account != self.state.server.account_id {
            return Err(Rejection::no_queue());
        }
        let name = QueueName::parse(name).map_err(|_| Rejection::no_queue())?;
        let from_path = match segments[..] {
            [.., "queue", region, _, _] if is_region(region) => Some(region),
            _ => None,
        };
        let region = from_path.or_else(|| host_region(host).map(|(_, r, _)| r));
        Ok(match region {
            Some(r) => name.in_region(local(r, &self.state.server.region)),
            None => self.named(name),
        })
    }

    /// The queue an ARN names, if it is an SQS ARN of this account (of any region: that
    /// region's queue).
    pub(crate) fn resolve_arn(&self, arn: &str) -> Option<QueueName> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _partition, "sqs", region, account, name]
                if is_region(region) && *account == self.state.server.account_id =>
            {
                let name = QueueName::parse(name).ok()?;
                Some(name.in_region(local(region, &self.state.server.region)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_labels_are_found_in_aws_shaped_hosts_only() {
        assert_eq!(
            host_region("sqs.us-east-1.localhost.localstack.cloud:4566"),
            Some(("sqs.", "us-east-1", ".localhost.localstack.cloud:4566"))
        );
        assert_eq!(
            host_region("eu-west-1.queue.example.com"),
            Some(("", "eu-west-1", ".queue.example.com"))
        );
        assert_eq!(host_region("sqs.localhost:9324"), None);
        assert_eq!(host_region("localhost:9324"), None);
        assert_eq!(host_region("127.0.0.1:9324"), None);
        assert_eq!(host_region("eu-west-1.example.com"), None);
        assert!(looks_like_region("us-gov-west-1"));
        assert!(!looks_like_region("localhost"));
        assert!(!looks_like_region("us-east"));
    }
}
