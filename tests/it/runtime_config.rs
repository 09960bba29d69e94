//! `type = "runtime"` and the asynchronous invocation keys every function type has, as
//! configured in TOML (docs/interface.md §2): defaults, each bad value named by its full key,
//! and `render`'s round trip.

use std::path::Path;
use std::time::Duration;

use esmd::config::{load, render, ConfigError, FunctionTarget, LoadOptions, Loaded};
use tempfile::TempDir;

fn load_text(text: &str) -> Result<Loaded, ConfigError> {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("esmd.toml");
    std::fs::write(&path, text).expect("write");
    load(&options(dir.path(), &path))
}

fn options(dir: &Path, path: &Path) -> LoadOptions {
    LoadOptions {
        config_path: Some(path.to_owned()),
        env: Some(Default::default()),
        cwd: Some(dir.to_owned()),
    }
}

const FULL: &str = r#"
[queues.orders]
[functions.orders]
type = "runtime"
command = ["python3", "-m", "awslambdaric", "app.handler"]
handler = "app.handler"
working_dir = "functions/orders"
environment = { GREETING = "hi" }
memory_size = 256
timeout = "3s"
init_timeout = "10s"
max_environments = 4
idle_timeout = "10min"
max_retry_attempts = 1
max_event_age = "1h"
destinations = { on_success = "ok-q", on_failure = "failed-q" }
retry_backoff = "2s"
[functions.hook]
type = "http"
url = "http://127.0.0.1:9000/"
max_retry_attempts = 0
"#;

#[test]
fn a_runtime_function_as_the_readme_shows_it() {
    let loaded = load_text(FULL).unwrap_or_else(|e| panic!("{e}"));
    let f = &loaded.config.functions["orders"];
    let FunctionTarget::Runtime(r) = &f.target else {
        panic!("a runtime: {f:?}")
    };
    assert_eq!(r.argv[2], "awslambdaric");
    assert_eq!(r.handler.as_deref(), Some("app.handler"));
    assert_eq!(r.env["GREETING"], "hi");
    assert_eq!(r.memory_size, 256);
    assert_eq!(r.init_timeout, Duration::from_secs(10));
    assert_eq!(r.max_environments, 4);
    assert_eq!(r.idle_timeout, Duration::from_secs(600));
    let a = &f.async_config;
    assert_eq!(a.max_retry_attempts, 1);
    assert_eq!(a.max_event_age, Duration::from_secs(3600));
    assert_eq!(
        a.on_success.as_ref().map(ToString::to_string).as_deref(),
        Some("ok-q")
    );
    assert_eq!(
        a.on_failure.as_ref().map(ToString::to_string).as_deref(),
        Some("failed-q")
    );
    assert_eq!(a.retry_backoff, Duration::from_secs(2));
    // Another type has the same keys, with Lambda's defaults.
    let hook = &loaded.config.functions["hook"].async_config;
    assert_eq!(hook.max_retry_attempts, 0);
    assert_eq!(hook.max_event_age, Duration::from_secs(6 * 3600));
    assert_eq!(hook.retry_backoff, Duration::from_secs(1));
    assert!(hook.on_success.is_none() && hook.on_failure.is_none());
    // Rendered and read back, the same configuration.
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("rendered.toml");
    let text = render(&loaded.config);
    std::fs::write(&path, &text).expect("write");
    let again = load(&options(dir.path(), &path)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again.config, loaded.config, "{text}");
}

#[test]
fn runtime_defaults() {
    let loaded = load_text("[functions.f]\ntype = \"runtime\"\ncommand = [\"./bootstrap\"]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let FunctionTarget::Runtime(r) = &loaded.config.functions["f"].target else {
        panic!("a runtime")
    };
    assert_eq!(r.memory_size, 128);
    assert_eq!(r.init_timeout, Duration::from_secs(10));
    assert_eq!(r.max_environments, 10);
    assert_eq!(r.idle_timeout, Duration::from_secs(600));
    assert_eq!(loaded.config.functions["f"].timeout, Duration::from_secs(3));
}

#[test]
fn each_bad_value_is_named_by_its_key() {
    let text = r#"
[functions.f]
type = "runtime"
command = []
handler = ""
environment = { AWS_LAMBDA_MAX_CONCURRENCY = "2", "A=B" = "x" }
memory_size = 64
init_timeout = "0s"
max_environments = 0
idle_timeout = "0s"
max_retry_attempts = 3
max_event_age = "30s"
retry_backoff = "0s"
destinations = { on_success = "bad name!", on_failure = "ok" }
"#;
    let Err(ConfigError::Invalid { problems }) = load_text(text) else {
        panic!("expected problems")
    };
    for (key, fragment) in [
        ("functions.f.command", "must name a program"),
        ("functions.f.handler", "non-empty"),
        (
            "functions.f.environment.AWS_LAMBDA_MAX_CONCURRENCY",
            "reserved",
        ),
        (
            "functions.f.environment.\"A=B\"",
            "not a valid environment variable",
        ),
        ("functions.f.memory_size", "128 to 10240"),
        ("functions.f.init_timeout", "greater than 0s"),
        ("functions.f.max_environments", "1 to 1000"),
        ("functions.f.idle_timeout", "greater than 0s"),
        ("functions.f.max_retry_attempts", "0 to 2"),
        ("functions.f.max_event_age", "1m to 6h"),
        ("functions.f.retry_backoff", "more than 0s"),
        ("functions.f.destinations.on_success", "not a queue name"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{key}: ")) && p.contains(fragment)),
            "{key}: {fragment} in {problems:#?}"
        );
    }
    assert!(
        !problems.iter().any(|p| p.contains("on_failure")),
        "{problems:#?}"
    );
}

#[test]
fn unknown_keys_of_a_runtime_are_refused() {
    let Err(ConfigError::Invalid { problems }) =
        load_text("[functions.f]\ntype = \"runtime\"\ncommand = [\"b\"]\nenv = { A = \"b\" }\n")
    else {
        panic!("expected problems")
    };
    assert!(
        problems.iter().any(|p| p.contains("functions.f.env")),
        "{problems:#?}"
    );
}
