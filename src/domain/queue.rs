//! Queue names and queue settings: the SQS queue attributes with AWS's ranges and defaults
//! (docs/semantics.md §6.1).

use std::fmt;
use std::time::Duration;

use super::Rejection;

/// Longest visibility timeout, and the cap on a message's total invisibility after one receive.
pub const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// Longest queue or message delay.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Shortest retention period.
pub const MIN_RETENTION: Duration = Duration::from_secs(60);
/// Longest retention period.
pub const MAX_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
/// Smallest `MaximumMessageSize`.
pub const MIN_MESSAGE_SIZE: u32 = 1024;
/// Largest `MaximumMessageSize` (1 MiB since 2025).
pub const MAX_MESSAGE_SIZE: u32 = 1_048_576;
/// Longest long-poll wait.
pub const MAX_RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// FIFO deduplication window.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// Minimum spacing of two purges of one queue.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// A validated queue name: 1 to 80 characters of `[A-Za-z0-9_-]`, with an optional `.fifo`
/// suffix (counted in the 80) that makes the queue a FIFO queue; and the region the queue lives
/// in. Queues are per region, as in AWS: the same name in two regions is two queues. The region
/// is empty for the configured default region (`server.region`), so that a queue named by its
/// plain name (the configuration file, the REST shim, peek) is the default region's and a
/// change of `server.region` moves the default region's queues along (docs/architecture.md
/// §2.2).
///
/// [`QueueName::as_str`] is the queue's key, unique across regions: the plain name for the
/// default region, `<region>/<name>` for another (no name contains `/`). It is what maps, metric
/// labels and stored references (mappings, dead-letter sources) use; [`QueueName::name`] is the
/// name alone, for URLs, ARNs and the `queues.name` column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueName {
    /// `<name>` or `<region>/<name>`.
    key: String,
    /// Where the name starts in `key` (0 for the default region).
    name_at: usize,
}

impl QueueName {
    /// Parses a queue name (of the default region), with AWS's message on failure.
    pub fn parse(name: &str) -> Result<Self, Rejection> {
        let stem = name.strip_suffix(".fifo").unwrap_or(name);
        let ok = !stem.is_empty()
            && name.len() <= 80
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(QueueName {
                key: name.to_owned(),
                name_at: 0,
            })
        } else {
            Err(Rejection::invalid(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            ))
        }
    }

    /// Parses a key as [`QueueName::as_str`] gives it: `<name>` or `<region>/<name>`.
    pub fn from_key(key: &str) -> Result<Self, Rejection> {
        match key.split_once('/') {
            None => Self::parse(key),
            Some((region, name)) if is_region(region) => Ok(Self::parse(name)?.in_region(region)),
            Some(_) => Err(Rejection::invalid(format!(
                "{key:?} is not a queue name or <region>/<name>"
            ))),
        }
    }

    /// The same name in `region` (`""`: the default region). `region` must pass [`is_region`].
    #[must_use]
    pub fn in_region(&self, region: &str) -> Self {
        debug_assert!(region.is_empty() || is_region(region), "region {region:?}");
        let name = self.name();
        if region.is_empty() {
            return QueueName {
                key: name.to_owned(),
                name_at: 0,
            };
        }
        QueueName {
            key: format!("{region}/{name}"),
            name_at: region.len() + 1,
        }
    }

    /// The key: unique across regions (see the type's documentation).
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The name alone, without its region.
    pub fn name(&self) -> &str {
        &self.key[self.name_at..]
    }

    /// The queue's region; `""` for the default region.
    pub fn region(&self) -> &str {
        self.key[..self.name_at].trim_end_matches('/')
    }

    /// The queue's region, `default` standing for the default region.
    pub fn region_or<'a>(&'a self, default: &'a str) -> &'a str {
        match self.region() {
            "" => default,
            r => r,
        }
    }

    /// Whether the name ends in `.fifo`.
    pub fn is_fifo(&self) -> bool {
        self.key.ends_with(".fifo")
    }

    /// The queue's kind, from its name.
    pub fn kind(&self) -> QueueKind {
        if self.is_fifo() {
            QueueKind::Fifo
        } else {
            QueueKind::Standard
        }
    }
}

/// Whether `s` is a plausible region name: 1 to 32 lowercase letters, digits and hyphens
/// (`us-east-1`, `eu-central-2`). Anything else read from a request is ignored.
pub fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// Standard or FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// At-least-once, best-effort order.
    Standard,
    /// Ordered per message group, deduplicated.
    Fifo,
}

/// Where FIFO deduplication IDs are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupScope {
    /// Across the whole queue (AWS default).
    #[default]
    Queue,
    /// Within each message group.
    MessageGroup,
}

impl DedupScope {
    /// The SQS attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            DedupScope::Queue => "queue",
            DedupScope::MessageGroup => "messageGroup",
        }
    }

    /// Parses the SQS attribute value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queue" => Some(DedupScope::Queue),
            "messageGroup" => Some(DedupScope::MessageGroup),
            _ => None,
        }
    }
}

/// FIFO throughput mode (accepted and reported; esmd has no throughput quota to apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FifoThroughputLimit {
    /// AWS default.
    #[default]
    PerQueue,
    /// High-throughput mode; only with `messageGroup` deduplication scope.
    PerMessageGroupId,
}

impl FifoThroughputLimit {
    /// The SQS attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            FifoThroughputLimit::PerQueue => "perQueue",
            FifoThroughputLimit::PerMessageGroupId => "perMessageGroupId",
        }
    }

    /// Parses the SQS attribute value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "perQueue" => Some(FifoThroughputLimit::PerQueue),
            "perMessageGroupId" => Some(FifoThroughputLimit::PerMessageGroupId),
            _ => None,
        }
    }
}

/// Server-side encryption as a queue is configured for it. esmd encrypts nothing at rest; it keeps
/// the setting so that `SqsManagedSseEnabled`, `KmsMasterKeyId` and `KmsDataKeyReusePeriodSeconds`
/// read back as AWS reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Encryption {
    /// SSE-SQS (`SqsManagedSseEnabled` true): AWS's default for new queues.
    #[default]
    SqsManaged,
    /// SSE-KMS with this key id (`KmsMasterKeyId`).
    Kms(String),
    /// Neither.
    Off,
}

/// AWS's default `KmsDataKeyReusePeriodSeconds`.
pub const DEFAULT_KMS_DATA_KEY_REUSE: Duration = Duration::from_secs(300);

/// A redrive policy: where messages go after too many receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// The dead-letter queue (same account, same kind).
    pub dead_letter_queue: QueueName,
    /// Receives allowed before the next receive moves the message (1..=1000).
    pub max_receive_count: u32,
}

/// Every settable attribute of a queue, with AWS's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// `VisibilityTimeout`, 0s..12h, default 30s.
    pub visibility_timeout: Duration,
    /// `DelaySeconds`, 0s..15min, default 0.
    pub delay: Duration,
    /// `MessageRetentionPeriod`, 60s..14days, default 4 days.
    pub retention: Duration,
    /// `MaximumMessageSize` in bytes, 1KiB..1MiB, default 1MiB.
    pub max_message_size: u32,
    /// `ReceiveMessageWaitTimeSeconds`, 0s..20s, default 0.
    pub receive_wait: Duration,
    /// `RedrivePolicy`.
    pub redrive: Option<Redrive>,
    /// `RedriveAllowPolicy` as the JSON string given (kept and reported, not enforced).
    pub redrive_allow_policy: Option<String>,
    /// `ContentBasedDeduplication` (FIFO only).
    pub content_based_deduplication: bool,
    /// `DeduplicationScope` (FIFO only).
    pub deduplication_scope: DedupScope,
    /// `FifoThroughputLimit` (FIFO only).
    pub fifo_throughput_limit: FifoThroughputLimit,
    /// `Policy`, the JSON document as given or as AddPermission built it (kept and reported;
    /// esmd has no IAM to enforce it with).
    pub policy: Option<String>,
    /// `SqsManagedSseEnabled` / `KmsMasterKeyId`.
    pub encryption: Encryption,
    /// `KmsDataKeyReusePeriodSeconds`, 60s..24h (reported while a KMS key is set).
    pub kms_data_key_reuse: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            visibility_timeout: Duration::from_secs(30),
            delay: Duration::ZERO,
            retention: Duration::from_secs(4 * 24 * 3600),
            max_message_size: MAX_MESSAGE_SIZE,
            receive_wait: Duration::ZERO,
            redrive: None,
            redrive_allow_policy: None,
            content_based_deduplication: false,
            deduplication_scope: DedupScope::Queue,
            fifo_throughput_limit: FifoThroughputLimit::PerQueue,
            policy: None,
            encryption: Encryption::SqsManaged,
            kms_data_key_reuse: DEFAULT_KMS_DATA_KEY_REUSE,
        }
    }
}

/// A problem with one setting: the setting's name (as in the config file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// The config key within the queue's table, e.g. `visibility_timeout`.
    pub key: &'static str,
    /// What is wrong, e.g. `45000s is above the maximum of 12h`.
    pub message: String,
}

impl QueueSettings {
    /// Checks every range and the FIFO-only rules; returns every problem found.
    pub fn problems(&self, kind: QueueKind) -> Vec<SettingProblem> {
        let mut out = Vec::new();
        let mut range = |key, v: Duration, min: Duration, max: Duration| {
            if v < min || v > max {
                out.push(SettingProblem {
                    key,
                    message: format!(
                        "{} is outside the range {}..{}",
                        humantime::format_duration(v),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                });
            }
        };
        range(
            "visibility_timeout",
            self.visibility_timeout,
            Duration::ZERO,
            MAX_VISIBILITY_TIMEOUT,
        );
        range("delay", self.delay, Duration::ZERO, MAX_DELAY);
        range("retention", self.retention, MIN_RETENTION, MAX_RETENTION);
        range(
            "receive_wait",
            self.receive_wait,
            Duration::ZERO,
            MAX_RECEIVE_WAIT,
        );
        if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&self.max_message_size) {
            out.push(SettingProblem {
                key: "max_message_size",
                message: format!(
                    "{} bytes is outside the range {MIN_MESSAGE_SIZE}..{MAX_MESSAGE_SIZE}",
                    self.max_message_size
                ),
            });
        }
        if let Some(r) = &self.redrive {
            if !(1..=1000).contains(&r.max_receive_count) {
                out.push(SettingProblem {
                    key: "max_receive_count",
                    message: format!("{} is outside the range 1..1000", r.max_receive_count),
                });
            }
            if r.dead_letter_queue.kind() != kind {
                out.push(SettingProblem {
                    key: "dead_letter_queue",
                    message: format!(
                        "{} is not of the same type as this queue (a FIFO queue needs a FIFO dead-letter queue, a standard queue a standard one)",
                        r.dead_letter_queue
                    ),
                });
            }
        }
        if kind == QueueKind::Standard {
            if self.content_based_deduplication {
                out.push(SettingProblem {
                    key: "content_based_deduplication",
                    message: "is only allowed on a FIFO queue (a name ending in .fifo)".into(),
                });
            }
            if self.deduplication_scope != DedupScope::Queue {
                out.push(SettingProblem {
                    key: "deduplication_scope",
                    message: "is only allowed on a FIFO queue (a name ending in .fifo)".into(),
                });
            }
            if self.fifo_throughput_limit != FifoThroughputLimit::PerQueue {
                out.push(SettingProblem {
                    key: "fifo_throughput_limit",
                    message: "is only allowed on a FIFO queue (a name ending in .fifo)".into(),
                });
            }
        } else if self.fifo_throughput_limit == FifoThroughputLimit::PerMessageGroupId
            && self.deduplication_scope != DedupScope::MessageGroup
        {
            out.push(SettingProblem {
                key: "fifo_throughput_limit",
                message: "perMessageGroupId requires deduplication_scope = \"messageGroup\"".into(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(QueueName::parse("orders").is_ok());
        assert!(QueueName::parse("events.fifo").unwrap().is_fifo());
        assert!(QueueName::parse(".fifo").is_err());
        assert!(QueueName::parse("a.b").is_err());
        assert!(QueueName::parse(&"a".repeat(80)).is_ok());
        assert!(QueueName::parse(&"a".repeat(81)).is_err());
        assert!(QueueName::parse(&format!("{}.fifo", "a".repeat(75))).is_ok());
        assert!(QueueName::parse(&format!("{}.fifo", "a".repeat(76))).is_err());
        assert!(QueueName::parse("").is_err());
    }

    #[test]
    fn a_name_in_another_region_is_another_key() {
        let home = QueueName::parse("orders.fifo").unwrap();
        let away = home.in_region("eu-west-1");
        assert_ne!(home, away);
        assert_eq!(away.as_str(), "eu-west-1/orders.fifo");
        assert_eq!((away.name(), away.region()), ("orders.fifo", "eu-west-1"));
        assert_eq!((home.name(), home.region()), ("orders.fifo", ""));
        assert!(away.is_fifo());
        assert_eq!(away.region_or("us-east-1"), "eu-west-1");
        assert_eq!(home.region_or("us-east-1"), "us-east-1");
        assert_eq!(away.in_region(""), home);
        assert_eq!(QueueName::from_key(away.as_str()).unwrap(), away);
        assert_eq!(QueueName::from_key("orders.fifo").unwrap(), home);
        assert!(QueueName::from_key("EU/orders").is_err());
        assert!(QueueName::from_key("eu-west-1/a.b").is_err());
        assert!(QueueName::from_key("a/b/c").is_err());
    }

    #[test]
    fn default_settings_are_valid_for_both_kinds() {
        assert!(QueueSettings::default()
            .problems(QueueKind::Standard)
            .is_empty());
        assert!(QueueSettings::default()
            .problems(QueueKind::Fifo)
            .is_empty());
    }

    #[test]
    fn ranges_are_checked() {
        let s = QueueSettings {
            visibility_timeout: Duration::from_secs(43_201),
            retention: Duration::from_secs(59),
            max_message_size: 1023,
            content_based_deduplication: true,
            ..Default::default()
        };
        let keys: Vec<_> = s
            .problems(QueueKind::Standard)
            .iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "visibility_timeout",
                "retention",
                "max_message_size",
                "content_based_deduplication"
            ]
        );
    }
}
