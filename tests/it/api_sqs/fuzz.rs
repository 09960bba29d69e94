//! Random bodies against every action (and an unknown one): raw bytes, arbitrary JSON, and
//! objects built from the protocol's own member names with values of every JSON type. Whatever
//! arrives, the server must answer, never with a 5xx, always in the protocol's shape. The REST
//! shim gets the same treatment. Values that would start a long poll (WaitTimeSeconds 1..20) are
//! never generated, and the target queue is reset before each case, so no case waits.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use esmd::domain::queue::{QueueName, QueueSettings};

use crate::common::api::{TestApi, ACCOUNT};

const ACTIONS: &[&str] = &[
    "CreateQueue",
    "GetQueueUrl",
    "ListQueues",
    "GetQueueAttributes",
    "SetQueueAttributes",
    "DeleteQueue",
    "PurgeQueue",
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "ListDeadLetterSourceQueues",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
    "NoSuchAction",
];

const MEMBERS: &[&str] = &[
    "QueueUrl",
    "QueueName",
    "Attributes",
    "AttributeNames",
    "tags",
    "Tags",
    "TagKeys",
    "MessageBody",
    "DelaySeconds",
    "MessageAttributes",
    "MessageSystemAttributes",
    "MessageGroupId",
    "MessageDeduplicationId",
    "Entries",
    "Id",
    "ReceiptHandle",
    "VisibilityTimeout",
    "MaxNumberOfMessages",
    "WaitTimeSeconds",
    "MessageAttributeNames",
    "MessageSystemAttributeNames",
    "ReceiveRequestAttemptId",
    "DataType",
    "StringValue",
    "BinaryValue",
    "StringListValues",
    "QueueNamePrefix",
    "MaxResults",
    "NextToken",
    "QueueOwnerAWSAccountId",
    "RedrivePolicy",
    "AWSTraceHeader",
    "FifoQueue",
];

fn int() -> impl Strategy<Value = i64> {
    // Never 1..=20 except where a member cannot wait: a WaitTimeSeconds there would long-poll.
    prop_oneof![
        Just(0i64),
        Just(-1),
        Just(21),
        Just(900),
        Just(901),
        Just(43_200),
        Just(43_201),
        Just(i64::MAX),
        Just(i64::MIN),
        (1_000i64..1_000_000),
    ]
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("All".to_owned()),
        Just("true".to_owned()),
        Just("AQEBgarbage".to_owned()),
        "[a-zA-Z0-9_.-]{1,12}",
        "\\PC{0,24}",
        "[\\x00-\\x1f\u{7f}\u{fffe}]{1,4}",
    ]
    .boxed()
}

/// Any JSON value at all.
fn json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        int().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    let key = prop_oneof![3 => proptest::sample::select(MEMBERS).prop_map(str::to_owned), 1 => "[A-Za-z.]{1,10}"];
    leaf.prop_recursive(3, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn strings(names: &'static [&'static str]) -> BoxedStrategy<Value> {
    let name =
        prop_oneof![3 => proptest::sample::select(names).prop_map(str::to_owned), 1 => text()];
    proptest::collection::vec(name, 0..4)
        .prop_map(Value::from)
        .boxed()
}

fn string_map(keys: &'static [&'static str], value: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    let key = prop_oneof![3 => proptest::sample::select(keys).prop_map(str::to_owned), 1 => text()];
    proptest::collection::btree_map(key, value, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
        .boxed()
}

fn attribute_value() -> BoxedStrategy<Value> {
    let data_type = prop_oneof![
        Just("String".to_owned()),
        Just("Number".to_owned()),
        Just("Binary".to_owned()),
        Just("Number.float".to_owned()),
        text()
    ];
    let binary = prop_oneof![Just("AAEC".to_owned()), Just("!!".to_owned()), text()];
    let number = prop_oneof![Just("12.5".to_owned()), Just("1e400".to_owned()), text()];
    (
        data_type,
        proptest::option::of(prop_oneof![number, text()]),
        proptest::option::of(binary),
        any::<bool>(),
    )
        .prop_map(|(t, s, b, list)| {
            let mut m = serde_json::Map::new();
            m.insert("DataType".into(), t.into());
            if let Some(s) = s {
                m.insert("StringValue".into(), s.into());
            }
            if let Some(b) = b {
                m.insert("BinaryValue".into(), b.into());
            }
            if list {
                m.insert("StringListValues".into(), Value::from(vec!["x"]));
            }
            Value::Object(m)
        })
        .boxed()
}

fn attribute_map(names: &'static [&'static str]) -> BoxedStrategy<Value> {
    let name =
        prop_oneof![3 => proptest::sample::select(names).prop_map(str::to_owned), 1 => text()];
    proptest::collection::btree_map(name, prop_oneof![6 => attribute_value(), 1 => json()], 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
}

fn entry() -> BoxedStrategy<Value> {
    let id = prop_oneof![3 => "[a-z0-9]{1,3}", 1 => text()];
    let fields = proptest::collection::vec(
        proptest::sample::select(
            &[
                "MessageBody",
                "ReceiptHandle",
                "VisibilityTimeout",
                "DelaySeconds",
                "MessageAttributes",
                "MessageGroupId",
                "MessageDeduplicationId",
                "MessageSystemAttributes",
            ][..],
        )
        .prop_flat_map(|k| member(k).prop_map(move |v| (k.to_owned(), v))),
        0..5,
    );
    (proptest::option::weighted(0.9, id), fields)
        .prop_map(|(id, fields)| {
            let mut m: serde_json::Map<String, Value> = fields.into_iter().collect();
            if let Some(id) = id {
                m.insert("Id".into(), id.into());
            }
            Value::Object(m)
        })
        .boxed()
}

const QUEUE_ATTRIBUTES: &[&str] = &[
    "VisibilityTimeout",
    "DelaySeconds",
    "MessageRetentionPeriod",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "Policy",
    "QueueArn",
    "All",
];

const SYSTEM_ATTRIBUTES: &[&str] = &[
    "All",
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "SequenceNumber",
    "AWSTraceHeader",
];

/// A well-typed (mostly) value for the member `name`.
fn member(name: &str) -> BoxedStrategy<Value> {
    let typed: BoxedStrategy<Value> = match name {
        "QueueUrl" => prop_oneof![
            4 => Just(format!("http://localhost/{ACCOUNT}/fuzz")),
            2 => Just(format!("http://localhost/{ACCOUNT}/fuzz.fifo")),
            1 => text()
        ]
        .prop_map(Value::from)
        .boxed(),
        "QueueName" => prop_oneof!["[a-zA-Z0-9_-]{1,10}(\\.fifo)?", text()]
            .prop_map(Value::from)
            .boxed(),
        "WaitTimeSeconds" => prop_oneof![6 => Just(0i64), 1 => Just(-1), 1 => Just(21), 1 => int()]
            .prop_map(Value::from)
            .boxed(),
        "MaxNumberOfMessages" | "MaxResults" => prop_oneof![6 => 1i64..=10, 1 => int()]
            .prop_map(Value::from)
            .boxed(),
        "DelaySeconds" | "VisibilityTimeout" => prop_oneof![6 => 0i64..5, 1 => int()]
            .prop_map(Value::from)
            .boxed(),
        "Attributes" => {
            let value = prop_oneof![
                Just("0".to_owned()),
                Just("60".to_owned()),
                Just("true".to_owned()),
                Just("{}".to_owned()),
                text()
            ];
            string_map(QUEUE_ATTRIBUTES, value.boxed())
        }
        "tags" | "Tags" => string_map(&["team", "env"], text()),
        "AttributeNames" => strings(QUEUE_ATTRIBUTES),
        "MessageSystemAttributeNames" => strings(SYSTEM_ATTRIBUTES),
        "MessageAttributeNames" => strings(&["All", ".*", "a", "a.*"]),
        "TagKeys" => strings(&["team", "env"]),
        "MessageAttributes" => attribute_map(&["a", "a.b", "AWS.x", "b"]),
        "MessageSystemAttributes" => attribute_map(&["AWSTraceHeader"]),
        "Entries" => proptest::collection::vec(prop_oneof![6 => entry(), 1 => json()], 0..12)
            .prop_map(Value::from)
            .boxed(),
        "QueueOwnerAWSAccountId" => prop_oneof![Just(ACCOUNT.to_owned()), text()]
            .prop_map(Value::from)
            .boxed(),
        _ => text().prop_map(Value::from).boxed(),
    };
    prop_oneof![12 => typed, 1 => json()].boxed()
}

/// The members each action reads (besides `QueueUrl`).
fn members_of(action: &str) -> &'static [&'static str] {
    match action {
        "CreateQueue" => &["QueueName", "Attributes", "tags"],
        "GetQueueUrl" => &["QueueName", "QueueOwnerAWSAccountId"],
        "ListQueues" => &["QueueNamePrefix", "MaxResults", "NextToken"],
        "ListDeadLetterSourceQueues" => &["MaxResults", "NextToken"],
        "GetQueueAttributes" => &["AttributeNames"],
        "SetQueueAttributes" => &["Attributes"],
        "TagQueue" => &["Tags"],
        "UntagQueue" => &["TagKeys"],
        "SendMessage" => &[
            "MessageBody",
            "DelaySeconds",
            "MessageAttributes",
            "MessageSystemAttributes",
            "MessageGroupId",
            "MessageDeduplicationId",
        ],
        "ReceiveMessage" => &[
            "MaxNumberOfMessages",
            "WaitTimeSeconds",
            "VisibilityTimeout",
            "AttributeNames",
            "MessageSystemAttributeNames",
            "MessageAttributeNames",
            "ReceiveRequestAttemptId",
        ],
        "DeleteMessage" => &["ReceiptHandle"],
        "ChangeMessageVisibility" => &["ReceiptHandle", "VisibilityTimeout"],
        "SendMessageBatch" | "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" => &["Entries"],
        _ => &[],
    }
}

/// A request body for `action`: raw bytes, any JSON, or (mostly) an object of the action's
/// members, each usually present and usually well-typed, plus a stray member or two.
fn body(action: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let own: Vec<_> = members_of(action)
        .iter()
        .map(|k| proptest::option::weighted(0.8, member(k)).prop_map(move |v| (*k, v)))
        .collect();
    let stray = proptest::collection::vec(
        proptest::sample::select(MEMBERS)
            .prop_flat_map(|k| member(k).prop_map(move |v| (k, Some(v)))),
        0..2,
    );
    let object = (
        proptest::option::weighted(0.9, member("QueueUrl")),
        own,
        stray,
    )
        .prop_map(|(url, own, stray)| {
            let mut m = serde_json::Map::new();
            for (k, v) in stray.into_iter().chain(own) {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            if let Some(url) = url {
                m.insert("QueueUrl".into(), url);
            }
            Value::Object(m).to_string().into_bytes()
        });
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        1 => json().prop_map(|v| v.to_string().into_bytes()),
        8 => object,
    ]
}

#[test]
fn random_bodies_never_break_any_action() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = rt.block_on(TestApi::start());
    let fifo_settings = QueueSettings {
        content_based_deduplication: true,
        ..Default::default()
    };
    let queues = [
        (QueueName::parse("fuzz").unwrap(), QueueSettings::default()),
        (QueueName::parse("fuzz.fifo").unwrap(), fifo_settings),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 800,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::sample::select(ACTIONS).prop_flat_map(|a| (Just(a), body(a)));
    let result = runner.run(&strategy, |(action, body)| {
        rt.block_on(async {
            // Undo what the previous case may have changed (a long receive wait, a deletion).
            for (name, settings) in &queues {
                api.store
                    .ensure_queue(name, settings)
                    .await
                    .expect("reset the queue");
            }
            let resp = api.raw(action, body).await;
            let status = resp.status().as_u16();
            let query_error = resp.headers().contains_key("x-amzn-query-error");
            let text = resp
                .text()
                .await
                .map_err(|e| TestCaseError::fail(format!("body not readable: {e}")))?;
            prop_assert!(status < 500, "{action}: {status} {text}");
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
            if status != 200 {
                prop_assert!(
                    query_error,
                    "{action}: error without x-amzn-query-error: {text}"
                );
                prop_assert!(
                    v["__type"].is_string() && v["message"].is_string(),
                    "{action}: {text}"
                );
            }
            Ok(())
        })
    });
    rt.block_on(api.stop());
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn random_rest_sends_never_break_the_shim() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = rt.block_on(TestApi::start());
    let name = esmd::domain::queue::QueueName::parse("fuzz").unwrap();
    rt.block_on(api.store.ensure_queue(&name, &Default::default()))
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let query = proptest::collection::vec(
        (
            prop_oneof![
                Just("group"),
                Just("dedup"),
                Just("delay"),
                Just("attr"),
                Just("x")
            ],
            "\\PC{0,16}",
        ),
        0..5,
    );
    let queue = prop_oneof![
        Just("fuzz".to_owned()),
        Just("missing".to_owned()),
        Just("bad%20name".to_owned()),
        "[a-z]{1,5}"
    ];
    let strategy = (queue, query, proptest::collection::vec(any::<u8>(), 0..128));
    let result = runner.run(&strategy, |(queue, query, body)| {
        rt.block_on(async {
            let resp = api
                .http
                .post(format!("{}/queues/{queue}/messages", api.url))
                .query(&query)
                .body(body)
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            let status = resp.status().as_u16();
            let text = resp
                .text()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(status < 500, "{status} {text}");
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
            if status != 201 {
                prop_assert!(v["error"].is_string() && v["message"].is_string(), "{text}");
            }
            Ok(())
        })
    });
    rt.block_on(api.stop());
    if let Err(e) = result {
        panic!("{e}");
    }
}
