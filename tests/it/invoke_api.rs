//! Lambda's Invoke API (issue #16 point 4) through the real `aws-sdk-lambda` client against a
//! whole esmd: RequestResponse on command (Python), http and log functions, Tail, DryRun,
//! Event's 202, function errors and timeouts as 200 with `FunctionError: Unhandled` and Lambda's
//! error document, and the refusals (404, 413, 400) with Lambda's exception names; with
//! `server.auth_token`, requests signed with the token work and others are refused.

use std::time::Duration;

use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, LogType};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::daemon::{FunctionServer, Reply, TestDaemon};

/// A Lambda client of `url` signing with `secret`.
pub fn lambda_client(url: &str, secret: &str) -> aws_sdk_lambda::Client {
    let conf = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("x", secret, None, None, "test"))
        .endpoint_url(url)
        // A refusal is the answer under test: no retries.
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_lambda::Client::from_conf(conf)
}

// sleep-ok: a function that overruns its 1 s timeout on purpose; esmd kills it.
const SLOW: &str = "command = [\"sleep\", \"30\"]";

/// Functions `echo` (Python: answers `{"got": event}`), `fails` (Python: raises), `slow` (a 1 s
/// timeout it overruns), `web` (http) and `logger` (log).
fn config(web: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n\
         [functions.echo]\ntype = \"command\"\ncommand = [\"python3\", \"-c\", \"import sys, json; print(json.dumps({{'got': json.load(sys.stdin)}}))\"]\n\
         [functions.fails]\ntype = \"command\"\ncommand = [\"python3\", \"-c\", \"raise ValueError('boom')\"]\n\
         [functions.slow]\ntype = \"command\"\n{SLOW}\ntimeout = \"1s\"\n\
         [functions.web]\ntype = \"http\"\nurl = \"{web}\"\n\
         [functions.logger]\ntype = \"log\"\n"
    )
}

fn json_of(blob: Option<&Blob>) -> Value {
    serde_json::from_slice(blob.expect("a payload").as_ref()).expect("a JSON payload")
}

#[tokio::test]
async fn request_response_tail_dry_run_and_event_on_every_function_type() {
    let web = FunctionServer::start().await;
    web.respond(|_| Reply::body(r#"{"from":"web"}"#));
    let d = TestDaemon::start(&config(&web.url, "")).await;
    let lambda = lambda_client(&d.url, "x");

    let out = lambda
        .invoke()
        .function_name("echo")
        .payload(Blob::new(r#"{"n":1}"#))
        .log_type(LogType::Tail)
        .send()
        .await
        .expect("invoke echo");
    assert_eq!(out.status_code(), 200);
    assert_eq!(out.function_error(), None);
    assert_eq!(out.executed_version(), Some("$LATEST"));
    assert_eq!(json_of(out.payload()), json!({"got": {"n": 1}}));
    let log = base64::engine::general_purpose::STANDARD
        .decode(out.log_result().expect("a log tail"))
        .expect("base64");
    let log = String::from_utf8(log).expect("UTF-8");
    assert!(log.starts_with("START RequestId: "), "{log}");
    assert!(
        log.contains("\nEND RequestId: ") && log.contains("REPORT RequestId: "),
        "{log}"
    );

    // By ARN and partial ARN, with $LATEST: the same function.
    for name in [
        "arn:aws:lambda:us-east-1:000000000000:function:web",
        "000000000000:function:web:$LATEST",
    ] {
        let out = lambda
            .invoke()
            .function_name(name)
            .send()
            .await
            .expect(name);
        assert_eq!(json_of(out.payload()), json!({"from": "web"}), "{name}");
        assert_eq!(out.log_result(), None, "no tail unless asked");
    }
    let out = lambda
        .invoke()
        .function_name("logger")
        .qualifier("$LATEST")
        .send()
        .await
        .expect("invoke logger");
    assert_eq!(
        out.payload().map(|b| b.as_ref().to_vec()),
        Some(b"null".to_vec())
    );

    let dry = lambda
        .invoke()
        .function_name("echo")
        .invocation_type(InvocationType::DryRun)
        .send()
        .await
        .expect("dry run");
    assert_eq!(dry.status_code(), 204);
    let event = lambda
        .invoke()
        .function_name("logger")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new("{}"))
        .send()
        .await
        .expect("event");
    assert_eq!(event.status_code(), 202);
    d.wait_metric(
        "esmd_async_events_total",
        &[("function", "logger"), ("event", "queued")],
        Duration::from_secs(10),
        |v| v == 1.0,
    )
    .await;
    d.stop().await;
}

#[tokio::test]
async fn function_errors_and_timeouts_answer_200_unhandled_with_the_error_document() {
    let web = FunctionServer::start().await;
    let d = TestDaemon::start(&config(&web.url, "")).await;
    let lambda = lambda_client(&d.url, "x");
    let out = lambda
        .invoke()
        .function_name("fails")
        .send()
        .await
        .expect("invoke");
    assert_eq!(out.status_code(), 200);
    assert_eq!(out.function_error(), Some("Unhandled"));
    let doc = json_of(out.payload());
    assert!(doc["errorType"].is_string(), "{doc}");
    assert!(
        doc["errorMessage"].as_str().is_some_and(|m| !m.is_empty()),
        "{doc}"
    );

    let out = lambda
        .invoke()
        .function_name("slow")
        .send()
        .await
        .expect("invoke");
    assert_eq!(out.function_error(), Some("Unhandled"));
    let doc = json_of(out.payload());
    assert_eq!(doc["errorType"], "Sandbox.Timedout", "{doc}");
    assert!(
        doc["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("Task timed out after 1.00 seconds")),
        "{doc}"
    );
    d.stop().await;
}

#[tokio::test]
async fn refusals_carry_lambdas_exception_names() {
    let web = FunctionServer::start().await;
    let d = TestDaemon::start(&config(&web.url, "")).await;
    let lambda = lambda_client(&d.url, "x");
    let err = lambda
        .invoke()
        .function_name("nope")
        .send()
        .await
        .expect_err("no such function");
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    assert_eq!(
        err.message(),
        Some("Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope")
    );
    let err = lambda
        .invoke()
        .function_name("echo")
        .qualifier("7")
        .send()
        .await
        .expect_err("no version 7");
    assert_eq!(err.code(), Some("ResourceNotFoundException"));

    // 6 MB synchronous, 1 MB Event: a JSON string one byte over each.
    let over = |n: usize| Blob::new(format!("\"{}\"", "x".repeat(n - 1)));
    let err = lambda
        .invoke()
        .function_name("echo")
        .payload(over(6_291_456))
        .send()
        .await
        .expect_err("over 6 MB");
    assert_eq!(err.code(), Some("RequestEntityTooLargeException"));
    let err = lambda
        .invoke()
        .function_name("echo")
        .invocation_type(InvocationType::Event)
        .payload(over(1_048_576))
        .send()
        .await
        .expect_err("over 1 MB");
    assert_eq!(err.code(), Some("RequestEntityTooLargeException"));
    assert!(
        err.message().is_some_and(|m| m.contains("Event")),
        "{err:?}"
    );

    // Below the SDK, on the wire: a bad invocation type, a body that is not JSON.
    let http = reqwest::Client::new();
    let url = format!("{}/2015-03-31/functions/echo/invocations", d.url);
    for (header, body, status, code) in [
        ("Sometime", "{}", 400, "InvalidParameterValueException"),
        (
            "RequestResponse",
            "{not json",
            400,
            "InvalidRequestContentException",
        ),
    ] {
        let r = http
            .post(&url)
            .header("X-Amz-Invocation-Type", header)
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), status, "{header} {body}");
        assert_eq!(
            r.headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok()),
            Some(code)
        );
        let body: Value = r.json().await.expect("a JSON error");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn with_an_auth_token_only_requests_signed_with_it_are_served() {
    let web = FunctionServer::start().await;
    let d = TestDaemon::start(&config(&web.url, "auth_token = \"lambda-secret\"")).await;
    let good = lambda_client(&d.url, "lambda-secret");
    let out = good
        .invoke()
        .function_name("echo")
        .payload(Blob::new("[1]"))
        .send()
        .await
        .expect("signed with the token");
    assert_eq!(json_of(out.payload()), json!({"got": [1]}));
    let bad = lambda_client(&d.url, "not-the-secret");
    let err = bad
        .invoke()
        .function_name("echo")
        .send()
        .await
        .expect_err("signed with another secret");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert!(matches!(status, Some(401 | 403)), "{err:?}");
    d.stop().await;
}
