//! The query protocol's refusals and framing with raw HTTP (docs/interface.md §3.6): errors in
//! AWS's `<ErrorResponse>` shape with the query protocol's codes (as LocalStack's AWS-validated
//! `TestSqsQueryApi` records them), the framing AWS answers for queue URL paths (no `Action`,
//! CreateQueue and ListQueues there, a `QueueUrl` that overrides the path), SigV4-signed query
//! requests (signed by the `aws-sigv4` crate, independent of esmd's verifier) and their refusals in
//! XML, and JSON requests sent to a queue's URL path or naming a queue by its bare name.

use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};

use super::query::{get, post, text, Answer, NAMESPACE};
use crate::common::api::{sdk_client, TestApi};

/// Checks AWS's error envelope and returns the code and the message.
fn error(a: &Answer, status: u16) -> (String, String) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.content_type, "text/xml");
    let doc = a.doc();
    let root = doc.root_element();
    assert!(
        root.has_tag_name((NAMESPACE, "ErrorResponse")),
        "{}",
        a.body
    );
    assert_eq!(text(&doc, "Type"), "Sender");
    assert_eq!(text(&doc, "RequestId"), a.request_id);
    assert!(a.body.contains("<Detail/></Error>"), "{}", a.body);
    (text(&doc, "Code"), text(&doc, "Message"))
}

#[tokio::test]
async fn refusals_have_aws_xml_shape_and_the_query_protocols_codes() {
    let api = TestApi::start().await;
    api.create("q").await;
    let q = "/000000000000/q";
    let many: Vec<(String, String)> = (1..=11)
        .flat_map(|i| {
            [
                (
                    format!("DeleteMessageBatchRequestEntry.{i}.Id"),
                    format!("e{i}"),
                ),
                (
                    format!("DeleteMessageBatchRequestEntry.{i}.ReceiptHandle"),
                    "h".into(),
                ),
            ]
        })
        .collect();
    let mut too_many = vec![("Action", "DeleteMessageBatch")];
    too_many.extend(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // (path, parameters, status, code, message)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/000000000000/gone",
            vec![("Action", "GetQueueAttributes"), ("AttributeName.1", "QueueArn")],
            400,
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist for this wsdl version.",
        ),
        (
            q,
            vec![("Action", "SendMessage")],
            400,
            "MissingParameter",
            "The request must contain the parameter MessageBody.",
        ),
        (
            q,
            vec![("Action", "FooBar"), ("Version", "2012-11-05")],
            400,
            "InvalidAction",
            "The action FooBar is not valid for this endpoint.",
        ),
        (
            q,
            vec![("Action", "CreateQueue"), ("QueueName", "other")],
            400,
            "InvalidAction",
            "The action CreateQueue is not valid for this endpoint.",
        ),
        (
            q,
            vec![("Action", "ListQueues")],
            400,
            "InvalidAction",
            "The action ListQueues is not valid for this endpoint.",
        ),
        (
            q,
            vec![("Action", "GetQueueAttributes"), ("AttributeName.1", "Foobar")],
            400,
            "InvalidAttributeName",
            "Unknown Attribute Foobar.",
        ),
        (
            q,
            vec![("Action", "ReceiveMessage"), ("MaxNumberOfMessages", "11")],
            400,
            "InvalidParameterValue",
            "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.",
        ),
        (
            q,
            vec![("Action", "ReceiveMessage"), ("WaitTimeSeconds", "soon")],
            400,
            "InvalidParameterValue",
            "Value soon for parameter WaitTimeSeconds is invalid. Reason: It must be an integer.",
        ),
        (
            q,
            vec![("Action", "SetQueueAttributes"), ("Attribute.1.Value", "5")],
            400,
            "MissingParameter",
            "The request must contain the parameter Attribute.1.Name.",
        ),
        (
            q,
            vec![("Action", "DeleteMessageBatch"), ("DeleteMessageBatchRequestEntry", "")],
            400,
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one DeleteMessageBatchRequestEntry in the request.",
        ),
        (
            q,
            too_many,
            400,
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "Maximum number of entries per request are 10. You have sent 11.",
        ),
        (
            "/",
            vec![("Action", "DeleteQueue"), ("QueueUrl", "http://elsewhere/123456789012/q")],
            400,
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist for this wsdl version.",
        ),
    ];
    for (path, params, status, code, message) in cases {
        for answer in [
            post(&api, path, &params).await,
            get(&api, path, &params).await,
        ] {
            let got = error(&answer, status);
            assert_eq!(got, (code.to_owned(), message.to_owned()), "{params:?}");
        }
    }
    // No Action at all: AWS's bare 404, on a queue's URL path and on /.
    for path in [q, "/"] {
        let a = get(&api, path, &[]).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (404, "<UnknownOperationException/>")
        );
    }
}

#[tokio::test]
async fn a_queue_url_path_names_the_queue_unless_the_request_names_another() {
    let api = TestApi::start().await;
    api.create("one").await;
    api.create("two").await;
    let two = api.queue_url("two");
    let params = [
        ("Action", "GetQueueAttributes"),
        ("QueueUrl", two.as_str()),
        ("AttributeName.1", "QueueArn"),
    ];
    let a = get(&api, "/000000000000/one", &params).await;
    assert_eq!(
        text(&a.ok("GetQueueAttributes", true), "Value"),
        "arn:aws:sqs:us-east-1:000000000000:two"
    );
    // GetQueueUrl works on any queue's path, for any queue.
    let a = get(
        &api,
        "/000000000000/one",
        &[("Action", "GetQueueUrl"), ("QueueName", "two")],
    )
    .await;
    assert_eq!(text(&a.ok("GetQueueUrl", true), "QueueUrl"), two);
    // A path of two segments that is not a queue's URL is not SQS's.
    let resp = api
        .http
        .get(format!("{}/queue/x?Action=ListQueues", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/json");
}

/// Signs a request with the `aws-sigv4` crate, as an AWS SDK would, and sends it.
async fn signed(method: &str, url: &str, body: &str, secret: &str) -> Answer {
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let headers = [("host", host.as_str()), ("content-type", content_type)];
    let identity =
        aws_sdk_sqs::config::Credentials::new("AKIDQUERY", secret, None, None, "t").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("sqs")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .expect("a signable request");
    let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .header("content-type", content_type)
        .body(body.to_owned());
    for (name, value) in instructions.headers() {
        req = req.header(name, value);
    }
    Answer::of(req.send().await.expect("the server answers")).await
}

#[tokio::test]
async fn signed_query_requests_pass_and_refusals_are_xml_with_sqs_codes() {
    const TOKEN: &str = "query-token";
    let api = TestApi::start_with(|s| s.auth_token = Some(TOKEN.into())).await;
    let root = format!("{}/", api.url);
    let a = signed("POST", &root, "Action=CreateQueue&QueueName=signed", TOKEN).await;
    assert_eq!(
        text(&a.ok("CreateQueue", true), "QueueUrl"),
        api.queue_url("signed")
    );
    let on_queue = format!(
        "{}?Action=SendMessage&MessageBody=hello%20there&DelaySeconds=0",
        api.queue_url("signed")
    );
    let a = signed("GET", &on_queue, "", TOKEN).await;
    a.ok("SendMessage", true);
    let a = signed(
        "POST",
        &api.queue_url("signed"),
        "Action=ReceiveMessage",
        TOKEN,
    )
    .await;
    assert_eq!(text(&a.ok("ReceiveMessage", true), "Body"), "hello there");

    let a = signed("POST", &root, "Action=ListQueues", "not-the-token").await;
    let (code, message) = error(&a, 403);
    assert_eq!(code, "SignatureDoesNotMatch", "{message}");
    let a = post(
        &api,
        "/000000000000/signed",
        &[("Action", "ReceiveMessage")],
    )
    .await;
    assert_eq!(error(&a, 403).0, "MissingAuthenticationToken");
    let a = get(&api, "/", &[("Action", "ListQueues")]).await;
    assert_eq!(error(&a, 403).0, "MissingAuthenticationToken");
}

#[tokio::test]
async fn json_requests_work_on_a_queue_url_path_and_a_bare_queue_name_is_a_queue_url() {
    let api = TestApi::start().await;
    let url = api.create("orders").await;
    // The PHP SDK sends JSON requests to the queue's URL: an SDK whose endpoint is that URL.
    let on_queue = sdk_client(&url, "x");
    on_queue
        .send_message()
        .queue_url(&url)
        .message_body("via the queue's path")
        .send()
        .await
        .expect("send to the queue's path");
    let got = on_queue
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .expect("receive from the queue's path");
    assert_eq!(got.messages()[0].body(), Some("via the queue's path"));
    // A JSON request there without QueueUrl is for the path's queue.
    let resp = api
        .http
        .post(&url)
        .header("x-amz-target", "AmazonSQS.GetQueueAttributes")
        .header("content-type", "application/x-amz-json-1.0")
        .body(r#"{"AttributeNames": ["QueueArn"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.0");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["Attributes"]["QueueArn"],
        "arn:aws:sqs:us-east-1:000000000000:orders"
    );

    // AWS accepts a queue's name where its URL is asked for.
    api.sqs
        .send_message()
        .queue_url("orders")
        .message_body("by name")
        .send()
        .await
        .expect("a bare queue name as QueueUrl");
    let attrs = api
        .sqs
        .get_queue_attributes()
        .queue_url("orders")
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("a bare queue name as QueueUrl");
    let n = attrs.attributes().unwrap()
        [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
        .clone();
    assert_eq!(n, "1");
    let e = api
        .sqs
        .get_queue_attributes()
        .queue_url("nope")
        .send()
        .await
        .expect_err("an unknown name names no queue");
    assert_eq!(
        super::code_and_message(e.as_service_error().unwrap()).0,
        "AWS.SimpleQueueService.NonExistentQueue"
    );
}

#[tokio::test]
async fn a_query_client_asking_for_json_gets_awss_envelope_as_json() {
    let api = TestApi::start().await;
    let url = api.create("listed").await;
    let ask = |query: &'static str| {
        api.http
            .get(format!("{}/{query}", api.url))
            .header("accept", "application/json")
            .send()
    };
    let resp = ask("?Action=ListQueues&Version=2012-11-05").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = resp.json().await.unwrap();
    let response = &body["ListQueuesResponse"];
    assert_eq!(
        response["ListQueuesResult"]["QueueUrls"],
        serde_json::json!([url])
    );
    assert_eq!(response["ResponseMetadata"]["RequestId"], id.as_str());
    // ReceiveMessage's list is `messages` there, as AWS answers (LocalStack's validated
    // test_marker_serialization_json_protocol): a body with a CR and quotes comes back whole.
    let body_sent = "{\"foo\": \"ba\rr\", \"foo2\": \"ba&quot;r&quot;\"}";
    api.sqs
        .send_message()
        .queue_url(&url)
        .message_body(body_sent)
        .send()
        .await
        .unwrap();
    let resp = ask("000000000000/listed?Action=ReceiveMessage&VisibilityTimeout=0")
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["ReceiveMessageResponse"]["ReceiveMessageResult"]["messages"][0]["Body"],
        body_sent
    );
    let resp = ask("000000000000/listed?Action=ListQueues").await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["Error"]["Code"], "InvalidAction");
    assert_eq!(body["Error"]["Type"], "Sender");
    // No Action is AWS's bare XML 404 whatever the client asks for.
    let resp = ask("000000000000/listed").await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "<UnknownOperationException/>");
}
