//! The rules of `[functions.NAME]`: each function's type and its settings (an `http` URL, a
//! `command` argv, the timeout up to Lambda's 900 s), each problem naming its full key. A
//! `runtime`'s own keys are checked in `runtime`, the asynchronous invocation keys every type
//! shares in `asynchronous`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::asynchronous::{self, RawAsync};
use super::command::check_command;
use super::raw::{RawCommand, RawFunction, RawHttp, RawLogFunction};
use super::read::Problems;
use super::{runtime, FunctionConfig, FunctionTarget};

/// Longest function timeout (Lambda's maximum).
const MAX_FUNCTION_TIMEOUT: Duration = Duration::from_secs(900);

pub(super) fn functions(
    raw: BTreeMap<String, RawFunction>,
    p: &mut Problems<'_>,
) -> BTreeMap<String, FunctionConfig> {
    let mut out = BTreeMap::new();
    for (name, f) in raw {
        // Lambda's function-name rule; the name is also AWS_LAMBDA_FUNCTION_NAME and a label.
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            p.at(
                &["functions", &name],
                "invalid function name: use 1 to 64 letters, digits, hyphens or underscores",
            );
        }
        let (timeout, target, raw_async) = match f {
            RawFunction::Http(RawHttp {
                url,
                timeout,
                max_retry_attempts,
                max_event_age,
                destinations,
                retry_backoff,
            }) => {
                if !is_http_url(&url) {
                    p.at(
                        &["functions", &name, "url"],
                        format!("{url:?} is not an http:// or https:// URL"),
                    );
                }
                let raw = RawAsync {
                    max_retry_attempts,
                    max_event_age,
                    destinations,
                    retry_backoff,
                };
                (timeout, FunctionTarget::Http { url }, raw)
            }
            RawFunction::Command(RawCommand {
                command,
                env,
                working_dir,
                timeout,
                max_retry_attempts,
                max_event_age,
                destinations,
                retry_backoff,
            }) => {
                check_command(&name, &command, &env, "env", working_dir.as_deref(), p);
                let working_dir = working_dir.map(PathBuf::from);
                let raw = RawAsync {
                    max_retry_attempts,
                    max_event_age,
                    destinations,
                    retry_backoff,
                };
                (
                    timeout,
                    FunctionTarget::Command {
                        argv: command,
                        env,
                        working_dir,
                    },
                    raw,
                )
            }
            RawFunction::Log(RawLogFunction {
                timeout,
                max_retry_attempts,
                max_event_age,
                destinations,
                retry_backoff,
            }) => {
                let raw = RawAsync {
                    max_retry_attempts,
                    max_event_age,
                    destinations,
                    retry_backoff,
                };
                (timeout, FunctionTarget::Log, raw)
            }
            RawFunction::Runtime(r) => {
                let raw = RawAsync {
                    max_retry_attempts: r.max_retry_attempts,
                    max_event_age: r.max_event_age,
                    destinations: r.destinations.clone(),
                    retry_backoff: r.retry_backoff,
                };
                let timeout = r.timeout;
                (
                    timeout,
                    FunctionTarget::Runtime(runtime::check(&name, r, p)),
                    raw,
                )
            }
        };
        let async_config = asynchronous::check(&name, raw_async, p);
        if timeout.is_zero() {
            p.at(&["functions", &name, "timeout"], "must be greater than 0s");
        } else if timeout > MAX_FUNCTION_TIMEOUT {
            p.at(
                &["functions", &name, "timeout"],
                format!(
                    "{} is above Lambda's maximum of 15m",
                    humantime::format_duration(timeout)
                ),
            );
        }
        out.insert(
            name,
            FunctionConfig {
                timeout,
                target,
                async_config,
            },
        );
    }
    out
}

fn is_http_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_http_url(
            "http://127.0.0.1:9000/2015-03-31/functions/f/invocations"
        ));
        assert!(is_http_url("https://example.com"));
        assert!(!is_http_url("ftp://example.com"));
        assert!(!is_http_url("127.0.0.1:9000"));
        assert!(!is_http_url("http://"));
    }
}
