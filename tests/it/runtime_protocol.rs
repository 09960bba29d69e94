//! The Runtime API's answers to a runtime that misbehaves (§6.2 #13 and #14 of the plan in
//! docs/interface.md §4.4): the test plays the runtime with a raw HTTP client against the
//! environment esmd started (a `sh` that writes down `AWS_LAMBDA_RUNTIME_API` and idles), and
//! checks the status codes and error types while the invocation in flight still ends correctly.

use std::time::Duration;

use esmd::config::FunctionTarget;
use esmd::invoke::{Invocation, InvokeOptions, Invoker};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::{eventually, within};
use crate::runtime::{function, target, Kind};

const BOUND: Duration = Duration::from_secs(30);

async fn status_and_type(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["errorType"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn misuse_gets_lambdas_codes_and_the_invocation_still_ends() {
    let dir = TempDir::new().expect("temp dir");
    let file = dir.path().join("api");
    let mut config = function(Kind::Shell, "h", Duration::from_secs(10), 1).expect("shell");
    let FunctionTarget::Runtime(r) = &mut config.target else {
        unreachable!()
    };
    r.argv = vec![
        "sh".into(),
        "-c".into(),
        format!(
            // sleep-ok: a stand-in runtime that only writes down its address; the test plays it
            "echo $AWS_LAMBDA_RUNTIME_API > {}; exec sleep 600",
            file.display()
        ),
    ];
    let invoker = Invoker::new();
    let http = reqwest::Client::new();
    let first = {
        let invoker = invoker.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let options = InvokeOptions {
                request_id: Some("11111111-2222-3333-4444-555555555555".into()),
                trace_id: Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into()),
                client_context: Some(r#"{"custom":{"k":"v"}}"#.into()),
                ..InvokeOptions::default()
            };
            invoker
                .invoke_with(&target(&config), br#"{"n":1}"#.to_vec(), options)
                .await
        })
    };
    let addr = eventually(BOUND, "the runtime wrote its API address", || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await;
    let api = format!("http://{}/2018-06-01/runtime", addr.trim());

    // #14: /next carries every header; the event is unchanged.
    let next = within(
        BOUND,
        "the first /next",
        http.get(format!("{api}/invocation/next")).send(),
    )
    .await
    .expect("/next");
    assert_eq!(next.status(), 200);
    let h = next.headers().clone();
    let id = h["lambda-runtime-aws-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(id, "11111111-2222-3333-4444-555555555555");
    assert_eq!(h["content-type"], "application/json");
    let deadline: u128 = h["lambda-runtime-deadline-ms"]
        .to_str()
        .expect("deadline")
        .parse()
        .expect("ms");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now")
        .as_millis();
    assert!(
        deadline > now && deadline <= now + 10_000,
        "deadline {deadline}, now {now}"
    );
    assert_eq!(
        h["lambda-runtime-invoked-function-arn"],
        "arn:aws:lambda:eu-west-1:000000000000:function:orders"
    );
    assert_eq!(
        h["lambda-runtime-trace-id"],
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    );
    assert_eq!(
        h["lambda-runtime-client-context"],
        r#"{"custom":{"k":"v"}}"#
    );
    assert_eq!(next.bytes().await.expect("event").as_ref(), br#"{"n":1}"#);

    // #13: a second /next during the invocation, a random id, then the real answer twice.
    let again = http
        .get(format!("{api}/invocation/next"))
        .send()
        .await
        .expect("second /next");
    assert_eq!(
        status_and_type(again).await,
        (403, "InvalidStateTransition".into())
    );
    let random = http
        .post(format!("{api}/invocation/nope/response"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(
        status_and_type(random).await,
        (400, "InvalidRequestID".into())
    );
    let init_error = http
        .post(format!("{api}/init/error"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(
        status_and_type(init_error).await,
        (403, "InvalidStateTransition".into())
    );
    let ok = http
        .post(format!("{api}/invocation/{id}/response"))
        .body(r#"{"x":1}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status(), 202);
    assert_eq!(
        ok.json::<Value>().await.expect("json"),
        json!({"status": "OK"})
    );
    let twice = http
        .post(format!("{api}/invocation/{id}/error"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(
        status_and_type(twice).await,
        (403, "InvalidStateTransition".into()),
        "a second report for the same invocation"
    );
    let first = within(BOUND, "the first invocation", first)
        .await
        .expect("joined");
    assert_eq!(
        first.invocation,
        Invocation::Returned(Some(br#"{"x":1}"#.to_vec()))
    );

    let late = http
        .post(format!("{api}/invocation/{id}/response"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(
        status_and_type(late).await,
        (403, "InvalidStateTransition".into()),
        "after the invocation ended, until the next one"
    );

    // A response mode esmd does not serve (streaming, or anything else): 400, and the
    // invocation fails with its own error type.
    let call = |payload: &'static [u8]| {
        let invoker = invoker.clone();
        let config = config.clone();
        tokio::spawn(async move {
            invoker
                .invoke_with(&target(&config), payload.to_vec(), InvokeOptions::default())
                .await
        })
    };
    let second = call(b"{}");
    let next = http
        .get(format!("{api}/invocation/next"))
        .send()
        .await
        .expect("/next");
    let id = next.headers()["lambda-runtime-aws-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let bogus = http
        .post(format!("{api}/invocation/{id}/response"))
        .header("Lambda-Runtime-Function-Response-Mode", "bogus")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(
        status_and_type(bogus).await,
        (400, "InvalidFunctionResponseMode".into())
    );
    let second = within(BOUND, "the second invocation", second)
        .await
        .expect("joined");
    let doc: Value = serde_json::from_slice(
        &second
            .invocation
            .error_document(&second.request_id, config.timeout)
            .expect("an error"),
    )
    .expect("json");
    assert_eq!(doc["errorType"], "Runtime.InvalidResponseModeHeader");

    // An oversized response: 413 to the runtime, Function.ResponseSizeTooLarge to the caller.
    let third = call(b"{}");
    let next = http
        .get(format!("{api}/invocation/next"))
        .send()
        .await
        .expect("/next");
    let id = next.headers()["lambda-runtime-aws-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let big = http
        .post(format!("{api}/invocation/{id}/response"))
        .body(vec![b'x'; 7 * 1024 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(
        status_and_type(big).await,
        (413, "RequestEntityTooLarge".into())
    );
    let third = within(BOUND, "the third invocation", third)
        .await
        .expect("joined");
    let doc: Value = serde_json::from_slice(
        &third
            .invocation
            .error_document(&third.request_id, config.timeout)
            .expect("an error"),
    )
    .expect("json");
    assert_eq!(doc["errorType"], "Function.ResponseSizeTooLarge");
    assert_eq!(
        doc["errorMessage"],
        "Response payload size (7340032 bytes) exceeded maximum allowed payload size (6291556 bytes)."
    );

    // An /error without a body: the document is built from the error-type header.
    let fourth = call(b"{}");
    let next = http
        .get(format!("{api}/invocation/next"))
        .send()
        .await
        .expect("/next");
    let id = next.headers()["lambda-runtime-aws-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let err = http
        .post(format!("{api}/invocation/{id}/error"))
        .header("Lambda-Runtime-Function-Error-Type", "Function.Custom")
        .send()
        .await
        .expect("post");
    assert_eq!(err.status(), 202);
    let fourth = within(BOUND, "the fourth invocation", fourth)
        .await
        .expect("joined");
    let doc: Value = serde_json::from_slice(
        &fourth
            .invocation
            .error_document(&fourth.request_id, config.timeout)
            .expect("an error"),
    )
    .expect("json");
    assert_eq!(doc["errorType"], "Function.Custom");
    invoker.shutdown();
}
