//! A typed reader over a decoded JSON request. Each accessor checks the member's JSON type and
//! names the member (with its path, e.g. `Entries[2].DelaySeconds`) when it is wrong, so a
//! malformed request gets a clear 400 instead of a generic decode error. Absent and `null`
//! members read as absent; unknown members are ignored, as AWS does.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::api::error::SqsError;
use crate::domain::text::json_kind as kind;
use crate::domain::Rejection;

/// A member of the wrong JSON type: the whole request is malformed.
#[derive(Debug)]
pub(crate) struct TypeError(pub(crate) Rejection);

impl From<TypeError> for SqsError {
    fn from(e: TypeError) -> Self {
        e.0.into()
    }
}

/// One JSON object of the request (the root, a batch entry, an attribute value).
#[derive(Clone)]
pub(crate) struct Input<'a> {
    map: &'a Map<String, Value>,
    /// Where this object sits, for messages: "" at the root, else e.g. `Entries[2].`.
    prefix: String,
}

impl<'a> Input<'a> {
    /// The request's root object.
    pub(crate) fn root(map: &'a Map<String, Value>) -> Self {
        Input {
            map,
            prefix: String::new(),
        }
    }

    /// The full name of `member`, for messages.
    pub(crate) fn name(&self, member: &str) -> String {
        format!("{}{member}", self.prefix)
    }

    fn get(&self, member: &str) -> Option<&'a Value> {
        self.map.get(member).filter(|v| !v.is_null())
    }

    fn wrong(&self, member: &str, expected: &str, found: &Value) -> TypeError {
        TypeError(Rejection::invalid(format!(
            "Invalid type for parameter {}: expected {expected}, found {}.",
            self.name(member),
            kind(found)
        )))
    }

    /// An optional string member.
    pub(crate) fn str(&self, member: &str) -> Result<Option<&'a str>, TypeError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(member, "a string", v)),
        }
    }

    /// A string member that must be present: `MissingParameter` otherwise.
    pub(crate) fn required_str(&self, member: &str) -> Result<&'a str, SqsError> {
        match self.str(member)? {
            Some(s) => Ok(s),
            None => Err(Rejection::missing(&self.name(member)).into()),
        }
    }

    /// An optional integer member.
    pub(crate) fn int(&self, member: &str) -> Result<Option<i64>, TypeError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                None => Err(TypeError(Rejection::invalid(format!(
                    "Invalid value for parameter {}: expected an integer, found {n}.",
                    self.name(member)
                )))),
            },
            Some(v) => Err(self.wrong(member, "an integer", v)),
        }
    }

    /// An optional list of strings (absent reads as empty).
    pub(crate) fn str_list(&self, member: &str) -> Result<Vec<&'a str>, TypeError> {
        match self.get(member) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.as_str()),
                    v => Err(self.wrong(member, "a list of strings", v)),
                })
                .collect(),
            Some(v) => Err(self.wrong(member, "a list of strings", v)),
        }
    }

    /// An optional string-to-string map; `None` when absent.
    pub(crate) fn str_map(
        &self,
        member: &str,
    ) -> Result<Option<BTreeMap<String, String>>, TypeError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    v => Err(self.wrong(member, "a map of strings to strings", v)),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(v) => Err(self.wrong(member, "a map of strings to strings", v)),
        }
    }

    /// An optional list of objects; `None` when absent.
    pub(crate) fn objects(&self, member: &str) -> Result<Option<Vec<Input<'a>>>, TypeError> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(map) => Ok(Input {
                        map,
                        prefix: format!("{}{member}[{i}].", self.prefix),
                    }),
                    v => Err(self.wrong(member, "a list of objects", v)),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(v) => Err(self.wrong(member, "a list of objects", v)),
        }
    }

    /// An optional map of names to objects (absent reads as empty).
    pub(crate) fn object_map(&self, member: &str) -> Result<Vec<(&'a str, Input<'a>)>, TypeError> {
        match self.get(member) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::Object(map) => Ok((
                        k.as_str(),
                        Input {
                            map,
                            prefix: format!("{}{member}.{}.", self.prefix, super::shorten(k)),
                        },
                    )),
                    v => Err(self.wrong(member, "a map of names to objects", v)),
                })
                .collect(),
            Some(v) => Err(self.wrong(member, "a map of names to objects", v)),
        }
    }
}
