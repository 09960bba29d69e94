//! Messages through the AWS SDK: send/receive/delete with attributes and selection, parameter
//! validation, batches (whole-request rules and per-entry failures), visibility changes.

use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry as ChangeEntry,
    DeleteMessageBatchRequestEntry as DeleteEntry, MessageAttributeValue,
    MessageSystemAttributeName as Sys, SendMessageBatchRequestEntry as SendEntry,
};

use super::code_and_message;
use crate::common::api::TestApi;

fn string_attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .unwrap()
}

#[tokio::test]
async fn send_receive_delete_with_attribute_selection() {
    let api = TestApi::start().await;
    let url = api.create("q").await;
    let sent = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("Test message.")
        .message_attributes("General", string_attr("Kenobi"))
        .message_attributes("Hello", string_attr("There"))
        .message_attributes("Help.Me", string_attr("Me"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        sent.md5_of_message_body(),
        Some("e4e68fb7bd0e697a0ae8f1bb342846b3")
    );
    assert_eq!(
        sent.md5_of_message_attributes(),
        Some("4c360f3fdafd970e05fae2f149d997f5")
    );
    assert_eq!(sent.md5_of_message_system_attributes(), None);
    assert_eq!(sent.sequence_number(), None);

    // Only General and Hello selected: the digest covers the returned subset.
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("General")
        .message_attribute_names("Hello")
        .message_system_attribute_names(Sys::All)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let m = &got.messages()[0];
    assert_eq!(m.message_id(), sent.message_id());
    assert_eq!(m.body(), Some("Test message."));
    assert_eq!(m.md5_of_body(), Some("e4e68fb7bd0e697a0ae8f1bb342846b3"));
    assert_eq!(
        m.md5_of_message_attributes(),
        Some("fca026605781cb4126a1e9044df24232")
    );
    assert_eq!(m.message_attributes().map(|a| a.len()), Some(2));
    let sys = m.attributes().unwrap();
    assert_eq!(
        sys.get(&Sys::ApproximateReceiveCount).map(String::as_str),
        Some("1")
    );
    for k in [
        Sys::SenderId,
        Sys::SentTimestamp,
        Sys::ApproximateFirstReceiveTimestamp,
    ] {
        assert!(sys.contains_key(&k), "{k:?} missing");
    }
    assert!(!sys.contains_key(&Sys::SequenceNumber));

    // Nothing selected: no attributes, no digest; selected by prefix pattern.
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let m = &got.messages()[0];
    assert!(
        m.attributes().is_none()
            && m.message_attributes().is_none()
            && m.md5_of_message_attributes().is_none()
    );
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("Help.*")
        .send()
        .await
        .unwrap();
    let m = &got.messages()[0];
    assert_eq!(
        m.message_attributes()
            .map(|a| a.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["Help.Me".to_owned()])
    );
    assert_eq!(m.attributes(), None);

    api.sqs
        .delete_message()
        .queue_url(&url)
        .receipt_handle(m.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap();
    assert!(got.messages().is_empty());
    let err = api
        .sqs
        .delete_message()
        .queue_url(&url)
        .receipt_handle("garbage")
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert!(err.is_receipt_handle_is_invalid(), "{err:?}");
    assert_eq!(
        code_and_message(&err),
        (
            "ReceiptHandleIsInvalid".into(),
            "The input receipt handle \"garbage\" is not a valid receipt handle.".into()
        )
    );
}

#[tokio::test]
async fn binary_and_trace_header_round_trip() {
    let api = TestApi::start().await;
    let url = api.create("bin").await;
    let bytes = b"traceparent\x1e00-774062d6c37081a5a0b9b5b88e30627c-2d2482211f6489da-01".to_vec();
    let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let sent = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("b")
        .message_attributes(
            "attr1",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(Blob::new(bytes.clone()))
                .build()
                .unwrap(),
        )
        .message_system_attributes(
            aws_sdk_sqs::types::MessageSystemAttributeNameForSends::AwsTraceHeader,
            aws_sdk_sqs::types::MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(trace)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        sent.md5_of_message_attributes(),
        Some("8cbe4db156db8a94db8b801b7addb984")
    );
    assert_eq!(
        sent.md5_of_message_system_attributes(),
        Some("5ae4d5d7636402d80f4eb6d213245a88")
    );
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .message_system_attribute_names(Sys::AwsTraceHeader)
        .send()
        .await
        .unwrap();
    let m = &got.messages()[0];
    let attr = &m.message_attributes().unwrap()["attr1"];
    assert_eq!(
        attr.binary_value().map(|b| b.as_ref().to_vec()),
        Some(bytes)
    );
    assert_eq!(attr.data_type(), "Binary");
    assert_eq!(
        m.attributes()
            .unwrap()
            .get(&Sys::AwsTraceHeader)
            .map(String::as_str),
        Some(trace)
    );
    assert_eq!(m.attributes().unwrap().len(), 1);
}

#[tokio::test]
async fn receive_and_send_parameter_validation() {
    let api = TestApi::start().await;
    let url = api.create("v").await;
    let recv = || api.sqs.receive_message().queue_url(&url);
    let cases = [
        (recv().max_number_of_messages(11), "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."),
        (recv().max_number_of_messages(0), "Value 0 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."),
        (recv().wait_time_seconds(21), "Value 21 for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."),
        (recv().wait_time_seconds(-1), "Value -1 for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."),
        (recv().visibility_timeout(43_201), "Value 43201 for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided."),
    ];
    for (req, message) in cases {
        let err = req.send().await.unwrap_err();
        assert_eq!(
            code_and_message(&err),
            ("InvalidParameterValue".into(), message.into())
        );
    }
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "MissingParameter".into(),
            "The request must contain the parameter MessageBody.".into()
        )
    );
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_attributes("ErrorDetails", string_attr(""))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidParameterValue".into(),
            "Message (user) attribute 'ErrorDetails' must contain a non-empty value of type 'String'.".into()
        )
    );
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .delay_seconds(901)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err).0, "InvalidParameterValue");
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("\u{1}")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_invalid_message_contents());
    let big = "a".repeat(1_048_577);
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body(big)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidParameterValue".into(),
            "One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes.".into()
        )
    );
}

fn entry(id: &str, body: &str) -> SendEntry {
    SendEntry::builder()
        .id(id)
        .message_body(body)
        .build()
        .unwrap()
}

#[tokio::test]
async fn send_message_batch_rules_and_partial_failure() {
    let api = TestApi::start().await;
    let url = api.create("batch").await;
    let send = |entries: Vec<SendEntry>| {
        api.sqs
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
    };

    let err = send(vec![]).await.unwrap_err().into_service_error();
    assert!(err.is_empty_batch_request(), "{err:?}");
    let err = send((0..11).map(|i| entry(&i.to_string(), "x")).collect())
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_too_many_entries_in_batch_request());
    assert_eq!(
        err.message(),
        Some("Maximum number of entries per request are 10. You have sent 11.")
    );
    let err = send(vec![entry("a", "x"), entry("a", "y")])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_batch_entry_ids_not_distinct());
    let err = send(vec![entry("a:b", "x")])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_batch_entry_id());
    assert_eq!(
        err.message(),
        Some("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
    );
    let half = "a".repeat(524_288);
    let err = send(vec![entry("a", &half), entry("b", &format!("{half}b"))])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_batch_request_too_long());
    assert_eq!(
        err.message(),
        Some("Batch requests cannot be longer than 1048576 bytes. You have sent 1048577 bytes.")
    );

    let bad = SendEntry::builder()
        .id("bad")
        .message_body("x")
        .message_attributes("e", string_attr(""))
        .build()
        .unwrap();
    let out = send(vec![entry("ok1", "one"), bad, entry("ok2", "two")])
        .await
        .unwrap();
    let ok: Vec<&str> = out.successful().iter().map(|s| s.id()).collect();
    assert_eq!(ok, ["ok1", "ok2"]);
    assert_eq!(
        out.successful()[0].md5_of_message_body(),
        "f97c5d29941bfb1b2fdab0874906ab82"
    );
    assert_eq!(out.failed().len(), 1);
    let f = &out.failed()[0];
    assert_eq!(
        (f.id(), f.sender_fault(), f.code()),
        ("bad", true, "InvalidParameterValue")
    );
    let out = send(vec![entry("only", "x")]).await.unwrap();
    assert!(out.failed().is_empty());
}

#[tokio::test]
async fn delete_and_visibility_batches_and_single_changes() {
    let api = TestApi::start().await;
    let url = api.create("vis").await;
    for b in ["a", "b"] {
        api.sqs
            .send_message()
            .queue_url(&url)
            .message_body(b)
            .send()
            .await
            .unwrap();
    }
    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 2);
    let handles: Vec<String> = got
        .messages()
        .iter()
        .map(|m| m.receipt_handle().unwrap().to_owned())
        .collect();

    // Make the first visible again at once; the second stays in flight.
    api.sqs
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&handles[0])
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let err = api
        .sqs
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&handles[0])
        .visibility_timeout(43_201)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err).0, "InvalidParameterValue");
    let out = api
        .sqs
        .change_message_visibility_batch()
        .queue_url(&url)
        .entries(
            ChangeEntry::builder()
                .id("0")
                .receipt_handle(&handles[1])
                .visibility_timeout(60)
                .build()
                .unwrap(),
        )
        .entries(
            ChangeEntry::builder()
                .id("1")
                .receipt_handle("garbage")
                .visibility_timeout(60)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.successful().iter().map(|s| s.id()).collect::<Vec<_>>(),
        ["0"]
    );
    assert_eq!(out.failed()[0].code(), "ReceiptHandleIsInvalid");

    let again = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(again.messages().len(), 1);
    let fresh = again.messages()[0].receipt_handle().unwrap();
    let out = api
        .sqs
        .delete_message_batch()
        .queue_url(&url)
        .entries(
            DeleteEntry::builder()
                .id("fresh")
                .receipt_handle(fresh)
                .build()
                .unwrap(),
        )
        .entries(
            DeleteEntry::builder()
                .id("other")
                .receipt_handle(&handles[1])
                .build()
                .unwrap(),
        )
        .entries(
            DeleteEntry::builder()
                .id("junk")
                .receipt_handle("garbage")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.successful().iter().map(|s| s.id()).collect::<Vec<_>>(),
        ["fresh", "other"]
    );
    assert_eq!(out.failed().len(), 1);
    assert_eq!(
        (out.failed()[0].id(), out.failed()[0].sender_fault()),
        ("junk", true)
    );
    let err = api
        .sqs
        .delete_message_batch()
        .queue_url(&url)
        .set_entries(Some(vec![]))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_empty_batch_request());
}

/// A send request's `X-Amzn-Trace-Id` header becomes the `AWSTraceHeader` of each message that
/// did not send one (SendMessage and SendMessageBatch), is left out of
/// `MD5OfMessageSystemAttributes`, and never replaces a trace the entry sent itself.
#[tokio::test]
async fn the_x_amzn_trace_id_header_becomes_the_trace_of_messages_without_one() {
    const FROM_HEADER: &str =
        "Root=1-3152b799-8954dae64eda91bc9a23a7e8;Parent=7fa8c0f79203be72;Sampled=1";
    const SENT: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let api = TestApi::start().await;
    let url = api.create("traced").await;
    let send = |target: &'static str, body: serde_json::Value| {
        api.http
            .post(&api.url)
            .header("x-amz-target", format!("AmazonSQS.{target}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amzn-trace-id", FROM_HEADER)
            .body(body.to_string())
            .send()
    };
    let one: serde_json::Value = send(
        "SendMessage",
        serde_json::json!({"QueueUrl": url, "MessageBody": "one"}),
    )
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    assert!(one.get("MD5OfMessageSystemAttributes").is_none(), "{one}");
    let trace = serde_json::json!({"AWSTraceHeader": {"DataType": "String", "StringValue": SENT}});
    let batch: serde_json::Value = send(
        "SendMessageBatch",
        serde_json::json!({"QueueUrl": url, "Entries": [
            {"Id": "a", "MessageBody": "two"},
            {"Id": "b", "MessageBody": "three", "MessageSystemAttributes": trace},
        ]}),
    )
    .await
    .expect("send batch")
    .json()
    .await
    .expect("json");
    let ok = batch["Successful"].as_array().expect("successful");
    assert_eq!(ok.len(), 2, "{batch}");
    let md5 = |id: &str| {
        ok.iter()
            .find(|e| e["Id"] == id)
            .map(|e| e.get("MD5OfMessageSystemAttributes").cloned())
            .expect("entry")
    };
    assert_eq!(
        md5("a"),
        None,
        "a trace from the header has no MD5: {batch}"
    );
    assert_eq!(
        md5("b"),
        Some(serde_json::json!("5ae4d5d7636402d80f4eb6d213245a88")),
        "the sent trace keeps AWS's MD5"
    );

    let got = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::AwsTraceHeader,
        )
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    let traces: std::collections::BTreeMap<String, String> = got
        .iter()
        .map(|m| {
            let t = m
                .attributes()
                .and_then(|a| a.get(&Sys::AwsTraceHeader))
                .cloned()
                .unwrap_or_default();
            (m.body().unwrap_or_default().to_owned(), t)
        })
        .collect();
    assert_eq!(traces.len(), 3, "{traces:?}");
    assert_eq!(traces["one"], FROM_HEADER);
    assert_eq!(traces["two"], FROM_HEADER);
    assert_eq!(traces["three"], SENT, "a sent trace wins over the header");
    api.stop().await;
}

/// `MessageAttributeNames` as AWS answers it, with the digests AWS recorded for these attributes
/// (LocalStack's validated `test_receive_message_message_attribute_names_filters`): `*` selects
/// all, and `Hel.*` every name starting with `Hel`, dot or not.
#[tokio::test]
async fn attribute_name_prefixes_and_wildcards_select_as_aws_does() {
    let api = TestApi::start().await;
    let url = api.create("selected").await;
    api.sqs
        .send_message()
        .queue_url(&url)
        .message_body("msg")
        .message_attributes("Help.Me", string_attr("Me"))
        .message_attributes("Hello", string_attr("There"))
        .message_attributes("General", string_attr("Kenobi"))
        .send()
        .await
        .expect("send");
    let cases: [(&[&str], &[&str], Option<&str>); 5] = [
        (
            &["*"],
            &["General", "Hello", "Help.Me"],
            Some("4c360f3fdafd970e05fae2f149d997f5"),
        ),
        (
            &[".*"],
            &["General", "Hello", "Help.Me"],
            Some("4c360f3fdafd970e05fae2f149d997f5"),
        ),
        (
            &["Hel.*"],
            &["Hello", "Help.Me"],
            Some("83fee93c1bcd8b9a5a923ffacdc636c7"),
        ),
        (
            &["Foo", "Hello"],
            &["Hello"],
            Some("a311262e065454b75da111d535b8dacd"),
        ),
        (&["Foo", "Help"], &[], None),
    ];
    for (names, want, md5) in cases {
        let mut req = api
            .sqs
            .receive_message()
            .queue_url(&url)
            .visibility_timeout(0);
        for n in names {
            req = req.message_attribute_names(*n);
        }
        let got = req
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        let m = got
            .first()
            .unwrap_or_else(|| panic!("{names:?}: no message"));
        let mut keys: Vec<&str> = m
            .message_attributes()
            .map(|a| a.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(keys, want, "{names:?}");
        assert_eq!(m.md5_of_message_attributes(), md5, "{names:?}");
    }
    api.stop().await;
}

/// A standard queue takes a `MessageGroupId` (fair queues) and returns it as a system
/// attribute, as AWS recorded (LocalStack's validated test_fair_queue_with_message_group_id);
/// the group orders nothing: a second message of the group is received while the first is in
/// flight.
#[tokio::test]
async fn a_standard_queue_keeps_a_message_group_id_without_ordering_by_it() {
    let api = TestApi::start().await;
    let url = api.create("fair").await;
    for body in ["first", "second"] {
        let sent = api
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id("tenant-1")
            .send()
            .await
            .unwrap();
        assert_eq!(sent.sequence_number(), None);
    }
    let one = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .message_system_attribute_names(Sys::All)
        .send()
        .await
        .unwrap();
    let m = &one.messages()[0];
    assert_eq!(
        m.attributes()
            .and_then(|a| a.get(&Sys::MessageGroupId))
            .map(String::as_str),
        Some("tenant-1")
    );
    let two = api
        .sqs
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(two.messages().len(), 1, "the group does not block: {two:?}");
    assert_ne!(two.messages()[0].body(), m.body());
}

/// Attribute names may hold letters and digits of any script, not other symbols; a bad
/// character in a value is InvalidParameterValue (AWS's recorded codes).
#[tokio::test]
async fn attribute_names_and_values_follow_aws_character_rules() {
    let api = TestApi::start().await;
    let url = api.create("names").await;
    api.sqs
        .send_message()
        .queue_url(&url)
        .message_body("ok")
        .message_attributes("attr.1øßä", string_attr("Valida"))
        .send()
        .await
        .unwrap();
    for name in [
        "Invalid-!-attr",
        "Invalid-§-attr",
        "Invalid-(-attr",
        ".lead",
        "aWs.x",
        "L",
    ]
    .into_iter()
    .map(|n| {
        if n == "L" {
            "L".repeat(257)
        } else {
            n.to_owned()
        }
    }) {
        let err = api
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body("x")
            .message_attributes(&name, string_attr("v"))
            .send()
            .await
            .unwrap_err();
        let (code, message) = code_and_message(&err);
        assert_eq!(code, "InvalidParameterValue", "{name}");
        assert!(message.contains("attribute name"), "{name}: {message}");
    }
    let err = api
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_attributes("attr1", string_attr("Invalid-\u{8},\u{b}"))
        .send()
        .await
        .unwrap_err();
    let (code, message) = code_and_message(&err);
    assert_eq!(code, "InvalidParameterValue");
    assert!(message.contains("'#x8'"), "{message}");
}
