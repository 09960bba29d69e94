//! The SQS event a function receives: every field and MD5 as AWS sends them, and the delete after success.

use super::*;

#[test]
fn the_independent_attribute_md5_matches_the_aws_recorded_vector() {
    let mut a = Attributes::new();
    a.insert(
        "Title".into(),
        attr("String", AttributeData::String("The Whistler".into())),
    );
    a.insert(
        "Author".into(),
        attr("String", AttributeData::String("John Grisham".into())),
    );
    a.insert(
        "WeeksOn".into(),
        attr("Number", AttributeData::String("6".into())),
    );
    assert_eq!(md5_of_attributes(&a), "d25a6aea97eb8f585bfa92d314504a92");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_function_as_an_aws_sqs_event_and_is_deleted_after_success() {
    let server = FunctionServer::start().await;
    let toml = config(
        &server,
        "5s",
        r#"
[server]
region = "eu-west-1"
account_id = "123456789012"

[queues.plain]

[queues."ordered.fifo"]

[mappings.plain]
queue = "plain"
function = "fn"

[mappings.ordered]
queue = "ordered.fifo"
function = "fn"
"#,
    );
    let d = TestDaemon::start(&toml).await;

    // A standard message with one attribute of each type.
    let mut attrs = Attributes::new();
    attrs.insert(
        "Title".into(),
        attr("String", AttributeData::String("The Whistler".into())),
    );
    attrs.insert(
        "Weeks".into(),
        attr("Number", AttributeData::String("6".into())),
    );
    attrs.insert(
        "Blob".into(),
        attr("Binary", AttributeData::Binary(vec![0, 1, 2, 0xfe, 0xff])),
    );
    let body = "Test message.";
    let before = now_ms();
    let sent = d
        .send(
            "plain",
            vec![NewMessage {
                body: body.into(),
                attributes: attrs.clone(),
                ..Default::default()
            }],
        )
        .await;
    let after = now_ms();
    let sent = &sent[0];

    let call = server.next(1, WAIT).await.remove(0);
    let arrived = now_ms();
    assert_eq!(call.records().len(), 1, "one message, one record");
    let r = &call.records()[0];
    assert_eq!(r.message_id.as_deref(), Some(sent.message_id.as_str()));
    assert!(
        r.receipt_handle.as_deref().is_some_and(|h| !h.is_empty()),
        "a receipt handle: {r:?}"
    );
    assert_eq!(r.body.as_deref(), Some(body));
    assert_eq!(
        r.md5_of_body.as_deref(),
        Some(md5_hex(body.as_bytes()).as_str())
    );
    assert_eq!(
        r.md5_of_body.as_deref(),
        Some("e4e68fb7bd0e697a0ae8f1bb342846b3"),
        "AWS's documented example"
    );
    let md5_attrs = md5_of_attributes(&attrs);
    assert_eq!(
        r.md5_of_message_attributes.as_deref(),
        Some(md5_attrs.as_str())
    );
    assert_eq!(
        sent.md5_of_attributes.as_deref(),
        Some(md5_attrs.as_str()),
        "the send and the event agree"
    );
    assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(
        r.event_source_arn.as_deref(),
        Some("arn:aws:sqs:eu-west-1:123456789012:plain")
    );
    assert_eq!(r.aws_region.as_deref(), Some("eu-west-1"));

    let title = &r.message_attributes["Title"];
    assert_eq!(
        (title.data_type.as_deref(), title.string_value.as_deref()),
        (Some("String"), Some("The Whistler"))
    );
    assert!(title.binary_value.is_none());
    let weeks = &r.message_attributes["Weeks"];
    assert_eq!(
        (weeks.data_type.as_deref(), weeks.string_value.as_deref()),
        (Some("Number"), Some("6"))
    );
    let blob = &r.message_attributes["Blob"];
    assert_eq!(blob.data_type.as_deref(), Some("Binary"));
    assert_eq!(
        blob.binary_value.as_ref().map(|b| b.0.clone()),
        Some(vec![0, 1, 2, 0xfe, 0xff])
    );
    assert!(blob.string_value.is_none());
    assert_eq!(r.message_attributes.len(), 3);

    let a = &r.attributes;
    assert_eq!(a["ApproximateReceiveCount"], "1");
    assert_eq!(a["SenderId"], SENDER_ID);
    let sent_ts: i64 = a["SentTimestamp"]
        .parse()
        .expect("SentTimestamp in milliseconds");
    let first_ts: i64 = a["ApproximateFirstReceiveTimestamp"]
        .parse()
        .expect("ApproximateFirstReceiveTimestamp in ms");
    assert!(
        (before..=after).contains(&sent_ts),
        "SentTimestamp {sent_ts} is the send time ({before}..={after})"
    );
    assert!(
        (sent_ts..=arrived).contains(&first_ts),
        "first receive {first_ts} between the send and the arrival"
    );
    let mut keys: Vec<&str> = a.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "ApproximateFirstReceiveTimestamp",
            "ApproximateReceiveCount",
            "SenderId",
            "SentTimestamp"
        ]
    );

    // The exact key set of a record, as AWS sends it: no more, no fewer.
    let raw = &call.json["Records"][0];
    let mut raw_keys: Vec<&str> = raw
        .as_object()
        .expect("a record is an object")
        .keys()
        .map(String::as_str)
        .collect();
    raw_keys.sort_unstable();
    assert_eq!(
        raw_keys,
        [
            "attributes",
            "awsRegion",
            "body",
            "eventSource",
            "eventSourceARN",
            "md5OfBody",
            "md5OfMessageAttributes",
            "messageAttributes",
            "messageId",
            "receiptHandle"
        ]
    );
    assert_eq!(
        raw["messageAttributes"]["Title"]["stringListValues"],
        Value::Array(vec![])
    );
    assert_eq!(
        raw["messageAttributes"]["Blob"]["binaryListValues"],
        Value::Array(vec![])
    );
    d.wait_empty("plain", WAIT).await;

    // A FIFO message: the three FIFO attributes, and a null md5OfMessageAttributes.
    let fifo = d
        .send(
            "ordered.fifo",
            vec![NewMessage {
                group_id: Some("g1".into()),
                dedup_id: Some("d1".into()),
                ..NewMessage::body("fifo body")
            }],
        )
        .await
        .remove(0);
    let call = server.next(1, WAIT).await.remove(0);
    let r = &call.records()[0];
    assert_eq!(r.message_id.as_deref(), Some(fifo.message_id.as_str()));
    assert_eq!(
        r.event_source_arn.as_deref(),
        Some("arn:aws:sqs:eu-west-1:123456789012:ordered.fifo")
    );
    assert_eq!(
        Some(&r.attributes["SequenceNumber"]),
        fifo.sequence_number.as_ref()
    );
    assert_eq!(r.attributes["MessageGroupId"], "g1");
    assert_eq!(r.attributes["MessageDeduplicationId"], "d1");
    assert_eq!(r.attributes["ApproximateReceiveCount"], "1");
    assert!(r.message_attributes.is_empty());
    assert_eq!(
        call.json["Records"][0]["md5OfMessageAttributes"],
        Value::Null
    );
    d.wait_empty("ordered.fifo", WAIT).await;

    assert_eq!(server.calls().len(), 2, "each message was delivered once");
    assert!(d.stop().await, "nothing was in flight at shutdown");
}

// ---------------------------------------------------------------------------------------------
// 2. Batching
// ---------------------------------------------------------------------------------------------
