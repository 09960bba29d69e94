//! Wire details with raw HTTP: response headers, members omitted when empty, the error shape
//! (`__type`, `message`, `x-amzn-query-error`), status codes, and hostile framing (oversized
//! bodies refused before they are read, wrong content types, missing or unknown targets, bad
//! UTF-8, malformed JSON, members of the wrong type).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::api::TestApi;
use crate::common::within;

fn assert_error(
    status: u16,
    body: &Value,
    headers: &reqwest::header::HeaderMap,
    want: (u16, &str, &str),
) {
    assert_eq!(status, want.0, "{body}");
    assert_eq!(body["__type"], want.1, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let query = headers
        .get("x-amzn-query-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(query, want.2, "{body}");
    assert!(headers.contains_key("x-amzn-requestid"));
    assert_eq!(headers["content-type"], "application/x-amz-json-1.0");
}

#[tokio::test]
async fn success_envelope_and_omitted_members() {
    let api = TestApi::start().await;
    let (status, body, headers) = api.call("ListQueues", json!({})).await;
    assert_eq!(
        (status, &body),
        (200, &json!({})),
        "no QueueUrls key without queues"
    );
    assert_eq!(headers["content-type"], "application/x-amz-json-1.0");
    let id = headers["x-amzn-requestid"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a uuid: {id}");

    let (_, created, _) = api.call("CreateQueue", json!({"QueueName": "w"})).await;
    let url = created["QueueUrl"].as_str().unwrap().to_owned();
    assert_eq!(url, api.queue_url("w"));
    let (status, body, _) = api.call("ReceiveMessage", json!({"QueueUrl": url})).await;
    assert_eq!(
        (status, body),
        (200, json!({})),
        "no Messages key on an empty receive"
    );

    let (_, sent, _) = api
        .call(
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "test"}),
        )
        .await;
    let keys: Vec<&str> = sent
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["MD5OfMessageBody", "MessageId"]);
    assert_eq!(sent["MD5OfMessageBody"], "098f6bcd4621d373cade4e832627b4f6");

    let entries = json!([{"Id": "a", "MessageBody": "msg"}]);
    let (_, batch, _) = api
        .call(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": entries}),
        )
        .await;
    assert!(
        batch.get("Failed").is_none(),
        "no Failed when nothing failed: {batch}"
    );
    assert_eq!(
        batch["Successful"][0]["MD5OfMessageBody"],
        "6e2baaf3b97dbeef01c0043275f9a0e7"
    );

    let (_, got, _) = api
        .call(
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
        )
        .await;
    let m = &got["Messages"][0];
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["Body", "MD5OfBody", "MessageId", "ReceiptHandle"],
        "nothing unrequested: {m}"
    );

    let (status, body, _) = api
        .call(
            "DeleteMessage",
            json!({"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    let (status, body, _) = api
        .call("GetQueueAttributes", json!({"QueueUrl": url}))
        .await;
    assert_eq!((status, body), (200, json!({})));
    let (_, dlq, _) = api
        .call("ListDeadLetterSourceQueues", json!({"QueueUrl": url}))
        .await;
    assert_eq!(
        dlq,
        json!({"queueUrls": []}),
        "lower-case queueUrls, always present"
    );
}

#[tokio::test]
async fn error_shapes_and_statuses() {
    let api = TestApi::start().await;
    let (s, b, h) = api.call("GetQueueUrl", json!({"QueueName": "nope"})).await;
    assert_error(
        s,
        &b,
        &h,
        (
            400,
            "com.amazonaws.sqs#QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue;Sender",
        ),
    );
    assert_eq!(b["message"], "The specified queue does not exist.");

    let (s, b, h) = api.call("CreateQueue", json!({})).await;
    assert_error(
        s,
        &b,
        &h,
        (
            400,
            "com.amazonaws.sqs#MissingRequiredParameterException",
            "MissingParameter;Sender",
        ),
    );
    assert_eq!(
        b["message"],
        "The request must contain the parameter QueueName."
    );

    api.call("CreateQueue", json!({"QueueName": "p"})).await;
    let url = api.queue_url("p");
    let (s, ..) = api.call("PurgeQueue", json!({"QueueUrl": url})).await;
    assert_eq!(s, 200);
    let (s, b, h) = api.call("PurgeQueue", json!({"QueueUrl": url})).await;
    assert_error(
        s,
        &b,
        &h,
        (
            403,
            "com.amazonaws.sqs#PurgeQueueInProgress",
            "AWS.SimpleQueueService.PurgeQueueInProgress;Sender",
        ),
    );

    let (s, b, h) = api
        .call(
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 11}),
        )
        .await;
    assert_error(
        s,
        &b,
        &h,
        (
            400,
            "com.amazonaws.sqs#InvalidParameterValueException",
            "InvalidParameterValue;Sender",
        ),
    );

    let (s, b, h) = api
        .call("SendMessageBatch", json!({"QueueUrl": url, "Entries": []}))
        .await;
    assert_error(
        s,
        &b,
        &h,
        (
            400,
            "com.amazonaws.sqs#EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest;Sender",
        ),
    );
    assert_eq!(
        b["message"],
        "There should be at least one SendMessageBatchRequestEntry in the request."
    );

    let (s, b, h) = api.call("Frobnicate", json!({})).await;
    assert_error(
        s,
        &b,
        &h,
        (
            400,
            "com.amazonaws.sqs#UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation;Sender",
        ),
    );
    let (s, b, h) = api.call("AddPermission", json!({})).await;
    assert_error(
        s,
        &b,
        &h,
        (
            400,
            "com.amazonaws.sqs#MissingRequiredParameterException",
            "MissingParameter;Sender",
        ),
    );

    let entries = json!([{"Id": "a", "ReceiptHandle": "garbage"}]);
    let (s, b, _) = api
        .call(
            "DeleteMessageBatch",
            json!({"QueueUrl": url, "Entries": entries}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["Successful"], json!([]));
    assert_eq!(b["Failed"][0]["Code"], "ReceiptHandleIsInvalid");
    assert_eq!(b["Failed"][0]["SenderFault"], true);
}

/// Sends `headers` then `body` over a fresh connection while reading the answer (the server
/// may answer and close before the body is sent: that is the point), and returns the status
/// line and the body of the answer.
async fn exchange(api: &TestApi, headers: &str, body: &[u8]) -> (String, String) {
    let conn = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let mut payload = headers.as_bytes().to_vec();
    payload.extend_from_slice(body);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&payload).await;
        wr
    });
    let mut answer = Vec::new();
    // A reset after the answer is fine: what was read stays in `answer`.
    let _ = within(
        Duration::from_secs(10),
        "the answer",
        rd.read_to_end(&mut answer),
    )
    .await;
    writer.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let api = TestApi::start().await;
    // A declared length far beyond the limit: refused at once, without sending the body.
    let head = "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: AmazonSQS.SendMessage\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n";
    let (status, body) = exchange(&api, head, b"").await;
    assert!(status.contains(" 413 "), "{status}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["__type"],
        "com.amazon.coral.service#RequestEntityTooLargeException"
    );

    // Chunked, no length: read only up to the limit.
    let head = "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: AmazonSQS.SendMessage\r\nContent-Type: application/x-amz-json-1.0\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "a".repeat(1 << 20));
    let body = chunk.repeat(8);
    let (status, _) = exchange(&api, head, body.as_bytes()).await;
    assert!(status.contains(" 413 "), "{status}");

    // The largest legal request is accepted: 1 MiB of DEL characters escaped as \u007f by botocore.
    api.call("CreateQueue", json!({"QueueName": "big"})).await;
    let escaped = "\\u007f".repeat(1_048_576);
    let raw = format!(
        "{{\"QueueUrl\":\"{}\",\"MessageBody\":\"{escaped}\"}}",
        api.queue_url("big")
    );
    let resp = api.raw("SendMessage", raw).await;
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
}

#[tokio::test]
async fn bad_framing_gets_clear_400s() {
    let api = TestApi::start().await;
    let post = |target: Option<&str>, content_type: Option<&str>, body: Vec<u8>| {
        let mut req = api.http.post(&api.url).body(body);
        if let Some(t) = target {
            req = req.header("x-amz-target", t);
        }
        if let Some(c) = content_type {
            req = req.header("content-type", c);
        }
        req.send()
    };
    let json_ct = Some("application/x-amz-json-1.0");
    // (target, content type, body, expected code, what the message mentions)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Vec<u8>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            Some("AmazonSQS.ListQueues"),
            Some("text/plain"),
            b"{}".to_vec(),
            "SerializationException",
            "Content-Type",
        ),
        (
            Some("AmazonSQS.ListQueues"),
            None,
            b"{}".to_vec(),
            "SerializationException",
            "Content-Type",
        ),
        (
            None,
            json_ct,
            b"{}".to_vec(),
            "UnsupportedOperation",
            "X-Amz-Target",
        ),
        (
            Some("DynamoDB_20120810.PutItem"),
            json_ct,
            b"{}".to_vec(),
            "UnsupportedOperation",
            "not an SQS action",
        ),
        (
            Some("AmazonSQS.ListQueues"),
            json_ct,
            b"{\"a\": \"\xff\"}".to_vec(),
            "SerializationException",
            "UTF-8",
        ),
        (
            Some("AmazonSQS.ListQueues"),
            json_ct,
            b"{\"a\": ".to_vec(),
            "SerializationException",
            "not valid JSON",
        ),
        (
            Some("AmazonSQS.ListQueues"),
            json_ct,
            b"[1, 2]".to_vec(),
            "SerializationException",
            "JSON object",
        ),
        (
            Some("AmazonSQS.ReceiveMessage"),
            json_ct,
            br#"{"QueueUrl": "x", "MaxNumberOfMessages": "10"}"#.to_vec(),
            "InvalidParameterValue",
            "MaxNumberOfMessages",
        ),
        (
            Some("AmazonSQS.SendMessageBatch"),
            json_ct,
            br#"{"QueueUrl": "x", "Entries": [{"Id": "a", "DelaySeconds": 1.5}]}"#.to_vec(),
            "InvalidParameterValue",
            "Entries[0].DelaySeconds",
        ),
        (
            Some("AmazonSQS.GetQueueUrl"),
            json_ct,
            br#"{"QueueName": 7}"#.to_vec(),
            "InvalidParameterValue",
            "QueueName",
        ),
    ];
    for (target, ct, body, code, mention) in cases {
        let resp = post(target, ct, body).await.unwrap();
        let status = resp.status().as_u16();
        let query = resp
            .headers()
            .get("x-amzn-query-error")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{target:?} {ct:?}: {body}");
        assert!(query.contains(code), "{query} should name {code}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(mention),
            "{message:?} should mention {mention:?}"
        );
    }
    // A method neither protocol takes is refused in the same shape.
    let resp = api.http.put(&api.url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let body: Value = resp.json().await.unwrap();
    assert!(body["__type"].is_string());
}
