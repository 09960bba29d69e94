//! `.ci/run` on a developer's machine (issue 14 point 10): it ends no process it did not start
//! (no `pkill`/`killall` by name, which would stop a Prometheus the developer runs), and it keeps
//! the prometheus package from starting a server while promtool is installed, by a policy-rc.d
//! it writes only when none exists and removes afterwards.

use std::path::Path;

fn script() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run"))
        .expect("read .ci/run")
}

#[test]
fn ci_ends_no_process_by_name() {
    let text = script();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for killer in ["pkill", "killall", "kill -", "systemctl stop"] {
            assert!(!line.contains(killer), "{killer} in .ci/run: {line}");
        }
    }
}

#[test]
fn ci_installs_promtool_with_service_starts_refused_and_restores_the_policy() {
    let text = script();
    let policy = text
        .find("if [ ! -e \"$policy\" ]")
        .expect("a policy-rc.d is written only when none exists");
    let write = text
        .find("printf '#!/bin/sh")
        .expect("the policy is written");
    let written = text[write..].lines().next().unwrap_or_default();
    assert!(
        written.contains("exit 101"),
        "the policy refuses starts: {written}"
    );
    let install = text.find("apt-get install").expect("an install");
    let remove = text
        .rfind("rm -f \"$policy\"")
        .expect("the policy is removed");
    assert!(
        policy < write && write < install && install < remove,
        "{text}"
    );
    assert!(
        text.contains("trap 'rm -f \"$policy\"' EXIT"),
        "removed on failure too"
    );
}
