//! Decoding a request body without building values for members esmd ignores: a JSON object
//! keeps only the member names esmd reads somewhere (every other member is skipped with
//! `serde::de::IgnoredAny`, which checks its syntax but allocates nothing for it), except in the
//! maps whose keys are the user's (`Attributes`, `Tags`, `MessageAttributes`, ...), which keep
//! every key. So a large ignored member costs esmd its bytes in the body and nothing more, and
//! unknown members are still accepted, as SQS accepts them.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Every member name esmd reads in a request (a superset: every name-like string of the SQS
/// handlers, so that none can be missed).
const KNOWN: &[&str] = &[
    "AWSAccountIds",
    "AWSTraceHeader",
    "Actions",
    "AddPermission",
    "All",
    "ApproximateFirstReceiveTimestamp",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateReceiveCount",
    "AttributeNames",
    "Attributes",
    "BinaryListValues",
    "BinaryValue",
    "Body",
    "CancelMessageMoveTask",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "ChangeMessageVisibilityBatchRequestEntry",
    "Code",
    "ContentBasedDeduplication",
    "CreateQueue",
    "CreatedTimestamp",
    "DataType",
    "DeadLetterQueueSourceArn",
    "DeduplicationScope",
    "DelaySeconds",
    "DeleteMessage",
    "DeleteMessageBatch",
    "DeleteMessageBatchRequestEntry",
    "DeleteQueue",
    "DestinationArn",
    "Entries",
    "Failed",
    "FifoQueue",
    "FifoThroughputLimit",
    "GetQueueAttributes",
    "GetQueueUrl",
    "Id",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "Label",
    "LastModifiedTimestamp",
    "ListDeadLetterSourceQueues",
    "ListMessageMoveTasks",
    "ListQueueTags",
    "ListQueues",
    "MD5OfBody",
    "MD5OfMessageAttributes",
    "MD5OfMessageBody",
    "MD5OfMessageSystemAttributes",
    "MaxNumberOfMessages",
    "MaxNumberOfMessagesPerSecond",
    "MaxResults",
    "MaximumMessageSize",
    "Message",
    "MessageAttributeNames",
    "MessageAttributes",
    "MessageBody",
    "MessageDeduplicationId",
    "MessageGroupId",
    "MessageId",
    "MessageRetentionPeriod",
    "MessageSystemAttributeNames",
    "MessageSystemAttributes",
    "Messages",
    "NextToken",
    "Policy",
    "PurgeQueue",
    "QueueArn",
    "QueueName",
    "QueueNamePrefix",
    "QueueOwnerAWSAccountId",
    "QueueUrl",
    "QueueUrls",
    "ReceiptHandle",
    "ReceiveMessage",
    "ReceiveMessageWaitTimeSeconds",
    "ReceiveRequestAttemptId",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "RemovePermission",
    "SendMessage",
    "SendMessageBatch",
    "SendMessageBatchRequestEntry",
    "SenderFault",
    "SenderId",
    "SentTimestamp",
    "SequenceNumber",
    "SetQueueAttributes",
    "SourceArn",
    "SqsManagedSseEnabled",
    "StartMessageMoveTask",
    "String",
    "StringListValues",
    "StringValue",
    "Successful",
    "TagKeys",
    "TagQueue",
    "Tags",
    "TaskHandle",
    "UntagQueue",
    "VisibilityTimeout",
    "WaitTimeSeconds",
    "tags",
];

/// The members whose value is a map keyed by the user's names: all its keys are kept.
const USER_MAPS: &[&str] = &[
    "Attributes",
    "MessageAttributes",
    "MessageSystemAttributes",
    "Tags",
    "tags",
];

/// Decodes `text` as [`Value`], skipping unknown members as the module docs say.
pub(crate) fn parse(text: &str) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Filtered { keep_all: false }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A value whose objects keep every member (`keep_all`, a user map) or only known ones.
#[derive(Clone, Copy)]
struct Filtered {
    keep_all: bool,
}

impl<'de> DeserializeSeed<'de> for Filtered {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Filtered {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Filtered { keep_all: false })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.keep_all || KNOWN.contains(&key.as_str()) {
                let keep_all = !self.keep_all && USER_MAPS.contains(&key.as_str());
                let value = map.next_value_seed(Filtered { keep_all })?;
                members.insert(key, value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(members))
    }
}
