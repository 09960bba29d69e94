//! Matching an alternative's fields against a JSON value (docs/semantics.md §4.1): a recursive
//! walk that descends only into the paths the pattern names and binds one array element at a
//! time, so that all the fields reached through one array are satisfied by the same element
//! (`{"users":{"name":[..],"status":[..]}}` needs one user with both), and backtracks to the
//! next element when one does not do. Nothing is flattened or copied.
//!
//! A leaf is a scalar (`null` included); an object, a missing key, a key under a scalar and an
//! empty array are all "absent", which only `exists: false` accepts.

use serde_json::{Map, Value};

use super::rule::Rule;

/// A field still to be matched: the path left below the current value, and its rules.
pub(super) type Pending<'a> = (&'a [String], &'a [Rule]);

/// Whether `value` satisfies every one of `fields`.
pub(super) fn all(fields: &[Pending<'_>], value: &Value) -> bool {
    match value {
        Value::Array(items) if items.is_empty() => fields.iter().all(absent),
        // The same element for every field below this array.
        Value::Array(items) => items.iter().any(|item| all(fields, item)),
        Value::Object(map) => object(fields, map),
        leaf => fields.iter().all(|&(path, rules)| {
            if path.is_empty() {
                rules.iter().any(|r| r.accepts(Some(leaf)))
            } else {
                absent(&(path, rules))
            }
        }),
    }
}

/// Fields under an object: each goes down the key its path names; fields that go down the same
/// key are matched together (they share that value's arrays).
fn object(fields: &[Pending<'_>], map: &Map<String, Value>) -> bool {
    let mut groups: Vec<(&Value, Vec<Pending<'_>>)> = Vec::new();
    for &(path, rules) in fields {
        // An object is not a leaf; a field ending here finds nothing.
        let Some((used, child)) = lookup(map, path) else {
            if absent(&(path, rules)) {
                continue;
            }
            return false;
        };
        let rest = (&path[used..], rules);
        match groups.iter_mut().find(|(v, _)| std::ptr::eq(*v, child)) {
            Some((_, g)) => g.push(rest),
            None => groups.push((child, vec![rest])),
        }
    }
    groups.iter().all(|(child, group)| all(group, child))
}

/// The value `path` leads to in `map`, and how many segments its key used: `a` for `a.b.c`,
/// else a key written with dots (`a.b`), shortest first.
fn lookup<'v>(map: &'v Map<String, Value>, path: &[String]) -> Option<(usize, &'v Value)> {
    let first = path.first()?;
    if let Some(v) = map.get(first) {
        return Some((1, v));
    }
    (2..=path.len()).find_map(|n| map.get(&path[..n].join(".")).map(|v| (n, v)))
}

/// Whether a field is satisfied by finding nothing.
fn absent(&(_, rules): &Pending<'_>) -> bool {
    rules.iter().any(|r| r.accepts(None))
}
