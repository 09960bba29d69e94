//! The REST shim, the operational endpoints, authentication, and the `esmd send` / `esmd queues`
//! client functions, against a real server on port 0.

use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName as Sys;
use esmd::client::{self, ClientError, SendArgs};
use serde_json::Value;

use crate::common::api::{sdk_client, TestApi};

async fn post(api: &TestApi, path_and_query: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = api
        .http
        .post(format!("{}{path_and_query}", api.url))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn get(api: &TestApi, path: &str) -> (u16, Value) {
    let resp = api
        .http
        .get(format!("{}{path}", api.url))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn send_with_attributes_delay_and_fifo_parameters() {
    let api = TestApi::start().await;
    let url = api.create("orders").await;
    let (status, body) = post(&api, "/queues/orders/messages", "hello").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["md5OfBody"], "5d41402abc4b2a76b9719d911017c592");
    assert!(body["messageId"].is_string());
    assert!(body.get("sequenceNumber").is_none());

    let q = "/queues/orders/messages?attr=color%3DString%3Ared&attr=n%3DNumber.int%3A5&attr=raw%3DBinary%3AAAEC";
    let (status, body) = post(&api, q, "with attributes").await;
    assert_eq!(status, 201, "{body}");
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let m = got
        .messages()
        .iter()
        .find(|m| m.body() == Some("with attributes"))
        .expect("the message");
    let attrs = m.message_attributes().unwrap();
    assert_eq!(attrs["color"].string_value(), Some("red"));
    assert_eq!(
        (attrs["n"].data_type(), attrs["n"].string_value()),
        ("Number.int", Some("5"))
    );
    assert_eq!(
        attrs["raw"].binary_value().map(|b| b.as_ref().to_vec()),
        Some(vec![0, 1, 2])
    );

    let (status, _) = post(&api, "/queues/orders/messages?delay=5s", "later").await;
    assert_eq!(status, 201);
    let counts = api
        .store
        .counts(&esmd::domain::queue::QueueName::parse("orders").unwrap())
        .await
        .unwrap();
    assert_eq!(counts.delayed, 1);

    api.create_fifo("events.fifo", false).await;
    let (status, body) = post(
        &api,
        "/queues/events.fifo/messages?group=g1&dedup=d1",
        "first",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["sequenceNumber"]
        .as_str()
        .is_some_and(|s| s.parse::<u128>().is_ok()));
    let got = api
        .sqs
        .receive_message()
        .queue_url(api.queue_url("events.fifo"))
        .message_system_attribute_names(Sys::All)
        .send()
        .await
        .unwrap();
    let sys = got.messages()[0].attributes().unwrap();
    assert_eq!(
        sys.get(&Sys::MessageGroupId).map(String::as_str),
        Some("g1")
    );
    assert_eq!(
        sys.get(&Sys::MessageDeduplicationId).map(String::as_str),
        Some("d1")
    );
}

#[tokio::test]
async fn send_errors_are_json_with_the_right_status() {
    let api = TestApi::start().await;
    api.create("q").await;
    api.create_fifo("f.fifo", false).await;
    let cases: [(&str, Vec<u8>, u16, &str); 9] = [
        (
            "/queues/nope/messages",
            b"x".to_vec(),
            404,
            "QueueDoesNotExist",
        ),
        (
            "/queues/bad%20name/messages",
            b"x".to_vec(),
            404,
            "QueueDoesNotExist",
        ),
        ("/queues/q/messages", Vec::new(), 400, "MissingParameter"),
        (
            "/queues/q/messages?attr=novalue",
            b"x".to_vec(),
            400,
            "InvalidParameterValue",
        ),
        (
            "/queues/q/messages?delay=soon",
            b"x".to_vec(),
            400,
            "InvalidParameterValue",
        ),
        (
            "/queues/q/messages?colour=red",
            b"x".to_vec(),
            400,
            "InvalidParameterValue",
        ),
        (
            "/queues/q/messages",
            b"\xff\xfe".to_vec(),
            400,
            "InvalidMessageContents",
        ),
        (
            "/queues/f.fifo/messages?dedup=d",
            b"x".to_vec(),
            400,
            "MissingParameter",
        ),
        (
            "/queues/q/messages?delay=16min",
            b"x".to_vec(),
            400,
            "InvalidParameterValue",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, json) = post(&api, path, body).await;
        assert_eq!(
            (got, json["error"].as_str()),
            (status, Some(code)),
            "{path}: {json}"
        );
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {json}"
        );
    }
    let (status, json) = post(&api, "/queues/q/messages", vec![b'a'; 1_048_577]).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );
    let resp = api
        .http
        .delete(format!("{}/queues", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let (status, json) = get(&api, "/nothing/here").await;
    assert_eq!((status, json["error"].as_str()), (404, Some("NotFound")));
}

#[tokio::test]
async fn list_and_show_queues() {
    let api = TestApi::start().await;
    api.create("jobs-dlq").await;
    let url = api.create("jobs").await;
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:jobs-dlq","maxReceiveCount":5}"#;
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            policy,
        )
        .send()
        .await
        .unwrap();
    api.create_fifo("seq.fifo", true).await;
    for b in ["1", "2"] {
        post(&api, "/queues/jobs/messages", b).await;
    }
    api.sqs
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap();

    let (status, list) = get(&api, "/queues").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["jobs", "jobs-dlq", "seq.fifo"]);
    let jobs = &list[0];
    assert_eq!(jobs["type"], "standard");
    assert_eq!(
        (
            jobs["visible"].as_u64(),
            jobs["inFlight"].as_u64(),
            jobs["delayed"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert!(jobs["oldestMessageAgeSeconds"]
        .as_f64()
        .is_some_and(|a| a >= 0.0));
    assert_eq!(jobs["deadLetterQueue"], "jobs-dlq");
    assert_eq!(list[1]["oldestMessageAgeSeconds"], Value::Null);
    assert_eq!(list[2]["type"], "fifo");

    let (status, one) = get(&api, "/queues/seq.fifo").await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "seq.fifo");
    assert_eq!(one["attributes"]["FifoQueue"], "true");
    assert_eq!(one["attributes"]["ContentBasedDeduplication"], "true");
    assert_eq!(one["url"], api.queue_url("seq.fifo"));
    let (status, err) = get(&api, "/queues/absent").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (404, Some("QueueDoesNotExist"))
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let api = TestApi::start().await;
    let (status, body) = get(&api, "/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = get(&api, "/readyz").await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("starting")));
    api.readiness.set_ready();
    assert_eq!(get(&api, "/readyz").await.0, 200);
    api.readiness.set_not_ready("shutting down");
    let (status, body) = get(&api, "/readyz").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("shutting down"))
    );

    api.create("metered").await;
    post(&api, "/queues/metered/messages", "m").await;
    let resp = api
        .http
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
    let text = resp.text().await.unwrap();
    let visible = text
        .lines()
        .find(|l| {
            l.starts_with("esmd_queue_messages{")
                && l.contains("queue=\"metered\"")
                && l.contains("state=\"visible\"")
        })
        .unwrap_or_else(|| panic!("no visible gauge in:\n{text}"));
    assert!(visible.ends_with(" 1"), "{visible}");
    assert!(text.contains("esmd_queue_oldest_message_age_seconds{queue=\"metered\"}"));

    // A deleted queue's gauges go away.
    api.sqs
        .delete_queue()
        .queue_url(api.queue_url("metered"))
        .send()
        .await
        .unwrap();
    let text = api
        .http
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("queue=\"metered\",state"), "{text}");
}

#[tokio::test]
async fn client_send_and_queues_against_a_running_daemon() {
    let api = TestApi::start().await;
    api.create("cli").await;
    api.create_fifo("cli.fifo", false).await;
    let endpoint = api.addr.to_string();
    let id = client::send(
        &endpoint,
        SendArgs {
            queue: "cli".into(),
            body: "from the cli".into(),
            delay: Some(Duration::from_secs(2)),
            attrs: vec!["kind=String:test".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(id.len(), 36);
    let fifo = SendArgs {
        queue: "cli.fifo".into(),
        body: "x".into(),
        group: Some("g".into()),
        dedup: Some("d".into()),
        ..Default::default()
    };
    client::send(&api.url, fifo).await.unwrap();

    let table = client::queues(&endpoint).await.unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    let cli = lines
        .iter()
        .find(|l| l.starts_with("cli "))
        .unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = cli.split_whitespace().collect();
    assert_eq!(&cols[..5], ["cli", "standard", "0", "0", "1"], "{table}");

    let err = client::send(
        &endpoint,
        SendArgs {
            queue: "missing".into(),
            body: "x".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { status: 404, code, .. } if code == "QueueDoesNotExist"),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_reports_a_daemon_that_is_not_running() {
    // Bind a port, then free it: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client::queues(&addr.to_string()).await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("is the daemon running"),
        "{text}"
    );
    let err = client::send(
        &addr.to_string(),
        SendArgs {
            queue: "q".into(),
            body: "x".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn auth_token_is_required_as_bearer_or_sigv4_secret() {
    let api = TestApi::start_with(|s| s.auth_token = Some("s3cret".into())).await;
    // /healthz needs nothing.
    assert_eq!(get(&api, "/healthz").await.0, 200);
    // REST without a token: 401 JSON.
    let (status, body) = get(&api, "/queues").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("Unauthorized"))
    );
    // SQS without a token: 403 in the SQS shape, with SQS's code.
    let resp = api.raw("ListQueues", "{}").await;
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers()["x-amzn-query-error"]
        .to_str()
        .unwrap()
        .starts_with("MissingAuthenticationToken;"));
    // The SDK signing with the token as its secret key works; with another secret it does not.
    let signed = sdk_client(&api.url, "s3cret");
    signed
        .create_queue()
        .queue_name("secure")
        .send()
        .await
        .unwrap();
    let url = signed
        .get_queue_url()
        .queue_name("secure")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    signed
        .send_message()
        .queue_url(&url)
        .message_body("signed body")
        .send()
        .await
        .unwrap();
    let wrong = sdk_client(&api.url, "guess");
    let err = wrong.list_queues().send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(
        aws_sdk_sqs::error::ProvideErrorMetadata::code(&err),
        Some("SignatureDoesNotMatch")
    );
    // Bearer works for REST and for the client.
    let resp = api
        .http
        .get(format!("{}/queues", api.url))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let args = SendArgs {
        queue: "secure".into(),
        body: "b".into(),
        auth_token: Some("s3cret".into()),
        ..Default::default()
    };
    client::send(&api.url, args).await.unwrap();
    assert!(client::queues_with_token(&api.url, Some("s3cret"))
        .await
        .unwrap()
        .contains("secure"));
    let err = client::queues(&api.url).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { status: 401, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_bad_character_is_reported_where_it_is_body_or_attribute() {
    use aws_sdk_sqs::error::ProvideErrorMetadata as _;
    use aws_sdk_sqs::types::MessageAttributeValue;
    let api = TestApi::start().await;
    let url = api.create("q").await;
    let attr = MessageAttributeValue::builder()
        .data_type("String")
        .string_value("bad\u{1}value")
        .build()
        .unwrap();
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("a fine body")
        .message_attributes("kind", attr)
        .send()
        .await
        .unwrap_err();
    // AWS's code for a bad character in an attribute value (LocalStack's validated
    // test_invalid_string_attributes_cause_invalid_parameter_value_error); in a body it is
    // InvalidMessageContents.
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    let message = err.message().unwrap_or_default();
    assert!(
        message.contains("'#x1' was found in message (user) attribute 'kind'"),
        "{message}"
    );
    assert!(!message.contains("message body"), "{message}");
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("bad\u{1}body")
        .send()
        .await
        .unwrap_err();
    let message = err.message().unwrap_or_default();
    assert!(
        message.contains("was found in the message body"),
        "{message}"
    );
}
