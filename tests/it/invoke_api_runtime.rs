//! Runtime functions (the real `awslambdaric`) through Lambda's Invoke API with the real
//! `aws-sdk-lambda` client, as a caller sees them (docs/interface.md §3.8 and §4.4): a warm process across
//! calls, the runtime's own error document with `FunctionError: Unhandled`, the log tail with the
//! handler's output and `Init Duration` on the cold start only, `Event` accepted, and 429 `TooManyRequestsException` while every environment is busy.

use std::time::Duration;

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, LogType};
use base64::Engine as _;
use serde_json::Value;

use crate::common::daemon::TestDaemon;
use crate::invoke_api::lambda_client;
use crate::runtime::{data, python};

/// One Python runtime function `py` with at most one environment.
fn config(python: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [functions.py]\ntype = \"runtime\"\n\
         command = [{python:?}, \"-m\", \"awslambdaric\", \"app.handler\"]\n\
         working_dir = {dir:?}\ntimeout = \"30s\"\nmax_environments = 1\n",
        python = python.display().to_string(),
        dir = data("runtime-python").display().to_string(),
    )
}

fn payload(out: &aws_sdk_lambda::operation::invoke::InvokeOutput) -> Value {
    serde_json::from_slice(out.payload().expect("a payload").as_ref()).expect("JSON")
}

fn log_of(out: &aws_sdk_lambda::operation::invoke::InvokeOutput) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(out.log_result().expect("a log tail"))
        .expect("base64");
    String::from_utf8(raw).expect("UTF-8")
}

#[tokio::test]
async fn a_python_runtime_through_the_invoke_api() {
    let Some(python) = python() else { return };
    let d = TestDaemon::start(&config(&python)).await;
    let lambda = lambda_client(&d.url, "x");
    let invoke = |body: &'static str| {
        lambda
            .invoke()
            .function_name("py")
            .payload(Blob::new(body))
            .log_type(LogType::Tail)
            .send()
    };

    // Cold, then warm: the same process, its module state kept.
    let first = invoke(r#"{"mode":"ok"}"#).await.expect("first call");
    assert_eq!(first.status_code(), 200);
    assert_eq!(first.function_error(), None);
    assert_eq!(first.executed_version(), Some("$LATEST"));
    let p1 = payload(&first);
    assert_eq!(p1["count"], 1, "{p1}");
    assert_eq!(p1["function_name"], "py");
    let log = log_of(&first);
    assert!(log.starts_with("START RequestId: "), "{log}");
    assert!(log.contains("mode=ok count=1"), "{log}");
    assert!(log.contains("Init Duration: "), "{log}");
    let second = invoke(r#"{"mode":"ok"}"#).await.expect("second call");
    let p2 = payload(&second);
    assert_eq!(
        (p2["count"].clone(), p2["pid"].clone()),
        (2.into(), p1["pid"].clone())
    );
    assert!(!log_of(&second).contains("Init Duration"), "warm: no Init");

    // A handler error: 200, Unhandled, awslambdaric's own document; the process stays.
    let err = invoke(r#"{"mode":"err"}"#).await.expect("error call");
    assert_eq!(err.status_code(), 200);
    assert_eq!(err.function_error(), Some("Unhandled"));
    let doc = payload(&err);
    assert_eq!(doc["errorType"], "ValueError", "{doc}");
    assert_eq!(doc["errorMessage"], "boom from python");
    assert!(doc["stackTrace"].is_array(), "{doc}");
    let third = invoke(r#"{"mode":"ok"}"#).await.expect("after the error");
    assert_eq!(payload(&third)["pid"], p1["pid"], "still warm");

    // While the only environment is busy, a synchronous call gets 429 at once.
    let busy = tokio::spawn({
        let lambda = lambda.clone();
        async move {
            lambda
                .invoke()
                .function_name("py")
                // sleep-ok: the handler holds the only environment while the test is refused
                .payload(Blob::new(r#"{"mode":"sleep","s":3}"#))
                .send()
                .await
        }
    });
    d.wait_metric(
        "esmd_runtime_environments",
        &[("function", "py"), ("state", "busy")],
        Duration::from_secs(20),
        |v| v == 1.0,
    )
    .await;
    let refused = invoke(r#"{"mode":"ok"}"#).await.expect_err("throttled");
    let service = refused.as_service_error().expect("a service error");
    assert_eq!(
        service.code(),
        Some("TooManyRequestsException"),
        "{refused:?}"
    );
    assert!(busy.await.expect("join").is_ok());

    // Event is accepted for the same function (it runs in the same environments, later).
    let event = lambda
        .invoke()
        .function_name("py")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(r#"{"mode":"ok"}"#))
        .send()
        .await
        .expect("Event");
    assert_eq!(event.status_code(), 202);

    d.stop().await;
}
