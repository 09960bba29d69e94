//! Message attributes (user and system) and the MD5 digests SQS computes over them
//! (docs/semantics.md §6.2 for the rules, §7.5 for the digest algorithm and its test vectors).

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::Rejection;

/// The most user attributes one message may carry.
pub const MAX_ATTRIBUTES: usize = 10;

/// One attribute value: a data type (`String`, `Number`, `Binary`, optionally with a custom
/// `.suffix`) and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeValue {
    /// The full data type, custom suffix included (`Number.float`).
    pub data_type: String,
    /// The value; its variant follows the data type's base.
    pub value: AttributeData,
}

/// An attribute's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeData {
    /// For `String` and `Number` types.
    String(String),
    /// For `Binary` types: the raw bytes (base64 only on the wire).
    Binary(Vec<u8>),
}

/// Attributes by name; a `BTreeMap` so that iteration is the sorted order the MD5 needs.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// The base of a data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseType {
    /// `String…`
    String,
    /// `Number…`
    Number,
    /// `Binary…`
    Binary,
}

/// The base type of a data type string, if it is one SQS accepts: `String`, `Number` or
/// `Binary`, optionally followed by `.` and a custom label.
pub fn base_type(data_type: &str) -> Option<BaseType> {
    for (prefix, base) in [
        ("String", BaseType::String),
        ("Number", BaseType::Number),
        ("Binary", BaseType::Binary),
    ] {
        if let Some(rest) = data_type.strip_prefix(prefix) {
            if rest.is_empty() || (rest.starts_with('.') && rest.len() > 1) {
                return Some(base);
            }
        }
    }
    None
}

impl AttributeValue {
    /// A `String` attribute.
    pub fn string(v: impl Into<String>) -> Self {
        AttributeValue {
            data_type: "String".into(),
            value: AttributeData::String(v.into()),
        }
    }

    /// Bytes this value counts toward the message size: data type plus value.
    pub fn size(&self) -> usize {
        self.data_type.len()
            + match &self.value {
                AttributeData::String(s) => s.len(),
                AttributeData::Binary(b) => b.len(),
            }
    }
}

/// Lowercase hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// The SQS MD5 of a set of attributes (`MD5OfMessageAttributes`), or `None` for an empty set.
pub fn md5_of_attributes<'a>(
    attrs: impl IntoIterator<Item = (&'a String, &'a AttributeValue)>,
) -> Option<String> {
    let mut hasher = Md5::new();
    let mut any = false;
    let put = |h: &mut Md5, b: &[u8]| {
        h.update((b.len() as u32).to_be_bytes());
        h.update(b);
    };
    for (name, v) in attrs {
        any = true;
        put(&mut hasher, name.as_bytes());
        put(&mut hasher, v.data_type.as_bytes());
        match &v.value {
            AttributeData::String(s) => {
                hasher.update([1u8]);
                put(&mut hasher, s.as_bytes());
            }
            AttributeData::Binary(b) => {
                hasher.update([2u8]);
                put(&mut hasher, b);
            }
        }
    }
    any.then(|| hex::encode(hasher.finalize()))
}

/// Checks user message attributes against SQS's rules, with AWS's wording.
pub fn validate(attrs: &Attributes) -> Result<(), Rejection> {
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(Rejection::invalid(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            attrs.len()
        )));
    }
    for (name, v) in attrs {
        validate_name(name)?;
        let Some(base) = base_type(&v.data_type) else {
            return Err(Rejection::invalid(format!(
                "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
            )));
        };
        if v.data_type.len() > 256 {
            return Err(Rejection::invalid(format!(
                "Message (user) attribute '{name}' has a data type longer than 256 characters."
            )));
        }
        match (&v.value, base) {
            (AttributeData::String(s), BaseType::String | BaseType::Number) => {
                if s.is_empty() {
                    return Err(Rejection::invalid(format!(
                        "Message (user) attribute '{name}' must contain a non-empty value of type '{}'.",
                        if base == BaseType::Number { "Number" } else { "String" }
                    )));
                }
                if base == BaseType::Number && !is_number(s) {
                    return Err(Rejection::invalid(format!(
                        "Can't cast the value of message (user) attribute '{name}' to a number."
                    )));
                }
                // AWS answers bad characters in attribute values with InvalidParameterValue
                // (in bodies with InvalidMessageContents).
                super::text::check_chars(s, &format!("message (user) attribute '{name}'"))
                    .map_err(|r| Rejection::invalid(r.message))?;
            }
            (AttributeData::Binary(b), BaseType::Binary) => {
                if b.is_empty() {
                    return Err(Rejection::invalid(format!(
                        "Message (user) attribute '{name}' must contain a non-empty value of type 'Binary'."
                    )));
                }
            }
            _ => {
                return Err(Rejection::invalid(format!(
                "Message (user) attribute '{name}' must contain a non-empty value of type '{}'.",
                match base {
                    BaseType::String => "String",
                    BaseType::Number => "Number",
                    BaseType::Binary => "Binary",
                }
            )))
            }
        }
    }
    Ok(())
}

/// AWS documents A-Z, a-z, 0-9, `_`, `-` and `.`, and accepts letters and digits of any script
/// too (`attr.1øßä` is valid, `§` and `!` are not: LocalStack's validated suite).
fn validate_name(name: &str) -> Result<(), Rejection> {
    let lower = name.to_ascii_lowercase();
    let bad = name.is_empty()
        || name.len() > 256
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
        || lower.starts_with("aws.")
        || lower.starts_with("amazon.");
    if bad {
        Err(Rejection::invalid(format!(
            "Message (user) attribute name '{name}' is invalid. The attribute name can contain A-Z, a-z, 0-9, underscore (_), hyphen (-), and period (.) characters, must not start or end with a period, must not contain two consecutive periods, must not start with 'AWS.' or 'Amazon.', and can be up to 256 characters long."
        )))
    } else {
        Ok(())
    }
}

fn is_number(s: &str) -> bool {
    // SQS accepts up to 38 significant digits with an exponent range of 10^-128..10^+126.
    let t = s.trim();
    !t.is_empty() && t.len() <= 200 && t.parse::<f64>().map(|f| f.is_finite()).unwrap_or(false)
}

/// Whether a receive's `MessageAttributeNames` selects `name`: `All`, `*` or `.*`, an exact
/// name, or `prefix.*`, every name that starts with `prefix` (AWS answers `Hel.*` with `Hello`
/// and `Help.Me`, as LocalStack's validated suite records).
pub fn selected(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        p == "All"
            || p == ".*"
            || p == "*"
            || p == name
            || p.strip_suffix(".*")
                .is_some_and(|prefix| name.starts_with(prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str, &str)]) -> Attributes {
        pairs
            .iter()
            .map(|(n, t, v)| {
                (
                    n.to_string(),
                    AttributeValue {
                        data_type: t.to_string(),
                        value: AttributeData::String(v.to_string()),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn aws_recorded_vectors() {
        let a = s(&[
            ("Title", "String", "The Whistler"),
            ("Author", "String", "John Grisham"),
            ("WeeksOn", "Number", "6"),
        ]);
        assert_eq!(
            md5_of_attributes(&a).unwrap(),
            "d25a6aea97eb8f585bfa92d314504a92"
        );
        let a = s(&[
            ("General", "String", "Kenobi"),
            ("Hello", "String", "There"),
            ("Help.Me", "String", "Me"),
        ]);
        assert_eq!(
            md5_of_attributes(&a).unwrap(),
            "4c360f3fdafd970e05fae2f149d997f5"
        );
        let a = s(&[
            ("General", "String", "Kenobi"),
            ("Hello", "String", "There"),
        ]);
        assert_eq!(
            md5_of_attributes(&a).unwrap(),
            "fca026605781cb4126a1e9044df24232"
        );
        let a = s(&[("MyAttribute", "String", "foobar")]);
        assert_eq!(
            md5_of_attributes(&a).unwrap(),
            "adb59cd4678ea5a855436b949cd07ab6"
        );
        let mut a = Attributes::new();
        a.insert(
            "attr1".into(),
            AttributeValue {
                data_type: "Binary".into(),
                value: AttributeData::Binary(
                    b"traceparent\x1e00-774062d6c37081a5a0b9b5b88e30627c-2d2482211f6489da-01"
                        .to_vec(),
                ),
            },
        );
        assert_eq!(
            md5_of_attributes(&a).unwrap(),
            "8cbe4db156db8a94db8b801b7addb984"
        );
        let a = s(&[(
            "AWSTraceHeader",
            "String",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )]);
        assert_eq!(
            md5_of_attributes(&a).unwrap(),
            "5ae4d5d7636402d80f4eb6d213245a88"
        );
        assert_eq!(md5_of_attributes(&Attributes::new()), None);
        assert_eq!(
            md5_hex(b"Test message."),
            "e4e68fb7bd0e697a0ae8f1bb342846b3"
        );
    }

    #[test]
    fn data_types() {
        assert_eq!(base_type("String"), Some(BaseType::String));
        assert_eq!(base_type("Number.float"), Some(BaseType::Number));
        assert_eq!(base_type("Binary.gif"), Some(BaseType::Binary));
        assert_eq!(base_type("Number."), None);
        assert_eq!(base_type("Strin"), None);
        assert_eq!(base_type("Stringx"), None);
    }

    #[test]
    fn validation() {
        assert!(validate(&s(&[("a", "String", "x")])).is_ok());
        assert!(validate(&s(&[("a", "String", "")]))
            .unwrap_err()
            .message
            .contains("non-empty value of type 'String'"));
        assert!(validate(&s(&[("AWS.x", "String", "y")])).is_err());
        assert!(validate(&s(&[("a..b", "String", "y")])).is_err());
        assert!(validate(&s(&[("n", "Number", "abc")])).is_err());
        assert!(validate(&s(&[("n", "Number", "1.5e3")])).is_ok());
        assert!(validate(&s(&[("n", "Float", "1")])).is_err());
    }

    #[test]
    fn selection() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(selected("x", &p(&["All"])));
        assert!(selected("x", &p(&[".*"])));
        assert!(selected("x", &p(&["*"])));
        assert!(selected("foo.bar", &p(&["foo.*"])));
        // A plain prefix, as AWS answers it (`Hel.*` selects `Hello` and `Help.Me`).
        assert!(selected("Hello", &p(&["Hel.*"])));
        assert!(selected("Help.Me", &p(&["Hel.*"])));
        assert!(!selected("General", &p(&["Hel.*"])));
        assert!(!selected("y", &p(&["x"])));
        assert!(!selected("Help.Me", &p(&["Help"])));
    }
}
