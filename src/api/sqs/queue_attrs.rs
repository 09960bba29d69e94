//! Queue attributes on the wire (docs/semantics.md §6.1): the string map of CreateQueue,
//! SetQueueAttributes and GetQueueAttributes, converted to and from [`QueueSettings`].
//!
//! Every value is a string; integers are whole seconds or bytes, booleans lower-case, timestamps
//! epoch seconds, and `RedrivePolicy` a JSON string formatted as AWS formats it
//! (`{"deadLetterTargetArn":"arn:…","maxReceiveCount":5}`). `Policy`, `KmsMasterKeyId`,
//! `KmsDataKeyReusePeriodSeconds` and `SqsManagedSseEnabled` are stored and reported as AWS
//! reports them (a KMS key turns SSE-SQS off; the reuse period shows only with a key), but not
//! enforced: esmd has no IAM and encrypts nothing at rest.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Ctx;
use crate::domain::queue::{
    DedupScope, Encryption, FifoThroughputLimit, QueueKind, QueueSettings, Redrive, MAX_DELAY,
    MAX_MESSAGE_SIZE, MAX_RECEIVE_WAIT, MAX_RETENTION, MAX_VISIBILITY_TIMEOUT, MIN_MESSAGE_SIZE,
    MIN_RETENTION,
};
use crate::domain::{RejectCode, Rejection};
use crate::store::{QueueCounts, QueueInfo};

/// Attributes every queue reports for `All`, in AWS's (alphabetical) order.
const STANDARD_ALL: [&str; 12] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "DelaySeconds",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
];

/// What FIFO queues add for `All`.
const FIFO_ALL: [&str; 4] = [
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoQueue",
    "FifoThroughputLimit",
];

/// Reported when set.
const OPTIONAL: [&str; 5] = [
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "Policy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
];

/// Read-only: reported, never set.
const READ_ONLY: [&str; 6] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

/// Whether `name` is a queue attribute SQS knows.
pub(crate) fn known(name: &str) -> bool {
    STANDARD_ALL.contains(&name) || FIFO_ALL.contains(&name) || OPTIONAL.contains(&name)
}

/// Whether the attribute needs message counts.
pub(crate) fn needs_counts(name: &str) -> bool {
    name.starts_with("ApproximateNumberOfMessages")
}

/// The names `All` stands for on a queue of `kind` with `settings`.
pub(crate) fn all_names(kind: QueueKind, settings: &QueueSettings) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = STANDARD_ALL.to_vec();
    if kind == QueueKind::Fifo {
        names.extend(FIFO_ALL);
    }
    if settings.redrive.is_some() {
        names.push("RedrivePolicy");
    }
    if settings.redrive_allow_policy.is_some() {
        names.push("RedriveAllowPolicy");
    }
    if settings.policy.is_some() {
        names.push("Policy");
    }
    if matches!(settings.encryption, Encryption::Kms(_)) {
        names.extend(["KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds"]);
    }
    names.sort_unstable();
    names
}

fn unknown(name: &str) -> Rejection {
    Rejection::new(
        RejectCode::InvalidAttributeName,
        format!("Unknown Attribute {name}."),
    )
}

fn bad_value(name: &str, reason: &str) -> Rejection {
    Rejection::new(
        RejectCode::InvalidAttributeValue,
        format!("Invalid value for the parameter {name}. Reason: {reason}"),
    )
}

fn seconds(name: &str, v: &str, min: Duration, max: Duration) -> Result<Duration, Rejection> {
    match v.parse::<u64>() {
        Ok(n) if (min.as_secs()..=max.as_secs()).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(bad_value(
            name,
            &format!(
                "Must be an integer from {} to {}.",
                min.as_secs(),
                max.as_secs()
            ),
        )),
    }
}

fn boolean(name: &str, v: &str) -> Result<bool, Rejection> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad_value(name, "Must be true or false.")),
    }
}

/// Applies the attribute map `attrs` to `base` for a queue of `kind`: every rule of
/// SetQueueAttributes (and of CreateQueue, whose `FifoQueue` rules the caller checks first).
pub(crate) fn apply(
    ctx: &Ctx,
    kind: QueueKind,
    base: &QueueSettings,
    attrs: &BTreeMap<String, String>,
) -> Result<QueueSettings, Rejection> {
    let kms_key = attrs.get("KmsMasterKeyId").is_some_and(|k| !k.is_empty());
    let sqs_sse = attrs
        .get("SqsManagedSseEnabled")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if kms_key && sqs_sse {
        return Err(Rejection::new(
            RejectCode::InvalidAttributeName,
            "You can use one type of server-side encryption (SSE) at one time. You can either \
             enable KMS SSE or SQS SSE.",
        ));
    }
    let mut s = base.clone();
    for (name, v) in attrs {
        let name = name.as_str();
        if READ_ONLY.contains(&name) || !known(name) {
            return Err(unknown(name));
        }
        if kind == QueueKind::Standard {
            match name {
                "FifoQueue" | "ContentBasedDeduplication" => return Err(unknown(name)),
                "DeduplicationScope" | "FifoThroughputLimit" => {
                    return Err(Rejection::new(
                        RejectCode::InvalidAttributeName,
                        format!("You can specify the {name} only when FifoQueue is set to true."),
                    ))
                }
                _ => {}
            }
        }
        match name {
            "VisibilityTimeout" => {
                s.visibility_timeout = seconds(name, v, Duration::ZERO, MAX_VISIBILITY_TIMEOUT)?
            }
            "DelaySeconds" => s.delay = seconds(name, v, Duration::ZERO, MAX_DELAY)?,
            "MessageRetentionPeriod" => {
                s.retention = seconds(name, v, MIN_RETENTION, MAX_RETENTION)?
            }
            "ReceiveMessageWaitTimeSeconds" => {
                s.receive_wait = seconds(name, v, Duration::ZERO, MAX_RECEIVE_WAIT)?
            }
            "MaximumMessageSize" => {
                s.max_message_size = match v.parse::<u32>() {
                    Ok(n) if (MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&n) => n,
                    _ => {
                        return Err(bad_value(
                            name,
                            &format!(
                                "Must be an integer from {MIN_MESSAGE_SIZE} to {MAX_MESSAGE_SIZE}."
                            ),
                        ))
                    }
                }
            }
            "RedrivePolicy" => s.redrive = redrive(ctx, v)?,
            "RedriveAllowPolicy" => s.redrive_allow_policy = redrive_allow(v)?,
            "FifoQueue" if !v.eq_ignore_ascii_case("true") => {
                return Err(bad_value(name, "Modifying queue type is not supported."));
            }
            "ContentBasedDeduplication" => s.content_based_deduplication = boolean(name, v)?,
            "DeduplicationScope" => {
                s.deduplication_scope = DedupScope::parse(v)
                    .ok_or_else(|| bad_value(name, "Must be queue or messageGroup."))?
            }
            "FifoThroughputLimit" => {
                s.fifo_throughput_limit = FifoThroughputLimit::parse(v)
                    .ok_or_else(|| bad_value(name, "Must be perQueue or perMessageGroupId."))?
            }
            "SqsManagedSseEnabled" => {
                s.encryption = match (boolean(name, v)?, s.encryption) {
                    (true, _) => Encryption::SqsManaged,
                    (false, Encryption::Kms(key)) => Encryption::Kms(key),
                    (false, _) => Encryption::Off,
                }
            }
            "KmsMasterKeyId" if v.is_empty() => {
                if matches!(s.encryption, Encryption::Kms(_)) {
                    s.encryption = Encryption::Off;
                }
            }
            "KmsMasterKeyId" => s.encryption = Encryption::Kms(v.clone()),
            "KmsDataKeyReusePeriodSeconds" => {
                s.kms_data_key_reuse = seconds(
                    name,
                    v,
                    Duration::from_secs(60),
                    Duration::from_secs(86_400),
                )?;
            }
            "Policy" if v.is_empty() => s.policy = None,
            "Policy" => {
                if !serde_json::from_str::<serde_json::Value>(v).is_ok_and(|p| p.is_object()) {
                    return Err(bad_value(name, "Must be a JSON policy document."));
                }
                s.policy = Some(v.clone());
            }
            _ => {}
        }
    }
    if let Some(p) = s.problems(kind).into_iter().next() {
        let attr = match p.key {
            "dead_letter_queue" | "max_receive_count" => "RedrivePolicy",
            "fifo_throughput_limit" => "FifoThroughputLimit",
            "deduplication_scope" => "DeduplicationScope",
            "content_based_deduplication" => "ContentBasedDeduplication",
            "visibility_timeout" => "VisibilityTimeout",
            "delay" => "DelaySeconds",
            "retention" => "MessageRetentionPeriod",
            "receive_wait" => "ReceiveMessageWaitTimeSeconds",
            "max_message_size" => "MaximumMessageSize",
            other => other,
        };
        return Err(bad_value(attr, &p.message));
    }
    Ok(s)
}

/// Parses a `RedrivePolicy`; `""` removes it.
fn redrive(ctx: &Ctx, v: &str) -> Result<Option<Redrive>, Rejection> {
    if v.is_empty() {
        return Ok(None);
    }
    let invalid = |reason: &str| {
        Rejection::invalid(format!(
            "Value {} for parameter RedrivePolicy is invalid. Reason: {reason}",
            super::shorten(v)
        ))
    };
    let Ok(serde_json::Value::Object(p)) = serde_json::from_str::<serde_json::Value>(v) else {
        return Err(invalid("Redrive policy is not a valid JSON map."));
    };
    let Some(arn) = p.get("deadLetterTargetArn").and_then(|a| a.as_str()) else {
        return Err(invalid(
            "Redrive policy does not contain mandatory attribute: deadLetterTargetArn.",
        ));
    };
    let count = match p.get("maxReceiveCount") {
        None => {
            return Err(invalid(
                "Redrive policy does not contain mandatory attribute: maxReceiveCount.",
            ))
        }
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
        Some(_) => None,
    };
    let count = match count {
        Some(n @ 1..=1000) => n as u32,
        _ => {
            let shown = p
                .get("maxReceiveCount")
                .map(|c| c.to_string())
                .unwrap_or_default();
            return Err(invalid(&format!(
                "Invalid value for maxReceiveCount: {}, valid values are from 1 to 1000 both inclusive.",
                shown.trim_matches('"')
            )));
        }
    };
    let Some(dead_letter_queue) = ctx.resolve_arn(arn) else {
        return Err(invalid("Dead-letter target does not exist."));
    };
    Ok(Some(Redrive {
        dead_letter_queue,
        max_receive_count: count,
    }))
}

/// Checks a `RedriveAllowPolicy` for shape; `""` removes it.
fn redrive_allow(v: &str) -> Result<Option<String>, Rejection> {
    if v.is_empty() {
        return Ok(None);
    }
    let parsed = serde_json::from_str::<serde_json::Value>(v).ok();
    let permission = parsed
        .as_ref()
        .and_then(|p| p.get("redrivePermission"))
        .and_then(|p| p.as_str());
    match permission {
        Some("allowAll" | "denyAll" | "byQueue") => Ok(Some(v.to_owned())),
        _ => Err(Rejection::invalid(format!(
            "Value {} for parameter RedriveAllowPolicy is invalid. Reason: Amazon SQS can't create the redrive allow policy, as it's in an unsupported format.",
            super::shorten(v)
        ))),
    }
}

/// Attribute `name` of `queue` as GetQueueAttributes reports it, or `None` when it does not
/// apply (a FIFO attribute of a standard queue, an unset policy, an accepted-but-unstored one).
pub(crate) fn render(
    ctx: &Ctx,
    name: &str,
    queue: &QueueInfo,
    counts: Option<&QueueCounts>,
) -> Option<String> {
    let s = &queue.settings;
    let fifo = queue.name.kind() == QueueKind::Fifo;
    let v = match name {
        "VisibilityTimeout" => s.visibility_timeout.as_secs().to_string(),
        "DelaySeconds" => s.delay.as_secs().to_string(),
        "MessageRetentionPeriod" => s.retention.as_secs().to_string(),
        "MaximumMessageSize" => s.max_message_size.to_string(),
        "ReceiveMessageWaitTimeSeconds" => s.receive_wait.as_secs().to_string(),
        "RedrivePolicy" => {
            let r = s.redrive.as_ref()?;
            format!(
                "{{\"deadLetterTargetArn\":{},\"maxReceiveCount\":{}}}",
                serde_json::Value::String(ctx.queue_arn(&r.dead_letter_queue)),
                r.max_receive_count
            )
        }
        "RedriveAllowPolicy" => s.redrive_allow_policy.clone()?,
        "FifoQueue" if fifo => "true".to_owned(),
        "ContentBasedDeduplication" if fifo => s.content_based_deduplication.to_string(),
        "DeduplicationScope" if fifo => s.deduplication_scope.as_str().to_owned(),
        "FifoThroughputLimit" if fifo => s.fifo_throughput_limit.as_str().to_owned(),
        "SqsManagedSseEnabled" => (s.encryption == Encryption::SqsManaged).to_string(),
        "KmsMasterKeyId" => match &s.encryption {
            Encryption::Kms(key) => key.clone(),
            _ => return None,
        },
        "KmsDataKeyReusePeriodSeconds" => match &s.encryption {
            Encryption::Kms(_) => s.kms_data_key_reuse.as_secs().to_string(),
            _ => return None,
        },
        "Policy" => s.policy.clone()?,
        "QueueArn" => ctx.queue_arn(&queue.name),
        "CreatedTimestamp" => queue.created_at.as_secs().to_string(),
        "LastModifiedTimestamp" => queue.last_modified_at.as_secs().to_string(),
        "ApproximateNumberOfMessages" => counts?.visible.to_string(),
        "ApproximateNumberOfMessagesNotVisible" => counts?.in_flight.to_string(),
        "ApproximateNumberOfMessagesDelayed" => counts?.delayed.to_string(),
        _ => return None,
    };
    Some(v)
}

/// The first attribute in `given` whose value differs between `existing` and `wanted`
/// (CreateQueue's idempotence rule).
pub(crate) fn first_difference<'a>(
    ctx: &Ctx,
    given: &'a BTreeMap<String, String>,
    existing: &QueueInfo,
    wanted: &QueueSettings,
) -> Option<&'a str> {
    let wanted_info = QueueInfo {
        settings: wanted.clone(),
        ..existing.clone()
    };
    given
        .keys()
        .map(String::as_str)
        .find(|name| render(ctx, name, existing, None) != render(ctx, name, &wanted_info, None))
}
