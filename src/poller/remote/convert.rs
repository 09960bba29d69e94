//! A message received from a remote SQS queue, as the [`Message`] a local receive gives, so that
//! its event record is built by the same code and has the same shape: every system attribute
//! the remote sent, its message attributes (whose MD5 the record recomputes, the same algorithm
//! as SQS's), and its MD5 of the body (computed if the remote sent none).

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName as Attr};

use crate::domain::attributes::{base_type, md5_hex, AttributeData, AttributeValue, BaseType};
use crate::domain::message::Message;
use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// `m` as esmd's [`Message`].
pub(super) fn message(m: &aws_sdk_sqs::types::Message) -> Message {
    let system = |name: Attr| m.attributes().and_then(|a| a.get(&name)).cloned();
    let millis =
        |name: Attr| Timestamp::from_millis(system(name).and_then(|v| v.parse().ok()).unwrap_or(0));
    let body = m.body().unwrap_or_default().to_owned();
    Message {
        message_id: m.message_id().unwrap_or_default().to_owned(),
        receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
        md5_of_body: m
            .md5_of_body()
            .map_or_else(|| md5_hex(body.as_bytes()), str::to_owned),
        body,
        attributes: m
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(name, v)| (name.clone(), attribute(v)))
            .collect(),
        trace_header: system(Attr::AwsTraceHeader),
        sent_at: millis(Attr::SentTimestamp),
        receive_count: system(Attr::ApproximateReceiveCount)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        first_receive_at: millis(Attr::ApproximateFirstReceiveTimestamp),
        sender_id: system(Attr::SenderId).unwrap_or_default(),
        group_id: system(Attr::MessageGroupId),
        dedup_id: system(Attr::MessageDeduplicationId),
        sequence_number: system(Attr::SequenceNumber),
        // The event names the source queue by ARN in the remote's account and region.
        dead_letter_source: system(Attr::DeadLetterQueueSourceArn)
            .and_then(|arn| QueueName::parse(arn.rsplit(':').next().unwrap_or_default()).ok()),
    }
}

/// A message attribute as esmd keeps it.
fn attribute(v: &MessageAttributeValue) -> AttributeValue {
    let value = match base_type(v.data_type()) {
        Some(BaseType::Binary) => AttributeData::Binary(
            v.binary_value()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default(),
        ),
        _ => AttributeData::String(v.string_value().unwrap_or_default().to_owned()),
    };
    AttributeValue {
        data_type: v.data_type().to_owned(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::primitives::Blob;

    use super::*;

    #[test]
    fn keeps_every_attribute_the_remote_sent() {
        let m = aws_sdk_sqs::types::Message::builder()
            .message_id("id-1")
            .receipt_handle("rh")
            .body("hello")
            .attributes(Attr::SentTimestamp, "1700000000123")
            .attributes(Attr::ApproximateReceiveCount, "3")
            .attributes(Attr::ApproximateFirstReceiveTimestamp, "1700000000456")
            .attributes(Attr::SenderId, "AIDA")
            .attributes(Attr::MessageGroupId, "g")
            .attributes(Attr::SequenceNumber, "18")
            .message_attributes(
                "bin",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![1, 2]))
                    .build()
                    .unwrap(),
            )
            .build();
        let msg = message(&m);
        assert_eq!(msg.md5_of_body, md5_hex(b"hello"));
        assert_eq!(msg.sent_at.as_millis(), 1_700_000_000_123);
        assert_eq!(msg.first_receive_at.as_millis(), 1_700_000_000_456);
        assert_eq!(msg.receive_count, 3);
        assert_eq!(msg.sender_id, "AIDA");
        assert_eq!(msg.group_id.as_deref(), Some("g"));
        assert_eq!(msg.sequence_number.as_deref(), Some("18"));
        assert_eq!(
            msg.attributes["bin"].value,
            AttributeData::Binary(vec![1, 2])
        );
    }
}
