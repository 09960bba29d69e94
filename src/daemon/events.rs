//! Running asynchronous invocations (the Invoke API's `Event` type, docs/semantics.md §11): one
//! watcher on the `services` tracker reads the stored events at start (so events accepted before
//! a crash or a shutdown still run) and whenever one is stored, postponed or settled, and starts
//! a worker for each event that is due, at most [`CONCURRENCY`] at once; it sleeps on the store's
//! [`Clock`](crate::clock::Clock) until the next retry is due.
//!
//! A worker counts the attempt in the database, then invokes the function through the daemon's
//! [`Invoker`] (the same environments as synchronous calls and mappings). On success the event's
//! record goes to `on_success`; after a function error or a timeout it is retried after
//! `retry_backoff`, doubled for each further retry, up to `max_retry_attempts`; then, or once it
//! is older than `max_event_age`, its record goes to `on_failure`. Without a destination a failed
//! event is logged and dropped. The event is deleted only after its record is sent, so a crash
//! between the two, or during an invocation, runs or delivers it again: at least once, as Lambda.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::MappingCatalog;
use crate::config::ServerConfig;
use crate::domain::error::chain;
use crate::domain::message::NewMessage;
use crate::domain::queue::QueueName;
use crate::domain::{RejectCode, Timestamp};
use crate::invoke::{Invocation, InvokeOptions, InvokeTarget, Invoker, EXECUTED_VERSION};
use crate::metrics::Metrics;
use crate::store::{AsyncEvent, Store, StoreError};

/// Most events invoked at once.
const CONCURRENCY: usize = 16;
/// How long after a store failure the event is tried again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// The `mapping` field of the runner's logs.
const ASYNC: &str = "async-invoke";

/// What the runner needs.
pub(super) struct Runner {
    pub(super) store: Store,
    pub(super) invoker: Invoker,
    pub(super) catalog: MappingCatalog,
    pub(super) metrics: Arc<Metrics>,
    pub(super) server: Arc<ServerConfig>,
}

/// How an event ended, as Lambda's destination record names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// Starts the watcher on `tracker`; it and its workers stop when `cancel` fires (an invocation
/// in flight is dropped, which kills a command, and its event stays stored).
pub(super) fn spawn(runner: Runner, tracker: &TaskTracker, cancel: CancellationToken) {
    let runner = Arc::new(runner);
    let workers = tracker.clone();
    tracker.spawn(async move {
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let done = Arc::new(Notify::new());
        let mut signal = runner.store.event_signal();
        let clock = runner.store.clock().clone();
        loop {
            signal.borrow_and_update();
            let mut next: Option<Timestamp> = None;
            match runner.store.pending_events().await {
                Ok(events) => {
                    let now = clock.now();
                    for event in events {
                        let mut set = running.lock().unwrap_or_else(PoisonError::into_inner);
                        if set.contains(&event.request_id) {
                            continue;
                        }
                        if event.due_at > now {
                            next = Some(next.map_or(event.due_at, |n| n.min(event.due_at)));
                            continue;
                        }
                        if set.len() >= CONCURRENCY {
                            break;
                        }
                        set.insert(event.request_id.clone());
                        drop(set);
                        let (runner, running, done) =
                            (runner.clone(), running.clone(), done.clone());
                        let cancel = cancel.child_token();
                        workers.spawn(async move {
                            let id = event.request_id.clone();
                            tokio::select! {
                                _ = cancel.cancelled() => {}
                                _ = runner.run(event) => {}
                            }
                            running
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .remove(&id);
                            done.notify_one();
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "cannot read the asynchronous invocations");
                    next = Some(clock.now().plus(STORE_RETRY));
                }
            }
            let sleep = async {
                match next {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = signal.changed() => if changed.is_err() { break },
                _ = done.notified() => {}
                _ = sleep => {}
            }
        }
    });
}

impl Runner {
    /// Runs one due event: one attempt, then a retry, a record, or a drop.
    async fn run(&self, event: AsyncEvent) {
        let id = event.request_id.as_str();
        let function = event.function.as_str();
        let Some(config) = self.catalog.function(function) else {
            tracing::warn!(
                function,
                request_id = id,
                "asynchronous invocation dropped: the function is no longer configured"
            );
            self.metrics.async_dropped(function, "function_removed");
            self.forget(id).await;
            return;
        };
        let settings = &config.async_config;
        let clock = self.store.clock();
        if clock.now().since(event.queued_at) > settings.max_event_age {
            let on_failure = settings.on_failure.clone();
            self.settle(&event, Condition::EventAgeExceeded, on_failure, None)
                .await;
            return;
        }
        let attempts = match self.store.event_attempt(id).await {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => return self.store_failed(id, &e).await,
        };
        let target = InvokeTarget {
            function,
            mapping: ASYNC,
            region: &self.server.region,
            config: &config,
        };
        let options = InvokeOptions {
            request_id: Some(event.request_id.clone()),
            client_context: event.client_context.clone(),
            trace_id: event.trace_id.clone(),
            tail: false,
            throttle_when_busy: false,
        };
        let invoked = self
            .invoker
            .invoke_with(&target, event.payload.clone(), options)
            .await;
        let event = AsyncEvent {
            attempts,
            ..event.clone()
        };
        if let Invocation::Returned(_) = invoked.invocation {
            let on_success = settings.on_success.clone();
            self.settle(
                &event,
                Condition::Success,
                on_success,
                Some(&invoked.invocation),
            )
            .await;
        } else if attempts <= settings.max_retry_attempts {
            let backoff = settings
                .retry_backoff
                .saturating_mul(1 << (attempts - 1).min(16));
            tracing::info!(function, request_id = id, attempts, backoff = %humantime::format_duration(backoff), "asynchronous invocation failed; retrying");
            self.metrics.async_event(function, "retried");
            if let Err(e) = self
                .store
                .postpone_event(id, clock.now().plus(backoff))
                .await
            {
                self.store_failed(id, &e).await;
            }
        } else {
            let failure = Some(&invoked.invocation);
            let on_failure = settings.on_failure.clone();
            self.settle(&event, Condition::RetriesExhausted, on_failure, failure)
                .await;
        }
    }

    /// Sends the event's record to `destination` (or logs a failure without one), then forgets
    /// the event.
    async fn settle(
        &self,
        event: &AsyncEvent,
        condition: Condition,
        destination: Option<QueueName>,
        outcome: Option<&Invocation>,
    ) {
        let (id, function) = (event.request_id.as_str(), event.function.as_str());
        let Some(queue) = destination else {
            if condition != Condition::Success {
                tracing::warn!(
                    function,
                    request_id = id,
                    condition = condition.as_str(),
                    attempts = event.attempts,
                    "asynchronous invocation failed and was dropped (no on_failure destination)"
                );
                let reason = match condition {
                    Condition::EventAgeExceeded => "event_age_exceeded",
                    _ => "retries_exhausted",
                };
                self.metrics.async_dropped(function, reason);
            }
            self.forget(id).await;
            return;
        };
        let timeout = self
            .catalog
            .function(function)
            .map(|f| f.timeout)
            .unwrap_or_default();
        let arn = self.function_arn(function);
        let now = self.store.clock().now();
        let record = record(event, condition, outcome, &arn, timeout, now);
        let mut message = NewMessage::body(record.to_string());
        if queue.is_fifo() {
            message.group_id = Some(function.to_owned());
            message.dedup_id = Some(format!("{id}-{}", condition.as_str()));
        }
        match self.store.send(&queue, vec![message]).await {
            Ok(mut results) => match results.pop() {
                Some(Err(why)) => {
                    tracing::error!(function, request_id = id, queue = %queue, error = %why.message, "the destination refused the asynchronous invocation's record; dropped");
                    self.metrics.async_dropped(function, "destination_failed");
                }
                _ => self.metrics.async_delivered(function, condition.as_str()),
            },
            Err(StoreError::Rejected(why)) if why.code == RejectCode::QueueDoesNotExist => {
                tracing::error!(function, request_id = id, queue = %queue, "the destination queue does not exist; the asynchronous invocation's record is dropped");
                self.metrics.async_dropped(function, "destination_failed");
            }
            Err(e) => return self.store_failed(id, &e).await,
        }
        self.forget(id).await;
    }

    fn function_arn(&self, function: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{function}:{}",
            self.server.region, self.server.account_id, EXECUTED_VERSION
        )
    }

    async fn forget(&self, id: &str) {
        if let Err(e) = self.store.remove_event(id).await {
            tracing::warn!(request_id = id, error = %chain(&e), "cannot remove a settled asynchronous invocation; it may run again");
        }
    }

    /// A store failure mid-event: the event stays stored and is tried again a moment later.
    async fn store_failed(&self, id: &str, e: &StoreError) {
        tracing::warn!(request_id = id, error = %chain(e), "an asynchronous invocation could not be stored; retrying");
        let clock = self.store.clock();
        clock.sleep_until(clock.now().plus(STORE_RETRY)).await;
    }
}

/// Lambda's destination record for `event`.
fn record(
    event: &AsyncEvent,
    condition: Condition,
    outcome: Option<&Invocation>,
    function_arn: &str,
    timeout: Duration,
    now: Timestamp,
) -> Value {
    let request_payload = serde_json::from_slice::<Value>(&event.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&event.payload).into_owned()));
    let mut record = json!({
        "version": "1.0",
        "timestamp": rfc3339(now),
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": function_arn,
            "condition": condition.as_str(),
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": request_payload,
    });
    if let Some(outcome) = outcome {
        let mut context = json!({
            "statusCode": 200,
            "executedVersion": EXECUTED_VERSION,
        });
        let payload = match outcome {
            Invocation::Returned(Some(body)) => payload_value(body),
            Invocation::Returned(None) => Value::Null,
            failed => {
                context["functionError"] = json!("Unhandled");
                failed
                    .error_document(&event.request_id, timeout)
                    .map_or(Value::Null, |d| payload_value(&d))
            }
        };
        record["responseContext"] = context;
        record["responsePayload"] = payload;
    }
    record
}

/// A response as JSON when it is JSON, else as a string.
fn payload_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// `2019-11-14T18:16:05.568Z`.
fn rfc3339(at: Timestamp) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(at.as_millis()).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
