//! One rule of a filter pattern's match list (docs/semantics.md §4.1): an exact value or one of
//! the operators Lambda documents, compiled from its JSON, and whether it accepts one leaf of
//! the record. Strings only match strings, numbers only numbers, booleans only booleans; `null`
//! is a value of its own. Numbers are compared as numbers (`100` equals `100.0` and `1e2`).

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// The largest integer every smaller one of which an `f64` holds exactly (2^53).
const EXACT_F64: u64 = 1 << 53;

/// One rule of a match list.
#[derive(Debug, Clone)]
pub(super) enum Rule {
    /// A JSON string, number, boolean or `null`, matched by equality.
    Exact(Exact),
    /// `{"equals-ignore-case": "..."}`: the operand, fully case-folded.
    EqualsIgnoreCase(String),
    /// `{"prefix": "..."}`
    Prefix(String),
    /// `{"suffix": "..."}`
    Suffix(String),
    /// `{"anything-but": ...}`: present, and none of these.
    AnythingBut(Vec<Exact>),
    /// `{"numeric": [...]}`: a JSON number within every bound.
    Numeric(Vec<(Cmp, f64)>),
    /// `{"exists": true|false}`
    Exists(bool),
}

/// A value matched by equality.
#[derive(Debug, Clone)]
pub(super) enum Exact {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

/// A `numeric` comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn parse(s: &str) -> Option<Cmp> {
        Some(match s {
            "=" => Cmp::Eq,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            _ => return None,
        })
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Cmp::Eq => ord == Ordering::Equal,
            Cmp::Lt => ord == Ordering::Less,
            Cmp::Le => ord != Ordering::Greater,
            Cmp::Gt => ord == Ordering::Greater,
            Cmp::Ge => ord != Ordering::Less,
        }
    }
}

impl Rule {
    /// Compiles one element of a match list; `Err` says why it is not a valid rule.
    pub(super) fn compile(v: &Value) -> Result<Rule, String> {
        match v {
            Value::Object(op) => operator(op),
            Value::Array(_) => Err("a rule cannot be a list; nest rules in one list".into()),
            scalar => Ok(Rule::Exact(exact(scalar).ok_or("not a scalar")?)),
        }
    }

    /// Whether the rule accepts `leaf`, a scalar of the record (`None`: the field is absent,
    /// which only `exists: false` accepts).
    pub(super) fn accepts(&self, leaf: Option<&Value>) -> bool {
        let Some(v) = leaf else {
            return matches!(self, Rule::Exists(false));
        };
        match self {
            Rule::Exact(e) => e.equals(v),
            Rule::EqualsIgnoreCase(folded) => v
                .as_str()
                .is_some_and(|s| caseless::default_case_fold_str(s) == *folded),
            Rule::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Rule::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            Rule::AnythingBut(list) => !list.iter().any(|e| e.equals(v)),
            Rule::Numeric(bounds) => v.as_number().and_then(exact_f64).is_some_and(|x| {
                bounds
                    .iter()
                    .all(|&(cmp, b)| x.partial_cmp(&b).is_some_and(|o| cmp.holds(o)))
            }),
            Rule::Exists(present) => *present,
        }
    }
}

impl Exact {
    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (Exact::Null, Value::Null) => true,
            (Exact::Bool(a), Value::Bool(b)) => a == b,
            (Exact::String(a), Value::String(b)) => a == b,
            (Exact::Number(a), Value::Number(b)) => numbers_equal(a, b),
            _ => false,
        }
    }
}

/// Two JSON numbers are equal when their values are: integers exactly, anything else as
/// doubles, and never through a double that cannot hold the integer exactly.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (exact_f64(a), exact_f64(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// `n` as a double, if the double holds it exactly (every float does; integers up to 2^53).
fn exact_f64(n: &Number) -> Option<f64> {
    if let Some(i) = n.as_i64() {
        return (i.unsigned_abs() <= EXACT_F64).then_some(i as f64);
    }
    if let Some(u) = n.as_u64() {
        return (u <= EXACT_F64).then_some(u as f64);
    }
    n.as_f64().filter(|f| f.is_finite())
}

fn exact(v: &Value) -> Option<Exact> {
    Some(match v {
        Value::Null => Exact::Null,
        Value::Bool(b) => Exact::Bool(*b),
        Value::Number(n) => Exact::Number(n.clone()),
        Value::String(s) => Exact::String(s.clone()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// The operators Lambda documents for event filtering, and only those. The other operators of
/// EventBridge's grammar are refused by name, so that a pattern never means something here that
/// Lambda may not do.
fn operator(op: &Map<String, Value>) -> Result<Rule, String> {
    let mut keys = op.iter();
    let (Some((name, arg)), None) = (keys.next(), keys.next()) else {
        return Err(format!(
            "a rule object holds exactly one operator, not {}",
            op.len()
        ));
    };
    let string = |what: &str| {
        arg.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{what} takes a string, not {arg}"))
    };
    match name.as_str() {
        "equals-ignore-case" => Ok(Rule::EqualsIgnoreCase(caseless::default_case_fold_str(
            &string("equals-ignore-case")?,
        ))),
        "prefix" | "suffix" if arg.is_object() => Err(format!(
            "{name} with a nested operator is not among the operators Lambda documents"
        )),
        "prefix" => Ok(Rule::Prefix(string("prefix")?)),
        "suffix" => Ok(Rule::Suffix(string("suffix")?)),
        "exists" => arg
            .as_bool()
            .map(Rule::Exists)
            .ok_or_else(|| format!("exists takes true or false, not {arg}")),
        "anything-but" => anything_but(arg),
        "numeric" => numeric(arg),
        "wildcard" | "cidr" => Err(format!(
            "{name} is not among the operators Lambda documents for event filtering"
        )),
        other => Err(format!("unknown operator {other:?}")),
    }
}

fn anything_but(arg: &Value) -> Result<Rule, String> {
    let list: Vec<&Value> =
        match arg {
            Value::String(_) | Value::Number(_) => vec![arg],
            Value::Array(items) if !items.is_empty() => items.iter().collect(),
            Value::Array(_) => return Err("anything-but takes a non-empty list".into()),
            Value::Object(_) => return Err(
                "anything-but with a nested operator is not among the operators Lambda documents"
                    .into(),
            ),
            _ => {
                return Err(format!(
                    "anything-but takes a string, a number or a list, not {arg}"
                ))
            }
        };
    let strings = list.iter().all(|v| v.is_string());
    let numbers = list.iter().all(|v| v.is_number());
    if !strings && !numbers {
        return Err("anything-but takes a list of strings or a list of numbers, not a mix".into());
    }
    Ok(Rule::AnythingBut(
        list.into_iter().filter_map(exact).collect(),
    ))
}

fn numeric(arg: &Value) -> Result<Rule, String> {
    let Some(items) = arg.as_array() else {
        return Err(format!(
            "numeric takes a list such as [\">\", 0], not {arg}"
        ));
    };
    if items.len() != 2 && items.len() != 4 {
        return Err("numeric takes one condition or a lower and an upper bound".into());
    }
    let mut bounds = Vec::new();
    for pair in items.chunks(2) {
        let cmp = pair[0]
            .as_str()
            .and_then(Cmp::parse)
            .ok_or_else(|| format!("{} is not one of =, <, <=, >, >=", pair[0]))?;
        let n = pair[1]
            .as_number()
            .and_then(exact_f64)
            .ok_or_else(|| format!("{} is not a number a double holds exactly", pair[1]))?;
        bounds.push((cmp, n));
    }
    if let [(low, a), (high, b)] = bounds[..] {
        if !matches!(low, Cmp::Gt | Cmp::Ge) || !matches!(high, Cmp::Lt | Cmp::Le) {
            return Err(
                "a numeric range is a lower bound (> or >=) then an upper (< or <=)".into(),
            );
        }
        if a >= b {
            return Err(format!(
                "the lower bound {a} is not below the upper bound {b}"
            ));
        }
    }
    Ok(Rule::Numeric(bounds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepts(rule: Value, leaf: Value) -> bool {
        Rule::compile(&rule)
            .expect("a valid rule")
            .accepts(Some(&leaf))
    }

    #[test]
    fn numbers_compare_by_value_and_never_through_a_lossy_double() {
        assert!(accepts(json!(300), json!(300.0)));
        assert!(accepts(json!(100), json!(1e2)));
        assert!(accepts(json!(0), json!(-0.0)));
        assert!(!accepts(
            json!(9_007_199_254_740_993_u64),
            json!(9_007_199_254_740_992_u64)
        ));
        assert!(!accepts(
            json!(9_007_199_254_740_993_u64),
            json!(9.007_199_254_740_992e15)
        ));
        assert!(accepts(
            json!(9_007_199_254_740_993_u64),
            json!(9_007_199_254_740_993_u64)
        ));
        assert!(!accepts(
            json!({"numeric": [">", 0]}),
            json!(9_007_199_254_740_993_u64)
        ));
        assert!(accepts(json!({"numeric": ["<", 0]}), json!(-1.5)));
        assert!(!accepts(json!({"numeric": ["=", 5]}), json!("5")));
    }

    #[test]
    fn ignore_case_folds_fully() {
        assert!(accepts(
            json!({"equals-ignore-case": "straße"}),
            json!("STRASSE")
        ));
        assert!(!accepts(
            json!({"equals-ignore-case": "alice"}),
            json!("alicE ")
        ));
    }

    #[test]
    fn only_exists_false_accepts_an_absent_field() {
        assert!(Rule::Exists(false).accepts(None));
        for r in [
            json!(null),
            json!({"anything-but": "x"}),
            json!({"exists": true}),
        ] {
            assert!(!Rule::compile(&r).unwrap().accepts(None), "{r}");
        }
    }

    #[test]
    fn operators_lambda_does_not_document_are_refused_by_name() {
        for r in [
            json!({"wildcard": "a*"}),
            json!({"cidr": "10.0.0.0/24"}),
            json!({"prefix": {"equals-ignore-case": "a"}}),
            json!({"anything-but": {"prefix": "a"}}),
        ] {
            let e = Rule::compile(&r).expect_err("refused");
            assert!(e.contains("Lambda documents"), "{r}: {e}");
        }
    }
}
