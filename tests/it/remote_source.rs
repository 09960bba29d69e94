//! A mapping on a remote SQS queue (issue 18 point 4): two real `esmd` processes, A holding the
//! queue (the "remote" SQS, its queue made with `aws-sdk-sqs`) and B with a mapping whose
//! `queue_url` is A's queue and `endpoint` A's address, invoking an HTTP function in this test.
//! B runs with dummy credentials in its environment (the SDK's standard chain) and with its own
//! region and account, so that the event's `eventSourceARN` and `awsRegion` can only be A's.
//!
//! What is checked: every message delivered once in batches within `batch_size`, a reported item
//! failure left in A's queue alone and delivered again, the event readable by `aws_lambda_events`
//! with A's ARN, region, MD5s and attributes, B's mapping series on /metrics, a FIFO queue's
//! group order with concurrent batches, filters deleting on A, `retry_backoff` changing a
//! message's visibility on A, A killed (B logs, counts, retries) and started again on
//! the same port and database (B delivers what was left), and the configuration's rules.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};
use esmd::config::{load, ConfigError, LoadOptions};
use esmd::domain::attributes::md5_hex;
use tempfile::TempDir;

use crate::common::api::{sdk_client, ACCOUNT};
use crate::common::daemon::{http_function, receive_count, FunctionServer, Gate, Reply};
use crate::common::eventually;
use crate::common::process::{self, EsmdProcess};

/// How long any one condition may take.
const LIMIT: Duration = Duration::from_secs(60);
/// B's own region and account: never A's.
const B_REGION: &str = "eu-central-1";
const B_ACCOUNT: &str = "111111111111";
/// A's region (esmd's default).
const A_REGION: &str = "us-east-1";

/// Dummy credentials for B's standard chain, and nothing else of the developer's AWS setup.
const B_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDREMOTETEST"),
    ("AWS_SECRET_ACCESS_KEY", "remote-test-secret"),
    ("AWS_CONFIG_FILE", "/nonexistent/esmd-test-aws-config"),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/esmd-test-aws-credentials",
    ),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_PROFILE", "default"),
];

/// Esmd A, the remote, listening on `listen` with its database in `dir`.
async fn start_a(dir: &Path, listen: &str) -> EsmdProcess {
    let toml = format!("[server]\nlisten = \"{listen}\"\n[storage]\npath = \"@DIR@/a.db\"\n");
    EsmdProcess::start(dir, &toml, &[]).await
}

/// Esmd B, with mapping `remote` on `queue_url` at A's `endpoint` (`extra` more keys of it); an
/// empty `endpoint` leaves the key out, so that B reaches A at the queue URL's own origin.
async fn start_b(
    dir: &Path,
    queue_url: &str,
    endpoint: &str,
    function: &str,
    extra: &str,
) -> EsmdProcess {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nregion = \"{B_REGION}\"\naccount_id = \"{B_ACCOUNT}\"\n\
         [storage]\npath = \"@DIR@/b.db\"\n{}\
         [mappings.remote]\nqueue_url = \"{queue_url}\"\n{endpoint}\
         region = \"{A_REGION}\"\nfunction = \"fn\"\n{extra}",
        http_function(function, "3s"),
        endpoint = if endpoint.is_empty() {
            String::new()
        } else {
            format!("endpoint = \"{endpoint}\"\n")
        },
    );
    EsmdProcess::start(dir, &toml, B_ENV).await
}

/// Creates queue `name` on A with `attrs`; its URL.
async fn create(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attrs: &[(QueueAttributeName, &str)],
) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), *v);
    }
    req.send()
        .await
        .expect("create the queue on A")
        .queue_url()
        .expect("a queue URL")
        .to_owned()
}

/// Messages visible plus in flight in A's queue.
async fn a_total(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("A's queue attributes");
    let attrs = out.attributes().expect("attributes");
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ]
    .iter()
    .map(|k| {
        attrs
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

/// One sample of B's /metrics (`None` if the series is absent).
async fn metric(b: &EsmdProcess, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", b.url()))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (rest.starts_with('{') && all).then(|| value.parse().ok())?
    })
}

/// Waits until B's series reaches at least `at_least`.
async fn wait_metric(b: &EsmdProcess, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
    eventually(
        LIMIT,
        &format!("{name}{labels:?} >= {at_least}"),
        || async { metric(b, name, labels).await.filter(|v| *v >= at_least) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_standard_queue_is_delivered_in_batches_and_keeps_only_failed_items() {
    let function = FunctionServer::start().await;
    // "fail-*" records fail on their first delivery and succeed on the next.
    function.respond(|call| {
        let failed: Vec<String> = call
            .records()
            .iter()
            .filter(|r| {
                r.body.as_deref().is_some_and(|b| b.starts_with("fail-")) && receive_count(r) == 1
            })
            .map(|r| r.message_id.clone().unwrap_or_default())
            .collect();
        Reply::failures(&failed)
    });
    let a_dir = TempDir::new().unwrap();
    let a = start_a(a_dir.path(), "127.0.0.1:0").await;
    let sqs = sdk_client(&a.url(), "secret");
    let url = create(
        &sqs,
        "orders",
        &[(QueueAttributeName::VisibilityTimeout, "4")],
    )
    .await;

    let mut bodies: Vec<String> = (0..21).map(|i| format!("m-{i}")).collect();
    bodies.extend(["fail-0".to_owned(), "fail-1".to_owned()]);
    let mut sent_md5 = BTreeMap::new();
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(b)
                    .message_attributes(
                        "kind",
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(format!("k-{b}"))
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap()
            })
            .collect();
        let out = sqs
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("send to A");
        assert!(out.failed().is_empty(), "{:?}", out.failed());
        for ok in out.successful() {
            let body = &chunk[ok.id().parse::<usize>().unwrap()];
            sent_md5.insert(
                body.clone(),
                ok.md5_of_message_attributes().unwrap().to_owned(),
            );
        }
    }

    let b_dir = TempDir::new().unwrap();
    let b = start_b(
        b_dir.path(),
        &url,
        &a.url(),
        &function.url,
        "batch_size = 4\nmax_concurrency = 2\nreport_batch_item_failures = true\n",
    )
    .await;

    // Every success is deleted on A; the two failures are all that is left there.
    let wanted: Vec<&str> = bodies.iter().map(String::as_str).collect();
    function.wait_bodies(&wanted, LIMIT).await;
    let deleted = [("mapping", "remote"), ("event", "deleted")];
    wait_metric(&b, "esmd_mapping_events_total", &deleted, 21.0).await;
    assert_eq!(
        a_total(&sqs, &url).await,
        2,
        "exactly the failed records stay on A"
    );

    // They come back after A's visibility timeout, and succeed; then A's queue is empty.
    wait_metric(&b, "esmd_mapping_events_total", &deleted, 23.0).await;
    eventually(LIMIT, "A's queue empty", || async {
        (a_total(&sqs, &url).await == 0).then_some(())
    })
    .await;

    let calls = function.calls();
    let mut deliveries: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for call in &calls {
        assert!(
            (1..=4).contains(&call.records().len()),
            "batch of {} records",
            call.records().len()
        );
        for r in call.records() {
            let body = r.body.clone().unwrap();
            deliveries
                .entry(body.clone())
                .or_default()
                .push(receive_count(r));
            assert_eq!(
                r.event_source_arn.as_deref(),
                Some(format!("arn:aws:sqs:{A_REGION}:{ACCOUNT}:orders").as_str())
            );
            assert_eq!(r.aws_region.as_deref(), Some(A_REGION));
            assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
            assert_eq!(r.md5_of_body, Some(md5_hex(body.as_bytes())));
            assert_eq!(r.md5_of_message_attributes.as_ref(), sent_md5.get(&body));
            assert_eq!(
                r.message_attributes["kind"].string_value.as_deref(),
                Some(format!("k-{body}").as_str())
            );
            for key in [
                "SentTimestamp",
                "ApproximateFirstReceiveTimestamp",
                "SenderId",
            ] {
                assert!(
                    r.attributes.contains_key(key),
                    "{key} in {:?}",
                    r.attributes
                );
            }
        }
    }
    for body in &bodies {
        let expected = if body.starts_with("fail-") {
            vec![1, 2]
        } else {
            vec![1]
        };
        assert_eq!(deliveries[body], expected, "deliveries of {body}");
    }

    // B's mapping series, as a local mapping's.
    let polled = [("mapping", "remote"), ("event", "polled")];
    assert_eq!(
        metric(&b, "esmd_mapping_events_total", &polled).await,
        Some(25.0)
    );
    let partial = [("mapping", "remote"), ("outcome", "partial_failure")];
    assert!(metric(&b, "esmd_invocations_total", &partial).await >= Some(1.0));
    let errors = [("mapping", "remote"), ("operation", "receive")];
    assert_eq!(
        metric(&b, "esmd_mapping_source_errors_total", &errors).await,
        Some(0.0)
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_fifo_queue_keeps_each_group_in_order_across_concurrent_batches() {
    const GROUPS: usize = 3;
    const PER_GROUP: usize = 6;
    let function = FunctionServer::start().await;
    // g0-2 fails on its first delivery, and so does what follows it in its batch: the function
    // keeps order as a FIFO handler must.
    function.respond(|call| {
        let mut failed = Vec::new();
        let mut failing = false;
        for r in call.records() {
            failing |= r.body.as_deref() == Some("g0-2") && receive_count(r) == 1;
            if failing && r.attributes.get("MessageGroupId").map(String::as_str) == Some("g0") {
                failed.push(r.message_id.clone().unwrap_or_default());
            }
        }
        Reply::failures(&failed).delayed(Duration::from_millis(30))
    });
    let a_dir = TempDir::new().unwrap();
    let a = start_a(a_dir.path(), "127.0.0.1:0").await;
    let sqs = sdk_client(&a.url(), "secret");
    let url = create(
        &sqs,
        "jobs.fifo",
        &[
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::ContentBasedDeduplication, "true"),
            (QueueAttributeName::VisibilityTimeout, "3"),
        ],
    )
    .await;
    for i in 0..PER_GROUP {
        for g in 0..GROUPS {
            sqs.send_message()
                .queue_url(&url)
                .message_group_id(format!("g{g}"))
                .message_body(format!("g{g}-{i}"))
                .send()
                .await
                .expect("send to A");
        }
    }
    let b_dir = TempDir::new().unwrap();
    // No `endpoint`: A's queue URL is not AWS's, so B goes to the URL's origin.
    let b = start_b(
        b_dir.path(),
        &url,
        "",
        &function.url,
        "batch_size = 2\nmax_concurrency = 3\nreport_batch_item_failures = true\n",
    )
    .await;
    let deleted = [("mapping", "remote"), ("event", "deleted")];
    wait_metric(
        &b,
        "esmd_mapping_events_total",
        &deleted,
        (GROUPS * PER_GROUP) as f64,
    )
    .await;
    eventually(LIMIT, "A's queue empty", || async {
        (a_total(&sqs, &url).await == 0).then_some(())
    })
    .await;

    let (calls, overlaps) = function.with_seen(|s| (s.calls.clone(), s.group_overlaps.clone()));
    assert!(
        overlaps.is_empty(),
        "a group in two invocations at once: {overlaps:?}"
    );
    // Per group, the records answered as successes, in arrival order, are the send order.
    let mut succeeded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in &calls {
        assert!(call.records().len() <= 2);
        let mut failing = false;
        for r in call.records() {
            let body = r.body.clone().unwrap();
            let group = r.attributes["MessageGroupId"].clone();
            assert!(
                r.attributes.contains_key("SequenceNumber"),
                "{:?}",
                r.attributes
            );
            assert!(r.attributes.contains_key("MessageDeduplicationId"));
            assert_eq!(
                r.event_source_arn.as_deref(),
                Some(format!("arn:aws:sqs:{A_REGION}:{ACCOUNT}:jobs.fifo").as_str())
            );
            failing |= body == "g0-2" && receive_count(r) == 1;
            if !(failing && group == "g0") {
                succeeded.entry(group).or_default().push(body);
            }
        }
    }
    for g in 0..GROUPS {
        let expected: Vec<String> = (0..PER_GROUP).map(|i| format!("g{g}-{i}")).collect();
        assert_eq!(succeeded[&format!("g{g}")], expected, "group g{g}");
    }
    let retried = calls
        .iter()
        .flat_map(|c| c.records())
        .filter(|r| r.body.as_deref() == Some("g0-2") && receive_count(r) == 2);
    assert_eq!(retried.count(), 1, "g0-2 came back once");
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_remote_goes_away_the_mapping_logs_retries_and_resumes_where_it_was() {
    let function = FunctionServer::start().await;
    let gate = Gate::new();
    let held = gate.clone();
    function.respond(move |call| {
        if call.index == 0 {
            Reply::ok().held(&held)
        } else {
            Reply::ok()
        }
    });
    let a_dir = TempDir::new().unwrap();
    let mut a = start_a(a_dir.path(), "127.0.0.1:0").await;
    let addr = a.addr();
    let sqs = sdk_client(&a.url(), "secret");
    let url = create(
        &sqs,
        "orders",
        &[(QueueAttributeName::VisibilityTimeout, "2")],
    )
    .await;
    for body in ["first-0", "first-1"] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }
    let b_dir = TempDir::new().unwrap();
    let b = start_b(
        b_dir.path(),
        &url,
        &a.url(),
        &function.url,
        "batch_size = 10\n",
    )
    .await;

    // The first batch is in the function when A dies: its delete cannot go through.
    let first = function.wait_calls(1, LIMIT).await;
    let first_bodies = first[0].bodies();
    a.kill().await;
    gate.open();
    b.wait_for_line(LIMIT, "a failed poll of mapping remote", |l| {
        l.contains("poll failed, retrying") && l.contains("mapping=remote")
    })
    .await;
    wait_metric(
        &b,
        "esmd_mapping_source_errors_total",
        &[("mapping", "remote"), ("operation", "receive")],
        1.0,
    )
    .await;
    wait_metric(
        &b,
        "esmd_mapping_source_errors_total",
        &[("mapping", "remote"), ("operation", "delete")],
        1.0,
    )
    .await;
    assert!(
        !b.lines().iter().any(|l| l.contains("panicked")),
        "B does not panic: {}",
        b.tail(40)
    );

    // A is back on the same port and database: what B could not delete returns and is
    // delivered again, and a message sent now is delivered too.
    let a = start_a(a_dir.path(), &addr.to_string()).await;
    assert_eq!(a.addr(), addr);
    sqs.send_message()
        .queue_url(&url)
        .message_body("after")
        .send()
        .await
        .expect("send");
    let mut wanted: Vec<&str> = first_bodies.iter().map(String::as_str).collect();
    wanted.push("after");
    function
        .wait_for(LIMIT, "the first batch again and the new message", |s| {
            let again = first_bodies.iter().all(|b| s.deliveries_of(b).len() >= 2);
            (again && s.has_bodies(&["after"])).then_some(())
        })
        .await;
    eventually(LIMIT, "A's queue empty", || async {
        (a_total(&sqs, &url).await == 0).then_some(())
    })
    .await;
    b.stop().await;
    a.stop().await;
}

/// The problems of a configuration whose one mapping has `keys`.
fn problems(keys: &str) -> Vec<String> {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "[queues.q]\n[functions.fn]\ntype = \"log\"\n[mappings.m]\nfunction = \"fn\"\n{keys}"
    );
    let path = dir.path().join("esmd.toml");
    std::fs::write(&path, text).unwrap();
    let opts = LoadOptions {
        config_path: Some(path),
        env: Some(Default::default()),
        cwd: Some(dir.path().to_owned()),
    };
    match load(&opts) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

#[test]
fn a_mapping_takes_exactly_one_of_queue_and_queue_url_and_checks_the_remote_keys() {
    let has = |ps: &[String], key: &str, fragment: &str| {
        assert!(
            ps.iter()
                .any(|p| p.starts_with(&format!("{key}: ")) && p.contains(fragment)),
            "no `{key}: ...{fragment}...` in {ps:#?}"
        );
    };
    let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders";
    has(
        &problems(&format!("queue = \"q\"\nqueue_url = \"{url}\"\n")),
        "mappings.m.queue_url",
        "not both",
    );
    has(&problems(""), "mappings.m", "missing queue or queue_url");
    has(
        &problems("queue_url = \"sqs.eu-west-1.amazonaws.com/1/orders\"\n"),
        "mappings.m.queue_url",
        "is not a queue URL",
    );
    has(
        &problems("queue_url = \"https://sqs.eu-west-1.amazonaws.com/orders\"\n"),
        "mappings.m.queue_url",
        "/<account>/<queue name>",
    );
    has(
        &problems(&format!(
            "queue_url = \"{url}\"\nendpoint = \"localhost:9324\"\n"
        )),
        "mappings.m.endpoint",
        "is not an endpoint",
    );
    has(
        &problems(&format!("queue_url = \"{url}\"\nregion = \"EU West\"\n")),
        "mappings.m.region",
        "not a region name",
    );
    has(
        &problems("queue = \"q\"\nendpoint = \"http://localhost:9324\"\n"),
        "mappings.m.endpoint",
        "only for a remote queue",
    );
    let fifo = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo";
    has(
        &problems(&format!(
            "queue_url = \"{fifo}\"\nbatching_window = \"5s\"\n"
        )),
        "mappings.m.batching_window",
        "FIFO",
    );
}

#[tokio::test]
async fn check_config_lists_a_remote_mappings_url_endpoint_and_region() {
    let dir = TempDir::new().unwrap();
    let text = "[functions.fn]\ntype = \"log\"\n[mappings.m]\nfunction = \"fn\"\n\
                queue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/orders\"\n\
                [mappings.n]\nfunction = \"fn\"\n\
                queue_url = \"http://127.0.0.1:9/000000000000/other\"\n";
    std::fs::write(dir.path().join("esmd.toml"), text).unwrap();
    let out = process::command(dir.path())
        .args(["check-config", "--config", "esmd.toml"])
        .output()
        .await
        .expect("run esmd check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: toml::Value = toml::from_str(&stdout).expect("check-config prints TOML");
    let m = &shown["mappings"]["m"];
    assert_eq!(
        m["queue_url"].as_str(),
        Some("https://sqs.eu-west-1.amazonaws.com/123456789012/orders")
    );
    assert_eq!(
        m["region"].as_str(),
        Some("eu-west-1"),
        "the region of the URL's host"
    );
    assert!(m.get("queue").is_none() && m.get("endpoint").is_none());
    let n = &shown["mappings"]["n"];
    assert_eq!(
        n["endpoint"].as_str(),
        Some("http://127.0.0.1:9"),
        "a queue URL not on AWS is reached at its own origin"
    );
    assert_eq!(n["region"].as_str(), Some("us-east-1"), "server.region");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_delete_on_the_remote_and_retry_backoff_changes_its_visibility() {
    let function = FunctionServer::start().await;
    // keep-bad fails on its first delivery.
    function.respond(|call| {
        let failed: Vec<String> = call
            .records()
            .iter()
            .filter(|r| r.body.as_deref() == Some("keep-bad") && receive_count(r) == 1)
            .map(|r| r.message_id.clone().unwrap_or_default())
            .collect();
        Reply::failures(&failed)
    });
    let a_dir = TempDir::new().unwrap();
    let a = start_a(a_dir.path(), "127.0.0.1:0").await;
    let sqs = sdk_client(&a.url(), "secret");
    // Without the back-off, keep-bad would return only after 10 minutes.
    let url = create(
        &sqs,
        "orders",
        &[(QueueAttributeName::VisibilityTimeout, "600")],
    )
    .await;
    for body in ["keep-1", "drop-1", "keep-bad", "drop-2"] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }
    let b_dir = TempDir::new().unwrap();
    let b = start_b(
        b_dir.path(),
        &url,
        &a.url(),
        &function.url,
        "report_batch_item_failures = true\nfilters = ['{\"body\": [{\"prefix\": \"keep\"}]}']\n\
         retry_backoff = { initial = \"1s\", max = \"1s\", jitter = false }\n",
    )
    .await;
    function
        .wait_for(LIMIT, "keep-bad delivered again", |s| {
            (s.deliveries_of("keep-bad").len() == 2).then_some(())
        })
        .await;
    let filtered = [("mapping", "remote"), ("event", "filtered_out")];
    wait_metric(&b, "esmd_mapping_events_total", &filtered, 2.0).await;
    eventually(LIMIT, "A's queue empty", || async {
        (a_total(&sqs, &url).await == 0).then_some(())
    })
    .await;
    let seen: Vec<String> = function
        .calls()
        .iter()
        .flat_map(|c| c.bodies())
        .filter(|b| b.starts_with("drop"))
        .collect();
    assert!(
        seen.is_empty(),
        "filtered records reached the function: {seen:?}"
    );
    // A's queue is empty at the deletes' commit there; B counts them once they are answered.
    let deleted = [("mapping", "remote"), ("event", "deleted")];
    wait_metric(&b, "esmd_mapping_events_total", &deleted, 2.0).await;
    assert_eq!(
        metric(&b, "esmd_mapping_events_total", &deleted).await,
        Some(2.0)
    );
    b.stop().await;
    a.stop().await;
}
