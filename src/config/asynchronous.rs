//! The keys of asynchronous (Event) invocation that every function type has, as Lambda's
//! `PutFunctionEventInvokeConfig` does: `max_retry_attempts`, `max_event_age`, `destinations` and
//! esmd's own `retry_backoff`. Read here, used by asynchronous invocation.

use std::time::Duration;

use super::raw::{default, RawDestinations};
use super::read::Problems;
use crate::domain::queue::QueueName;

/// Lambda's bounds for `MaximumRetryAttempts`.
const MAX_RETRY_ATTEMPTS: u32 = 2;
/// Lambda's bounds for `MaximumEventAgeInSeconds`: 60 s to 6 h.
const MIN_EVENT_AGE: Duration = Duration::from_secs(60);
const MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);
/// The longest first retry backoff.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(3600);

/// `[functions.NAME]`'s asynchronous invocation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncConfig {
    /// `max_retry_attempts`: retries after a function error, 0..=2 (default 2).
    pub max_retry_attempts: u32,
    /// `max_event_age`: an event older than this is dropped (or sent on failure), 60s..=6h
    /// (default 6h).
    pub max_event_age: Duration,
    /// `destinations.on_success`: the queue a success record goes to.
    pub on_success: Option<QueueName>,
    /// `destinations.on_failure`: the queue a failure record goes to.
    pub on_failure: Option<QueueName>,
    /// `retry_backoff`: the wait before the first retry, doubled for each next (default 1s).
    pub retry_backoff: Duration,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        AsyncConfig {
            max_retry_attempts: default::MAX_RETRY_ATTEMPTS,
            max_event_age: default::MAX_EVENT_AGE,
            on_success: None,
            on_failure: None,
            retry_backoff: default::RETRY_BACKOFF,
        }
    }
}

/// The raw keys, as each function type's table carries them.
pub(super) struct RawAsync {
    pub max_retry_attempts: u32,
    pub max_event_age: Duration,
    pub destinations: Option<RawDestinations>,
    pub retry_backoff: Duration,
}

/// Checks the keys of `functions.NAME`; a bad value is reported and replaced by its default.
pub(super) fn check(name: &str, raw: RawAsync, p: &mut Problems<'_>) -> AsyncConfig {
    let mut out = AsyncConfig {
        max_retry_attempts: raw.max_retry_attempts,
        max_event_age: raw.max_event_age,
        on_success: None,
        on_failure: None,
        retry_backoff: raw.retry_backoff,
    };
    if raw.max_retry_attempts > MAX_RETRY_ATTEMPTS {
        p.at(
            &["functions", name, "max_retry_attempts"],
            format!(
                "{} is out of range: Lambda allows 0 to {MAX_RETRY_ATTEMPTS}",
                raw.max_retry_attempts
            ),
        );
    }
    if !(MIN_EVENT_AGE..=MAX_EVENT_AGE).contains(&raw.max_event_age) {
        p.at(
            &["functions", name, "max_event_age"],
            format!(
                "{} is out of range: Lambda allows 1m to 6h",
                humantime::format_duration(raw.max_event_age)
            ),
        );
    }
    if raw.retry_backoff.is_zero() || raw.retry_backoff > MAX_RETRY_BACKOFF {
        p.at(
            &["functions", name, "retry_backoff"],
            format!(
                "{} is out of range: use more than 0s and at most 1h",
                humantime::format_duration(raw.retry_backoff)
            ),
        );
    }
    let destinations = raw.destinations.unwrap_or_default();
    for (key, value, slot) in [
        ("on_success", destinations.on_success, &mut out.on_success),
        ("on_failure", destinations.on_failure, &mut out.on_failure),
    ] {
        let Some(value) = value else { continue };
        match QueueName::parse(&value) {
            Ok(queue) => *slot = Some(queue),
            Err(e) => p.at(
                &["functions", name, "destinations", key],
                format!("{value:?} is not a queue name: {}", e.message),
            ),
        }
    }
    out
}

/// The raw keys of `config`, for rendering.
pub(super) fn render(config: &AsyncConfig) -> RawAsync {
    let destinations =
        (config.on_success.is_some() || config.on_failure.is_some()).then(|| RawDestinations {
            on_success: config.on_success.as_ref().map(ToString::to_string),
            on_failure: config.on_failure.as_ref().map(ToString::to_string),
        });
    RawAsync {
        max_retry_attempts: config.max_retry_attempts,
        max_event_age: config.max_event_age,
        destinations,
        retry_backoff: config.retry_backoff,
    }
}
