//! Checks of a program to run, shared by `command` and `runtime` functions: an argv that can be
//! executed directly, and an environment whose variables a process can be given.

use std::collections::BTreeMap;

use super::read::Problems;

/// An argv that can be executed directly: a program, no NUL bytes, and a usable environment.
pub(super) fn check_command(
    name: &str,
    argv: &[String],
    env: &BTreeMap<String, String>,
    env_key: &str,
    working_dir: Option<&str>,
    p: &mut Problems<'_>,
) {
    if argv.first().is_none_or(|program| program.is_empty()) {
        p.at(
            &["functions", name, "command"],
            "must name a program: a non-empty array such as [\"python3\", \"handler.py\"]",
        );
    }
    if argv.iter().any(|a| a.contains('\0')) {
        p.at(
            &["functions", name, "command"],
            "must not contain NUL characters",
        );
    }
    for (var, value) in env {
        if var.is_empty() || var.contains(['=', '\0']) || value.contains('\0') {
            p.at(
                &["functions", name, env_key, var],
                "is not a valid environment variable",
            );
        }
    }
    if working_dir == Some("") {
        p.at(
            &["functions", name, "working_dir"],
            "must not be empty when set",
        );
    }
}
