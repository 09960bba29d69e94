//! Every MD5 field recomputed on the client side, the way the AWS SDK for Java v2's
//! `MessageMD5ChecksumInterceptor` does it (written here independently of esmd's own code):
//! SendMessage checks `MD5OfMessageBody` always, `MD5OfMessageAttributes` when attributes were
//! sent and `MD5OfMessageSystemAttributes` when system attributes were; SendMessageBatch the same
//! per successful entry; ReceiveMessage `MD5OfBody` for every message and
//! `MD5OfMessageAttributes` whenever the message carries attributes.

use std::collections::HashMap;

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeNameForSends as SysSend,
    MessageSystemAttributeValue, SendMessageBatchRequestEntry,
};
use md5::{Digest, Md5};

use crate::common::api::TestApi;

const STRING_TYPE: u8 = 1;
const BINARY_TYPE: u8 = 2;

pub(super) fn hex_md5(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn length_and_bytes(d: &mut Md5, b: &[u8]) {
    d.update((b.len() as i32).to_be_bytes());
    d.update(b);
}

/// Java's `calculateMessageAttributesMd5`: names sorted (Java `String.compareTo`, i.e. UTF-16
/// order), then per attribute: name, data type, a transport byte and the value, each value
/// length-prefixed with a 4-byte big-endian int.
pub(super) fn java_attributes_md5<'a>(
    attrs: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a str>, Option<&'a [u8]>)>,
) -> String {
    let mut sorted: Vec<_> = attrs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let mut d = Md5::new();
    for (name, data_type, string, binary) in sorted {
        length_and_bytes(&mut d, name.as_bytes());
        length_and_bytes(&mut d, data_type.as_bytes());
        if let Some(s) = string {
            d.update([STRING_TYPE]);
            length_and_bytes(&mut d, s.as_bytes());
        } else if let Some(b) = binary {
            d.update([BINARY_TYPE]);
            length_and_bytes(&mut d, b);
        }
    }
    d.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn user_md5(attrs: &HashMap<String, MessageAttributeValue>) -> String {
    java_attributes_md5(attrs.iter().map(|(k, v)| {
        (
            k.as_str(),
            v.data_type(),
            v.string_value(),
            v.binary_value().map(|b| b.as_ref()),
        )
    }))
}

fn system_md5(attrs: &HashMap<SysSend, MessageSystemAttributeValue>) -> String {
    java_attributes_md5(attrs.iter().map(|(k, v)| {
        (
            k.as_str(),
            v.data_type(),
            v.string_value(),
            v.binary_value().map(|b| b.as_ref()),
        )
    }))
}

fn s(data_type: &str, v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(v)
        .build()
        .unwrap()
}

fn b(data_type: &str, v: &[u8]) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .binary_value(Blob::new(v.to_vec()))
        .build()
        .unwrap()
}

/// A spread of messages: plain, unicode, every base type with custom suffixes, many attributes.
fn cases() -> Vec<(String, HashMap<String, MessageAttributeValue>)> {
    let mut out = vec![("plain".to_owned(), HashMap::new())];
    let mut a = HashMap::new();
    a.insert("Title".into(), s("String", "The Whistler"));
    a.insert("Price".into(), s("Number.float", "12.5"));
    a.insert("Thumb".into(), b("Binary.gif", &[0, 1, 2, 255, 254]));
    a.insert("Uni".into(), s("String.utf8", "κόσμε 😀"));
    out.push(("Grüße, 世界! 😀 \t\n\r\u{7f}".to_owned(), a));
    let many: HashMap<String, MessageAttributeValue> = (0..10)
        .map(|i| {
            (
                format!("a{i}"),
                if i % 2 == 0 {
                    s("Number", &i.to_string())
                } else {
                    b("Binary", &[i])
                },
            )
        })
        .collect();
    out.push(("{\"json\": [1, 2, 3]}".to_owned(), many));
    out
}

#[tokio::test]
async fn every_md5_matches_the_java_sdk_calculation() {
    let api = TestApi::start().await;
    let url = api.create("md5").await;
    let trace = MessageSystemAttributeValue::builder()
        .data_type("String")
        .string_value("Root=1-abc;Sampled=1")
        .build()
        .unwrap();
    let mut sys = HashMap::new();
    sys.insert(SysSend::AwsTraceHeader, trace.clone());

    for (body, attrs) in cases() {
        let out = api
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(&body)
            .set_message_attributes(Some(attrs.clone()).filter(|a| !a.is_empty()))
            .set_message_system_attributes(Some(sys.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.md5_of_message_body(),
            Some(hex_md5(body.as_bytes()).as_str()),
            "body {body:?}"
        );
        if attrs.is_empty() {
            assert_eq!(out.md5_of_message_attributes(), None);
        } else {
            assert_eq!(
                out.md5_of_message_attributes(),
                Some(user_md5(&attrs).as_str())
            );
        }
        assert_eq!(
            out.md5_of_message_system_attributes(),
            Some(system_md5(&sys).as_str())
        );
    }

    let entries: Vec<SendMessageBatchRequestEntry> = cases()
        .into_iter()
        .enumerate()
        .map(|(i, (body, attrs))| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .message_body(body)
                .set_message_attributes(Some(attrs).filter(|a| !a.is_empty()))
                .build()
                .unwrap()
        })
        .collect();
    let out = api
        .sqs
        .send_message_batch()
        .queue_url(&url)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
    assert!(out.failed().is_empty());
    for (ok, (body, attrs)) in out.successful().iter().zip(cases()) {
        assert_eq!(ok.md5_of_message_body(), hex_md5(body.as_bytes()));
        assert_eq!(
            ok.md5_of_message_attributes().map(str::to_owned),
            (!attrs.is_empty()).then(|| user_md5(&attrs))
        );
        assert_eq!(ok.md5_of_message_system_attributes(), None);
    }

    let mut received = 0;
    while received < 6 {
        let got = api
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        assert!(
            !got.messages().is_empty(),
            "all six messages should be receivable"
        );
        for m in got.messages() {
            received += 1;
            assert_eq!(
                m.md5_of_body(),
                Some(hex_md5(m.body().unwrap().as_bytes()).as_str())
            );
            match m.message_attributes().filter(|a| !a.is_empty()) {
                Some(attrs) => assert_eq!(
                    m.md5_of_message_attributes(),
                    Some(user_md5(attrs).as_str())
                ),
                None => assert_eq!(m.md5_of_message_attributes(), None),
            }
        }
    }
}
