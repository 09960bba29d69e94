//! The characters SQS accepts in message bodies and attribute values, checked in one place for
//! both (a body and a `String` attribute follow the same rule), and the one way a JSON value's
//! kind is named in an error message.

use super::{RejectCode, Rejection};

/// Checks that every character is one SQS allows in a body or attribute value:
/// `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`. `place` names what is
/// checked, for the error: "the message body", "message (user) attribute 'kind'".
pub fn check_chars(s: &str, place: &str) -> Result<(), Rejection> {
    let bad = s.chars().find(|&c| {
        !matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    });
    match bad {
        None => Ok(()),
        Some(c) => Err(Rejection::new(
            RejectCode::InvalidMessageContents,
            format!(
                "Invalid binary character '#x{:X}' was found in {place}, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
                c as u32,
            ),
        )),
    }
}

/// A JSON value's kind, with an article, for error messages ("not a list, a string").
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
