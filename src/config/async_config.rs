//! The asynchronous-invocation settings of `[functions.NAME]` (docs/semantics.md §11): how often an
//! `Event` invocation is retried after a function error, how long it may wait, where its outcome
//! goes (`destinations = { on_success, on_failure }`, esmd queues) and the first retry's backoff.
//! Every function type takes these keys; each has Lambda's default.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::read::Problems;
use crate::domain::queue::QueueName;

/// Most retries after the first attempt (Lambda's `MaximumRetryAttempts` range is 0..=2).
pub const MAX_RETRY_ATTEMPTS: u32 = 2;
/// Shortest `max_event_age` (Lambda's `MaximumEventAgeInSeconds` minimum, 60 s).
pub const MIN_EVENT_AGE: Duration = Duration::from_secs(60);
/// Longest and default `max_event_age` (6 h, as Lambda).
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);
/// Default first retry backoff.
pub const RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Longest first retry backoff.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(3600);

/// What happens to a function's `Event` invocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncConfig {
    /// `max_retry_attempts`: retries after a function error or timeout, 0..=2 (default 2).
    pub max_retry_attempts: u32,
    /// `max_event_age`: an event older than this is not run again (60s..6h, default 6h).
    pub max_event_age: Duration,
    /// `destinations.on_success`: the queue a success record is sent to.
    pub on_success: Option<QueueName>,
    /// `destinations.on_failure`: the queue a failure record is sent to.
    pub on_failure: Option<QueueName>,
    /// `retry_backoff`: the wait before the first retry, doubled for each further one
    /// (default 1s; Lambda waits about a minute, which a developer at a desk should not).
    pub retry_backoff: Duration,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        AsyncConfig {
            max_retry_attempts: MAX_RETRY_ATTEMPTS,
            max_event_age: MAX_EVENT_AGE,
            on_success: None,
            on_failure: None,
            retry_backoff: RETRY_BACKOFF,
        }
    }
}

/// The raw keys, as every function type's table carries them (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestinations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

impl RawDestinations {
    pub(super) fn is_empty(&self) -> bool {
        self.on_success.is_none() && self.on_failure.is_none()
    }
}

/// The four keys of a function's table that this file reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct RawAsync {
    pub max_retry_attempts: Option<u32>,
    pub max_event_age: Option<Duration>,
    pub destinations: Option<RawDestinations>,
    pub retry_backoff: Option<Duration>,
}

/// Checks the keys of `functions.NAME`, naming each bad one.
pub(super) fn parse(name: &str, raw: RawAsync, p: &mut Problems<'_>) -> AsyncConfig {
    let mut out = AsyncConfig::default();
    if let Some(n) = raw.max_retry_attempts {
        if n > MAX_RETRY_ATTEMPTS {
            p.at(
                &["functions", name, "max_retry_attempts"],
                format!("{n} is out of range: Lambda allows 0 to {MAX_RETRY_ATTEMPTS}"),
            );
        }
        out.max_retry_attempts = n.min(MAX_RETRY_ATTEMPTS);
    }
    if let Some(age) = raw.max_event_age {
        if !(MIN_EVENT_AGE..=MAX_EVENT_AGE).contains(&age) {
            p.at(
                &["functions", name, "max_event_age"],
                format!(
                    "{} is out of range: Lambda allows 1m to 6h",
                    humantime::format_duration(age)
                ),
            );
        }
        out.max_event_age = age;
    }
    if let Some(backoff) = raw.retry_backoff {
        if backoff.is_zero() || backoff > MAX_RETRY_BACKOFF {
            p.at(
                &["functions", name, "retry_backoff"],
                format!(
                    "{} is out of range: use more than 0s and at most 1h",
                    humantime::format_duration(backoff)
                ),
            );
        }
        out.retry_backoff = backoff;
    }
    let destinations = raw.destinations.unwrap_or_default();
    let queue = |key: &str, given: Option<String>, p: &mut Problems<'_>| {
        let given = given?;
        match QueueName::parse(&given) {
            Ok(q) => Some(q),
            Err(e) => {
                p.at(
                    &["functions", name, "destinations", key],
                    format!("{given:?} is not a queue name: {e}"),
                );
                None
            }
        }
    };
    out.on_success = queue("on_success", destinations.on_success, p);
    out.on_failure = queue("on_failure", destinations.on_failure, p);
    out
}

/// The raw keys that render `config` (only what differs from the defaults).
pub(super) fn render(config: &AsyncConfig) -> RawAsync {
    let d = AsyncConfig::default();
    let destinations = RawDestinations {
        on_success: config.on_success.as_ref().map(ToString::to_string),
        on_failure: config.on_failure.as_ref().map(ToString::to_string),
    };
    RawAsync {
        max_retry_attempts: (config.max_retry_attempts != d.max_retry_attempts)
            .then_some(config.max_retry_attempts),
        max_event_age: (config.max_event_age != d.max_event_age).then_some(config.max_event_age),
        destinations: (!destinations.is_empty()).then_some(destinations),
        retry_backoff: (config.retry_backoff != d.retry_backoff).then_some(config.retry_backoff),
    }
}
