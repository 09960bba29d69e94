//! `type = "log"` functions: built in, for demos and smoke tests. Logs one info line per record
//! (message id, receive count, the start of the body) and always succeeds with a null response.

use serde::Deserialize;

use super::{Invocation, InvokeTarget};
use crate::domain::error::chain;

/// How much of a body the log shows, in characters.
const MAX_BODY_CHARS: usize = 200;

/// The parts of the SQS event this function reads.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Records")]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "messageId")]
    message_id: String,
    #[serde(rename = "body")]
    body: String,
    #[serde(rename = "attributes")]
    attributes: SystemAttributes,
}

#[derive(Deserialize)]
struct SystemAttributes {
    #[serde(rename = "ApproximateReceiveCount")]
    approximate_receive_count: String,
}

/// Logs each record of `payload`; see the module docs.
pub(super) fn invoke(target: &InvokeTarget<'_>, payload: &[u8]) -> Invocation {
    let event: Event = match serde_json::from_slice(payload) {
        Ok(event) => event,
        Err(e) => {
            // esmd built this event itself; a log function has no one to fail to.
            tracing::warn!(function = target.function, mapping = target.mapping, error = %chain(&e), "event is not an SQS event");
            return Invocation::Returned(None);
        }
    };
    for record in &event.records {
        tracing::info!(
            function = target.function,
            mapping = target.mapping,
            message_id = %record.message_id,
            receive_count = %record.attributes.approximate_receive_count,
            body = %shorten(&record.body),
            "record"
        );
    }
    Invocation::Returned(None)
}

/// The first [`MAX_BODY_CHARS`] characters of `body`, with `…` if there were more.
fn shorten(body: &str) -> String {
    match body.char_indices().nth(MAX_BODY_CHARS) {
        None => body.to_owned(),
        Some((end, _)) => format!("{}…", &body[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_are_shortened_on_a_char_boundary() {
        assert_eq!(shorten("hello"), "hello");
        let long = "ü".repeat(MAX_BODY_CHARS + 5);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_BODY_CHARS + 1);
        assert!(short.ends_with('…'));
        assert_eq!(shorten(&"a".repeat(MAX_BODY_CHARS)).len(), MAX_BODY_CHARS);
    }
}
