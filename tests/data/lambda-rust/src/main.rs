//! A `lambda_runtime` function for esmd's tests: it switches on `event["mode"]` like the Python
//! fixture (tests/data/runtime-python/app.py). With `FIXTURE_DIRECT_ADDR` set it serves the same
//! handler as a plain HTTP server on that address instead (POST the event, get the response):
//! the baseline that the Runtime API benchmark compares with.

use std::sync::atomic::{AtomicU64, Ordering};

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

static COUNT: AtomicU64 = AtomicU64::new(0);

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    handle(payload, context).await
}

async fn handle(payload: Value, context: lambda_runtime::Context) -> Result<Value, Error> {
    let count = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let mode = payload["mode"].as_str().unwrap_or("ok").to_owned();
    println!("mode={mode} count={count} rid={}", context.request_id);
    match mode.as_str() {
        "err" => Err("boom from rust".into()),
        "panic" => panic!("boom from a rust panic"),
        "exit" => std::process::exit(3),
        "sleep" => {
            let s = payload["s"].as_f64().unwrap_or(5.0);
            let hold = std::time::Duration::from_secs_f64(s);
            tokio::time::sleep(hold).await; // sleep-ok: the "sleep" mode holds the invocation

            Ok(json!({"slept": s}))
        }
        "big" => Ok(json!({"data": "x".repeat(7 * 1024 * 1024)})),
        // An SQS batch: fail the records whose body is "fail".
        "batch" | _ if payload.get("Records").is_some() => {
            let failures: Vec<Value> = payload["Records"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["body"] == "fail")
                .map(|r| json!({"itemIdentifier": r["messageId"]}))
                .collect();
            Ok(json!({"batchItemFailures": failures}))
        }
        _ => Ok(json!({
            "ok": true,
            "count": count,
            "pid": std::process::id(),
            "function_name": context.env_config.function_name,
            "echo": payload,
        })),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if let Ok(addr) = std::env::var("FIXTURE_DIRECT_ADDR") {
        return direct(&addr).await;
    }
    lambda_runtime::run(service_fn(handler)).await
}

/// Serves `handle` over plain HTTP/1.1 (keep-alive, TCP_NODELAY) on `addr`.
async fn direct(addr: &str) -> Result<(), Error> {
    use http_body_util::{BodyExt as _, Full};
    use hyper::service::service_fn as hyper_fn;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = hyper_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let body = match req.into_body().collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(_) => bytes::Bytes::new(),
                };
                let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let (status, out) = match handle(payload, lambda_runtime::Context::default()).await {
                    Ok(v) => (200, v),
                    Err(e) => (500, json!({"errorMessage": e.to_string()})),
                };
                let mut resp = hyper::Response::new(Full::new(bytes::Bytes::from(out.to_string())));
                *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                resp.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                Ok::<_, std::convert::Infallible>(resp)
            });
            let io = hyper_util::rt::TokioIo::new(tcp);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
