//! A `lambda_runtime` function for esmd's tests: it switches on `event["mode"]` like the Python
//! fixture (tests/data/runtime-python/app.py).

use std::sync::atomic::{AtomicU64, Ordering};

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

static COUNT: AtomicU64 = AtomicU64::new(0);

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let count = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let (payload, context) = event.into_parts();
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
    lambda_runtime::run(service_fn(handler)).await
}
