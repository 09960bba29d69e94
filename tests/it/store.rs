//! The queue engine against a real SQLite file with a manual clock: every rule of docs/semantics.md
//! §6 that needs stored state, and restarts; queues per region and the migration to them in
//! `regions`.

use esmd::domain::message::NewMessage;
use esmd::store::StoreError;

pub(super) fn fifo_msg(group: &str, body: &str) -> NewMessage {
    NewMessage {
        group_id: Some(group.into()),
        dedup_id: Some(format!("{group}-{body}")),
        ..NewMessage::body(body)
    }
}

pub(super) fn bodies(msgs: &[esmd::domain::message::Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.body.as_str()).collect()
}

pub(super) fn rejection(e: StoreError) -> esmd::domain::Rejection {
    match e {
        StoreError::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

mod fifo;
mod lifecycle;
mod messages;
mod regions;
