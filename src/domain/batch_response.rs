//! What a function's response says about its batch under ReportBatchItemFailures: the rules
//! of docs/semantics.md §3.1 applied once, where the response is parsed. Pure: no I/O.

use std::collections::{BTreeSet, HashSet};

use crate::domain::text::json_kind as kind;
use serde_json::Value;

/// What a function's response says about its batch under ReportBatchItemFailures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResponse {
    /// Delete the whole batch.
    AllSucceeded,
    /// Delete all but these message ids (never empty; each one in the batch).
    SomeFailed(BTreeSet<String>),
    /// A malformed response: the whole batch failed. The string says why, for the log.
    Invalid(String),
}

/// The longest identifier quoted back in an [`BatchResponse::Invalid`] reason.
const MAX_QUOTED: usize = 100;

/// Reads a function's response under ReportBatchItemFailures, per docs/semantics.md §3.1.
///
/// `body` is the response (`None` when the function returned nothing); `batch_message_ids` are the
/// message ids of the records sent. Nothing, `null`, `{}`, an object without `batchItemFailures`,
/// and a null or empty list mean every record succeeded. Anything malformed (invalid JSON, not an
/// object, a list that isn't one, an item without a non-empty string `itemIdentifier`, an id that
/// was not in the batch) fails the whole batch. Duplicate ids count once; other top-level keys are
/// ignored.
pub fn parse_batch_response(
    body: Option<&[u8]>,
    batch_message_ids: &HashSet<&str>,
) -> BatchResponse {
    let Some(body) = body.map(<[u8]>::trim_ascii).filter(|b| !b.is_empty()) else {
        return BatchResponse::AllSucceeded;
    };
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return BatchResponse::Invalid(format!("the response is not valid JSON: {e}")),
    };
    let items = match &value {
        Value::Null => return BatchResponse::AllSucceeded,
        Value::Object(map) => match map.get("batchItemFailures") {
            None | Some(Value::Null) => return BatchResponse::AllSucceeded,
            Some(Value::Array(items)) => items,
            Some(other) => {
                return BatchResponse::Invalid(format!(
                    "batchItemFailures is {}, not a list",
                    kind(other)
                ));
            }
        },
        other => {
            return BatchResponse::Invalid(format!(
                "the response is {}, not an object",
                kind(other)
            ))
        }
    };
    let mut failed = BTreeSet::new();
    for (idx, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            return BatchResponse::Invalid(format!(
                "batchItemFailures[{idx}] is {}, not an object",
                kind(item)
            ));
        };
        let id = match item.get("itemIdentifier") {
            None => {
                return BatchResponse::Invalid(format!(
                    "batchItemFailures[{idx}] has no itemIdentifier"
                ))
            }
            Some(Value::String(id)) if id.is_empty() => {
                return BatchResponse::Invalid(format!(
                    "batchItemFailures[{idx}].itemIdentifier is empty"
                ));
            }
            Some(Value::String(id)) => id,
            Some(other) => {
                return BatchResponse::Invalid(format!(
                    "batchItemFailures[{idx}].itemIdentifier is {}, not a string",
                    kind(other)
                ));
            }
        };
        if !batch_message_ids.contains(id.as_str()) {
            let shown: String = id.chars().take(MAX_QUOTED).collect();
            return BatchResponse::Invalid(format!(
                "batchItemFailures[{idx}].itemIdentifier {shown:?} is not a message id of the batch"
            ));
        }
        failed.insert(id.clone());
    }
    if failed.is_empty() {
        BatchResponse::AllSucceeded
    } else {
        BatchResponse::SomeFailed(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> BatchResponse {
        let ids: HashSet<&str> = ["a", "b", "c"].into_iter().collect();
        parse_batch_response(Some(s.as_bytes()), &ids)
    }

    fn failed(ids: &[&str]) -> BatchResponse {
        BatchResponse::SomeFailed(ids.iter().map(|s| s.to_string()).collect())
    }

    fn invalid(r: BatchResponse) -> String {
        match r {
            BatchResponse::Invalid(why) => why,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn nothing_null_and_empty_responses_succeed() {
        let ids = HashSet::new();
        assert_eq!(
            parse_batch_response(None, &ids),
            BatchResponse::AllSucceeded
        );
        for s in [
            "",
            " \n\t",
            "null",
            " null\n",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
            r#"{"other":1}"#,
        ] {
            assert_eq!(parse(s), BatchResponse::AllSucceeded, "{s:?}");
        }
    }

    #[test]
    fn reported_failures_are_returned_deduplicated() {
        assert_eq!(
            parse(r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#),
            failed(&["b"])
        );
        assert_eq!(
            parse(
                r#"{"batchItemFailures":[{"itemIdentifier":"c"},{"itemIdentifier":"a"},{"itemIdentifier":"c"}]}"#
            ),
            failed(&["a", "c"])
        );
    }

    #[test]
    fn other_keys_are_ignored() {
        assert_eq!(
            parse(
                r#"{"statusCode":200,"batchItemFailures":[{"itemIdentifier":"a","extra":true}]}"#
            ),
            failed(&["a"])
        );
    }

    #[test]
    fn invalid_json_fails_the_batch() {
        assert!(invalid(parse("{")).starts_with("the response is not valid JSON"));
        assert!(invalid(parse("ok")).starts_with("the response is not valid JSON"));
    }

    #[test]
    fn non_objects_fail_the_batch() {
        assert_eq!(
            invalid(parse(r#""ok""#)),
            "the response is a string, not an object"
        );
        assert_eq!(
            invalid(parse("[]")),
            "the response is a list, not an object"
        );
        assert_eq!(
            invalid(parse("42")),
            "the response is a number, not an object"
        );
        assert_eq!(
            invalid(parse("true")),
            "the response is a boolean, not an object"
        );
    }

    #[test]
    fn a_list_that_is_not_a_list_fails_the_batch() {
        assert_eq!(
            invalid(parse(r#"{"batchItemFailures":{}}"#)),
            "batchItemFailures is an object, not a list"
        );
        assert_eq!(
            invalid(parse(r#"{"batchItemFailures":"a"}"#)),
            "batchItemFailures is a string, not a list"
        );
    }

    #[test]
    fn malformed_items_fail_the_batch() {
        assert_eq!(
            invalid(parse(r#"{"batchItemFailures":["a"]}"#)),
            "batchItemFailures[0] is a string, not an object"
        );
        assert_eq!(
            invalid(parse(r#"{"batchItemFailures":[null]}"#)),
            "batchItemFailures[0] is null, not an object"
        );
        assert_eq!(
            invalid(parse(r#"{"batchItemFailures":[{"foo":"notvalid"}]}"#)),
            "batchItemFailures[0] has no itemIdentifier"
        );
        assert_eq!(
            invalid(parse(
                r#"{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":null}]}"#
            )),
            "batchItemFailures[1].itemIdentifier is null, not a string"
        );
        assert_eq!(
            invalid(parse(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#)),
            "batchItemFailures[0].itemIdentifier is empty"
        );
        assert_eq!(
            invalid(parse(r#"{"batchItemFailures":[{"itemIdentifier":7}]}"#)),
            "batchItemFailures[0].itemIdentifier is a number, not a string"
        );
    }

    #[test]
    fn an_identifier_outside_the_batch_fails_the_batch() {
        assert_eq!(
            invalid(parse(
                r#"{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"zz"}]}"#
            )),
            r#"batchItemFailures[1].itemIdentifier "zz" is not a message id of the batch"#
        );
    }
}
