//! Reading the layered tree into the raw mirror, piece by piece (each section and each named
//! entry on its own, and within an entry field by field), so that every type error and unknown
//! key is reported at once, each with its full key (`queues."events.fifo".delay: ...`).
//!
//! Knows the shape of the file only through the serde structs of `raw`; no value rule lives here.

use std::collections::{BTreeMap, BTreeSet};

use config::ValueKind;
use serde::de::DeserializeOwned;

use super::raw::{RawConfig, RawFunction, FUNCTION_TYPES, SECTIONS};

/// Entries that failed to deserialize. Cross-references to them are not reported as dangling:
/// the entry's own problem is already reported.
#[derive(Debug, Default)]
pub(super) struct Skipped {
    sections: BTreeSet<&'static str>,
    entries: BTreeSet<(&'static str, String)>,
}

impl Skipped {
    /// Whether `section.name` was present but could not be read.
    pub fn contains(&self, section: &str, name: &str) -> bool {
        self.sections.contains(section)
            || self.entries.iter().any(|(s, n)| *s == section && n == name)
    }
}

/// Deserializes the layered tree section by section and entry by entry, pushing one problem per
/// bad field. An entry with a problem is left out and recorded in [`Skipped`]; a bad scalar
/// section is left at its defaults.
pub(super) fn read(
    tree: BTreeMap<String, config::Value>,
    problems: &mut Vec<String>,
) -> (RawConfig, Skipped) {
    let mut raw = RawConfig::default();
    let mut skipped = Skipped::default();
    for (section, value) in tree {
        match section.as_str() {
            "server" => raw.server = piece(value, &key(&["server"]), problems).unwrap_or_default(),
            "storage" => {
                raw.storage = piece(value, &key(&["storage"]), problems).unwrap_or_default()
            }
            "log" => raw.log = piece(value, &key(&["log"]), problems).unwrap_or_default(),
            "queues" => raw.queues = named(value, "queues", problems, &mut skipped, piece),
            "functions" => {
                raw.functions = named(value, "functions", problems, &mut skipped, function)
            }
            "mappings" => raw.mappings = named(value, "mappings", problems, &mut skipped, piece),
            _ => problems.push(format!(
                "{}: unknown key, expected one of {}",
                key(&[&section]),
                SECTIONS.join(", ")
            )),
        }
    }
    (raw, skipped)
}

/// Formats a key path as TOML writes dotted keys: bare segments as they are, others quoted
/// (`queues."events.fifo".delay`).
pub(super) fn key(segments: &[&str]) -> String {
    let bare = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let quoted: Vec<String> = segments
        .iter()
        .map(|s| {
            if bare(s) {
                (*s).to_owned()
            } else {
                format!("{s:?}")
            }
        })
        .collect();
    quoted.join(".")
}

/// Deserializes one piece. serde stops at the first bad field, so after each error the field it
/// names is dropped and the piece is tried again, until it deserializes or the error names no
/// droppable field: that way every bad field of an entry is reported, not just the first one.
fn piece<T: DeserializeOwned>(
    mut value: config::Value,
    at: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    let mut found = Vec::new();
    let mut dropped = Vec::new();
    loop {
        match T::deserialize(value.clone()) {
            Ok(v) if found.is_empty() => return Some(v),
            Ok(_) => break,
            Err(e) => {
                let (line, field) = describe(at, e);
                if field.as_ref().is_some_and(|f| dropped.contains(f)) {
                    // "missing field" for a field dropped above: already reported.
                    break;
                }
                found.push(line);
                let removed = match (&mut value.kind, &field) {
                    (ValueKind::Table(table), Some(field)) => table.remove(field).is_some(),
                    _ => false,
                };
                match field {
                    Some(field) if removed => dropped.push(field),
                    _ => break,
                }
            }
        }
    }
    // The config crate's tables are hash maps: sort for a stable report.
    found.sort();
    problems.extend(found);
    None
}

/// Reads a table of named entries (`[queues.NAME]`...) with `read` for each entry.
fn named<T>(
    value: config::Value,
    section: &'static str,
    problems: &mut Vec<String>,
    skipped: &mut Skipped,
    read: fn(config::Value, &str, &mut Vec<String>) -> Option<T>,
) -> BTreeMap<String, T> {
    let Some(entries) = piece::<BTreeMap<String, config::Value>>(value, section, problems) else {
        skipped.sections.insert(section);
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (name, value) in entries {
        match read(value, &key(&[section, &name]), problems) {
            Some(v) => {
                out.insert(name, v);
            }
            None => {
                skipped.entries.insert((section, name));
            }
        }
    }
    out
}

/// Reads a function by its `type` tag. serde's internally tagged enums buffer the table and lose
/// the key of a bad field, so the tag is taken off here and the variant's struct is read
/// directly from the tree.
fn function(value: config::Value, at: &str, problems: &mut Vec<String>) -> Option<RawFunction> {
    let ValueKind::Table(mut table) = value.kind else {
        // Not a table: let serde word the type error.
        return piece(value, at, problems);
    };
    let Some(tag) = table.remove("type") else {
        problems.push(format!("{}: is required", join(at, "type")));
        return None;
    };
    let fields = config::Value::new(None, ValueKind::Table(table));
    let kind = match tag.into_string() {
        Ok(kind) => kind,
        Err(e) => {
            problems.push(describe(&join(at, "type"), e).0);
            return None;
        }
    };
    match kind.as_str() {
        "http" => piece(fields, at, problems).map(RawFunction::Http),
        "command" => piece(fields, at, problems).map(RawFunction::Command),
        "log" => piece(fields, at, problems).map(RawFunction::Log),
        "runtime" => piece(fields, at, problems).map(RawFunction::Runtime),
        other => {
            let expected: Vec<String> = FUNCTION_TYPES.iter().map(|t| format!("{t:?}")).collect();
            problems.push(format!(
                "{}: unknown function type {other:?}, expected one of {}",
                join(at, "type"),
                expected.join(", ")
            ));
            None
        }
    }
}

/// The one secret of the configuration: its value never appears in a problem.
pub(super) const SECRET_KEY: &str = "server.auth_token";

/// One line for a deserialization error: the full key, then what is wrong; and the field of the
/// piece the error is about, when known. serde's "unknown field" and "missing field" messages
/// name a field that belongs in the key.
fn describe(at: &str, err: config::ConfigError) -> (String, Option<String>) {
    let mut relative = None;
    let message = unwrap_error(err, &mut relative);
    let full = match &relative {
        Some(k) => join(at, k),
        None => at.to_owned(),
    };
    // The first level of the relative key: `env.FOO` and `command[0]` are in `env`, `command`.
    let field = relative.map(|k| k.split(['.', '[']).next().unwrap_or_default().to_owned());
    if full == SECRET_KEY {
        // serde quotes the value it refused; this one is a secret and must not be logged.
        return (
            format!("{full}: must be a string (the value is not shown)"),
            field,
        );
    }
    let quoted = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        let (name, tail) = rest.split_once('`')?;
        Some((name.to_owned(), tail.to_owned()))
    };
    if let Some((name, tail)) = quoted("unknown field `") {
        let line = format!("{}: unknown key{tail}", join(&full, &key(&[&name])));
        (line, field.or(Some(name)))
    } else if let Some((name, _)) = quoted("missing field `") {
        let line = format!("{}: is required", join(&full, &key(&[&name])));
        (line, field.or(Some(name)))
    } else if let Some(i) = message.find("expected struct ") {
        // serde names the Rust type; the user wrote a TOML table.
        (format!("{full}: {}expected a table", &message[..i]), field)
    } else {
        (format!("{full}: {message}"), field)
    }
}

/// Peels the config crate's key-carrying wrappers off an error. The outermost key is the path
/// from the piece's root to the bad value.
fn unwrap_error(err: config::ConfigError, relative: &mut Option<String>) -> String {
    match err {
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => {
            *relative = relative.take().or(key);
            format!("invalid type: {unexpected}, expected {expected}")
        }
        config::ConfigError::At { error, key, .. } => {
            *relative = relative.take().or(key);
            unwrap_error(*error, relative)
        }
        config::ConfigError::NotFound(k) => {
            *relative = relative.take().or(Some(k));
            "is required".into()
        }
        config::ConfigError::Message(m) => m,
        other => other.to_string(),
    }
}

fn join(at: &str, rest: &str) -> String {
    if rest.starts_with('[') {
        format!("{at}{rest}")
    } else {
        format!("{at}.{rest}")
    }
}

/// The problems found so far; each is pushed as `full.key: message`. Shared by the validators
/// of every section (`validate.rs`, `mapping.rs`).
pub(super) struct Problems<'a>(&'a mut Vec<String>);

impl<'a> Problems<'a> {
    /// Collects into `out`.
    pub(super) fn new(out: &'a mut Vec<String>) -> Self {
        Problems(out)
    }

    /// A problem with the key `segments` (joined and quoted as [`key`] does).
    pub(super) fn at(&mut self, segments: &[&str], message: impl std::fmt::Display) {
        self.0.push(format!("{}: {message}", key(segments)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_like_toml() {
        assert_eq!(key(&["queues", "orders", "delay"]), "queues.orders.delay");
        assert_eq!(
            key(&["queues", "events.fifo", "delay"]),
            "queues.\"events.fifo\".delay"
        );
        assert_eq!(key(&["mappings", ""]), "mappings.\"\"");
    }
}
