//! Peek and explain: where a message stands without receiving it ([`Store::peek`],
//! [`Store::explain`]), the receivers that say who holds a message in flight (and the receive
//! and delete a mapping makes to be named: [`Store::receive_wait_for_mapping`],
//! [`Store::delete_filtered`]).
//!
//! Everything here reads on the reader pool (`sql/peek.rs`): no receive count, visibility or
//! receipt changes. A stored message is visible, delayed, in flight (until when, by whom),
//! blocked (a FIFO message behind an earlier one of its group that is not visible), or expired
//! and not yet swept; a message no longer stored is told by its tombstone (`sql/tombstones.rs`)
//! for `storage.tombstone_retention`.
//!
//! Who holds a message: each receive's receipt token carries a receiver number in its low 16
//! bits (`sql/claim.rs`): 0 for an SQS or REST client, else a mapping registered by name in
//! `receivers` on its first receive. The number costs no column and no byte (a token is 8
//! bytes either way), so the rule that a receive never grows a row holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::StoreError;
use super::sql::claim::receiver_of;
use super::sql::peek::{self as read, PeekRow, TombRow};
pub use super::sql::tombstones::Fate;
use super::types::EntryResults;
use super::{writer, SqliteStore};
use crate::domain::message::Message;
use crate::domain::queue::QueueName;
use crate::domain::Timestamp;

/// Who received a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receiver {
    /// An SQS or REST client (ReceiveMessage).
    Client,
    /// A mapping, by name.
    Mapping(String),
    /// A number no receiver has (a token written before esmd recorded receivers).
    Unknown,
}

/// Where a stored message stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageState {
    /// Receivable now.
    Visible,
    /// Waiting out a delay until `until`.
    Delayed {
        /// When it becomes visible.
        until: Timestamp,
    },
    /// Received, invisible until `until`.
    InFlight {
        /// When its visibility timeout runs out.
        until: Timestamp,
        /// Who received it.
        by: Receiver,
    },
    /// A FIFO message behind `behind`, the earliest message of `group` before it that is not
    /// visible (in flight or delayed); `head` is the group's oldest message.
    Blocked {
        /// The message group.
        group: String,
        /// The message it waits for.
        behind: String,
        /// The group's head.
        head: String,
    },
    /// Past its queue's retention at `at`; no receive hands it out, and the sweep deletes it.
    Expired {
        /// When it expired.
        at: Timestamp,
    },
}

/// A stored message and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    /// The message id.
    pub message_id: String,
    /// The body.
    pub body: String,
    /// When it was sent.
    pub sent_at: Timestamp,
    /// How many times it was received.
    pub receive_count: u32,
    /// Its FIFO message group.
    pub group_id: Option<String>,
    /// The queue it was moved from, in a dead-letter queue.
    pub dead_letter_source: Option<String>,
    /// Where it stands.
    pub state: MessageState,
}

/// What became of a message no longer stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// The message id.
    pub message_id: String,
    /// Deleted, filtered out, expired or dead-lettered.
    pub fate: Fate,
    /// When.
    pub at: Timestamp,
    /// Its receives by then (for a dead-lettered message, the receives before the move).
    pub receive_count: u32,
    /// Who held it when it was deleted or filtered out (the receiver of its latest receive);
    /// `None` if it was never received.
    pub by: Option<Receiver>,
    /// Where it was moved, when dead-lettered.
    pub dead_letter_queue: Option<String>,
    /// When the tombstone goes.
    pub kept_until: Timestamp,
}

impl TombRow {
    /// Whether the tombstone names who held the message (deleted or filtered out), which the
    /// store resolves from the receipt's receiver number.
    pub(super) fn names_holder(&self) -> bool {
        matches!(self.fate(), Fate::Deleted | Fate::FilteredOut)
    }

    fn fate(&self) -> Fate {
        Fate::from_code(self.state).unwrap_or(Fate::Deleted)
    }

    /// The tombstone of `message_id`, held by `by`, kept for `keep_ms`: the same on both
    /// backends.
    pub(super) fn into_tombstone(
        self,
        message_id: &str,
        by: Option<Receiver>,
        keep_ms: i64,
    ) -> Tombstone {
        Tombstone {
            message_id: message_id.to_owned(),
            fate: self.fate(),
            at: Timestamp::from_millis(self.at),
            receive_count: u32::try_from(self.receive_count).unwrap_or(0),
            by,
            dead_letter_queue: self.dead_letter_queue,
            kept_until: Timestamp::from_millis(self.at.saturating_add(keep_ms)),
        }
    }
}

/// What [`Store::explain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Explained {
    /// The message is stored.
    Stored(Peeked),
    /// The message is gone; its tombstone says how.
    Gone(Tombstone),
    /// No such message, and no tombstone (never sent to this queue, or its tombstone expired).
    Unknown,
}

/// Receiver names by number and numbers by name, as registered (cheap to clone).
#[derive(Debug, Clone, Default)]
pub(super) struct Receivers(Arc<Mutex<HashMap<String, u16>>>);

impl Receivers {
    fn get(&self, name: &str) -> Option<u16> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).copied()
    }

    fn name_of(&self, id: u16) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone())
    }

    fn insert(&self, name: &str, id: u16) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(name.to_owned(), id);
    }
}

impl SqliteStore {
    /// The receiver number of mapping `name`, registered on its first use. Should that fail
    /// (a database error, every number taken), the mapping's receives are told as a client's.
    pub(super) async fn receiver(&self, name: &str) -> u16 {
        if let Some(id) = self.receivers.get(name) {
            return id;
        }
        match read::register_receiver(&self.writer, name).await {
            Ok(Some(id)) => {
                self.receivers.insert(name, id);
                id
            }
            Ok(None) => {
                tracing::warn!(mapping = name, "every receiver number is taken: explain tells this mapping's messages in flight as a client's");
                0
            }
            Err(e) => {
                tracing::warn!(mapping = name, error = %crate::domain::error::chain(&e), "could not record the mapping as a receiver: explain tells its messages in flight as a client's until it is");
                0
            }
        }
    }

    /// [`Store::receive_wait`] by the mapping `mapping`: the messages it claims say so while
    /// they are in flight ([`Store::explain`]).
    ///
    /// # Cancel safety
    /// As [`Store::receive_wait`].
    pub async fn receive_wait_for_mapping(
        &self,
        mapping: &str,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        let receiver = self.receiver(mapping).await;
        self.waiter_for(receiver)
            .receive_wait(queue, max, visibility, wait)
            .await
    }

    /// Deletes like [`Store::delete`] the messages a mapping's filters dropped: their
    /// tombstones say `filtered_out`.
    pub async fn delete_filtered(
        &self,
        queue: &QueueName,
        handles: &[String],
    ) -> Result<EntryResults<()>, StoreError> {
        self.delete_as(queue, handles, Fate::FilteredOut).await
    }

    pub(super) async fn delete_as(
        &self,
        queue: &QueueName,
        handles: &[String],
        fate: Fate,
    ) -> Result<EntryResults<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        let op = writer::Op::Delete {
            queue: queue.clone(),
            handles: handles.to_vec(),
            fate,
            reply,
        };
        self.ops.submit(op, rx).await
    }

    /// Reports what a sweep did to tombstones.
    pub(super) fn report_tombstones(&self, swept: &super::sql::retention::Swept) {
        let (written, skipped, gone) = (
            swept.tombstones_written,
            swept.tombstones_skipped,
            swept.tombstones_swept,
        );
        if written + skipped + gone > 0 {
            self.observer.emit(super::StoreEvent::Tombstones {
                written,
                skipped,
                swept: gone,
            });
        }
    }

    async fn receiver_named(&self, token: Option<i64>) -> Result<Option<Receiver>, StoreError> {
        let Some(token) = token.filter(|t| *t != super::rows::UNRECEIVED) else {
            return Ok(None);
        };
        let id = receiver_of(token);
        if id == 0 {
            return Ok(Some(Receiver::Client));
        }
        if let Some(name) = self.receivers.name_of(id) {
            return Ok(Some(Receiver::Mapping(name)));
        }
        let name = self.reported(read::receiver_name(&self.reader, id).await)?;
        Ok(Some(name.map_or(Receiver::Unknown, Receiver::Mapping)))
    }

    /// The first `limit` messages of `queue` in send order, with where each stands. Receives
    /// nothing and changes nothing.
    ///
    /// # Errors
    /// `Rejected(QueueDoesNotExist)` for an unknown queue.
    pub async fn peek(&self, queue: &QueueName, limit: u32) -> Result<Vec<Peeked>, StoreError> {
        let q = self.queue(queue).await?;
        let rows = self.reported(read::list(&self.reader, q.id, limit).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(
                self.peeked(q.id, q.name.is_fifo(), q.settings.retention, row)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Where message `message_id` of `queue` stands, or what became of it. Changes nothing.
    ///
    /// # Errors
    /// `Rejected(QueueDoesNotExist)` for an unknown queue.
    pub async fn explain(
        &self,
        queue: &QueueName,
        message_id: &str,
    ) -> Result<Explained, StoreError> {
        let q = self.queue(queue).await?;
        if let Some(row) = self.reported(read::one(&self.reader, q.id, message_id).await)? {
            let peeked = self
                .peeked(q.id, q.name.is_fifo(), q.settings.retention, row)
                .await?;
            return Ok(Explained::Stored(peeked));
        }
        let keep = self.sweep_policy.tombstone_retention_ms;
        if keep == 0 {
            return Ok(Explained::Unknown);
        }
        let since = self.now() - keep;
        let Some(t) =
            self.reported(read::tombstone(&self.reader, q.id, message_id, since).await)?
        else {
            return Ok(Explained::Unknown);
        };
        Ok(Explained::Gone(self.tombstone(message_id, t, keep).await?))
    }

    async fn tombstone(
        &self,
        message_id: &str,
        t: TombRow,
        keep_ms: i64,
    ) -> Result<Tombstone, StoreError> {
        let by = if t.names_holder() {
            self.receiver_named(t.receipt).await?
        } else {
            None
        };
        Ok(t.into_tombstone(message_id, by, keep_ms))
    }

    async fn peeked(
        &self,
        queue_id: i64,
        fifo: bool,
        retention: Duration,
        row: PeekRow,
    ) -> Result<Peeked, StoreError> {
        let now = self.now();
        let expires = row
            .retain_from
            .saturating_add(super::rows::to_ms(retention));
        let state = if expires <= now {
            MessageState::Expired {
                at: Timestamp::from_millis(expires),
            }
        } else if row.visible_at > now && row.in_flight {
            MessageState::InFlight {
                until: Timestamp::from_millis(row.visible_at),
                by: self
                    .receiver_named(row.receipt)
                    .await?
                    .unwrap_or(Receiver::Unknown),
            }
        } else if row.visible_at > now {
            MessageState::Delayed {
                until: Timestamp::from_millis(row.visible_at),
            }
        } else {
            match (&row.group_id, row.is_head) {
                // A standard (fair) queue's group orders nothing.
                (Some(group), false) if fifo => {
                    let found = read::blocker(&self.reader, queue_id, group, row.id, now).await;
                    match self.reported(found)? {
                        Some((behind, head)) => MessageState::Blocked {
                            group: group.clone(),
                            behind,
                            head,
                        },
                        None => MessageState::Visible,
                    }
                }
                _ => MessageState::Visible,
            }
        };
        Ok(Peeked {
            message_id: row.message_id,
            body: row.body,
            sent_at: Timestamp::from_millis(row.sent_at),
            receive_count: u32::try_from(row.receive_count).unwrap_or(0),
            group_id: row.group_id,
            dead_letter_source: row.dead_letter_source,
            state,
        })
    }
}
