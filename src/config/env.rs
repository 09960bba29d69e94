//! The environment layer: a snapshot of the variables the loader reads (`ESMD_CONFIG`,
//! `STATE_DIRECTORY` and every `ESMD__SECTION__KEY`), and the `ESMD__` variables turned into a
//! nested table for the config crate.
//!
//! The config crate's own `Environment` source lowercases every key and splits keys on `.`, but
//! queue, function and mapping names are case-sensitive and queue names contain dots
//! (`events.fifo`). So the variables are parsed here instead: split on `__` only, structural
//! levels (sections and setting names) lowercased, names and `env` keys kept as written, and the
//! result handed over as one ready-made table, whose nested keys the crate merges without
//! re-parsing them.

use std::collections::{BTreeMap, HashMap};

use config::{Map, Source, Value, ValueKind};

/// Prefix of the override variables; levels are separated by the same `__`.
const PREFIX: &str = "ESMD__";
const SEPARATOR: &str = "__";

/// The sections whose second level is a user-chosen, case-sensitive name.
const NAMED_SECTIONS: [&str; 3] = ["queues", "functions", "mappings"];

/// The environment as the loader sees it: injected by a test, or the process's.
#[derive(Debug, Clone, Default)]
pub(super) struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Takes the injected variables, or else a snapshot of the process environment. Variables
    /// whose name or value is not UTF-8 are ignored, except that an `ESMD__` variable with a
    /// non-UTF-8 value is reported as a problem.
    pub fn capture(injected: Option<&HashMap<String, String>>, problems: &mut Vec<String>) -> Env {
        let vars = match injected {
            Some(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| {
                    let k = k.into_string().ok()?;
                    match v.into_string() {
                        Ok(v) => Some((k, v)),
                        Err(_) => {
                            if k.starts_with(PREFIX) {
                                problems.push(format!(
                                    "environment variable {k}: the value is not valid UTF-8"
                                ));
                            }
                            None
                        }
                    }
                })
                .collect(),
        };
        Env { vars }
    }

    /// One variable, treating an empty value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The `ESMD__` variables as a config source, pushing a problem for each variable that
    /// cannot be placed (an empty level, or a value where another variable needs a table).
    pub fn overrides(&self, problems: &mut Vec<String>) -> Overrides {
        let mut root = Node::Table(BTreeMap::new());
        for (name, value) in &self.vars {
            let Some(path) = name.strip_prefix(PREFIX) else {
                continue;
            };
            match key_path(path) {
                Some(path) => {
                    if !root.insert(&path, name, value) {
                        problems.push(format!(
                            "environment variable {name}: conflicts with another ESMD__ variable \
                             that sets {} or a key below it",
                            path.join(".")
                        ));
                    }
                }
                None => problems.push(format!(
                    "environment variable {name}: expected ESMD__SECTION__KEY with no empty level"
                )),
            }
        }
        let table = match root.into_value().kind {
            ValueKind::Table(table) => table,
            _ => Map::new(),
        };
        Overrides(table)
    }
}

/// The `ESMD__` overrides, ready to layer over the file.
#[derive(Debug, Clone)]
pub(super) struct Overrides(Map<String, Value>);

impl Source for Overrides {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    /// The top-level keys are section names (no dots), which the crate parses as paths; below
    /// them it merges the tables key by key, as written.
    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// Splits `SECTION__NAME__KEY` into levels, lowercasing the structural ones. `None` if a level is
/// empty.
fn key_path(path: &str) -> Option<Vec<String>> {
    let levels: Vec<&str> = path.split(SEPARATOR).collect();
    if levels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let named = NAMED_SECTIONS.contains(&levels[0].to_ascii_lowercase().as_str());
    let out = levels
        .iter()
        .enumerate()
        .map(|(i, level)| {
            // Named sections: section, NAME, key, ENV_KEY...; others: section, key, ...
            let structural = if named { i == 0 || i == 2 } else { i <= 1 };
            if structural {
                level.to_ascii_lowercase()
            } else {
                (*level).to_owned()
            }
        })
        .collect();
    Some(out)
}

/// A tree under construction.
enum Node {
    Leaf { var: String, value: String },
    Table(BTreeMap<String, Node>),
}

impl Node {
    /// Inserts a value at `path`; false when it collides with a value already placed.
    fn insert(&mut self, path: &[String], var: &str, value: &str) -> bool {
        let Node::Table(children) = self else {
            return false;
        };
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        if rest.is_empty() {
            if children.contains_key(first) {
                return false;
            }
            children.insert(
                first.clone(),
                Node::Leaf {
                    var: var.into(),
                    value: value.into(),
                },
            );
            return true;
        }
        children
            .entry(first.clone())
            .or_insert_with(|| Node::Table(BTreeMap::new()))
            .insert(rest, var, value)
    }

    fn into_value(self) -> Value {
        match self {
            Node::Leaf { var, value } => {
                let origin = format!("environment variable {var}");
                Value::new(Some(&origin), ValueKind::String(value))
            }
            Node::Table(children) => {
                let table: Map<String, Value> = children
                    .into_iter()
                    .map(|(k, v)| (k, v.into_value()))
                    .collect();
                Value::new(None, ValueKind::Table(table))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Option<Vec<String>> {
        key_path(p)
    }

    #[test]
    fn structural_levels_are_lowercased_and_names_kept() {
        assert_eq!(
            path("SERVER__LISTEN"),
            Some(vec!["server".into(), "listen".into()])
        );
        assert_eq!(
            path("QUEUES__events.fifo__DELAY"),
            Some(vec!["queues".into(), "events.fifo".into(), "delay".into()])
        );
        assert_eq!(
            path("FUNCTIONS__Resize__ENV__Stage"),
            Some(vec![
                "functions".into(),
                "Resize".into(),
                "env".into(),
                "Stage".into()
            ])
        );
        assert_eq!(path("QUEUES____DELAY"), None);
        assert_eq!(path("SERVER__"), None);
    }

    #[test]
    fn conflicting_variables_are_reported() {
        let vars = [("ESMD__SERVER", "x"), ("ESMD__SERVER__LISTEN", "y")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut problems = Vec::new();
        let env = Env::capture(Some(&vars), &mut problems);
        env.overrides(&mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("ESMD__SERVER__LISTEN"), "{problems:?}");
    }
}
