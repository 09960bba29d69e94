//! The SQS event a function receives: one record's exact JSON (docs/semantics.md §5.1), the
//! `{"Records":[...]}` envelope and its size arithmetic, and queue ARNs. The response a function
//! may return is read in `batch_response.rs`.
//!
//! Pure: no I/O. Records are encoded one at a time so that a batcher can add up their sizes
//! against the payload cap ([`event_size`]) before it assembles the event ([`assemble_event`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use super::attributes::{md5_of_attributes, AttributeData, AttributeValue};
pub use super::batch_response::{parse_batch_response, BatchResponse};
use super::message::Message;
use super::queue::QueueName;

/// The envelope around the records: `{"Records":[` … `]}`.
const EVENT_PREFIX: &str = r#"{"Records":["#;
const EVENT_SUFFIX: &str = "]}";

/// The `eventSource` of every SQS record.
pub const EVENT_SOURCE: &str = "aws:sqs";

/// The ARN of a queue: `arn:aws:sqs:<region>:<account>:<name>`.
pub fn queue_arn(region: &str, account_id: &str, queue_name: &str) -> String {
    format!("arn:aws:sqs:{region}:{account_id}:{queue_name}")
}

/// The ARN of `queue`, in its region (`default_region` standing for the default region).
pub fn arn_of(queue: &QueueName, default_region: &str, account_id: &str) -> String {
    queue_arn(queue.region_or(default_region), account_id, queue.name())
}

/// One record of the SQS event (docs/semantics.md §5.1). Field order follows AWS's documented example.
#[derive(Serialize)]
struct Record<'a> {
    #[serde(rename = "messageId")]
    message_id: &'a str,
    #[serde(rename = "receiptHandle")]
    receipt_handle: &'a str,
    #[serde(rename = "body")]
    body: &'a str,
    #[serde(rename = "attributes")]
    attributes: SystemAttributes<'a>,
    #[serde(rename = "messageAttributes")]
    message_attributes: BTreeMap<&'a str, RecordAttribute<'a>>,
    /// `null` (never omitted) when the message has no attributes.
    #[serde(rename = "md5OfMessageAttributes")]
    md5_of_message_attributes: Option<String>,
    #[serde(rename = "md5OfBody")]
    md5_of_body: &'a str,
    #[serde(rename = "eventSource")]
    event_source: &'static str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
    #[serde(rename = "awsRegion")]
    aws_region: &'a str,
}

/// A record's `attributes`: SQS system attributes, every value a string.
#[derive(Serialize)]
struct SystemAttributes<'a> {
    #[serde(rename = "ApproximateReceiveCount")]
    approximate_receive_count: String,
    #[serde(rename = "SentTimestamp")]
    sent_timestamp: String,
    #[serde(rename = "SequenceNumber", skip_serializing_if = "Option::is_none")]
    sequence_number: Option<&'a str>,
    #[serde(rename = "MessageGroupId", skip_serializing_if = "Option::is_none")]
    message_group_id: Option<&'a str>,
    #[serde(rename = "SenderId")]
    sender_id: &'a str,
    #[serde(
        rename = "MessageDeduplicationId",
        skip_serializing_if = "Option::is_none"
    )]
    message_deduplication_id: Option<&'a str>,
    #[serde(rename = "ApproximateFirstReceiveTimestamp")]
    approximate_first_receive_timestamp: String,
    #[serde(rename = "AWSTraceHeader", skip_serializing_if = "Option::is_none")]
    aws_trace_header: Option<&'a str>,
    #[serde(
        rename = "DeadLetterQueueSourceArn",
        skip_serializing_if = "Option::is_none"
    )]
    dead_letter_queue_source_arn: Option<String>,
}

/// One entry of a record's `messageAttributes`, with AWS's lower-camel keys. The list fields are
/// always present and always empty, as AWS sends them.
#[derive(Serialize)]
struct RecordAttribute<'a> {
    #[serde(rename = "stringValue", skip_serializing_if = "Option::is_none")]
    string_value: Option<&'a str>,
    #[serde(rename = "binaryValue", skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
    #[serde(rename = "stringListValues")]
    string_list_values: [&'a str; 0],
    #[serde(rename = "binaryListValues")]
    binary_list_values: [&'a str; 0],
    #[serde(rename = "dataType")]
    data_type: &'a str,
}

impl<'a> From<&'a AttributeValue> for RecordAttribute<'a> {
    fn from(v: &'a AttributeValue) -> Self {
        let (string_value, binary_value) = match &v.value {
            AttributeData::String(s) => (Some(s.as_str()), None),
            AttributeData::Binary(b) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        };
        RecordAttribute {
            string_value,
            binary_value,
            string_list_values: [],
            binary_list_values: [],
            data_type: &v.data_type,
        }
    }
}

/// The account field of an ARN (`arn:aws:sqs:<region>:<account>:<name>`), or `""` if `arn` has no
/// such field.
fn arn_account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("")
}

/// Encodes one record of the SQS event for `msg`, received from the queue `queue_arn` in
/// `region`, as compact JSON with exactly the keys of docs/semantics.md §5.1.
pub fn encode_record(msg: &Message, queue_arn: &str, region: &str) -> String {
    let attributes = SystemAttributes {
        approximate_receive_count: msg.receive_count.to_string(),
        sent_timestamp: msg.sent_at.as_millis().to_string(),
        sequence_number: msg.sequence_number.as_deref(),
        message_group_id: msg.group_id.as_deref(),
        sender_id: &msg.sender_id,
        message_deduplication_id: msg.dedup_id.as_deref(),
        approximate_first_receive_timestamp: msg.first_receive_at.as_millis().to_string(),
        aws_trace_header: msg.trace_header.as_deref(),
        // A dead-letter queue lives in the same account and region as its source.
        dead_letter_queue_source_arn: msg
            .dead_letter_source
            .as_ref()
            .map(|source| self::queue_arn(region, arn_account(queue_arn), source.name())),
    };
    let record = Record {
        message_id: &msg.message_id,
        receipt_handle: &msg.receipt_handle,
        body: &msg.body,
        attributes,
        message_attributes: msg
            .attributes
            .iter()
            .map(|(name, v)| (name.as_str(), v.into()))
            .collect(),
        md5_of_message_attributes: md5_of_attributes(&msg.attributes),
        md5_of_body: &msg.md5_of_body,
        event_source: EVENT_SOURCE,
        event_source_arn: queue_arn,
        aws_region: region,
    };
    serde_json::to_string(&record).expect("a record of strings and string maps always serializes")
}

/// Assembles encoded records into the event `{"Records":[r1,r2,...]}`.
pub fn assemble_event(records: &[String]) -> Vec<u8> {
    let size = event_size(records.iter().map(String::len).sum(), records.len());
    let mut event = Vec::with_capacity(size);
    event.extend_from_slice(EVENT_PREFIX.as_bytes());
    for (idx, record) in records.iter().enumerate() {
        if idx > 0 {
            event.push(b',');
        }
        event.extend_from_slice(record.as_bytes());
    }
    event.extend_from_slice(EVENT_SUFFIX.as_bytes());
    debug_assert_eq!(event.len(), size);
    event
}

/// The exact byte length [`assemble_event`] gives for `n_records` records whose encoded lengths
/// add up to `record_sizes_sum`: the envelope plus one comma between each two records.
pub fn event_size(record_sizes_sum: usize, n_records: usize) -> usize {
    EVENT_PREFIX.len() + record_sizes_sum + n_records.saturating_sub(1) + EVENT_SUFFIX.len()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::domain::attributes::{md5_hex, Attributes};
    use crate::domain::message::SENDER_ID;
    use crate::domain::queue::QueueName;
    use crate::domain::Timestamp;

    const ARN: &str = "arn:aws:sqs:us-east-2:123456789012:my-queue";

    fn message(body: &str) -> Message {
        Message {
            message_id: "059f36b4-87a3-44ab-83d2-661975830a7d".into(),
            receipt_handle: "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a".into(),
            body: body.into(),
            md5_of_body: md5_hex(body.as_bytes()),
            attributes: Attributes::new(),
            trace_header: None,
            sent_at: Timestamp::from_millis(1_545_082_649_183),
            receive_count: 1,
            first_receive_at: Timestamp::from_millis(1_545_082_649_185),
            sender_id: SENDER_ID.into(),
            group_id: None,
            dedup_id: None,
            sequence_number: None,
            dead_letter_source: None,
        }
    }

    #[test]
    fn documented_example_record_is_reproduced_exactly() {
        let got: Value =
            serde_json::from_str(&encode_record(&message("Test message."), ARN, "us-east-2"))
                .unwrap();
        let want = serde_json::json!({
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": "Test message.",
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1545082649183",
                "SenderId": SENDER_ID,
                "ApproximateFirstReceiveTimestamp": "1545082649185"
            },
            "messageAttributes": {},
            "md5OfMessageAttributes": null,
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": ARN,
            "awsRegion": "us-east-2"
        });
        assert_eq!(got, want);
    }

    #[test]
    fn attributes_fifo_fields_trace_header_and_dlq_source() {
        let mut m = message("x");
        m.attributes.insert(
            "WeeksOn".into(),
            AttributeValue {
                data_type: "Number".into(),
                value: AttributeData::String("6".into()),
            },
        );
        m.attributes
            .insert("Title".into(), AttributeValue::string("The Whistler"));
        m.attributes
            .insert("Author".into(), AttributeValue::string("John Grisham"));
        m.attributes.insert(
            "Pic".into(),
            AttributeValue {
                data_type: "Binary.gif".into(),
                value: AttributeData::Binary(vec![0, 1, 255]),
            },
        );
        m.group_id = Some("g1".into());
        m.dedup_id = Some("d1".into());
        m.sequence_number = Some("18849496460467696128".into());
        m.trace_header = Some("Root=1-5759e988-bd862e3fe1be46a994272793".into());
        m.dead_letter_source = Some(QueueName::parse("orders.fifo").unwrap());
        m.receive_count = 3;
        let v: Value = serde_json::from_str(&encode_record(
            &m,
            "arn:aws:sqs:eu-west-1:000000000042:dlq.fifo",
            "eu-west-1",
        ))
        .unwrap();
        let a = &v["attributes"];
        assert_eq!(a["ApproximateReceiveCount"], "3");
        assert_eq!(a["SequenceNumber"], "18849496460467696128");
        assert_eq!(a["MessageGroupId"], "g1");
        assert_eq!(a["MessageDeduplicationId"], "d1");
        assert_eq!(
            a["AWSTraceHeader"],
            "Root=1-5759e988-bd862e3fe1be46a994272793"
        );
        assert_eq!(
            a["DeadLetterQueueSourceArn"],
            "arn:aws:sqs:eu-west-1:000000000042:orders.fifo"
        );
        assert_eq!(a.as_object().unwrap().len(), 9);
        assert_eq!(
            v["messageAttributes"]["WeeksOn"],
            serde_json::json!({"stringValue": "6", "stringListValues": [], "binaryListValues": [], "dataType": "Number"})
        );
        assert_eq!(
            v["messageAttributes"]["Pic"],
            serde_json::json!({"binaryValue": "AAH/", "stringListValues": [], "binaryListValues": [], "dataType": "Binary.gif"})
        );
        m.attributes.remove("Pic");
        let v: Value = serde_json::from_str(&encode_record(&m, ARN, "us-east-2")).unwrap();
        assert_eq!(
            v["md5OfMessageAttributes"],
            "d25a6aea97eb8f585bfa92d314504a92"
        );
    }

    #[test]
    fn event_size_matches_assembly() {
        let records: Vec<String> = ["a", "bb", "ccc"]
            .iter()
            .map(|b| encode_record(&message(b), ARN, "us-east-2"))
            .collect();
        for n in 0..=records.len() {
            let event = assemble_event(&records[..n]);
            assert_eq!(
                event.len(),
                event_size(records[..n].iter().map(String::len).sum(), n)
            );
            let v: Value = serde_json::from_slice(&event).unwrap();
            assert_eq!(v["Records"].as_array().unwrap().len(), n);
        }
        assert_eq!(assemble_event(&[]), br#"{"Records":[]}"#);
    }

    #[test]
    fn queue_arns() {
        assert_eq!(
            queue_arn("us-east-1", "000000000000", "q.fifo"),
            "arn:aws:sqs:us-east-1:000000000000:q.fifo"
        );
        assert_eq!(arn_account("arn:aws:sqs:us-east-1:123:q"), "123");
        assert_eq!(arn_account("nonsense"), "");
    }
}
