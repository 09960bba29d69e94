//! Query-protocol parameters (`Name=value` pairs from the form body and the query string) read
//! into the JSON protocol's request object by the action's table in `shapes.rs`:
//! `Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=60` becomes
//! `{"Attributes": {"VisibilityTimeout": "60"}}`, `SendMessageBatchRequestEntry.2.DelaySeconds=5`
//! becomes `{"Entries": [_, {"DelaySeconds": 5}]}`. The JSON handlers then check the request as
//! they check any other, so both protocols refuse the same things with the same words.
//!
//! Entries are taken in the order of their numbers (gaps allowed); a list or map sent as its bare
//! name with an empty value (`AttributeName=`, which botocore sends for an empty list) is empty.
//! Parameters no member names are ignored, as AWS ignores them (`Version`, `Action`, …).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Number, Value};

use super::shapes::{Member, Shape};
use crate::domain::Rejection;

/// The request's parameters by name.
pub(crate) type Params = BTreeMap<String, String>;

/// Reads `members` from `params`.
pub(crate) fn decode(members: &[Member], params: &Params) -> Result<Map<String, Value>, Rejection> {
    object(members, params, "")
}

/// The members present under `prefix` (`""` at the root, else ending in `.`).
fn object(
    members: &[Member],
    params: &Params,
    prefix: &str,
) -> Result<Map<String, Value>, Rejection> {
    let mut out = Map::new();
    for member in members {
        let key = format!("{prefix}{}", member.wire);
        if let Some(v) = value(member.shape, params, &key)? {
            out.insert(member.json.to_owned(), v);
        }
    }
    Ok(out)
}

/// The value of shape `shape` sent as `key`, if it was sent.
fn value(shape: &Shape, params: &Params, key: &str) -> Result<Option<Value>, Rejection> {
    match shape {
        Shape::Str => Ok(params.get(key).map(|s| Value::String(s.clone()))),
        Shape::Int => params.get(key).map(|s| integer(key, s)).transpose(),
        Shape::Bool => params.get(key).map(|s| boolean(key, s)).transpose(),
        Shape::List(of) => {
            let numbers = entries(params, key);
            if numbers.is_empty() {
                return Ok(bare_empty(params, key).then(|| Value::Array(Vec::new())));
            }
            let mut items = Vec::with_capacity(numbers.len());
            for n in numbers {
                let item_key = format!("{key}.{n}");
                items.push(value(of, params, &item_key)?.unwrap_or(Value::Null));
            }
            Ok(Some(Value::Array(items)))
        }
        Shape::Map {
            key: key_name,
            value: value_name,
            of,
        } => {
            let numbers = entries(params, key);
            if numbers.is_empty() {
                return Ok(bare_empty(params, key).then(|| Value::Object(Map::new())));
            }
            let mut map = Map::new();
            for n in numbers {
                let name_key = format!("{key}.{n}.{key_name}");
                let Some(name) = params.get(&name_key) else {
                    return Err(Rejection::missing(&name_key));
                };
                let value_key = format!("{key}.{n}.{value_name}");
                let v = match (value(of, params, &value_key)?, of) {
                    (Some(v), _) => v,
                    (None, Shape::Struct(_)) => Value::Object(Map::new()),
                    (None, _) => return Err(Rejection::missing(&value_key)),
                };
                map.insert(name.clone(), v);
            }
            Ok(Some(Value::Object(map)))
        }
        Shape::Struct(members) => {
            let prefix = format!("{key}.");
            if !has_prefix(params, &prefix) {
                return Ok(None);
            }
            object(members, params, &prefix).map(|o| Some(Value::Object(o)))
        }
    }
}

/// The entry numbers sent under `key` (`key.1`, `key.2.Id`, …), in order. Names whose next
/// segment is not a positive number are not entries.
fn entries(params: &Params, key: &str) -> BTreeSet<u32> {
    let prefix = format!("{key}.");
    params
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(k, _)| {
            let rest = &k[prefix.len()..];
            let number = rest.split('.').next().unwrap_or("");
            number.parse::<u32>().ok().filter(|n| *n >= 1)
        })
        .collect()
}

/// Whether `key` was sent bare and empty (`AttributeName=`): an empty list or map.
fn bare_empty(params: &Params, key: &str) -> bool {
    params.get(key).is_some_and(String::is_empty)
}

fn has_prefix(params: &Params, prefix: &str) -> bool {
    params
        .range(prefix.to_owned()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(prefix))
}

fn integer(key: &str, text: &str) -> Result<Value, Rejection> {
    text.trim()
        .parse::<i64>()
        .map(|n| Value::Number(Number::from(n)))
        .map_err(|_| {
            Rejection::bad_value(
                key,
                crate::api::sqs::shorten(text),
                "It must be an integer.",
            )
        })
}

fn boolean(key: &str, text: &str) -> Result<Value, Rejection> {
    match text {
        t if t.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        t if t.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        t => Err(Rejection::bad_value(
            key,
            crate::api::sqs::shorten(t),
            "It must be true or false.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::sqs::query::shapes::op;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn input(action: &str, pairs: &[(&str, &str)]) -> Result<Value, Rejection> {
        decode(op(action).unwrap().input, &params(pairs)).map(Value::Object)
    }

    #[test]
    fn maps_lists_and_integers_become_the_json_request() {
        let got = input(
            "CreateQueue",
            &[
                ("QueueName", "q"),
                ("Attribute.1.Name", "VisibilityTimeout"),
                ("Attribute.1.Value", "60"),
                ("Attribute.2.Name", "DelaySeconds"),
                ("Attribute.2.Value", "5"),
                ("Tag.1.Key", "team"),
                ("Tag.1.Value", "core"),
                ("Version", "2012-11-05"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"QueueName": "q",
                   "Attributes": {"VisibilityTimeout": "60", "DelaySeconds": "5"},
                   "tags": {"team": "core"}})
        );
        let got = input(
            "SendMessageBatch",
            &[
                ("QueueUrl", "u"),
                ("SendMessageBatchRequestEntry.10.Id", "ten"),
                ("SendMessageBatchRequestEntry.2.Id", "two"),
                ("SendMessageBatchRequestEntry.2.DelaySeconds", "5"),
                (
                    "SendMessageBatchRequestEntry.2.MessageAttribute.1.Name",
                    "k",
                ),
                (
                    "SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.DataType",
                    "Binary",
                ),
                (
                    "SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.BinaryValue",
                    "AAE=",
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"QueueUrl": "u", "Entries": [
                {"Id": "two", "DelaySeconds": 5,
                 "MessageAttributes": {"k": {"DataType": "Binary", "BinaryValue": "AAE="}}},
                {"Id": "ten"}]})
        );
        let got = input(
            "ReceiveMessage",
            &[
                ("AttributeName.2", "SentTimestamp"),
                ("AttributeName.1", "All"),
                ("MessageAttributeName", ""),
                ("MaxNumberOfMessages", "10"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"AttributeNames": ["All", "SentTimestamp"], "MessageAttributeNames": [],
                   "MaxNumberOfMessages": 10})
        );
    }

    #[test]
    fn malformed_parameters_are_named() {
        let e = input("ReceiveMessage", &[("MaxNumberOfMessages", "ten")]).unwrap_err();
        assert!(e.message.contains("MaxNumberOfMessages"), "{}", e.message);
        let e = input("SetQueueAttributes", &[("Attribute.1.Value", "60")]).unwrap_err();
        assert_eq!(
            e.message,
            "The request must contain the parameter Attribute.1.Name."
        );
        let e = input(
            "SetQueueAttributes",
            &[("Attribute.1.Name", "DelaySeconds")],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "The request must contain the parameter Attribute.1.Value."
        );
    }
}
