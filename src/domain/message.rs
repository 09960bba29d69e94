//! Messages: what a sender hands in ([`NewMessage`]), what a receiver gets back ([`Message`]),
//! the send acknowledgement ([`SendReceipt`]), receipt handles, and the send-side rules of
//! docs/semantics.md §6.2 (characters, sizes, FIFO ids).

use std::time::Duration;

use base64::Engine as _;

use super::attributes::{self, Attributes};
use super::queue::{QueueKind, QueueName, QueueSettings, MAX_DELAY};
pub use super::text::check_chars;
use super::{RejectCode, Rejection, Timestamp};

/// A message as a sender submits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// The body, exactly as sent.
    pub body: String,
    /// User message attributes.
    pub attributes: Attributes,
    /// The `AWSTraceHeader` system attribute, if sent.
    pub trace_header: Option<String>,
    /// Per-message delay (standard queues); `None` uses the queue's delay.
    pub delay: Option<Duration>,
    /// `MessageGroupId`: required on FIFO queues; optional (fair queues) on standard ones.
    pub group_id: Option<String>,
    /// `MessageDeduplicationId` (FIFO only).
    pub dedup_id: Option<String>,
}

/// What a successful send returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The message id (for a deduplicated FIFO send, the original's).
    pub message_id: String,
    /// MD5 of the body.
    pub md5_of_body: String,
    /// MD5 of the user attributes, if any were sent.
    pub md5_of_attributes: Option<String>,
    /// MD5 of the system attributes, if any were sent.
    pub md5_of_system_attributes: Option<String>,
    /// FIFO sequence number.
    pub sequence_number: Option<String>,
}

/// A message as a receive hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The SQS message id (a UUID), kept across a move to a dead-letter queue.
    pub message_id: String,
    /// The handle of this receive.
    pub receipt_handle: String,
    /// The body, exactly as sent.
    pub body: String,
    /// MD5 of the body.
    pub md5_of_body: String,
    /// User attributes.
    pub attributes: Attributes,
    /// `AWSTraceHeader`, if sent.
    pub trace_header: Option<String>,
    /// When it was first sent (`SentTimestamp`).
    pub sent_at: Timestamp,
    /// Receives so far, this one included (`ApproximateReceiveCount`).
    pub receive_count: u32,
    /// The first receive (`ApproximateFirstReceiveTimestamp`).
    pub first_receive_at: Timestamp,
    /// `SenderId`.
    pub sender_id: String,
    /// `MessageGroupId` (FIFO, or a fair standard queue).
    pub group_id: Option<String>,
    /// `MessageDeduplicationId` (FIFO).
    pub dedup_id: Option<String>,
    /// `SequenceNumber` (FIFO).
    pub sequence_number: Option<String>,
    /// The queue it was dead-lettered from, if any (`DeadLetterQueueSourceArn`).
    pub dead_letter_source: Option<QueueName>,
}

/// The sender id esmd reports: there are no IAM principals locally.
pub const SENDER_ID: &str = "AIDAESMDLOCALSENDER00";

/// Checks a `MessageGroupId` or `MessageDeduplicationId`: 1 to 128 alphanumeric or punctuation
/// characters.
pub fn check_fifo_id(parameter: &str, v: &str) -> Result<(), Rejection> {
    if !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation())
    {
        Ok(())
    } else {
        Err(Rejection::bad_value(
            parameter,
            v,
            &format!("{parameter} can only include alphanumeric and punctuation characters. 1 to 128 in length."),
        ))
    }
}

impl NewMessage {
    /// A message with just a body.
    pub fn body(body: impl Into<String>) -> Self {
        NewMessage {
            body: body.into(),
            ..Default::default()
        }
    }

    /// The size SQS counts against `MaximumMessageSize`: body plus attribute names, types and
    /// values (system attributes excluded).
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(n, v)| n.len() + v.size())
                .sum::<usize>()
    }

    /// Validates the message for a queue of `kind` with `settings`, per docs/semantics.md §6.2.
    /// `in_batch` selects the wording AWS uses inside SendMessageBatch entries.
    pub fn validate(
        &self,
        kind: QueueKind,
        settings: &QueueSettings,
        in_batch: bool,
    ) -> Result<(), Rejection> {
        if self.body.is_empty() {
            return Err(Rejection::missing("MessageBody"));
        }
        check_chars(&self.body, "the message body")?;
        attributes::validate(&self.attributes)?;
        if let Some(t) = &self.trace_header {
            if t.is_empty() {
                return Err(Rejection::invalid(
                    "Message (system) attribute 'AWSTraceHeader' must contain a non-empty value of type 'String'.",
                ));
            }
        }
        let size = self.size();
        if size > settings.max_message_size as usize {
            return Err(Rejection::invalid(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
                settings.max_message_size
            )));
        }
        if let Some(d) = self.delay {
            if d > MAX_DELAY {
                return Err(Rejection::bad_value(
                    "DelaySeconds",
                    d.as_secs(),
                    "Must be >= 0 and <= 900, if provided.",
                ));
            }
        }
        if let Some(g) = &self.group_id {
            check_fifo_id("MessageGroupId", g)?;
        }
        match kind {
            QueueKind::Fifo => {
                if let Some(d) = self.delay.filter(|d| !d.is_zero()) {
                    return Err(Rejection::bad_value(
                        "DelaySeconds",
                        d.as_secs(),
                        "The request include parameter that is not valid for this queue type.",
                    ));
                }
                if self.group_id.is_none() {
                    let r = Rejection::missing("MessageGroupId");
                    return Err(if in_batch {
                        Rejection::invalid(r.message)
                    } else {
                        r
                    });
                }
                match &self.dedup_id {
                    Some(d) => check_fifo_id("MessageDeduplicationId", d)?,
                    None if !settings.content_based_deduplication => {
                        return Err(Rejection::invalid(
                            "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                        ))
                    }
                    None => {}
                }
            }
            QueueKind::Standard => {
                if let Some(d) = &self.dedup_id {
                    return Err(Rejection::bad_value(
                        "MessageDeduplicationId",
                        d,
                        "The request includes a parameter that is not valid for this queue type.",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a receipt handle names: one receive of one message of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptHandle {
    /// The queue's internal id.
    pub queue_id: i64,
    /// The message's row.
    pub row_id: i64,
    /// The random token of the receive that issued the handle.
    pub token: i64,
}

const HANDLE_VERSION: u8 = 1;

impl ReceiptHandle {
    /// The opaque wire form.
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(25);
        b.push(HANDLE_VERSION);
        b.extend_from_slice(&self.queue_id.to_be_bytes());
        b.extend_from_slice(&self.row_id.to_be_bytes());
        b.extend_from_slice(&self.token.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// Decodes a handle, refusing anything esmd did not issue.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        let invalid = || {
            let shown: String = s.chars().take(1024).collect();
            Rejection::new(
                RejectCode::ReceiptHandleIsInvalid,
                format!("The input receipt handle \"{shown}\" is not a valid receipt handle."),
            )
        };
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| invalid())?;
        if b.len() != 25 || b[0] != HANDLE_VERSION {
            return Err(invalid());
        }
        let num = |i: usize| i64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(ReceiptHandle {
            queue_id: num(1),
            row_id: num(9),
            token: num(17),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_garbage_is_refused() {
        let h = ReceiptHandle {
            queue_id: 3,
            row_id: 1 << 40,
            token: -7,
        };
        assert_eq!(ReceiptHandle::parse(&h.encode()).unwrap(), h);
        let e = ReceiptHandle::parse("garbage").unwrap_err();
        assert_eq!(e.code, RejectCode::ReceiptHandleIsInvalid);
        assert_eq!(
            e.message,
            "The input receipt handle \"garbage\" is not a valid receipt handle."
        );
    }

    #[test]
    fn size_limit_is_inclusive() {
        let s = QueueSettings {
            max_message_size: 1024,
            ..Default::default()
        };
        assert!(NewMessage::body("a".repeat(1024))
            .validate(QueueKind::Standard, &s, false)
            .is_ok());
        let e = NewMessage::body("a".repeat(1025))
            .validate(QueueKind::Standard, &s, false)
            .unwrap_err();
        assert!(e.message.contains("shorter than 1024 bytes"));
    }

    #[test]
    fn fifo_rules() {
        let s = QueueSettings::default();
        let m = NewMessage::body("x");
        assert_eq!(
            m.validate(QueueKind::Fifo, &s, false).unwrap_err().code,
            RejectCode::MissingParameter
        );
        assert_eq!(
            m.validate(QueueKind::Fifo, &s, true).unwrap_err().code,
            RejectCode::InvalidParameterValue
        );
        let m = NewMessage {
            group_id: Some("g".into()),
            ..NewMessage::body("x")
        };
        assert!(m
            .validate(QueueKind::Fifo, &s, false)
            .unwrap_err()
            .message
            .contains("ContentBasedDeduplication"));
        let m = NewMessage {
            dedup_id: Some("has space".into()),
            ..m
        };
        assert!(m.validate(QueueKind::Fifo, &s, false).is_err());
        let m = NewMessage {
            group_id: Some("g".into()),
            delay: Some(Duration::from_secs(2)),
            dedup_id: Some("d".into()),
            ..NewMessage::body("x")
        };
        assert!(m
            .validate(QueueKind::Fifo, &s, false)
            .unwrap_err()
            .message
            .starts_with("Value 2 for parameter DelaySeconds"));
    }

    #[test]
    fn characters() {
        assert!(check_chars("ok\t\n\r ü 😀", "the message body").is_ok());
        assert_eq!(
            check_chars("\u{1}", "the message body").unwrap_err().code,
            RejectCode::InvalidMessageContents
        );
        assert!(check_chars("\u{FFFE}", "the message body").is_err());
    }
}
