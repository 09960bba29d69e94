//! The remote half of `[mappings.NAME]`: `queue_url`, `endpoint` and `region` of a mapping that
//! polls an SQS queue elsewhere (AWS, or another esmd) instead of a queue of this esmd
//! (docs/interface.md §2, README "A mapping on a remote SQS queue").
//!
//! The URL's path ends in `<account>/<name>` (`https://sqs.eu-west-1.amazonaws.com/123456789012/orders`,
//! or esmd's `http://host/<account>/<name>` and `http://host/queue/<region>/<account>/<name>`);
//! the name says whether the queue is FIFO. The region is `region` when given, else the label of
//! an `sqs.<region>.…` host or of esmd's `/queue/<region>/` path, else `server.region`.

use url::Url;

use super::raw::RawMapping;
use super::read::Problems;
use super::RemoteQueue;
use crate::domain::queue::{is_region, QueueName};

/// Checks a remote mapping's keys; `None` (with the problems pushed) when the queue cannot be
/// polled as written.
pub(super) fn remote(
    name: &str,
    url: &str,
    m: &RawMapping,
    server_region: &str,
    p: &mut Problems<'_>,
) -> Option<(QueueName, RemoteQueue)> {
    let at_url = ["mappings", name, "queue_url"];
    let endpoint = m.endpoint.as_deref().and_then(|e| match http_url(e) {
        Ok(_) => Some(e.to_owned()),
        Err(why) => {
            p.at(
                &["mappings", name, "endpoint"],
                format!(
                    "{e:?} is not an endpoint such as https://sqs.eu-west-1.amazonaws.com: {why}"
                ),
            );
            None
        }
    });
    let endpoint_bad = m.endpoint.is_some() && endpoint.is_none();
    if let Some(r) = m.region.as_deref() {
        if !is_region(r) {
            p.at(
                &["mappings", name, "region"],
                format!("{r:?} is not a region name such as eu-west-1"),
            );
        }
    }
    let parsed = match parse_url(url) {
        Ok(parsed) => parsed,
        Err(why) => {
            p.at(
                &at_url,
                format!(
                    "{url:?} is not a queue URL such as \
                     https://sqs.eu-west-1.amazonaws.com/123456789012/orders: {why}"
                ),
            );
            return None;
        }
    };
    if endpoint_bad {
        return None;
    }
    let region = m
        .region
        .clone()
        .or(parsed.region)
        .unwrap_or_else(|| server_region.to_owned());
    // A queue that is not on AWS (ElasticMQ, another esmd...) is reached at its URL's own origin
    // unless `endpoint` says otherwise; AWS's hosts are left to the SDK's endpoint resolution.
    let endpoint = endpoint.or(parsed.origin);
    Some((
        parsed.name,
        RemoteQueue {
            url: url.to_owned(),
            endpoint,
            region,
            account_id: parsed.account_id,
        },
    ))
}

/// What a queue URL says.
#[derive(Debug, PartialEq)]
struct QueueUrl {
    name: QueueName,
    account_id: String,
    region: Option<String>,
    /// `scheme://host[:port]` of a URL whose host is not AWS's.
    origin: Option<String>,
}

/// An absolute `http` or `https` URL with a host.
fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme is {:?}, not http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("it has a query or a fragment".to_owned());
    }
    Ok(url)
}

/// Reads the account, name and region (if the URL says one) of a queue URL.
fn parse_url(s: &str) -> Result<QueueUrl, String> {
    let url = http_url(s)?;
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|seg| !seg.is_empty()).collect())
        .unwrap_or_default();
    let [prefix @ .., account, queue] = segments.as_slice() else {
        return Err("its path is not /<account>/<queue name>".to_owned());
    };
    if !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{account:?} is not an account id"));
    }
    let name = QueueName::parse(queue).map_err(|e| format!("queue name {queue:?}: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let from_host = host
        .strip_prefix("sqs.")
        .and_then(|rest| rest.split('.').next())
        .filter(|r| is_region(r) && host.matches('.').count() >= 2);
    let from_path = match prefix {
        [] => None,
        ["queue", region] if is_region(region) => Some(*region),
        _ => return Err("its path is not /<account>/<queue name>".to_owned()),
    };
    let aws = [".amazonaws.com", ".amazonaws.com.cn", ".api.aws"]
        .iter()
        .any(|suffix| host.ends_with(suffix));
    Ok(QueueUrl {
        name,
        account_id: (*account).to_owned(),
        region: from_path.or(from_host).map(str::to_owned),
        origin: (!aws).then(|| url.origin().ascii_serialization()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_aws_and_esmd_queue_urls() {
        let aws = parse_url("https://sqs.eu-west-1.amazonaws.com/123456789012/orders").unwrap();
        assert_eq!(aws.name.as_str(), "orders");
        assert_eq!(aws.account_id, "123456789012");
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(aws.origin, None, "AWS's endpoints are the SDK's to resolve");
        let local = parse_url("http://127.0.0.1:9324/000000000000/jobs.fifo").unwrap();
        assert!(local.name.is_fifo());
        assert_eq!(local.region, None);
        assert_eq!(local.origin.as_deref(), Some("http://127.0.0.1:9324"));
        let regional = parse_url("http://localhost:9324/queue/ap-south-1/000000000000/q").unwrap();
        assert_eq!(regional.region.as_deref(), Some("ap-south-1"));
        assert_eq!(regional.name.as_str(), "q");
    }

    #[test]
    fn refuses_what_names_no_queue() {
        for bad in [
            "sqs.eu-west-1.amazonaws.com/123456789012/orders",
            "ftp://host/123456789012/orders",
            "https://host/orders",
            "https://host/acct/orders",
            "https://host/123456789012/bad%20name",
            "https://host/a/b/123456789012/orders",
            "https://host/123456789012/orders?x=1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
