//! Lambda's event filtering for SQS (`FilterCriteria`; docs/semantics.md §4.1): a mapping's
//! [`Filters`] are pattern strings, compiled once when the configuration loads, and a record is
//! kept if any pattern matches it. Pure: no I/O.
//!
//! A pattern mirrors the record (`Records[i]` of the event): its `body` key holds rules on the
//! body, its other keys rules on the record's other fields. The body's format is checked first,
//! per pattern (per `$or` alternative): a pattern whose `body` is an object only matches a body
//! that is valid JSON, matched parsed; one whose `body` is a list of rules only matches a body
//! that is not JSON, matched as the whole string; one without `body` ignores the body. The body
//! is parsed at most once per record, and the record's other fields only if a pattern names one;
//! the record delivered is never rewritten.

mod compile;
mod rule;
mod walk;

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use compile::Field;
use walk::Pending;

/// The longest pattern string, in characters (Lambda's limit on `Pattern`).
pub const MAX_PATTERN_CHARS: usize = 4096;

/// Why a pattern was refused. Lambda answers every one of these with `Invalid filter pattern
/// definition.`; the reason says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invalid filter pattern definition: {}", self.0)
    }
}

impl std::error::Error for PatternError {}

/// What an alternative expects of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    /// No rule on the body.
    Any,
    /// Valid JSON, matched parsed.
    Json,
    /// Not JSON, matched as one string.
    Plain,
    /// Rules on the body both as a string and inside it: nothing matches.
    Never,
}

/// One `$or` alternative: the body's format and fields, and the record's other fields.
#[derive(Debug, Clone)]
struct Alternative {
    body: BodyFormat,
    /// Paths below `body`.
    body_fields: Vec<Field>,
    /// Paths from the record's top, not under `body`.
    record_fields: Vec<Field>,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    alternatives: Vec<Alternative>,
}

impl Pattern {
    /// Compiles a pattern string (one `FilterCriteria.Filters[].Pattern`).
    ///
    /// # Errors
    /// [`PatternError`] if it is not a pattern Lambda accepts: not JSON, not an object, empty,
    /// a value that is neither an object nor a non-empty list of rules, a malformed or unknown
    /// operator, an operator Lambda does not document, or longer than 4096 characters.
    pub fn compile(source: &str) -> Result<Pattern, PatternError> {
        let chars = source.chars().count();
        if chars > MAX_PATTERN_CHARS {
            return Err(PatternError(format!(
                "{chars} characters is above the maximum of {MAX_PATTERN_CHARS}"
            )));
        }
        let value: Value = serde_json::from_str(source)
            .map_err(|e| PatternError(format!("not valid JSON: {e}")))?;
        let alternatives = compile::pattern(&value)
            .map_err(PatternError)?
            .into_iter()
            .map(alternative)
            .collect();
        Ok(Pattern {
            source: source.to_owned(),
            alternatives,
        })
    }

    /// The pattern string as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Top-level keys other than `body` the pattern names (AWS documents filtering on `body`
    /// only for SQS).
    pub fn metadata_keys(&self) -> BTreeSet<&str> {
        self.alternatives
            .iter()
            .flat_map(|a| &a.record_fields)
            .map(|f| f.path[0].as_str())
            .collect()
    }

    fn matches(&self, record: &Record<'_>) -> bool {
        self.alternatives.iter().any(|alt| {
            let body_ok = match alt.body {
                BodyFormat::Any => true,
                BodyFormat::Never => false,
                BodyFormat::Json => record
                    .parsed_body()
                    .is_some_and(|body| walk::all(&pending(&alt.body_fields), body)),
                BodyFormat::Plain => {
                    record.parsed_body().is_none()
                        && walk::all(
                            &pending(&alt.body_fields),
                            &Value::String(record.body.to_owned()),
                        )
                }
            };
            body_ok
                && (alt.record_fields.is_empty()
                    || record
                        .parsed_record()
                        .is_some_and(|r| walk::all(&pending(&alt.record_fields), r)))
        })
    }
}

/// Sorts an alternative's fields into the body's and the record's, and decides the body format.
fn alternative(fields: Vec<Field>) -> Alternative {
    let (mut body_fields, record_fields): (Vec<Field>, Vec<Field>) =
        fields.into_iter().partition(|f| f.path[0] == "body");
    for f in &mut body_fields {
        f.path.remove(0);
    }
    let plain = body_fields.iter().any(|f| f.path.is_empty());
    let json = body_fields.iter().any(|f| !f.path.is_empty());
    let body = match (plain, json) {
        (false, false) => BodyFormat::Any,
        (false, true) => BodyFormat::Json,
        (true, false) => BodyFormat::Plain,
        (true, true) => BodyFormat::Never,
    };
    Alternative {
        body,
        body_fields,
        record_fields,
    }
}

fn pending(fields: &[Field]) -> Vec<Pending<'_>> {
    fields
        .iter()
        .map(|f| (f.path.as_slice(), f.rules.as_slice()))
        .collect()
}

/// A record being filtered: its body and its encoded form, each parsed on first use.
struct Record<'a> {
    body: &'a str,
    record: &'a str,
    parsed_body: OnceCell<Option<Value>>,
    parsed_record: OnceCell<Option<Value>>,
}

impl Record<'_> {
    fn parsed_body(&self) -> Option<&Value> {
        self.parsed_body
            .get_or_init(|| serde_json::from_str(self.body).ok())
            .as_ref()
    }

    fn parsed_record(&self) -> Option<&Value> {
        self.parsed_record
            .get_or_init(|| serde_json::from_str(self.record).ok())
            .as_ref()
    }
}

/// A mapping's filters (`FilterCriteria.Filters`), OR-ed. Equal when their pattern strings are.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Pattern>);

impl PartialEq for Filters {
    fn eq(&self, other: &Self) -> bool {
        self.sources().eq(other.sources())
    }
}

impl Filters {
    /// Filters made of compiled patterns; none keeps every record.
    pub fn new(patterns: Vec<Pattern>) -> Filters {
        Filters(patterns)
    }

    /// Whether there is no pattern (every record is kept).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.0
    }

    /// The pattern strings, in order.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(Pattern::source)
    }

    /// Whether the record is kept: no filters, or some pattern matches it. `body` is the
    /// message body and `record` the record as encoded for the event (`Records[i]`, whose
    /// fields other than `body` are read only if a pattern names one).
    pub fn keeps(&self, body: &str, record: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let record = Record {
            body,
            record,
            parsed_body: OnceCell::new(),
            parsed_record: OnceCell::new(),
        };
        self.0.iter().any(|p| p.matches(&record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps(patterns: &[&str], body: &str) -> bool {
        let ps = patterns
            .iter()
            .map(|p| Pattern::compile(p).unwrap())
            .collect();
        let record = serde_json::json!({"messageId": "m1", "body": body, "eventSource": "aws:sqs"});
        Filters::new(ps).keeps(body, &record.to_string())
    }

    #[test]
    fn no_filters_keep_everything() {
        assert!(keeps(&[], "anything"));
    }

    #[test]
    fn metadata_keys_match_the_record_and_are_reported() {
        let p = r#"{"eventSource": ["aws:sqs"], "body": {"k": ["v"]}}"#;
        assert!(keeps(&[p], r#"{"k": "v"}"#));
        assert!(!keeps(&[r#"{"eventSource": ["aws:s3"]}"#], "x"));
        let compiled = Pattern::compile(p).unwrap();
        assert_eq!(
            compiled.metadata_keys().into_iter().collect::<Vec<_>>(),
            ["eventSource"]
        );
    }

    #[test]
    fn rules_on_the_body_as_a_string_and_inside_it_never_match() {
        let p = r#"{"body": ["x"], "body.k": ["v"]}"#;
        assert!(!keeps(&[p], "x"));
        assert!(!keeps(&[p], r#"{"k": "v"}"#));
    }

    #[test]
    fn long_patterns_are_refused() {
        let long = format!(r#"{{"body": {{"k": ["{}"]}}}}"#, "x".repeat(4096));
        let e = Pattern::compile(&long).expect_err("too long");
        assert!(e.to_string().contains("above the maximum of 4096"), "{e}");
    }

    #[test]
    fn filters_are_equal_when_their_strings_are() {
        let a = Filters::new(vec![Pattern::compile(r#"{"body":["x"]}"#).unwrap()]);
        let b = Filters::new(vec![Pattern::compile(r#"{"body":["x"]}"#).unwrap()]);
        let c = Filters::new(vec![Pattern::compile(r#"{"body": ["x"]}"#).unwrap()]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
