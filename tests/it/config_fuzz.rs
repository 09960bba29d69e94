//! Hostile configuration (issue #7 point 4): property tests of the loader with random TOML built
//! from the file's own section and key names (values of every TOML type, durations, sizes,
//! names with dots and odd characters), random `ESMD__` environment overrides, and plain
//! garbage text. Whatever arrives, `config::load` must not panic; a configuration it accepts
//! must survive `render` and load back equal; every problem it reports must be one line naming a
//! key; and the value of `server.auth_token` must never appear in an error (point 6).

use std::collections::HashMap;
use std::path::Path;

use esmd::config::{load, render, ConfigError, LoadOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tempfile::TempDir;

/// The token put into generated files; it must never show in an error.
const SECRET: &str = "SeCrEt-7f3a";

/// Keys of each section, plus a few that do not exist.
const SERVER: &[&str] = &["listen", "region", "account_id", "shutdown_grace", "nope"];
const STORAGE: &[&str] = &["path", "synchronous", "max_size", "size"];
const LOG: &[&str] = &["level", "format", "colour"];
const QUEUE: &[&str] = &[
    "visibility_timeout",
    "delay",
    "retention",
    "max_message_size",
    "receive_wait",
    "dead_letter_queue",
    "max_receive_count",
    "redrive_allow_policy",
    "content_based_deduplication",
    "deduplication_scope",
    "fifo_throughput_limit",
    "fifo",
];
const FUNCTION: &[&str] = &[
    "type",
    "url",
    "command",
    "env",
    "working_dir",
    "timeout",
    "memory",
];
const MAPPING: &[&str] = &[
    "queue",
    "function",
    "enabled",
    "batch_size",
    "batching_window",
    "max_payload",
    "max_concurrency",
    "report_batch_item_failures",
    "filter",
];
const NAMES: &[&str] = &[
    "a",
    "orders",
    "events.fifo",
    "d.fifo",
    "Mixed-Case_1",
    "",
    "has space",
    "x.y.z",
    "ünï",
];

/// A TOML value: every type, and strings that look like what the keys expect.
fn value() -> BoxedStrategy<String> {
    let string = prop_oneof![
        Just("30s".to_owned()),
        Just("0s".to_owned()),
        Just("15days".to_owned()),
        Just("1MiB".to_owned()),
        Just("6 parsecs".to_owned()),
        Just("http://127.0.0.1:9000/x".to_owned()),
        Just("full".to_owned()),
        Just("json".to_owned()),
        Just("log".to_owned()),
        Just("command".to_owned()),
        Just("http".to_owned()),
        Just("messageGroup".to_owned()),
        Just("127.0.0.1:9324".to_owned()),
        proptest::sample::select(NAMES).prop_map(str::to_owned),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        string.prop_map(|s| toml_string(&s)),
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..20_000).prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1.5".to_owned()),
        Just("-0.0".to_owned()),
        Just("inf".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            proptest::collection::vec(("[A-Za-z_]{1,6}", inner), 0..3).prop_map(|kv| {
                let fields: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| format!("{} = {v}", toml_string(k)))
                    .collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
    .boxed()
}

/// A basic TOML string (escaped, so any text is valid TOML).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key = value` lines from `keys`.
fn lines(keys: &'static [&'static str]) -> BoxedStrategy<Vec<String>> {
    proptest::collection::vec(
        (proptest::sample::select(keys), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        0..5,
    )
    .prop_map(|mut lines| {
        // TOML refuses a key defined twice; keep the first of each so most documents parse.
        let mut seen = std::collections::HashSet::new();
        lines.retain(|l| seen.insert(l.split(" = ").next().unwrap_or_default().to_owned()));
        lines
    })
    .boxed()
}

/// One section: a fixed one, or a named entry of queues, functions or mappings.
fn section() -> BoxedStrategy<(String, Vec<String>)> {
    let named = |table: &'static str, keys: &'static [&'static str]| {
        (proptest::sample::select(NAMES), lines(keys))
            .prop_map(move |(name, lines)| (format!("{table}.{}", toml_string(name)), lines))
    };
    prop_oneof![
        (lines(SERVER), any::<bool>()).prop_map(|(mut l, with_secret)| {
            if with_secret {
                l.push(format!("auth_token = {}", toml_string(SECRET)));
            }
            ("server".to_owned(), l)
        }),
        lines(STORAGE).prop_map(|l| ("storage".to_owned(), l)),
        lines(LOG).prop_map(|l| ("log".to_owned(), l)),
        named("queues", QUEUE),
        named("functions", FUNCTION),
        named("mappings", MAPPING),
        lines(QUEUE).prop_map(|l| ("surprise".to_owned(), l)),
    ]
    .boxed()
}

/// A whole document: sections (each table header once), or garbage, or a broken line that
/// holds the secret.
fn document() -> BoxedStrategy<String> {
    let sections = proptest::collection::vec(section(), 0..7).prop_map(|sections| {
        let mut seen = std::collections::HashSet::new();
        let mut text = String::new();
        for (header, lines) in sections {
            if !seen.insert(header.clone()) {
                continue;
            }
            text.push_str(&format!("[{header}]\n"));
            for l in lines {
                text.push_str(&l);
                text.push('\n');
            }
        }
        text
    });
    prop_oneof![
        8 => plausible(),
        8 => sections,
        1 => "\\PC{0,200}",
        1 => Just(format!("[server]\nauth_token = \"{SECRET}\nlisten = \"x\"\n")),
        1 => Just(format!("[server]\nauth_token = {SECRET}\n")),
    ]
    .boxed()
}

/// A key, values that are valid for it, and values that are not.
type Choice = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// `key = value` for some of `choices`: usually left out or valid, now and then invalid.
fn plausible_lines(choices: &'static [Choice]) -> BoxedStrategy<String> {
    let picks: Vec<BoxedStrategy<Option<String>>> = choices
        .iter()
        .map(|(key, valid, invalid)| {
            let value = if invalid.is_empty() {
                proptest::sample::select(*valid).boxed()
            } else {
                prop_oneof![
                    12 => proptest::sample::select(*valid),
                    1 => proptest::sample::select(*invalid),
                ]
                .boxed()
            };
            proptest::option::weighted(0.6, value)
                .prop_map(move |v| v.map(|v| format!("{key} = {v}\n")))
                .boxed()
        })
        .collect();
    picks
        .prop_map(|lines| lines.into_iter().flatten().collect::<String>())
        .boxed()
}

/// A document that is mostly valid: every section with values near the rules' edges, so that
/// many cases load and go through the round trip.
fn plausible() -> BoxedStrategy<String> {
    const SERVER_VALUES: &[Choice] = &[
        (
            "listen",
            &["\"127.0.0.1:9324\"", "\"[::1]:0\"", "\"localhost:80\""],
            &["\"nowhere\""],
        ),
        ("region", &["\"us-east-1\"", "\"eu-west-1\""], &["\"EU\""]),
        (
            "shutdown_grace",
            &["\"0s\"", "\"30s\"", "\"1m 30s\""],
            &["\"soon\""],
        ),
        (
            "auth_token",
            &["\"SeCrEt-7f3a\""],
            &["\"\"", "[\"SeCrEt-7f3a\"]"],
        ),
    ];
    const STORAGE_VALUES: &[Choice] = &[
        ("path", &["\"q.db\"", "\"/tmp/x/esmd.db\""], &["\"\""]),
        ("synchronous", &["\"full\"", "\"normal\""], &["\"off\""]),
        (
            "max_size",
            &["\"1MiB\"", "\"64MiB\"", "2097152"],
            &["\"1KiB\"", "-1"],
        ),
    ];
    const LOG_VALUES: &[Choice] = &[
        ("level", &["\"info\"", "\"info,esmd=debug\""], &["\"[[\""]),
        ("format", &["\"text\"", "\"json\""], &["\"xml\""]),
    ];
    const QUEUE_VALUES: &[Choice] = &[
        (
            "visibility_timeout",
            &["\"30s\"", "\"12h\"", "\"3s\""],
            &["\"13h\""],
        ),
        ("delay", &["\"0s\"", "\"15min\""], &["\"16min\""]),
        (
            "retention",
            &["\"60s\"", "\"4days\"", "\"14days\""],
            &["\"59s\""],
        ),
        (
            "max_message_size",
            &["\"1KiB\"", "\"1MiB\"", "2048"],
            &["1023"],
        ),
        ("receive_wait", &["\"0s\"", "\"20s\""], &["\"21s\""]),
    ];
    const FIFO_VALUES: &[Choice] = &[
        (
            "content_based_deduplication",
            &["true", "false"],
            &["\"yes\""],
        ),
        (
            "deduplication_scope",
            &["\"queue\"", "\"messageGroup\""],
            &["\"group\""],
        ),
    ];
    const FUNCTION_VALUES: &[Choice] = &[("timeout", &["\"1s\"", "\"3s\""], &["\"901s\""])];
    const MAPPING_VALUES: &[Choice] = &[
        ("enabled", &["true", "false"], &[]),
        ("batch_size", &["1", "10"], &["0", "10001"]),
        ("max_payload", &["\"6MiB\"", "\"256KiB\""], &["\"lots\""]),
        ("max_concurrency", &["2", "5"], &["1"]),
        ("report_batch_item_failures", &["true", "false"], &[]),
    ];
    let function = prop_oneof![
        3 => Just("type = \"log\"\n"),
        3 => Just(
            "type = \"http\"\nurl = \"http://127.0.0.1:9000/2015-03-31/functions/f/invocations\"\n"
        ),
        3 => Just(
            "type = \"command\"\ncommand = [\"sh\", \"-c\", \"true\"]\nenv = { STAGE = \"dev\" }\n"
        ),
        1 => Just("type = \"command\"\ncommand = []\n"),
    ];
    let target = prop_oneof![
        4 => Just("queue = \"orders\"\nfunction = \"f\"\n"),
        4 => Just("queue = \"events.fifo\"\nfunction = \"f\"\n"),
        1 => Just("queue = \"missing\"\nfunction = \"g\"\n"),
    ];
    (
        (
            plausible_lines(SERVER_VALUES),
            plausible_lines(STORAGE_VALUES),
            plausible_lines(LOG_VALUES),
        ),
        (
            plausible_lines(QUEUE_VALUES),
            plausible_lines(QUEUE_VALUES),
            plausible_lines(FIFO_VALUES),
        ),
        (
            function,
            plausible_lines(FUNCTION_VALUES),
            target,
            plausible_lines(MAPPING_VALUES),
        ),
    )
        .prop_map(
            |(
                (server, storage, log),
                (orders, events, fifo),
                (function, timeout, target, mapping),
            )| {
                format!(
                    "[server]\n{server}[storage]\n{storage}[log]\n{log}\
                     [queues.orders]\n{orders}[queues.\"events.fifo\"]\n{events}{fifo}\
                     [functions.f]\n{function}{timeout}[mappings.m]\n{target}{mapping}"
                )
            },
        )
        .boxed()
}

/// `ESMD__` overrides: real and made-up keys, odd values, and sometimes the token.
fn environment() -> BoxedStrategy<Vec<(String, String)>> {
    let name = prop_oneof![
        Just("ESMD__SERVER__LISTEN".to_owned()),
        Just("ESMD__STORAGE__MAX_SIZE".to_owned()),
        Just("ESMD__STORAGE__SYNCHRONOUS".to_owned()),
        Just("ESMD__QUEUES__orders__DELAY".to_owned()),
        Just("ESMD__QUEUES__events.fifo__CONTENT_BASED_DEDUPLICATION".to_owned()),
        Just("ESMD__MAPPINGS__m__BATCH_SIZE".to_owned()),
        Just("ESMD__FUNCTIONS__f__ENV__Stage".to_owned()),
        Just("ESMD__SERVER".to_owned()),
        Just("ESMD____X".to_owned()),
        "ESMD__[A-Za-z_.]{1,12}(__[A-Za-z_.]{1,8}){0,3}",
    ];
    let value = prop_oneof![
        Just("64MiB".to_owned()),
        Just("10".to_owned()),
        Just("true".to_owned()),
        "\\PC{0,10}",
    ];
    let token = prop_oneof![
        Just(None),
        Just(Some(SECRET.to_owned())),
        Just(Some(String::new())),
    ];
    let vars = prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec((name, value), 1..4),
    ];
    (vars, token)
        .prop_map(|(mut vars, token)| {
            if let Some(t) = token {
                vars.push(("ESMD__SERVER__AUTH_TOKEN".to_owned(), t));
            }
            vars
        })
        .boxed()
}

fn options(dir: &Path, file: Option<&Path>, vars: &[(String, String)]) -> LoadOptions {
    LoadOptions {
        config_path: file.map(Path::to_owned),
        env: Some(vars.iter().cloned().collect::<HashMap<_, _>>()),
        cwd: Some(dir.to_owned()),
    }
}

/// Every problem is one non-empty line `key: what is wrong`, or names the environment variable
/// it is about.
fn check_problem(p: &str) -> Result<(), TestCaseError> {
    prop_assert!(!p.is_empty() && !p.contains('\n'), "problem {p:?}");
    let named = p.starts_with("environment variable ESMD")
        || p.split_once(": ")
            .is_some_and(|(key, what)| !key.is_empty() && !what.is_empty());
    prop_assert!(named, "problem names no key: {p:?}");
    Ok(())
}

#[test]
fn random_configurations_never_panic_and_accepted_ones_round_trip() {
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(document(), environment()), |(text, vars)| {
        let dir = TempDir::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let file = dir.path().join("esmd.toml");
        std::fs::write(&file, &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match load(&options(dir.path(), Some(&file), &vars)) {
            Ok(loaded) => {
                // What was accepted renders to TOML that loads back to the same thing.
                let rendered = render(&loaded.config);
                let again_file = dir.path().join("rendered.toml");
                std::fs::write(&again_file, &rendered)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let again = load(&options(dir.path(), Some(&again_file), &[]))
                    .map_err(|e| TestCaseError::fail(format!("{e}\n---\n{rendered}")))?;
                prop_assert_eq!(&again.config, &loaded.config, "{}", rendered);
            }
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(
                    !shown.contains(SECRET),
                    "the auth token is shown in an error:\n{shown}"
                );
                if let ConfigError::Invalid { problems } = &e {
                    prop_assert!(!problems.is_empty());
                    for p in problems {
                        check_problem(p)?;
                    }
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn random_bytes_as_a_configuration_file_never_panic() {
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
        let dir = TempDir::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let file = dir.path().join("esmd.toml");
        std::fs::write(&file, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Not UTF-8 is a read error, anything else is parsed; neither may panic.
        let _ = load(&options(dir.path(), Some(&file), &[]));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
