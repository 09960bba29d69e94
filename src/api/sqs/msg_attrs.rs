//! Message attributes on the wire: `MessageAttributes` / `MessageSystemAttributes` maps of
//! `{DataType, StringValue | BinaryValue (base64)}` decoded into domain attributes (the domain
//! then checks names, types, values and sizes), and the same shape encoded for receives.

use base64::Engine as _;
use serde::Serialize;

use super::input::{Input, TypeError};
use crate::domain::attributes::{base_type, AttributeData, AttributeValue, Attributes, BaseType};
use crate::domain::Rejection;

/// The one system attribute a sender may set.
pub(crate) const TRACE_HEADER: &str = "AWSTraceHeader";

/// Decodes one attribute value object. Value errors are the entry's (`Err` inside `Ok`);
/// type errors are the request's.
fn value(name: &str, v: &Input<'_>) -> Result<Result<AttributeValue, Rejection>, TypeError> {
    let data_type = v.str("DataType")?;
    let string = v.str("StringValue")?;
    let binary = v.str("BinaryValue")?;
    let lists = v.str_list("StringListValues")?.len() + v.str_list("BinaryListValues")?.len();
    let Some(data_type) = data_type.filter(|t| !t.is_empty()) else {
        return Ok(Err(Rejection::invalid(format!(
            "The message attribute '{name}' must contain non-empty message attribute type."
        ))));
    };
    if lists > 0 {
        return Ok(Err(Rejection::invalid(
            "Message attribute list values in SendMessage operation are not supported.",
        )));
    }
    let decoded = match binary.map(|b| base64::engine::general_purpose::STANDARD.decode(b)) {
        None => None,
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(_)) => {
            return Ok(Err(Rejection::invalid(format!(
                "Value for parameter {} is invalid. Reason: not valid base64.",
                v.name("BinaryValue")
            ))))
        }
    };
    let data = match (base_type(data_type), string, decoded) {
        (Some(BaseType::Binary), _, Some(b)) => AttributeData::Binary(b),
        (Some(BaseType::Binary), Some(s), None) => AttributeData::String(s.to_owned()),
        (Some(BaseType::Binary), None, None) => AttributeData::Binary(Vec::new()),
        (_, Some(s), _) => AttributeData::String(s.to_owned()),
        (_, None, Some(b)) => AttributeData::Binary(b),
        (_, None, None) => AttributeData::String(String::new()),
    };
    Ok(Ok(AttributeValue {
        data_type: data_type.to_owned(),
        value: data,
    }))
}

/// The user attributes of a send entry.
pub(crate) fn user(input: &Input<'_>) -> Result<Result<Attributes, Rejection>, TypeError> {
    let mut out = Attributes::new();
    for (name, v) in input.object_map("MessageAttributes")? {
        match value(name, &v)? {
            Ok(a) => {
                out.insert(name.to_owned(), a);
            }
            Err(r) => return Ok(Err(r)),
        }
    }
    Ok(Ok(out))
}

/// The `AWSTraceHeader` system attribute of a send entry, the only one SQS accepts.
pub(crate) fn trace_header(
    input: &Input<'_>,
) -> Result<Result<Option<String>, Rejection>, TypeError> {
    let mut trace = None;
    for (name, v) in input.object_map("MessageSystemAttributes")? {
        if name != TRACE_HEADER {
            return Ok(Err(Rejection::invalid(format!(
                "Message system attribute name '{}' is invalid.",
                super::shorten(name)
            ))));
        }
        match value(name, &v)? {
            Ok(AttributeValue { data_type, value: AttributeData::String(s) }) if data_type == "String" => {
                trace = Some(s)
            }
            Ok(_) => {
                return Ok(Err(Rejection::invalid(
                    "Message (system) attribute 'AWSTraceHeader' must contain a non-empty value of type 'String'.",
                )))
            }
            Err(r) => return Ok(Err(r)),
        }
    }
    Ok(Ok(trace))
}

/// An attribute value as a receive returns it.
#[derive(Serialize)]
pub(crate) struct WireValue {
    #[serde(rename = "StringValue", skip_serializing_if = "Option::is_none")]
    string_value: Option<String>,
    #[serde(rename = "BinaryValue", skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
    #[serde(rename = "DataType")]
    data_type: String,
}

impl From<&AttributeValue> for WireValue {
    fn from(v: &AttributeValue) -> Self {
        let (string_value, binary_value) = match &v.value {
            AttributeData::String(s) => (Some(s.clone()), None),
            AttributeData::Binary(b) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        };
        WireValue {
            string_value,
            binary_value,
            data_type: v.data_type.clone(),
        }
    }
}
