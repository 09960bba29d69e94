//! A pattern's JSON turned into what the matcher walks (docs/semantics.md §4.1): the `$or`s
//! expanded into alternatives, each a list of fields, each field a dotted path (split into
//! segments, so `{"a":{"b":[..]}}` and `{"a.b":[..]}` are one rule) and its match list. Every
//! shape event-ruler's compiler refuses is refused here with the reason.

use serde_json::{Map, Value};

use super::rule::Rule;
use crate::domain::text::json_kind as kind;

/// The most alternatives the `$or`s of one pattern may expand to.
pub(super) const MAX_ALTERNATIVES: usize = 1024;

/// One field of an alternative: its path from the record's top, and its rules (OR-ed).
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub path: Vec<String>,
    pub rules: Vec<Rule>,
}

/// The alternatives (OR-ed) of a pattern object, each a list of fields (AND-ed).
pub(super) fn pattern(value: &Value) -> Result<Vec<Vec<Field>>, String> {
    match value {
        Value::Object(obj) => object(obj, &[]),
        other => Err(format!("a pattern is a JSON object, not {}", kind(other))),
    }
}

fn object(obj: &Map<String, Value>, prefix: &[String]) -> Result<Vec<Vec<Field>>, String> {
    if obj.is_empty() {
        return Err(match prefix {
            [] => "the pattern is empty".to_owned(),
            _ => format!("{} is an empty object", prefix.join(".")),
        });
    }
    let mut alts: Vec<Vec<Field>> = vec![Vec::new()];
    for (key, value) in obj {
        let branches = match (key.as_str(), value) {
            ("$or", Value::Array(items)) => or(items, prefix)?,
            _ => {
                let mut path = prefix.to_vec();
                path.extend(key.split('.').map(str::to_owned));
                match value {
                    Value::Object(inner) => object(inner, &path)?,
                    Value::Array(items) if items.is_empty() => {
                        return Err(format!("{} has an empty match list", path.join(".")))
                    }
                    Value::Array(items) => {
                        let rules = items
                            .iter()
                            .map(Rule::compile)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| format!("{}: {e}", path.join(".")))?;
                        vec![vec![Field { path, rules }]]
                    }
                    other => {
                        return Err(format!(
                            "{} must be a list of rules or an object, not {}",
                            path.join("."),
                            kind(other)
                        ))
                    }
                }
            }
        };
        alts = cross(&alts, &branches)?;
    }
    Ok(alts)
}

/// `"$or": [{...}, {...}, ...]`: each branch a pattern object at the same level.
fn or(items: &[Value], prefix: &[String]) -> Result<Vec<Vec<Field>>, String> {
    if items.len() < 2 || !items.iter().all(Value::is_object) {
        return Err("$or takes a list of at least two objects".into());
    }
    let mut out = Vec::new();
    for item in items.iter().filter_map(Value::as_object) {
        out.extend(object(item, prefix)?);
        if out.len() > MAX_ALTERNATIVES {
            return Err(too_many());
        }
    }
    Ok(out)
}

/// Every alternative of `a` joined with every alternative of `b`.
fn cross(a: &[Vec<Field>], b: &[Vec<Field>]) -> Result<Vec<Vec<Field>>, String> {
    if a.len().saturating_mul(b.len()) > MAX_ALTERNATIVES {
        return Err(too_many());
    }
    Ok(a.iter()
        .flat_map(|x| {
            b.iter()
                .map(move |y| x.iter().chain(y).cloned().collect::<Vec<_>>())
        })
        .collect())
}

fn too_many() -> String {
    format!("its $or combinations exceed {MAX_ALTERNATIVES}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(v: Value) -> Vec<Vec<String>> {
        pattern(&v)
            .unwrap()
            .into_iter()
            .map(|alt| alt.into_iter().map(|f| f.path.join("/")).collect())
            .collect()
    }

    #[test]
    fn dotted_keys_and_nesting_are_one_path() {
        assert_eq!(
            paths(json!({"a": {"b": ["x"]}})),
            paths(json!({"a.b": ["x"]}))
        );
        assert_eq!(paths(json!({"a.b": ["x"]})), [["a/b"]]);
    }

    #[test]
    fn or_expands_into_alternatives_joined_with_its_siblings() {
        let mut alts = paths(json!({
            "k": ["v"],
            "$or": [{"a": [1]}, {"b": [2], "$or": [{"c": [3]}, {"d": [4]}]}]
        }));
        for alt in &mut alts {
            alt.sort();
        }
        alts.sort();
        assert_eq!(
            alts,
            [vec!["a", "k"], vec!["b", "c", "k"], vec!["b", "d", "k"]]
        );
    }

    #[test]
    fn an_or_with_an_object_value_is_an_ordinary_field() {
        assert_eq!(paths(json!({"$or": {"x": ["a"]}})), [["$or/x"]]);
    }

    #[test]
    fn or_combinations_are_capped() {
        let or2 = |i: usize| json!([{ format!("a{i}"): [1] }, { format!("b{i}"): [2] }]);
        let mut obj = Map::new();
        for i in 0..11 {
            obj.insert(format!("k{i}"), json!({"$or": or2(i)}));
        }
        let e = pattern(&Value::Object(obj)).expect_err("2^11 alternatives");
        assert!(e.contains("exceed"), "{e}");
    }
}
