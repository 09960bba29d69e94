//! The rules of `[mappings.NAME]` (docs/semantics.md §1): the queue and function exist, batch size
//! and batching window as Lambda checks them (with AWS's messages), concurrency and payload
//! ranges, the function's timeout against the queue's visibility timeout, one mapping per queue
//! and function, the filter patterns (compiled here, once) and the retry back-off.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::default;
use super::raw::{RawBackoff, RawMapping};
use super::read::{key, Problems, Skipped};
use super::{FunctionConfig, MappingConfig, RemoteQueue};
use crate::domain::backoff::Backoff;
use crate::domain::esm::EsmSettings;
use crate::domain::filter::{Filters, Pattern, PatternError};
use crate::domain::queue::{QueueKind, QueueName, QueueSettings};

/// Largest `batch_size` on a standard queue (Lambda's `BatchSize`).
const MAX_BATCH_SIZE_STANDARD: u32 = 10_000;
/// Largest `batch_size` on a FIFO queue.
pub(crate) const MAX_BATCH_SIZE_FIFO: u32 = 10;
/// Largest `batch_size` allowed without a batching window.
pub(crate) const MAX_BATCH_SIZE_WITHOUT_WINDOW: u32 = 10;
/// Longest `batching_window` (Lambda's `MaximumBatchingWindowInSeconds`).
pub(crate) const MAX_BATCHING_WINDOW: Duration = Duration::from_secs(300);
/// Smallest `max_payload`: room for the event envelope and a small message. A cap this low is
/// only useful for tests; anything smaller could not hold one record.
const MIN_MAX_PAYLOAD: u64 = 1024;
/// Largest `max_payload`: Lambda's synchronous invocation payload limit (6 MiB).
const MAX_MAX_PAYLOAD: u64 = 6_291_456;
/// `max_concurrency` range (Lambda's `ScalingConfig.MaximumConcurrency`).
const MIN_CONCURRENCY: u32 = 2;
const MAX_CONCURRENCY: u32 = 1000;
/// `max_filters` range: Lambda's default quota, and the most it can be raised to.
pub(crate) const MIN_MAX_FILTERS: u32 = 5;
const MAX_MAX_FILTERS: u32 = 10;
/// Longest `retry_backoff.max`: SQS's longest visibility timeout.
const MAX_BACKOFF: Duration = Duration::from_secs(12 * 60 * 60);
/// `retry_backoff.multiplier` range.
const MAX_MULTIPLIER: f64 = 100.0;
/// Validates every mapping against the validated queues and functions.
pub(super) fn mappings(
    raw: BTreeMap<String, RawMapping>,
    queues: &BTreeMap<QueueName, QueueSettings>,
    functions: &BTreeMap<String, FunctionConfig>,
    server_region: &str,
    skipped: &Skipped,
    p: &mut Problems<'_>,
) -> BTreeMap<String, MappingConfig> {
    let mut out = BTreeMap::new();
    // (queue, function) -> the first mapping that connects them.
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for (name, m) in raw {
        let name_ok = (1..=128).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            p.at(
                &["mappings", &name],
                "invalid mapping name: use 1 to 128 letters, digits, '.', '-' or '_'",
            );
        }
        let (queue, remote) = source(&name, &m, server_region, p);
        let local = queue.as_ref().filter(|_| remote.is_none());
        let settings = local.and_then(|q| queues.get(q));
        if let Some(q) = local {
            if settings.is_none() && !skipped.contains("queues", q.as_str()) {
                p.at(
                    &["mappings", &name, "queue"],
                    format!("no queue named {:?} is configured", q.as_str()),
                );
            }
        }
        let function = functions.get(&m.function);
        if function.is_none() && !skipped.contains("functions", &m.function) {
            p.at(
                &["mappings", &name, "function"],
                format!("no function named {:?} is configured", m.function),
            );
        }
        check_batching(&name, &m, queue.as_ref().map(QueueName::kind), p);
        check_limits(&name, &m, p);
        let filters = filters(&name, &m, p);
        let retry_backoff = m.retry_backoff.as_ref().map(|b| backoff(&name, b, p));
        if let (Some(settings), Some(function)) = (settings, function) {
            if function.timeout > settings.visibility_timeout {
                p.at(
                    &["functions", &m.function, "timeout"],
                    format!(
                        "Queue visibility timeout: {} is less than Function timeout: {} (queue {}, {})",
                        seconds(settings.visibility_timeout),
                        seconds(function.timeout),
                        queue.as_ref().map_or("", QueueName::as_str),
                        key(&["mappings", &name])
                    ),
                );
            }
        }
        // A remote queue is known by its URL, a local one by its name.
        let polled = m.queue_url.clone().or_else(|| m.queue.clone());
        let polled = polled.unwrap_or_default();
        if let Some(first) = seen.insert((polled.clone(), m.function.clone()), name.clone()) {
            let what = if m.queue_url.is_some() {
                "queue_url"
            } else {
                "queue"
            };
            p.at(
                &["mappings", &name],
                format!(
                    "an event source mapping with {what} {:?} and function {:?} already exists: {}",
                    polled,
                    m.function,
                    key(&["mappings", &first])
                ),
            );
        }
        if let Some(queue) = queue {
            out.insert(
                name,
                MappingConfig {
                    queue,
                    remote,
                    function: m.function,
                    enabled: m.enabled,
                    batch_size: m.batch_size,
                    batching_window: m.batching_window,
                    max_payload: m.max_payload.0,
                    max_concurrency: m.max_concurrency,
                    report_batch_item_failures: m.report_batch_item_failures,
                    filters,
                    max_filters: m.max_filters,
                    retry_backoff,
                },
            );
        }
    }
    out
}

/// The queue a mapping polls: exactly one of `queue` (a queue of this esmd) or `queue_url` (a
/// remote SQS queue, whose `endpoint` and `region` are checked in `remote.rs`). The name is
/// `None` when what was given is not usable (the problem is reported).
fn source(
    name: &str,
    m: &RawMapping,
    server_region: &str,
    p: &mut Problems<'_>,
) -> (Option<QueueName>, Option<RemoteQueue>) {
    match (&m.queue, &m.queue_url) {
        (Some(_), Some(_)) => {
            p.at(
                &["mappings", name, "queue_url"],
                "set either queue (a queue of this esmd) or queue_url (a remote SQS queue), not both",
            );
            (None, None)
        }
        (None, None) => {
            p.at(
                &["mappings", name],
                "missing queue or queue_url: set queue to a queue of this esmd, or queue_url to \
                 the URL of a remote SQS queue",
            );
            (None, None)
        }
        (Some(queue), None) => {
            for (key, v) in [("endpoint", &m.endpoint), ("region", &m.region)] {
                if v.is_some() {
                    p.at(
                        &["mappings", name, key],
                        format!("{key} is only for a remote queue (queue_url); queue {queue:?} is a queue of this esmd"),
                    );
                }
            }
            match QueueName::parse(queue) {
                Ok(q) => (Some(q), None),
                Err(e) => {
                    p.at(
                        &["mappings", name, "queue"],
                        format!("invalid queue name {queue:?}: {e}"),
                    );
                    (None, None)
                }
            }
        }
        (None, Some(url)) => match super::remote::remote(name, url, m, server_region, p) {
            Some((q, r)) => (Some(q), Some(r)),
            None => (None, None),
        },
    }
}

/// `batch_size` and `batching_window`, with AWS's messages where AWS has one. `kind` is `None`
/// when the queue name is invalid; the standard limits apply then.
fn check_batching(name: &str, m: &RawMapping, kind: Option<QueueKind>, p: &mut Problems<'_>) {
    let fifo = kind == Some(QueueKind::Fifo);
    let (max, what) = if fifo {
        (MAX_BATCH_SIZE_FIFO, "a FIFO queue")
    } else {
        (MAX_BATCH_SIZE_STANDARD, "a standard queue")
    };
    if m.batch_size == 0 {
        p.at(
            &["mappings", name, "batch_size"],
            "0 is below the minimum of 1",
        );
    } else if m.batch_size > max {
        p.at(
            &["mappings", name, "batch_size"],
            format!("{} is above the maximum of {max} for {what}", m.batch_size),
        );
    }
    let window = m.batching_window;
    let at = ["mappings", name, "batching_window"];
    if window.subsec_nanos() != 0 {
        p.at(
            &at,
            format!(
                "{} is not a whole number of seconds",
                humantime::format_duration(window)
            ),
        );
    }
    if window > MAX_BATCHING_WINDOW {
        p.at(
            &at,
            format!(
                "{} is above the maximum of 300s",
                humantime::format_duration(window)
            ),
        );
    }
    if fifo && !window.is_zero() {
        p.at(&at, "Batching window is not supported for FIFO queues");
    } else if !fifo && m.batch_size > MAX_BATCH_SIZE_WITHOUT_WINDOW && window.is_zero() {
        p.at(
            &at,
            format!(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is \
                 greater than 10 (batch_size is {})",
                m.batch_size
            ),
        );
    }
}

fn check_limits(name: &str, m: &RawMapping, p: &mut Problems<'_>) {
    let payload = m.max_payload.0;
    if !(MIN_MAX_PAYLOAD..=MAX_MAX_PAYLOAD).contains(&payload) {
        p.at(
            &["mappings", name, "max_payload"],
            format!("{payload} bytes is outside the range {MIN_MAX_PAYLOAD}..{MAX_MAX_PAYLOAD} (1KiB..6MiB)"),
        );
    }
    if !(MIN_CONCURRENCY..=MAX_CONCURRENCY).contains(&m.max_concurrency) {
        p.at(
            &["mappings", name, "max_concurrency"],
            format!(
                "{} is outside the range {MIN_CONCURRENCY}..{MAX_CONCURRENCY}",
                m.max_concurrency
            ),
        );
    }
}

/// Compiles `filters`, reporting each refused pattern (with its position) and too many of them.
fn filters(name: &str, m: &RawMapping, p: &mut Problems<'_>) -> Filters {
    let at = ["mappings", name, "filters"];
    if !(MIN_MAX_FILTERS..=MAX_MAX_FILTERS).contains(&m.max_filters) {
        p.at(
            &["mappings", name, "max_filters"],
            format!(
                "{} is outside the range {MIN_MAX_FILTERS}..{MAX_MAX_FILTERS} (Lambda's quota of \
                 filters per mapping is 5 and can be raised to 10)",
                m.max_filters
            ),
        );
    } else if m.filters.len() > m.max_filters as usize {
        p.at(
            &at,
            format!(
                "{} patterns is above max_filters, {} (Lambda allows 5 per mapping, up to 10 \
                 when the quota is raised: set max_filters)",
                m.filters.len(),
                m.max_filters
            ),
        );
    }
    let mut patterns = Vec::new();
    for (i, source) in m.filters.iter().enumerate() {
        match Pattern::compile(source) {
            Ok(pattern) => patterns.push(pattern),
            Err(e) => {
                // As written, unless that would break the one-problem-per-line report.
                let shown = if source.contains(['\n', '\r']) {
                    format!("{source:?}")
                } else {
                    format!("'{source}'")
                };
                p.at(&at, format!("pattern {} {shown}: {e}", i + 1));
            }
        }
    }
    Filters::new(patterns)
}

/// `retry_backoff`: a positive `initial` no longer than `max`, `max` within SQS's 12-hour
/// visibility limit, and a `multiplier` of 1 to 100.
fn backoff(name: &str, b: &RawBackoff, p: &mut Problems<'_>) -> Backoff {
    let at = |k: &'static str| ["mappings", name, "retry_backoff", k];
    let human = |d: Duration| humantime::format_duration(d).to_string();
    if b.initial.is_zero() {
        p.at(&at("initial"), "0s is below the minimum of 1ms");
    } else if b.initial > b.max {
        p.at(
            &at("initial"),
            format!("{} is above max ({})", human(b.initial), human(b.max)),
        );
    }
    if b.max > MAX_BACKOFF {
        p.at(
            &at("max"),
            format!(
                "{} is above the maximum of 12h (SQS's longest visibility timeout)",
                human(b.max)
            ),
        );
    }
    if !(1.0..=MAX_MULTIPLIER).contains(&b.multiplier) {
        p.at(
            &at("multiplier"),
            format!("{} is outside the range 1..{MAX_MULTIPLIER}", b.multiplier),
        );
    }
    Backoff {
        initial: b.initial,
        max: b.max,
        multiplier: b.multiplier,
        jitter: b.jitter,
    }
}

/// The [`MappingConfig`] of a mapping created through Lambda's API: its settings, and the file's
/// defaults for what the API has no member for (`max_payload`, no `retry_backoff`; at most 5
/// concurrent batches without `ScalingConfig`, as Lambda).
///
/// # Errors
/// A filter pattern that does not compile (the API checked them; a stored row could be damaged).
pub fn from_api(s: &EsmSettings) -> Result<MappingConfig, PatternError> {
    let patterns = s
        .filters
        .iter()
        .map(|p| Pattern::compile(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MappingConfig {
        queue: s.queue.clone(),
        remote: None,
        function: s.function.clone(),
        enabled: s.enabled,
        batch_size: s.batch_size,
        batching_window: Duration::from_secs(u64::from(s.batching_window_secs)),
        max_payload: default::MAX_PAYLOAD,
        max_concurrency: s.max_concurrency.unwrap_or(default::MAX_CONCURRENCY),
        report_batch_item_failures: s.report_batch_item_failures,
        filters: Filters::new(patterns),
        max_filters: default::MAX_FILTERS,
        retry_backoff: None,
    })
}

/// "30 seconds", as AWS words it, or humantime for fractions.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} seconds", d.as_secs())
    } else {
        humantime::format_duration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_as_aws_words_them() {
        assert_eq!(seconds(Duration::from_secs(30)), "30 seconds");
        assert_eq!(seconds(Duration::from_millis(1500)), "1s 500ms");
    }
}
