//! Lambda's event source mapping API (issue #17 point 4) over real HTTP: a mapping created with
//! CreateEventSourceMapping delivers to its function, follows Update (batch size, disabled stops
//! delivery, enabled resumes) and Delete through Lambda's states, survives a SIGHUP reload and a
//! restart of the real binary on the same database, the configuration file's mappings are listed
//! but read-only, and bad requests get Lambda's exceptions. Requests are raw JSON, as the
//! REST-JSON protocol puts them on the wire (boto3 and aws-cli were run against it too: README).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::daemon::{http_function, FunctionServer, TestDaemon};
use crate::common::process::EsmdProcess;

const WAIT: Duration = Duration::from_secs(20);
const MAPPINGS: &str = "/2015-03-31/event-source-mappings";

/// esmd's ARN of `queue` with the default region and account.
fn arn(queue: &str) -> String {
    format!("arn:aws:sqs:us-east-1:000000000000:{queue}")
}

/// Queues `q`, `other` and `jobs.fifo`; functions `fn` (http, 5s) and `slow` (60s, longer than
/// the queues' 30 s visibility timeout); the file's mapping `filed` of `other` to `fn`.
fn config(function_url: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[functions.slow]\ntype = \"log\"\ntimeout = \"60s\"\n\
         [queues.q]\n[queues.other]\n[queues.\"jobs.fifo\"]\n\
         [mappings.filed]\nqueue = \"other\"\nfunction = \"fn\"\n",
        http_function(function_url, "5s")
    )
}

/// One answer of the API.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// `x-amzn-ErrorType`.
    error: Option<String>,
    body: Value,
}

impl Answer {
    /// The error message (Lambda's model spells the member `message` or `Message`).
    fn message(&self) -> &str {
        self.body["message"]
            .as_str()
            .or_else(|| self.body["Message"].as_str())
            .unwrap_or_default()
    }
}

/// A client of the mapping API.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(url: &str) -> Self {
        Api {
            http: reqwest::Client::new(),
            base: format!("{url}{MAPPINGS}"),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the API answers");
        let status = resp.status().as_u16();
        let error = resp
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.json().await.expect("a JSON body");
        Answer {
            status,
            error,
            body,
        }
    }

    async fn create(&self, body: Value) -> Answer {
        self.call(Method::POST, "/", Some(body)).await
    }

    async fn get(&self, uuid: &str) -> Answer {
        self.call(Method::GET, &format!("/{uuid}"), None).await
    }

    async fn update(&self, uuid: &str, body: Value) -> Answer {
        self.call(Method::PUT, &format!("/{uuid}"), Some(body))
            .await
    }

    async fn delete(&self, uuid: &str) -> Answer {
        self.call(Method::DELETE, &format!("/{uuid}"), None).await
    }

    async fn list(&self, query: &str) -> Answer {
        self.call(Method::GET, query, None).await
    }

    /// Creates a mapping of `queue` to `fn` and waits until the daemon runs it; its UUID.
    async fn create_enabled(&self, queue: &str) -> String {
        let created = self
            .create(json!({"FunctionName": "fn", "EventSourceArn": arn(queue)}))
            .await;
        assert_eq!(created.status, 202, "{created:?}");
        let uuid = created.body["UUID"].as_str().expect("a UUID").to_owned();
        self.wait_state(&uuid, "Enabled").await;
        uuid
    }

    /// Reads the mapping until its `State` is `state` ("gone": 404), for at most [`WAIT`]: the
    /// daemon settles a state on its own, after the answer, so there is nothing to wait on but
    /// the API itself.
    async fn wait_state(&self, uuid: &str, state: &str) -> Answer {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.get(uuid).await;
            let reached = if state == "gone" {
                got.status == 404
            } else {
                got.status == 200 && got.body["State"] == state
            };
            if reached {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "mapping {uuid} did not reach {state} within {WAIT:?}: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await; // sleep-ok: a pause between two reads of the mapping's State, which the daemon settles asynchronously.
        }
    }
}

fn uuids(list: &Answer) -> Vec<String> {
    list.body["EventSourceMappings"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list:?}"))
        .iter()
        .map(|m| m["UUID"].as_str().expect("a UUID").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_created_through_the_api_delivers_and_follows_updates_and_deletion() {
    let server = FunctionServer::start().await;
    let d = TestDaemon::start(&config(&server.url)).await;
    let api = Api::new(&d.url);

    let created = api
        .create(
            json!({"FunctionName": "fn", "EventSourceArn": arn("q"), "BatchSize": 5,
                        "FunctionResponseTypes": ["ReportBatchItemFailures"],
                        "ScalingConfig": {"MaximumConcurrency": 2}}),
        )
        .await;
    assert_eq!(created.status, 202, "{created:?}");
    let m = &created.body;
    let uuid = m["UUID"].as_str().expect("a UUID").to_owned();
    assert_eq!(m["State"], "Creating", "{m}");
    assert_eq!(m["StateTransitionReason"], "USER_INITIATED");
    assert_eq!(
        m["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:fn"
    );
    assert_eq!(m["EventSourceArn"], arn("q"));
    assert_eq!(m["BatchSize"], 5);
    assert_eq!(m["MaximumBatchingWindowInSeconds"], 0);
    assert_eq!(
        m["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(m["ScalingConfig"], json!({"MaximumConcurrency": 2}));
    assert_eq!(
        m["EventSourceMappingArn"],
        format!("arn:aws:lambda:us-east-1:000000000000:event-source-mapping:{uuid}")
    );
    assert!(
        m["LastModified"].as_f64().is_some_and(|t| t > 1.6e9),
        "LastModified is epoch seconds: {m}"
    );
    api.wait_state(&uuid, "Enabled").await;

    d.send_bodies("q", &["one", "two"]).await;
    let calls = server.wait_bodies(&["one", "two"], WAIT).await;
    assert!(calls.iter().all(|c| c.queue() == "q"), "events name q");
    d.wait_empty("q", WAIT).await;
    // The queue is empty at the deletes' commit; the mapping counts them once answered.
    let deleted = [("mapping", uuid.as_str()), ("event", "deleted")];
    d.wait_metric("esmd_mapping_events_total", &deleted, WAIT, |v| v >= 2.0)
        .await;
    assert_eq!(
        d.metric("esmd_mapping_events_total", &deleted),
        2.0,
        "an API mapping's series are labelled with its UUID"
    );

    // The file's mapping is listed with ours, in UUID order; filters and pages.
    let filed = esmd::api::file_uuid("filed");
    let mut both = vec![uuid.clone(), filed.clone()];
    both.sort();
    assert_eq!(uuids(&api.list("?FunctionName=fn").await), both);
    assert_eq!(
        uuids(
            &api.list("?FunctionName=arn:aws:lambda:us-east-1:000000000000:function:fn")
                .await
        ),
        both
    );
    assert_eq!(
        uuids(&api.list(&format!("?EventSourceArn={}", arn("q"))).await),
        std::slice::from_ref(&uuid)
    );
    let first = api.list("?MaxItems=1").await;
    assert_eq!(uuids(&first), [both[0].clone()]);
    let marker = first.body["NextMarker"].as_str().expect("a NextMarker");
    let second = api.list(&format!("?MaxItems=1&Marker={marker}")).await;
    assert_eq!(uuids(&second), [both[1].clone()]);
    assert!(second.body.get("NextMarker").is_none(), "{second:?}");

    // Disabled: nothing is delivered; the file's mapping still is.
    let disabled = api.update(&uuid, json!({"Enabled": false})).await;
    assert_eq!(disabled.status, 202, "{disabled:?}");
    assert_eq!(disabled.body["State"], "Disabling");
    let refused = api.update(&uuid, json!({"BatchSize": 3})).await;
    let in_use =
        refused.status == 400 && refused.error.as_deref() == Some("ResourceInUseException");
    let settled = refused.status == 202;
    assert!(in_use || settled, "{refused:?}");
    api.wait_state(&uuid, "Disabled").await;
    d.send_bodies("q", &["while disabled"]).await;
    d.send_bodies("other", &["sentinel"]).await;
    server.wait_bodies(&["sentinel"], WAIT).await;
    assert_eq!(
        d.counts("q").await.visible,
        1,
        "a disabled mapping does not poll its queue"
    );

    // Enabled again with a larger batch and a window: the message waiting is delivered.
    let enabled = api
        .update(
            &uuid,
            json!({"Enabled": true, "BatchSize": 50, "MaximumBatchingWindowInSeconds": 1}),
        )
        .await;
    assert_eq!(enabled.status, 202, "{enabled:?}");
    assert_eq!(enabled.body["State"], "Enabling");
    assert_eq!(enabled.body["BatchSize"], 50);
    let now = api.wait_state(&uuid, "Enabled").await;
    assert_eq!(now.body["MaximumBatchingWindowInSeconds"], 1);
    server.wait_bodies(&["while disabled"], WAIT).await;

    // A window of 0 with 50 records is refused as Lambda refuses it; nothing changed.
    let bad = api
        .update(&uuid, json!({"MaximumBatchingWindowInSeconds": 0}))
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(bad.error.as_deref(), Some("InvalidParameterValueException"));
    assert!(
        bad.message()
            .contains("Maximum batch window in seconds must be greater than 0"),
        "{bad:?}"
    );
    assert_eq!(api.get(&uuid).await.body["BatchSize"], 50);

    let deleted = api.delete(&uuid).await;
    assert_eq!(deleted.status, 202, "{deleted:?}");
    assert_eq!(deleted.body["State"], "Deleting");
    let gone = api.wait_state(&uuid, "gone").await;
    assert_eq!(gone.error.as_deref(), Some("ResourceNotFoundException"));
    assert_eq!(uuids(&api.list("").await), [filed]);
    assert!(d.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_mappings_survive_sighup_and_a_restart_and_file_mappings_are_read_only() {
    let server = FunctionServer::start().await;
    let dir = TempDir::new().expect("temp dir");
    let toml = config(&server.url);
    let mut esmd = EsmdProcess::start(dir.path(), &toml, &[]).await;
    let api = Api::new(&esmd.url());
    let uuid = api.create_enabled("q").await;

    let filed = esmd::api::file_uuid("filed");
    let got = api.get(&filed).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body["State"], "Enabled");
    assert_eq!(got.body["EventSourceArn"], arn("other"));
    for refused in [
        api.update(&filed, json!({"BatchSize": 5})).await,
        api.delete(&filed).await,
    ] {
        assert_eq!(refused.status, 400, "{refused:?}");
        assert_eq!(
            refused.error.as_deref(),
            Some("InvalidParameterValueException")
        );
        assert!(
            refused.message().contains("mappings.filed") && refused.message().contains("file"),
            "the refusal names the file's key: {refused:?}"
        );
    }

    // SIGHUP with a changed file keeps the API's mapping running, untouched.
    std::fs::write(esmd.config(), format!("{toml}[queues.added]\n")).expect("rewrite the config");
    esmd.signal(Signal::SIGHUP);
    let line = esmd
        .wait_for_line(WAIT, "the reload", |l| l.contains("configuration reloaded"))
        .await;
    assert!(
        !line.contains(&uuid),
        "the reload left {uuid} alone: {line}"
    );
    assert_eq!(api.get(&uuid).await.body["State"], "Enabled");
    let http = reqwest::Client::new();
    let sent = http
        .post(format!("{}/queues/q/messages", esmd.url()))
        .body("after reload")
        .send()
        .await
        .expect("send");
    assert!(sent.status().is_success(), "{sent:?}");
    server.wait_bodies(&["after reload"], WAIT).await;
    esmd.stop().await;

    // The same database, a new process: the mapping is there and delivers.
    let esmd = EsmdProcess::start(dir.path(), &toml, &[]).await;
    let api = Api::new(&esmd.url());
    let got = api.get(&uuid).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body["State"], "Enabled");
    assert_eq!(got.body["EventSourceArn"], arn("q"));
    let sent = http
        .post(format!("{}/queues/q/messages", esmd.url()))
        .body("after restart")
        .send()
        .await
        .expect("send");
    assert!(sent.status().is_success(), "{sent:?}");
    server.wait_bodies(&["after restart"], WAIT).await;
    esmd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_lambdas_exceptions() {
    let server = FunctionServer::start().await;
    let d = TestDaemon::start(&config(&server.url)).await;
    let api = Api::new(&d.url);
    let existing = api.create_enabled("q").await;

    let ok = |extra: Value| {
        let mut body = json!({"FunctionName": "fn", "EventSourceArn": arn("jobs.fifo")});
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        body
    };
    let conflict = format!("Please update or delete the existing mapping with UUID {existing}");
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"FunctionName": "nope", "EventSourceArn": arn("q")}),
            404,
            "ResourceNotFoundException",
            "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope",
        ),
        (
            json!({"FunctionName": "fn", "EventSourceArn": arn("other"), "BatchSize": 20}),
            400,
            "InvalidParameterValueException",
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        ),
        (
            ok(json!({"BatchSize": 11})),
            400,
            "InvalidParameterValueException",
            "above the maximum of 10 for a FIFO queue",
        ),
        (
            ok(json!({"MaximumBatchingWindowInSeconds": 1})),
            400,
            "InvalidParameterValueException",
            "Batching window is not supported for FIFO queues",
        ),
        (
            ok(json!({"BatchSize": 10001})),
            400,
            "InvalidParameterValueException",
            "Member must have value less than or equal to 10000",
        ),
        (
            ok(json!({"ScalingConfig": {"MaximumConcurrency": 1}})),
            400,
            "InvalidParameterValueException",
            "Member must have value greater than or equal to 2",
        ),
        (
            ok(json!({"FunctionResponseTypes": ["Everything"]})),
            400,
            "InvalidParameterValueException",
            "[ReportBatchItemFailures]",
        ),
        (
            ok(json!({"FilterCriteria": {"Filters": [{"Pattern": "{\"body\": {\"n\": [{\"numeric\": [\">\"]}]}}"}]}})),
            400,
            "InvalidParameterValueException",
            "Invalid filter pattern definition",
        ),
        (
            ok(json!({"StartingPosition": "LATEST"})),
            400,
            "InvalidParameterValueException",
            "Unsupported StartingPosition parameter",
        ),
        (
            json!({"FunctionName": "fn", "EventSourceArn": arn("missing")}),
            400,
            "InvalidParameterValueException",
            "AWS.SimpleQueueService.NonExistentQueue",
        ),
        (
            json!({"FunctionName": "fn", "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q"}),
            400,
            "InvalidParameterValueException",
            "is not one of esmd's queues",
        ),
        (
            json!({"FunctionName": "slow", "EventSourceArn": arn("q")}),
            400,
            "InvalidParameterValueException",
            "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds",
        ),
        (
            json!({"FunctionName": "fn", "EventSourceArn": arn("q")}),
            409,
            "ResourceConflictException",
            &conflict,
        ),
        (
            json!({"FunctionName": "fn", "EventSourceArn": arn("other")}),
            409,
            "ResourceConflictException",
            "mappings.filed",
        ),
    ];
    for (body, status, error, message) in cases {
        let got = api.create(body.clone()).await;
        assert_eq!(got.status, status, "{body}: {got:?}");
        assert_eq!(got.error.as_deref(), Some(error), "{body}: {got:?}");
        assert_eq!(got.body["Type"], "User", "{body}: {got:?}");
        assert!(
            got.message().contains(message),
            "{body}: {:?} should contain {message:?}",
            got.message()
        );
    }
    let unknown = api.get("00000000-0000-4000-8000-000000000000").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error.as_deref(), Some("ResourceNotFoundException"));
    let bad_page = api.list("?MaxItems=0").await;
    assert_eq!(bad_page.status, 400, "{bad_page:?}");
    // Only the one good mapping and the file's exist: no refused request stored anything.
    assert_eq!(uuids(&api.list("").await).len(), 2);
    assert!(d.stop().await);
}
