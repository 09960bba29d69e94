//! Batch assembly under the mapping's limits: at most `batch_size` records, and an assembled
//! event of at most `max_payload` bytes (the whole event JSON counted). A record that does not
//! fit is reported back so the caller can carry it into the next batch: never dropped.

use crate::domain::event::{assemble_event, event_size};
use crate::domain::message::Message;

/// A batch being filled: the messages and their encoded event records.
#[derive(Debug, Default)]
pub struct Batch {
    messages: Vec<Message>,
    records: Vec<String>,
    record_bytes: usize,
}

impl Batch {
    /// Adds `msg` (encoded as `record`) if the batch stays within `max_records` and
    /// `max_payload`; otherwise gives both back.
    #[must_use = "a message that does not fit must be carried, never dropped"]
    pub fn try_push(
        &mut self,
        msg: Message,
        record: String,
        max_records: usize,
        max_payload: usize,
    ) -> Option<(Message, String)> {
        let fits = self.messages.len() < max_records
            && event_size(self.record_bytes + record.len(), self.records.len() + 1) <= max_payload;
        if !fits {
            return Some((msg, record));
        }
        self.record_bytes += record.len();
        self.messages.push(msg);
        self.records.push(record);
        None
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The messages, in batch order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Size of the assembled event in bytes.
    pub fn payload_size(&self) -> usize {
        event_size(self.record_bytes, self.records.len())
    }

    /// The assembled `{"Records":[...]}` event.
    pub fn event(&self) -> Vec<u8> {
        assemble_event(&self.records)
    }

    /// Takes the messages and their records out, in order, leaving the batch empty.
    pub fn take_all(&mut self) -> Vec<(Message, String)> {
        self.record_bytes = 0;
        let records = std::mem::take(&mut self.records);
        std::mem::take(&mut self.messages)
            .into_iter()
            .zip(records)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    fn msg(i: usize) -> Message {
        Message {
            message_id: format!("m{i}"),
            receipt_handle: String::new(),
            body: String::new(),
            md5_of_body: String::new(),
            attributes: Default::default(),
            trace_header: None,
            sent_at: Timestamp::default(),
            receive_count: 1,
            first_receive_at: Timestamp::default(),
            sender_id: String::new(),
            group_id: None,
            dedup_id: None,
            sequence_number: None,
            dead_letter_source: None,
        }
    }

    #[test]
    fn respects_count_and_payload_and_gives_back_what_does_not_fit() {
        let mut b = Batch::default();
        let rec = "x".repeat(100);
        // The envelope {"Records":[ ]} is 14 bytes; two records of 100 and a comma make 215.
        let cap = 215;
        assert!(b.try_push(msg(0), rec.clone(), 10, cap).is_none());
        assert!(b.try_push(msg(1), rec.clone(), 10, cap).is_none());
        assert_eq!(b.payload_size(), cap);
        assert_eq!(b.event().len(), cap);
        let (back, _) = b
            .try_push(msg(2), rec.clone(), 10, cap)
            .expect("does not fit");
        assert_eq!(back.message_id, "m2");
        let mut c = Batch::default();
        assert!(c.try_push(msg(0), rec.clone(), 1, usize::MAX).is_none());
        assert!(c.try_push(msg(1), rec, 1, usize::MAX).is_some());
    }
}
