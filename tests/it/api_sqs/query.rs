//! The SQS query protocol with raw HTTP (docs/interface.md §3.6): every action sent as AWS's form
//! parameters, to `/` as POST form bodies and to a queue's URL path as GET query strings, answered
//! in AWS's XML envelope (read back with roxmltree, an XML parser independent of the writer), with
//! every MD5 recomputed on the client side. Errors, authentication and queue URL paths are in
//! `query_errors`.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::md5::{hex_md5, java_attributes_md5};
use crate::common::api::TestApi;

/// The namespace of every SQS query-protocol answer.
pub(crate) const NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// An answer: status, `x-amzn-RequestId`, content type and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) request_id: String,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) async fn of(resp: reqwest::Response) -> Answer {
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().expect("ascii header").to_owned())
                .unwrap_or_default()
        };
        let (request_id, content_type) = (header("x-amzn-requestid"), header("content-type"));
        Answer {
            status: resp.status().as_u16(),
            request_id,
            content_type,
            body: resp.text().await.expect("a body"),
        }
    }

    /// The parsed body.
    pub(crate) fn doc(&self) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(&self.body)
            .unwrap_or_else(|e| panic!("not XML ({e}): {}", self.body))
    }

    /// Checks AWS's success envelope for `action` (`<actionResult>` present or not) and returns
    /// the document.
    pub(crate) fn ok(&self, action: &str, has_result: bool) -> roxmltree::Document<'_> {
        assert_eq!(self.status, 200, "{action}: {}", self.body);
        assert_eq!(self.content_type, "text/xml");
        assert!(
            self.body.starts_with(&format!(
                "<?xml version=\"1.0\"?><{action}Response xmlns=\"{NAMESPACE}\">"
            )),
            "{}",
            self.body
        );
        let doc = self.doc();
        let root = doc.root_element();
        assert_eq!(root.tag_name().namespace(), Some(NAMESPACE));
        let children: Vec<String> = root
            .children()
            .filter(roxmltree::Node::is_element)
            .map(|n| n.tag_name().name().to_owned())
            .collect();
        let mut expected = vec!["ResponseMetadata".to_owned()];
        if has_result {
            expected.insert(0, format!("{action}Result"));
        }
        assert_eq!(children, expected, "{}", self.body);
        assert_eq!(text(&doc, "RequestId"), self.request_id);
        assert_eq!(self.request_id.len(), 36, "a uuid");
        doc
    }
}

/// A form POST of `params` to `path` (`/` or a queue's URL path).
pub(crate) async fn post(api: &TestApi, path: &str, params: &[(&str, &str)]) -> Answer {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let resp = api
        .http
        .post(format!("{}{path}", api.url))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body)
        .send()
        .await
        .expect("the server answers");
    Answer::of(resp).await
}

/// A GET of `path` with `params` as its query string.
pub(crate) async fn get(api: &TestApi, path: &str, params: &[(&str, &str)]) -> Answer {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let resp = api
        .http
        .get(format!("{}{path}?{query}", api.url))
        .send()
        .await
        .expect("the server answers");
    Answer::of(resp).await
}

/// The texts of every element called `name`, in document order.
pub(crate) fn texts(doc: &roxmltree::Document<'_>, name: &str) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name((NAMESPACE, name)) || n.has_tag_name(name))
        .map(|n| n.text().unwrap_or("").to_owned())
        .collect()
}

/// The text of the one element called `name`.
pub(crate) fn text(doc: &roxmltree::Document<'_>, name: &str) -> String {
    let all = texts(doc, name);
    assert_eq!(all.len(), 1, "one <{name}> in {doc:?}");
    all[0].clone()
}

/// The text of `node`'s child element `name`, if it has one.
fn child(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.tag_name().name() == name)
        .map(|c| c.text().unwrap_or("").to_owned())
}

/// The elements called `name`.
fn elements<'a, 'i>(doc: &'a roxmltree::Document<'i>, name: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.tag_name().name() == name)
        .collect()
}

/// The `<wrapper><key>…</key><value>…</value></wrapper>` pairs under `node`.
fn pairs(node: roxmltree::Node<'_, '_>, wrapper: &str, key: &str) -> BTreeMap<String, String> {
    node.children()
        .filter(|c| c.tag_name().name() == wrapper)
        .map(|c| {
            (
                child(c, key).expect("a key"),
                child(c, "Value").expect("a value"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_action_answers_in_aws_xml_through_the_query_protocol() {
    let api = TestApi::start().await;
    let q = "/000000000000/q";
    let a = post(
        &api,
        "/",
        &[
            ("Action", "CreateQueue"),
            ("Version", "2012-11-05"),
            ("QueueName", "q"),
            ("Attribute.1.Name", "VisibilityTimeout"),
            ("Attribute.1.Value", "45"),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "core"),
        ],
    )
    .await;
    assert_eq!(
        text(&a.ok("CreateQueue", true), "QueueUrl"),
        api.queue_url("q")
    );
    let a = post(
        &api,
        "/",
        &[("Action", "CreateQueue"), ("QueueName", "q-dlq")],
    )
    .await;
    a.ok("CreateQueue", true);
    let redrive = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:q-dlq","maxReceiveCount":"5"}"#;
    let set = [
        ("Action", "SetQueueAttributes"),
        ("Attribute.1.Name", "RedrivePolicy"),
        ("Attribute.1.Value", redrive),
    ];
    post(&api, q, &set).await.ok("SetQueueAttributes", false);

    let a = get(
        &api,
        "/",
        &[("Action", "GetQueueUrl"), ("QueueName", "q-dlq")],
    )
    .await;
    assert_eq!(
        text(&a.ok("GetQueueUrl", true), "QueueUrl"),
        api.queue_url("q-dlq")
    );
    let list = [
        ("Action", "ListQueues"),
        ("QueueNamePrefix", "q"),
        ("MaxResults", "1"),
    ];
    let a = get(&api, "/", &list).await;
    let doc = a.ok("ListQueues", true);
    assert_eq!(texts(&doc, "QueueUrl"), [api.queue_url("q")]);
    let token = text(&doc, "NextToken");
    let a = get(&api, "/", &[list[0], list[1], ("NextToken", &token)]).await;
    assert_eq!(
        texts(&a.ok("ListQueues", true), "QueueUrl"),
        [api.queue_url("q-dlq")]
    );

    let wanted = [
        ("Action", "GetQueueAttributes"),
        ("AttributeName.1", "VisibilityTimeout"),
        ("AttributeName.2", "QueueArn"),
        ("AttributeName.3", "RedrivePolicy"),
    ];
    let a = get(&api, q, &wanted).await;
    let doc = a.ok("GetQueueAttributes", true);
    let attrs = pairs(
        elements(&doc, "GetQueueAttributesResult")[0],
        "Attribute",
        "Name",
    );
    assert_eq!(attrs["VisibilityTimeout"], "45");
    assert_eq!(attrs["QueueArn"], "arn:aws:sqs:us-east-1:000000000000:q");
    assert!(attrs["RedrivePolicy"].contains("q-dlq"), "{attrs:?}");
    assert_eq!(attrs.len(), 3);
    let a = get(
        &api,
        "/000000000000/q-dlq",
        &[("Action", "ListDeadLetterSourceQueues")],
    )
    .await;
    let doc = a.ok("ListDeadLetterSourceQueues", true);
    assert_eq!(texts(&doc, "QueueUrl"), [api.queue_url("q")]);

    let tag = [
        ("Action", "TagQueue"),
        ("Tag.1.Key", "env"),
        ("Tag.1.Value", "dev"),
    ];
    post(&api, q, &tag).await.ok("TagQueue", false);
    post(&api, q, &[("Action", "UntagQueue"), ("TagKey.1", "team")])
        .await
        .ok("UntagQueue", false);
    let a = get(&api, q, &[("Action", "ListQueueTags")]).await;
    let doc = a.ok("ListQueueTags", true);
    let tags = pairs(elements(&doc, "ListQueueTagsResult")[0], "Tag", "Key");
    assert_eq!(tags, BTreeMap::from([("env".to_owned(), "dev".to_owned())]));

    // Sends: a body XML must escape (and a carriage return it must not lose), and attributes.
    let body = "a <b> & \"c\"\r\nünï ✓";
    let bytes = [0u8, 1, 254, 255];
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let send = [
        ("Action", "SendMessage"),
        ("MessageBody", body),
        ("MessageAttribute.1.Name", "kind"),
        ("MessageAttribute.1.Value.DataType", "String"),
        ("MessageAttribute.1.Value.StringValue", "demo"),
        ("MessageAttribute.2.Name", "blob"),
        ("MessageAttribute.2.Value.DataType", "Binary"),
        ("MessageAttribute.2.Value.BinaryValue", &b64),
    ];
    let a = post(&api, q, &send).await;
    let doc = a.ok("SendMessage", true);
    let attrs_md5 = java_attributes_md5([
        ("kind", "String", Some("demo"), None),
        ("blob", "Binary", None, Some(&bytes[..])),
    ]);
    assert_eq!(text(&doc, "MD5OfMessageBody"), hex_md5(body.as_bytes()));
    assert_eq!(text(&doc, "MD5OfMessageAttributes"), attrs_md5);
    let first_id = text(&doc, "MessageId");

    let batch = [
        ("Action", "SendMessageBatch"),
        ("SendMessageBatchRequestEntry.1.Id", "one"),
        ("SendMessageBatchRequestEntry.1.MessageBody", "first"),
        ("SendMessageBatchRequestEntry.2.Id", "late"),
        ("SendMessageBatchRequestEntry.2.MessageBody", "never"),
        ("SendMessageBatchRequestEntry.2.DelaySeconds", "901"),
        ("SendMessageBatchRequestEntry.3.Id", "two"),
        ("SendMessageBatchRequestEntry.3.MessageBody", "second"),
    ];
    let a = post(&api, q, &batch).await;
    let doc = a.ok("SendMessageBatch", true);
    let sent = elements(&doc, "SendMessageBatchResultEntry");
    let ids: Vec<_> = sent.iter().map(|n| child(*n, "Id").unwrap()).collect();
    assert_eq!(ids, ["one", "two"]);
    assert_eq!(
        child(sent[1], "MD5OfMessageBody").unwrap(),
        hex_md5(b"second")
    );
    let failed = elements(&doc, "BatchResultErrorEntry");
    assert_eq!(failed.len(), 1);
    assert_eq!(child(failed[0], "Id").unwrap(), "late");
    assert_eq!(child(failed[0], "SenderFault").unwrap(), "true");
    assert_eq!(child(failed[0], "Code").unwrap(), "InvalidParameterValue");
    assert!(child(failed[0], "Message")
        .unwrap()
        .contains("DelaySeconds"));

    let receive = [
        ("Action", "ReceiveMessage"),
        ("MaxNumberOfMessages", "10"),
        ("AttributeName.1", "All"),
        ("MessageAttributeName.1", "All"),
    ];
    let a = get(&api, q, &receive).await;
    let doc = a.ok("ReceiveMessage", true);
    let messages = elements(&doc, "Message");
    assert_eq!(messages.len(), 3, "{}", a.body);
    let mut handles = BTreeMap::new();
    for m in &messages {
        let got_body = child(*m, "Body").unwrap();
        assert_eq!(
            child(*m, "MD5OfBody").unwrap(),
            hex_md5(got_body.as_bytes())
        );
        let system = pairs(*m, "Attribute", "Name");
        assert_eq!(system["ApproximateReceiveCount"], "1");
        assert!(system.contains_key("SentTimestamp") && system.contains_key("SenderId"));
        handles.insert(got_body.clone(), child(*m, "ReceiptHandle").unwrap());
        if child(*m, "MessageId").unwrap() != first_id {
            assert!(child(*m, "MD5OfMessageAttributes").is_none());
            continue;
        }
        assert_eq!(
            got_body, body,
            "the body comes back unchanged, \\r included"
        );
        let mut user = Vec::new();
        for attr in m.children().filter(|c| c.has_tag_name("MessageAttribute")) {
            let value = attr.children().find(|c| c.has_tag_name("Value")).unwrap();
            user.push((
                child(attr, "Name").unwrap(),
                child(value, "DataType").unwrap(),
                child(value, "StringValue"),
                child(value, "BinaryValue")
                    .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap()),
            ));
        }
        assert_eq!(user.len(), 2);
        assert_eq!(
            user[0].3.as_deref(),
            Some(&bytes[..]),
            "binary values travel as base64"
        );
        let recomputed = java_attributes_md5(
            user.iter()
                .map(|(n, t, s, b)| (n.as_str(), t.as_str(), s.as_deref(), b.as_deref())),
        );
        assert_eq!(child(*m, "MD5OfMessageAttributes").unwrap(), recomputed);
        assert_eq!(recomputed, attrs_md5);
    }
    let a = get(&api, q, &[("Action", "ReceiveMessage")]).await;
    assert!(
        a.body.contains("<ReceiveMessageResult/>"),
        "empty: {}",
        a.body
    );

    let change = [
        ("Action", "ChangeMessageVisibility"),
        ("ReceiptHandle", handles["first"].as_str()),
        ("VisibilityTimeout", "0"),
    ];
    post(&api, q, &change)
        .await
        .ok("ChangeMessageVisibility", false);
    let change_batch = [
        ("Action", "ChangeMessageVisibilityBatch"),
        ("ChangeMessageVisibilityBatchRequestEntry.1.Id", "ok"),
        (
            "ChangeMessageVisibilityBatchRequestEntry.1.ReceiptHandle",
            handles["second"].as_str(),
        ),
        (
            "ChangeMessageVisibilityBatchRequestEntry.1.VisibilityTimeout",
            "60",
        ),
        ("ChangeMessageVisibilityBatchRequestEntry.2.Id", "bad"),
        (
            "ChangeMessageVisibilityBatchRequestEntry.2.ReceiptHandle",
            "garbage",
        ),
        (
            "ChangeMessageVisibilityBatchRequestEntry.2.VisibilityTimeout",
            "60",
        ),
    ];
    let a = post(&api, q, &change_batch).await;
    let doc = a.ok("ChangeMessageVisibilityBatch", true);
    assert_eq!(texts(&doc, "Id"), ["ok", "bad"]);
    assert_eq!(
        elements(&doc, "ChangeMessageVisibilityBatchResultEntry").len(),
        1
    );
    assert_eq!(text(&doc, "Code"), "ReceiptHandleIsInvalid");

    let delete = [
        ("Action", "DeleteMessage"),
        ("ReceiptHandle", handles[body].as_str()),
    ];
    post(&api, q, &delete).await.ok("DeleteMessage", false);
    let delete_batch = [
        ("Action", "DeleteMessageBatch"),
        ("DeleteMessageBatchRequestEntry.1.Id", "a"),
        (
            "DeleteMessageBatchRequestEntry.1.ReceiptHandle",
            handles["second"].as_str(),
        ),
    ];
    let a = post(&api, q, &delete_batch).await;
    let doc = a.ok("DeleteMessageBatch", true);
    assert_eq!(texts(&doc, "Id"), ["a"]);
    assert!(elements(&doc, "BatchResultErrorEntry").is_empty());

    // "first" was made visible again: one message left, and PurgeQueue removes it.
    let count = [
        ("Action", "GetQueueAttributes"),
        ("AttributeName.1", "ApproximateNumberOfMessages"),
    ];
    assert_eq!(
        text(
            &get(&api, q, &count).await.ok("GetQueueAttributes", true),
            "Value"
        ),
        "1"
    );
    get(&api, q, &[("Action", "PurgeQueue")])
        .await
        .ok("PurgeQueue", false);
    assert_eq!(
        text(
            &get(&api, q, &count).await.ok("GetQueueAttributes", true),
            "Value"
        ),
        "0"
    );
    get(&api, q, &[("Action", "DeleteQueue")])
        .await
        .ok("DeleteQueue", false);
    let a = get(&api, "/", &[("Action", "GetQueueUrl"), ("QueueName", "q")]).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        text(&a.doc(), "Code"),
        "AWS.SimpleQueueService.NonExistentQueue"
    );
}
