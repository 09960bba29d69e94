//! The configuration loader through its public surface: the shipped file, the built-in demo, the
//! lookup order, environment overrides (dotted and mixed-case names), unknown keys, every
//! cross-field rule naming its full key, `render`'s round trip and `$STATE_DIRECTORY`. Files go
//! into temporary directories; the environment is always injected, never the process's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use esmd::config::{
    load, render, ConfigError, FunctionTarget, LoadOptions, Loaded, LogFormat, Synchronous,
};
use esmd::domain::queue::{DedupScope, QueueName, QueueSettings, Redrive};
use tempfile::TempDir;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/esmd.toml")
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Options with `dir` as the working directory and only `vars` in the environment.
fn opts(dir: &Path, config_path: Option<PathBuf>, vars: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        config_path,
        env: Some(env(vars)),
        cwd: Some(dir.to_owned()),
    }
}

/// Loads `text` as an explicit `--config` file with the given environment.
fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "esmd.toml", text);
    load(&opts(dir.path(), Some(path), vars))
}

/// The problems of an invalid configuration.
fn problems(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match load_text(text, vars) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

/// Asserts that some problem starts with `key: ` and contains `fragment`.
#[track_caller]
fn assert_problem(problems: &[String], key: &str, fragment: &str) {
    let prefix = format!("{key}: ");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&prefix) && p.contains(fragment)),
        "no problem `{key}: ...{fragment}...` in:\n{}",
        problems.join("\n")
    );
}

fn q(name: &str) -> QueueName {
    QueueName::parse(name).unwrap()
}

const BASE: &str = r#"
[queues.orders]
[queues."events.fifo"]
[functions.f]
type = "log"
"#;

// --- the shipped file and the built-in demo ---------------------------------------------------

#[test]
fn shipped_file_loads_cleanly() {
    let dir = TempDir::new().unwrap();
    let loaded = load(&opts(dir.path(), Some(shipped()), &[])).unwrap();
    assert_eq!(loaded.source.as_deref(), Some(shipped().as_path()));
    let c = loaded.config;
    assert_eq!(c.server.listen, "127.0.0.1:9324");
    assert_eq!(c.storage.path, dir.path().join("esmd.db"));
    let orders = &c.queues[&q("orders")];
    assert_eq!(
        orders.redrive,
        Some(Redrive {
            dead_letter_queue: q("orders-dlq"),
            max_receive_count: 5
        })
    );
    assert!(c.queues.contains_key(&q("orders-dlq")));
    assert!(c.queues[&q("events.fifo")].content_based_deduplication);
    // One mapping per queue type, each to a function that needs nothing outside esmd.
    let kinds: Vec<bool> = c.mappings.values().map(|m| m.queue.is_fifo()).collect();
    assert!(kinds.contains(&true) && kinds.contains(&false), "{kinds:?}");
    for (name, m) in &c.mappings {
        assert_eq!(
            c.functions[&m.function].target,
            FunctionTarget::Log,
            "mapping {name}"
        );
    }
    assert!(matches!(
        c.functions["resize"].target,
        FunctionTarget::Http { .. }
    ));
    assert!(matches!(
        c.functions["report"].target,
        FunctionTarget::Command { .. }
    ));
    assert!(matches!(
        c.functions["orders"].target,
        FunctionTarget::Runtime(_)
    ));
}

#[test]
fn built_in_demo_when_no_file_is_found() {
    let dir = TempDir::new().unwrap();
    let loaded = load(&opts(dir.path(), None, &[])).unwrap();
    assert_eq!(loaded.source, None);
    let c = loaded.config;
    assert_eq!(c.server.listen, "127.0.0.1:9324");
    assert_eq!(c.server.region, "us-east-1");
    assert_eq!(c.server.account_id, "000000000000");
    assert_eq!(c.server.auth_token, None);
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.storage.path, dir.path().join("esmd.db"));
    assert_eq!(c.storage.synchronous, Synchronous::Full);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.queues.len(), 1);
    assert_eq!(c.queues[&q("default")], QueueSettings::default());
    assert_eq!(c.functions.len(), 1);
    assert_eq!(c.functions["log"].target, FunctionTarget::Log);
    assert_eq!(c.functions["log"].timeout, Duration::from_secs(3));
    assert_eq!(c.mappings.len(), 1);
    let m = &c.mappings["default"];
    assert_eq!((m.queue.as_str(), m.function.as_str()), ("default", "log"));
    assert!(m.enabled);
    assert_eq!(m.batch_size, 10);
    assert_eq!(m.batching_window, Duration::ZERO);
    assert_eq!(m.max_payload, 6_291_456);
    assert_eq!(m.max_concurrency, 5);
    assert!(!m.report_batch_item_failures);
}

#[test]
fn a_file_replaces_the_demo_but_keeps_scalar_defaults() {
    let c = load_text("[server]\nregion = \"eu-west-1\"\n", &[])
        .unwrap()
        .config;
    assert!(c.queues.is_empty() && c.functions.is_empty() && c.mappings.is_empty());
    assert_eq!(c.server.region, "eu-west-1");
    assert_eq!(c.server.listen, "127.0.0.1:9324");
}

#[test]
fn environment_overrides_apply_to_the_demo_too() {
    let dir = TempDir::new().unwrap();
    let vars = [("ESMD__QUEUES__default__VISIBILITY_TIMEOUT", "45s")];
    let c = load(&opts(dir.path(), None, &vars)).unwrap().config;
    assert_eq!(
        c.queues[&q("default")].visibility_timeout,
        Duration::from_secs(45)
    );
}

// --- lookup order -----------------------------------------------------------------------------

fn listen_file(dir: &Path, rel: &str, port: u16) -> PathBuf {
    write(
        dir,
        rel,
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
}

#[test]
fn config_path_beats_esmd_config_beats_the_working_directory_file() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let explicit = listen_file(d, "explicit.toml", 1001);
    let from_env = listen_file(d, "from-env.toml", 1002);
    let local = listen_file(d, "config/esmd.toml", 1003);
    let esmd_config = from_env.to_str().unwrap();

    let loaded = load(&opts(
        d,
        Some(explicit.clone()),
        &[("ESMD_CONFIG", esmd_config)],
    ))
    .unwrap();
    assert_eq!(loaded.source, Some(explicit));
    assert_eq!(loaded.config.server.listen, "127.0.0.1:1001");

    let loaded = load(&opts(d, None, &[("ESMD_CONFIG", esmd_config)])).unwrap();
    assert_eq!(loaded.source, Some(from_env));
    assert_eq!(loaded.config.server.listen, "127.0.0.1:1002");

    let loaded = load(&opts(d, None, &[])).unwrap();
    assert_eq!(loaded.source, Some(local));
    assert_eq!(loaded.config.server.listen, "127.0.0.1:1003");
}

#[test]
fn relative_paths_are_relative_to_the_working_directory() {
    let dir = TempDir::new().unwrap();
    let file = listen_file(dir.path(), "etc/my.toml", 1004);
    let loaded = load(&opts(dir.path(), Some("etc/my.toml".into()), &[])).unwrap();
    assert_eq!(loaded.source, Some(file.clone()));
    let loaded = load(&opts(dir.path(), None, &[("ESMD_CONFIG", "etc/my.toml")])).unwrap();
    assert_eq!(loaded.source, Some(file));
}

#[test]
fn a_missing_explicit_file_is_an_error_never_a_fall_back() {
    let dir = TempDir::new().unwrap();
    listen_file(dir.path(), "config/esmd.toml", 1005);
    let missing = dir.path().join("nope.toml");

    let err = load(&opts(dir.path(), Some(missing.clone()), &[])).unwrap_err();
    assert!(
        matches!(&err, ConfigError::MissingFile { path } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope.toml"), "{err}");

    let err = load(&opts(
        dir.path(),
        None,
        &[("ESMD_CONFIG", missing.to_str().unwrap())],
    ))
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::MissingFile { path } if *path == missing),
        "{err:?}"
    );
}

#[test]
fn a_toml_syntax_error_names_the_file_and_line() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "bad.toml", "[server]\nlisten = \n");
    let err = load(&opts(dir.path(), Some(path), &[])).unwrap_err();
    let ConfigError::Parse { origin, message } = &err else {
        panic!("{err:?}")
    };
    assert!(origin.ends_with("bad.toml"), "{origin}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn an_unreadable_file_is_a_read_error() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("a-directory.toml")).unwrap();
    let err = load(&opts(dir.path(), Some("a-directory.toml".into()), &[])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
}

// --- environment overrides --------------------------------------------------------------------

const ENV_BASE: &str = r#"
[queues.Orders]
[queues."events.fifo"]
[functions.Fn]
type = "command"
command = ["true"]
[mappings.M]
queue = "Orders"
function = "Fn"
"#;

#[test]
fn environment_overrides_strings_durations_numbers_bools_and_sizes() {
    let vars = [
        ("ESMD__SERVER__LISTEN", "0.0.0.0:9324"),
        ("ESMD__SERVER__ALLOW_UNAUTHENTICATED", "true"),
        ("ESMD__LOG__FORMAT", "json"),
        ("ESMD__QUEUES__events.fifo__DELAY", "1s"),
        (
            "ESMD__QUEUES__events.fifo__CONTENT_BASED_DEDUPLICATION",
            "true",
        ),
        ("ESMD__QUEUES__Orders__VISIBILITY_TIMEOUT", "60s"),
        ("ESMD__QUEUES__Orders__MAX_MESSAGE_SIZE", "256KiB"),
        ("ESMD__QUEUES__Orders__MAX_RECEIVE_COUNT", "3"),
        ("ESMD__QUEUES__Orders__DEAD_LETTER_QUEUE", "Orders-dlq"),
        ("ESMD__QUEUES__Orders-dlq__RECEIVE_WAIT", "20s"),
        ("ESMD__FUNCTIONS__Fn__ENV__Stage", "prod"),
        ("ESMD__MAPPINGS__M__BATCH_SIZE", "20"),
        ("ESMD__MAPPINGS__M__BATCHING_WINDOW", "1s"),
        ("ESMD__MAPPINGS__M__ENABLED", "false"),
        ("ESMD__MAPPINGS__M__MAX_PAYLOAD", "1048576"),
        ("ESMD_CONFIG_UNRELATED", "ignored"),
    ];
    let c = load_text(ENV_BASE, &vars).unwrap().config;
    assert_eq!(c.server.listen, "0.0.0.0:9324");
    assert_eq!(c.log.format, LogFormat::Json);

    let fifo = &c.queues[&q("events.fifo")];
    assert_eq!(fifo.delay, Duration::from_secs(1));
    assert!(fifo.content_based_deduplication);
    assert_eq!(fifo.deduplication_scope, DedupScope::Queue);

    // Mixed-case names keep their case: no lowercase twin appears.
    let names: Vec<&str> = c.queues.keys().map(QueueName::as_str).collect();
    assert_eq!(names, ["Orders", "Orders-dlq", "events.fifo"]);
    let orders = &c.queues[&q("Orders")];
    assert_eq!(orders.visibility_timeout, Duration::from_secs(60));
    assert_eq!(orders.max_message_size, 262_144);
    assert_eq!(
        orders.redrive,
        Some(Redrive {
            dead_letter_queue: q("Orders-dlq"),
            max_receive_count: 3
        })
    );
    assert_eq!(
        c.queues[&q("Orders-dlq")].receive_wait,
        Duration::from_secs(20)
    );

    let FunctionTarget::Command { env, .. } = &c.functions["Fn"].target else {
        panic!()
    };
    assert_eq!(env.get("Stage").map(String::as_str), Some("prod"));

    let m = &c.mappings["M"];
    assert_eq!(m.batch_size, 20);
    assert_eq!(m.batching_window, Duration::from_secs(1));
    assert!(!m.enabled);
    assert_eq!(m.max_payload, 1_048_576);
}

#[test]
fn environment_sizes_accept_units() {
    let c = load_text(ENV_BASE, &[("ESMD__MAPPINGS__M__MAX_PAYLOAD", "6MB")])
        .unwrap()
        .config;
    assert_eq!(c.mappings["M"].max_payload, 6_000_000);
}

#[test]
fn environment_problems_name_the_key() {
    let p = problems(
        ENV_BASE,
        &[
            ("ESMD__SERVER__LISTN", "0.0.0.0:1"),
            ("ESMD__MAPPINGS__M__BATCH_SIZE", "lots"),
            ("ESMD__MAPPINGS__M__ENABLED", "maybe"),
            ("ESMD__QUEUES__events.fifo__DELAY", "soon"),
            ("ESMD__QUEUES____DELAY", "1s"),
        ],
    );
    assert_problem(&p, "server.listn", "unknown key");
    assert_problem(&p, "mappings.M.batch_size", "invalid type");
    assert_problem(&p, "mappings.M.enabled", "invalid type");
    assert_problem(&p, "queues.\"events.fifo\".delay", "");
    assert!(
        p.iter().any(|l| l.contains("ESMD__QUEUES____DELAY")),
        "{p:?}"
    );
    assert_eq!(p.len(), 5, "{p:#?}");
}

// --- unknown keys and type errors -------------------------------------------------------------

#[test]
fn unknown_keys_are_errors_naming_the_full_key() {
    let p = problems(
        r#"
        [sever]
        listen = "127.0.0.1:1"
        [server]
        lisen = "127.0.0.1:1"
        [queues."events.fifo"]
        visibilty_timeout = "1s"
        [functions.f]
        type = "log"
        url = "http://x"
        [mappings.m]
        queue = "events.fifo"
        function = "f"
        batchsize = 1
        "#,
        &[],
    );
    assert_problem(&p, "sever", "unknown key");
    assert_problem(&p, "server.lisen", "unknown key");
    assert_problem(
        &p,
        "queues.\"events.fifo\".visibilty_timeout",
        "unknown key",
    );
    assert_problem(&p, "functions.f.url", "unknown key");
    assert_problem(&p, "mappings.m.batchsize", "unknown key");
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn type_errors_and_missing_fields_name_the_key() {
    let p = problems(
        r#"
        [queues.orders]
        visibility_timeout = 30
        max_message_size = "lots"
        [functions.f]
        type = "lambda"
        [functions.g]
        url = "http://x"
        [functions.h]
        type = "http"
        [functions.c]
        type = "command"
        command = "ls -l"
        timeout = "fast"
        [mappings.m]
        queue = "orders"
        batch_size = "ten"
        "#,
        &[],
    );
    assert_problem(&p, "queues.orders.visibility_timeout", "");
    assert_problem(&p, "queues.orders.max_message_size", "not a size");
    assert_problem(&p, "functions.f.type", "unknown function type \"lambda\"");
    assert_problem(&p, "functions.g.type", "is required");
    assert_problem(&p, "functions.h.url", "is required");
    assert_problem(&p, "functions.c.command", "expected a sequence");
    assert_problem(&p, "functions.c.timeout", "\"fast\"");
    // Every bad field of one entry is reported, not just the first.
    assert_problem(&p, "mappings.m.batch_size", "invalid type");
    assert_problem(&p, "mappings.m.function", "is required");
    assert_eq!(p.len(), 9, "{p:#?}");
}

// --- cross-field rules ------------------------------------------------------------------------

#[test]
fn queue_rules_name_their_keys() {
    let p = problems(
        r#"
        [queues."a.b"]
        [queues.orders]
        visibility_timeout = "13h"
        content_based_deduplication = true
        deduplication_scope = "messageGroup"
        dead_letter_queue = "events.fifo"
        max_receive_count = 5
        [queues.lonely-count]
        max_receive_count = 5
        [queues.lonely-dlq]
        dead_letter_queue = "orders"
        [queues.ghost]
        dead_letter_queue = "nowhere"
        max_receive_count = 1001
        [queues."events.fifo"]
        deduplication_scope = "group"
        "#,
        &[],
    );
    assert_problem(&p, "queues.\"a.b\"", "invalid queue name");
    assert_problem(&p, "queues.orders.visibility_timeout", "outside the range");
    assert_problem(&p, "queues.orders.content_based_deduplication", "FIFO");
    assert_problem(&p, "queues.orders.deduplication_scope", "FIFO");
    assert_problem(&p, "queues.orders.dead_letter_queue", "same type");
    assert_problem(
        &p,
        "queues.lonely-count.dead_letter_queue",
        "required with max_receive_count",
    );
    assert_problem(
        &p,
        "queues.lonely-dlq.max_receive_count",
        "required with dead_letter_queue",
    );
    assert_problem(
        &p,
        "queues.ghost.dead_letter_queue",
        "no queue named \"nowhere\"",
    );
    assert_problem(&p, "queues.ghost.max_receive_count", "1..1000");
    assert_problem(
        &p,
        "queues.\"events.fifo\".deduplication_scope",
        "\"group\" is not one of",
    );
    assert_eq!(p.len(), 10, "{p:#?}");
}

#[test]
fn mapping_references_must_exist() {
    let p = problems(
        &format!(
            "{BASE}
            [mappings.a]
            queue = \"nowhere\"
            function = \"f\"
            [mappings.b]
            queue = \"orders\"
            function = \"nobody\"
            [mappings.c]
            queue = \"bad name\"
            function = \"f\"
            "
        ),
        &[],
    );
    assert_problem(&p, "mappings.a.queue", "no queue named \"nowhere\"");
    assert_problem(&p, "mappings.b.function", "no function named \"nobody\"");
    assert_problem(&p, "mappings.c.queue", "invalid queue name");
    assert_eq!(p.len(), 3, "{p:#?}");
}

#[test]
fn batch_size_and_window_follow_aws() {
    let p = problems(
        &format!(
            "{BASE}
            [mappings.resize]
            queue = \"orders\"
            function = \"f\"
            batch_size = 20000
            batching_window = \"1s\"
            [mappings.zero]
            queue = \"orders\"
            function = \"f\"
            batch_size = 0
            [mappings.fifo-big]
            queue = \"events.fifo\"
            function = \"f\"
            batch_size = 11
            [mappings.no-window]
            queue = \"orders\"
            function = \"f\"
            batch_size = 11
            [mappings.fifo-window]
            queue = \"events.fifo\"
            function = \"f\"
            batching_window = \"1s\"
            [mappings.long-window]
            queue = \"orders\"
            function = \"f\"
            batching_window = \"301s\"
            [mappings.fraction]
            queue = \"orders\"
            function = \"f\"
            batching_window = \"1500ms\"
            "
        ),
        &[],
    );
    assert!(
        p.contains(
            &"mappings.resize.batch_size: 20000 is above the maximum of 10000 for a standard queue"
                .to_owned()
        ),
        "{p:#?}"
    );
    assert_problem(&p, "mappings.zero.batch_size", "below the minimum of 1");
    assert_problem(
        &p,
        "mappings.fifo-big.batch_size",
        "above the maximum of 10 for a FIFO queue",
    );
    assert_problem(
        &p,
        "mappings.no-window.batching_window",
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
    );
    assert_problem(
        &p,
        "mappings.fifo-window.batching_window",
        "Batching window is not supported for FIFO queues",
    );
    assert_problem(
        &p,
        "mappings.long-window.batching_window",
        "above the maximum of 300s",
    );
    assert_problem(
        &p,
        "mappings.fraction.batching_window",
        "whole number of seconds",
    );
    // Duplicate (queue, function) pairs are reported too; count only the rules above.
    let rules: Vec<&String> = p.iter().filter(|l| !l.contains("already exists")).collect();
    assert_eq!(rules.len(), 7, "{p:#?}");
}

#[test]
fn concurrency_and_payload_ranges() {
    let p = problems(
        &format!(
            "{BASE}
            [mappings.low]
            queue = \"orders\"
            function = \"f\"
            max_concurrency = 1
            max_payload = 512
            [mappings.high]
            queue = \"events.fifo\"
            function = \"f\"
            max_concurrency = 1001
            max_payload = 6291457
            "
        ),
        &[],
    );
    assert_problem(
        &p,
        "mappings.low.max_concurrency",
        "outside the range 2..1000",
    );
    assert_problem(
        &p,
        "mappings.high.max_concurrency",
        "outside the range 2..1000",
    );
    assert_problem(
        &p,
        "mappings.low.max_payload",
        "512 bytes is outside the range",
    );
    assert_problem(
        &p,
        "mappings.high.max_payload",
        "6291457 bytes is outside the range",
    );
    assert_eq!(p.len(), 4, "{p:#?}");
}

#[test]
fn function_timeout_must_fit_the_visibility_timeout_of_mapped_queues() {
    let p = problems(
        r#"
        [queues.orders]
        visibility_timeout = "30s"
        [queues.slow]
        visibility_timeout = "2m"
        [functions.resize]
        type = "log"
        timeout = "60s"
        [mappings.resize-orders]
        queue = "orders"
        function = "resize"
        [mappings.resize-slow]
        queue = "slow"
        function = "resize"
        "#,
        &[],
    );
    assert_eq!(
        p,
        [
            "functions.resize.timeout: Queue visibility timeout: 30 seconds is less than Function \
          timeout: 60 seconds (queue orders, mappings.resize-orders)"
        ]
    );
}

#[test]
fn function_rules_name_their_keys() {
    let p = problems(
        r#"
        [functions.empty]
        type = "command"
        command = []
        [functions.web]
        type = "http"
        url = "ftp://example.com/x"
        [functions.zero]
        type = "log"
        timeout = "0s"
        [functions.long]
        type = "log"
        timeout = "16min"
        [functions."bad name"]
        type = "log"
        "#,
        &[],
    );
    assert_problem(&p, "functions.empty.command", "must name a program");
    assert_problem(&p, "functions.web.url", "not an http:// or https:// URL");
    assert_problem(&p, "functions.zero.timeout", "greater than 0s");
    assert_problem(&p, "functions.long.timeout", "maximum of 15m");
    assert_problem(&p, "functions.\"bad name\"", "invalid function name");
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn duplicate_mappings_are_refused() {
    let p = problems(
        &format!(
            "{BASE}
            [mappings.a]
            queue = \"orders\"
            function = \"f\"
            [mappings.b]
            queue = \"orders\"
            function = \"f\"
            "
        ),
        &[],
    );
    assert_eq!(
        p,
        [
            "mappings.b: an event source mapping with queue \"orders\" and function \"f\" already \
          exists: mappings.a"
        ]
    );
}

#[test]
fn scalar_sections_are_checked() {
    let p = problems(
        r#"
        [server]
        listen = "localhost"
        account_id = "42"
        [storage]
        synchronous = "off"
        [log]
        level = "esmd=loud"
        format = "yaml"
        "#,
        &[],
    );
    assert_problem(&p, "server.listen", "not a host:port address");
    assert_problem(&p, "server.account_id", "12-digit");
    assert_problem(
        &p,
        "storage.synchronous",
        "\"off\" is not one of \"full\", \"normal\"",
    );
    assert_problem(&p, "log.level", "not a log filter");
    assert_problem(
        &p,
        "log.format",
        "\"yaml\" is not one of \"text\", \"json\"",
    );
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn every_problem_is_reported_at_once_one_per_line() {
    let err = load_text(
        &format!(
            "{BASE}
            [server]
            listen = \"nowhere\"
            [queues.big]
            visibility_timeout = \"1day\"
            [mappings.resize]
            queue = \"orders\"
            function = \"missing\"
            batch_size = 20000
            max_concurrency = 1
            "
        ),
        &[],
    )
    .unwrap_err();
    let ConfigError::Invalid { problems } = &err else {
        panic!("{err:?}")
    };
    let text = err.to_string();
    assert_eq!(text.lines().count(), problems.len());
    assert_eq!(problems.len(), 6, "{problems:#?}");
    for key in [
        "server.listen",
        "queues.big.visibility_timeout",
        "mappings.resize.function",
        "mappings.resize.batch_size",
        "mappings.resize.batching_window",
        "mappings.resize.max_concurrency",
    ] {
        assert_problem(problems, key, "");
    }
}

#[test]
fn filters_are_compiled_at_load_and_a_bad_one_names_its_key_and_position() {
    let base = format!("{BASE}\n[mappings.m]\nqueue = \"orders\"\nfunction = \"f\"\n");
    let loaded = load_text(
        &format!("{base}filters = ['{{\"body\": {{\"kind\": [\"order\"]}}}}']\n"),
        &[],
    )
    .unwrap();
    let m = &loaded.config.mappings["m"];
    assert_eq!(
        m.filters.sources().collect::<Vec<_>>(),
        [r#"{"body": {"kind": ["order"]}}"#]
    );
    assert_eq!(m.max_filters, 5);
    assert_eq!(m.retry_backoff, None, "off unless configured");

    let p = problems(
        &format!("{base}filters = ['{{\"body\": {{\"k\": [\"v\"]}}}}', '{{\"body\": {{\"x\": [{{\"numeric\": 10}}]}}}}']\n"),
        &[],
    );
    assert_problem(&p, "mappings.m.filters", "pattern 2");
    assert_problem(
        &p,
        "mappings.m.filters",
        "Invalid filter pattern definition",
    );
    assert_eq!(p.len(), 1, "only the bad pattern: {p:?}");
    let p = problems(
        &format!("{base}filters = ['{{\"body\": {{\"ip\": [{{\"cidr\": \"10.0.0.0/8\"}}]}}}}']\n"),
        &[],
    );
    assert_problem(
        &p,
        "mappings.m.filters",
        "not among the operators Lambda documents",
    );

    let six = [r#"'{"body": ["a"]}'"#; 6].join(", ");
    let p = problems(&format!("{base}filters = [{six}]\n"), &[]);
    assert_problem(
        &p,
        "mappings.m.filters",
        "6 patterns is above max_filters, 5",
    );
    load_text(&format!("{base}filters = [{six}]\nmax_filters = 10\n"), &[])
        .expect("10 is allowed when the quota is raised");
    for n in [4, 11] {
        let p = problems(&format!("{base}max_filters = {n}\n"), &[]);
        assert_problem(&p, "mappings.m.max_filters", "outside the range 5..10");
    }
}

#[test]
fn retry_backoff_has_defaults_and_checked_ranges() {
    let base = format!("{BASE}\n[mappings.m]\nqueue = \"orders\"\nfunction = \"f\"\n");
    let loaded = load_text(&format!("{base}retry_backoff = {{}}\n"), &[]).unwrap();
    let b = loaded.config.mappings["m"].retry_backoff.expect("on");
    assert_eq!(
        (b.initial, b.max, b.multiplier, b.jitter),
        (Duration::from_secs(1), Duration::from_secs(900), 2.0, true)
    );
    for (value, key, fragment) in [
        (r#"{ initial = "0s" }"#, "initial", "below the minimum"),
        (r#"{ initial = "2m", max = "1m" }"#, "initial", "above max"),
        (r#"{ max = "13h" }"#, "max", "above the maximum of 12h"),
        (
            r#"{ multiplier = 0.5 }"#,
            "multiplier",
            "outside the range 1..100",
        ),
        (r#"{ multiplier = nan }"#, "multiplier", "outside the range"),
    ] {
        let p = problems(&format!("{base}retry_backoff = {value}\n"), &[]);
        assert_problem(&p, &format!("mappings.m.retry_backoff.{key}"), fragment);
    }
    let p = problems(
        &format!("{base}retry_backoff = {{ initial = \"1s\", bogus = 1 }}\n"),
        &[],
    );
    assert_problem(&p, "mappings.m.retry_backoff.bogus", "unknown key");
}

// --- render and storage paths -----------------------------------------------------------------

fn round_trip(loaded: &Loaded) {
    let dir = TempDir::new().unwrap();
    let text = render(&loaded.config);
    let path = write(dir.path(), "rendered.toml", &text);
    let again = load(&opts(dir.path(), Some(path), &[])).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again.config, loaded.config, "{text}");
}

#[test]
fn render_round_trips() {
    let dir = TempDir::new().unwrap();
    round_trip(&load(&opts(dir.path(), Some(shipped()), &[])).unwrap());
    round_trip(&load(&opts(dir.path(), None, &[])).unwrap());
    round_trip(
        &load_text(
            r#"
            [server]
            auth_token = "secret"
            shutdown_grace = "1m 30s"
            [storage]
            path = "/var/lib/esmd/q.db"
            synchronous = "normal"
            [log]
            level = "info,esmd=debug"
            format = "json"
            [queues.a]
            max_message_size = 1500
            delay = "250ms"
            redrive_allow_policy = '{"redrivePermission":"allowAll"}'
            [queues."g.fifo"]
            deduplication_scope = "messageGroup"
            fifo_throughput_limit = "perMessageGroupId"
            dead_letter_queue = "d.fifo"
            max_receive_count = 2
            [queues."d.fifo"]
            [functions.cmd]
            type = "command"
            command = ["python3", "h.py", "--flag=1"]
            env = { STAGE = "dev", "dotted.key" = "x" }
            working_dir = "handlers"
            timeout = "10s"
            [functions.web]
            type = "http"
            url = "http://127.0.0.1:9000/2015-03-31/functions/web/invocations"
            [mappings.x]
            queue = "a"
            function = "cmd"
            batch_size = 100
            batching_window = "5s"
            max_payload = "256KiB"
            report_batch_item_failures = true
            enabled = false
            filters = ['{"body": {"kind": ["order"]}}', '{"body": ["ping"]}']
            max_filters = 10
            retry_backoff = { initial = "2s", max = "10m", multiplier = 3.0, jitter = false }
            [mappings.y]
            queue = "g.fifo"
            function = "web"
            retry_backoff = {}
            "#,
            &[],
        )
        .unwrap(),
    );
}

#[test]
fn relative_storage_paths_follow_state_directory() {
    let dir = TempDir::new().unwrap();
    let text = "[storage]\npath = \"data/esmd.db\"\n";
    let c = load_text(text, &[("STATE_DIRECTORY", "/var/lib/esmd")])
        .unwrap()
        .config;
    assert_eq!(c.storage.path, Path::new("/var/lib/esmd/data/esmd.db"));

    let loaded = load(&opts(dir.path(), None, &[])).unwrap();
    assert_eq!(loaded.config.storage.path, dir.path().join("esmd.db"));

    let c = load_text(
        "[storage]\npath = \"/srv/q.db\"\n",
        &[("STATE_DIRECTORY", "/var/lib/esmd")],
    )
    .unwrap()
    .config;
    assert_eq!(c.storage.path, Path::new("/srv/q.db"));

    let vars = [("STATE_DIRECTORY", "/var/lib/esmd:/var/lib/other")];
    let c = load(&opts(dir.path(), None, &vars)).unwrap().config;
    assert_eq!(c.storage.path, Path::new("/var/lib/esmd/esmd.db"));
}

#[test]
fn tombstone_retention_defaults_to_five_minutes_takes_zero_and_refuses_more_than_14_days() {
    let c = load_text("[queues.q]\n", &[]).expect("loads").config;
    assert_eq!(c.storage.tombstone_retention, Duration::from_secs(300));
    let c = load_text("[storage]\ntombstone_retention = \"0s\"\n", &[])
        .expect("loads")
        .config;
    assert_eq!(c.storage.tombstone_retention, Duration::ZERO);
    let p = problems("[storage]\ntombstone_retention = \"15days\"\n", &[]);
    assert_problem(
        &p,
        "storage.tombstone_retention",
        "above the maximum of 14days",
    );
    let p = problems("[storage]\ntombstone_retention = \"soon\"\n", &[]);
    assert_problem(&p, "storage.tombstone_retention", "");
}

#[test]
fn async_invocation_keys_are_read_with_lambdas_defaults_and_ranges() {
    let loaded = load_text(
        "[functions.a]\ntype = \"log\"\n\
         [functions.b]\ntype = \"command\"\ncommand = [\"true\"]\nmax_retry_attempts = 0\n\
         max_event_age = \"1h\"\nretry_backoff = \"250ms\"\n\
         destinations = { on_success = \"ok\", on_failure = \"bad.fifo\" }\n",
        &[],
    )
    .expect("a valid configuration");
    let a = &loaded.config.functions["a"].async_config;
    assert_eq!(*a, esmd::config::AsyncConfig::default());
    assert_eq!(
        (a.max_retry_attempts, a.max_event_age),
        (2, Duration::from_secs(6 * 3600))
    );
    assert_eq!(a.retry_backoff, Duration::from_secs(1));
    let b = &loaded.config.functions["b"].async_config;
    assert_eq!(b.max_retry_attempts, 0);
    assert_eq!(b.max_event_age, Duration::from_secs(3600));
    assert_eq!(b.retry_backoff, Duration::from_millis(250));
    assert_eq!(b.on_success, Some(q("ok")));
    assert_eq!(b.on_failure, Some(q("bad.fifo")));

    let p = problems(
        "[functions.f]\ntype = \"http\"\nurl = \"http://x\"\nmax_retry_attempts = 3\n\
         max_event_age = \"59s\"\nretry_backoff = \"0s\"\n\
         destinations = { on_success = \"no spaces\" }\n",
        &[],
    );
    assert_problem(&p, "functions.f.max_retry_attempts", "0 to 2");
    assert_problem(&p, "functions.f.max_event_age", "1m to 6h");
    assert_problem(&p, "functions.f.retry_backoff", "more than 0s");
    assert_problem(
        &p,
        "functions.f.destinations.on_success",
        "not a queue name",
    );
    let p = problems(
        "[functions.f]\ntype = \"log\"\ndestinations = { elsewhere = \"q\" }\n",
        &[],
    );
    assert_problem(&p, "functions.f.destinations.elsewhere", "unknown key");
}
