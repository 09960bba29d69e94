//! A remote SQS queue as a mapping's source (`queue_url`): the four calls of [`super::Source`]
//! made with the AWS SDK for Rust, one client per mapping, built on first use with the standard
//! credential chain (environment, profile, SSO, web identity, container and instance roles) for
//! the mapping's region and, when set, its `endpoint`.
//!
//! ReceiveMessage takes up to 10 messages a call and long-polls up to 20 s (whole seconds,
//! rounded up); deletes and visibility changes go in batch calls of 10, with each entry's
//! failure reported as the store reports a local one. Every failed call is logged by the
//! collector or the settle code with the mapping's name and counted here; the SDK's own retries
//! (standard mode) come first, then the collector's capped back-off.

mod convert;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;
use tokio::sync::OnceCell;

use super::failure::{Entries, EntryFailed, PollError};
use super::Mapping;
use crate::config::RemoteQueue;
use crate::domain::message::Message;
use crate::metrics::Metrics;

/// Most messages one ReceiveMessage returns, and most entries of one batch call.
const SQS_BATCH: usize = 10;
/// Longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY_SECS: u64 = 12 * 60 * 60;

/// A mapping's remote queue.
#[derive(Debug)]
pub(crate) struct Remote {
    queue: RemoteQueue,
    mapping: String,
    function_timeout: Duration,
    metrics: Arc<Metrics>,
    client: OnceCell<Client>,
    visibility_timeout: OnceCell<Duration>,
}

impl Remote {
    /// The source of `mapping`, whose queue is `queue`. Nothing is sent yet.
    pub(super) fn new(mapping: &Mapping, queue: &RemoteQueue, metrics: Arc<Metrics>) -> Self {
        Remote {
            queue: queue.clone(),
            mapping: mapping.name.clone(),
            function_timeout: mapping.function.timeout,
            metrics,
            client: OnceCell::new(),
            visibility_timeout: OnceCell::new(),
        }
    }

    /// The SDK client, built on first use.
    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.queue.region.clone()))
                    .load()
                    .await;
                let mut config = aws_sdk_sqs::config::Builder::from(&shared);
                if let Some(endpoint) = &self.queue.endpoint {
                    config = config.endpoint_url(endpoint);
                }
                Client::from_conf(config.build())
            })
            .await
    }

    /// A failed call, counted.
    fn failed(
        &self,
        operation: &'static str,
        label: &'static str,
        e: impl std::error::Error,
    ) -> PollError {
        self.metrics.mapping_source_error(&self.mapping, label);
        PollError::Remote {
            url: self.queue.url.clone(),
            operation,
            reason: DisplayErrorContext(e).to_string(),
        }
    }

    /// The queue's visibility timeout, asked for once (GetQueueAttributes). A function timeout
    /// longer than it is logged: a local queue's would be refused by the configuration check.
    pub(super) async fn visibility_timeout(&self) -> Result<Duration, PollError> {
        self.visibility_timeout
            .get_or_try_init(|| async {
                let out = self
                    .client()
                    .await
                    .get_queue_attributes()
                    .queue_url(&self.queue.url)
                    .attribute_names(QueueAttributeName::VisibilityTimeout)
                    .send()
                    .await
                    .map_err(|e| self.failed("GetQueueAttributes", "get_queue_attributes", e))?;
                let secs = out
                    .attributes()
                    .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(30);
                let vt = Duration::from_secs(secs);
                if self.function_timeout > vt {
                    tracing::warn!(
                        mapping = %self.mapping, queue_url = %self.queue.url, visibility_timeout_secs = secs,
                        function_timeout = ?self.function_timeout,
                        "the remote queue's visibility timeout is shorter than the function's timeout: a message can be delivered again while its invocation runs"
                    );
                }
                Ok(vt)
            })
            .await
            .copied()
    }

    /// One ReceiveMessage of up to `max` (at most 10) messages.
    pub(super) async fn receive(
        &self,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, PollError> {
        let max = max.clamp(1, SQS_BATCH as u32);
        let out = self
            .client()
            .await
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(whole_secs(wait).min(20) as i32)
            .set_visibility_timeout(visibility.map(|v| visibility_secs(v) as i32))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| self.failed("ReceiveMessage", "receive", e))?;
        Ok(out.messages().iter().map(convert::message).collect())
    }

    /// DeleteMessageBatch of `handles`, 10 at a time.
    pub(super) async fn delete(&self, handles: &[String]) -> Result<Entries, PollError> {
        let mut results = Vec::with_capacity(handles.len());
        for chunk in handles.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let out = self
                .client()
                .await
                .delete_message_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.failed("DeleteMessageBatch", "delete", e))?;
            results.extend(per_entry(chunk.len(), out.failed()));
        }
        Ok(results)
    }

    /// ChangeMessageVisibilityBatch of `entries`, 10 at a time (timeouts in whole seconds,
    /// rounded up, at most 12 hours).
    pub(super) async fn change_visibility(
        &self,
        entries: &[(String, Duration)],
    ) -> Result<Entries, PollError> {
        let mut results = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(SQS_BATCH) {
            let batch = chunk
                .iter()
                .enumerate()
                .map(|(i, (h, vt))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .visibility_timeout(visibility_secs(*vt) as i32)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let out = self
                .client()
                .await
                .change_message_visibility_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(batch))
                .send()
                .await
                .map_err(|e| self.failed("ChangeMessageVisibilityBatch", "change_visibility", e))?;
            results.extend(per_entry(chunk.len(), out.failed()));
        }
        Ok(results)
    }
}

/// The results of a batch call of `n` entries (ids `0..n`) whose failed ones are `failed`.
fn per_entry(n: usize, failed: &[aws_sdk_sqs::types::BatchResultErrorEntry]) -> Entries {
    (0..n)
        .map(|i| {
            let id = i.to_string();
            match failed.iter().find(|f| f.id() == id) {
                None => Ok(()),
                Some(f) => Err(EntryFailed(format!(
                    "{}: {}",
                    f.code(),
                    f.message().unwrap_or("no message")
                ))),
            }
        })
        .collect()
}

/// `d` in whole seconds, rounded up.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A visibility timeout as SQS takes it: whole seconds, rounded up, at most 12 hours.
fn visibility_secs(d: Duration) -> u64 {
    whole_secs(d).min(MAX_VISIBILITY_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_seconds_within_sqs_limits() {
        assert_eq!(whole_secs(Duration::ZERO), 0);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(2000)), 2);
        assert_eq!(visibility_secs(Duration::from_secs(13 * 3600)), 43_200);
    }

    #[test]
    fn batch_failures_land_on_their_entries() {
        let failed = [aws_sdk_sqs::types::BatchResultErrorEntry::builder()
            .id("1")
            .code("ReceiptHandleIsInvalid")
            .sender_fault(true)
            .build()
            .unwrap()];
        let r = per_entry(3, &failed);
        assert!(r[0].is_ok() && r[2].is_ok());
        assert!(r[1]
            .as_ref()
            .unwrap_err()
            .0
            .starts_with("ReceiptHandleIsInvalid"));
    }
}
