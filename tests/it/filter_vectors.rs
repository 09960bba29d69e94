//! Every event-filtering test vector (tests/data/filter-vectors.json; docs/semantics.md §4.1)
//! through esmd's public filter API, against the record exactly as a mapping encodes it for the
//! event: the 57 matching vectors and 16 refused patterns checked against AWS's rule engine, and
//! esmd's decisions on the cases the sources dispute.

use esmd::domain::attributes::{AttributeValue, Attributes};
use esmd::domain::event::encode_record;
use esmd::domain::filter::{Filters, Pattern};
use esmd::domain::message::Message;
use esmd::domain::Timestamp;
use serde_json::Value;

const VECTORS: &str = include_str!("../data/filter-vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("the vectors are JSON")
}

fn message(body: &str, attributes: Attributes) -> Message {
    Message {
        message_id: "059f36b4-87a3-44ab-83d2-661975830a7d".into(),
        receipt_handle: "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a".into(),
        md5_of_body: String::new(),
        body: body.into(),
        attributes,
        trace_header: None,
        sent_at: Timestamp::from_millis(1_545_082_649_183),
        receive_count: 1,
        first_receive_at: Timestamp::from_millis(1_545_082_649_185),
        sender_id: "AIDAIENQZJOLO23YVJ4VO".into(),
        group_id: None,
        dedup_id: None,
        sequence_number: None,
        dead_letter_source: None,
    }
}

/// Whether `patterns` keep a record of `msg`, as the mapping decides it.
fn keeps(patterns: &[&str], msg: &Message) -> bool {
    let compiled = patterns
        .iter()
        .map(|p| Pattern::compile(p).unwrap_or_else(|e| panic!("{p}: {e}")))
        .collect();
    let record = encode_record(
        msg,
        "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "us-east-2",
    );
    Filters::new(compiled).keeps(&msg.body, &record)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn every_matching_vector_gives_the_expected_outcome() {
    let all = vectors();
    let cases = all["match"].as_array().expect("a list of cases");
    let checked = cases.iter().filter(|c| str_of(c, "id").starts_with('T'));
    assert_eq!(checked.count(), 57, "all 57 T vectors are in the file");
    let mut wrong = Vec::new();
    for case in cases {
        let patterns: Vec<&str> = case["patterns"]
            .as_array()
            .expect("patterns")
            .iter()
            .map(|p| p.as_str().expect("a pattern string"))
            .collect();
        let body = str_of(case, "body");
        let expect = case["expect"].as_bool().expect("expect");
        if keeps(&patterns, &message(body, Attributes::new())) != expect {
            wrong.push(format!(
                "{} ({}): {patterns:?} on {body:?} should be {}",
                str_of(case, "id"),
                str_of(case, "why"),
                if expect { "kept" } else { "filtered out" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_invalid_pattern_is_refused_as_lambda_refuses_it() {
    let all = vectors();
    let cases = all["invalid"].as_array().expect("a list of cases");
    let checked = cases.iter().filter(|c| str_of(c, "id").starts_with('V'));
    assert_eq!(checked.count(), 16, "all 16 V vectors are in the file");
    for case in cases {
        let pattern = str_of(case, "pattern");
        match Pattern::compile(pattern) {
            Ok(_) => panic!("{}: {pattern} was accepted", str_of(case, "id")),
            Err(e) => assert!(
                e.to_string()
                    .starts_with("Invalid filter pattern definition: "),
                "{e}"
            ),
        }
    }
}

#[test]
fn metadata_patterns_match_the_record_as_the_function_receives_it() {
    // D2: system attributes are strings in the record.
    let plain = message("anything", Attributes::new());
    assert!(keeps(
        &[r#"{"attributes":{"ApproximateReceiveCount":["1"]}}"#],
        &plain
    ));
    assert!(!keeps(
        &[r#"{"attributes":{"ApproximateReceiveCount":[1]}}"#],
        &plain
    ));
    assert!(keeps(&[r#"{"eventSource":["aws:sqs"]}"#], &plain));
    assert!(keeps(&[r#"{"awsRegion":[{"prefix":"us-"}]}"#], &plain));
    // D3: a message attribute, under the record's camel-case names.
    let mut attrs = Attributes::new();
    attrs.insert("k".into(), AttributeValue::string("v"));
    let with = message("x", attrs);
    let p = r#"{"messageAttributes":{"k":{"stringValue":["v"]}}}"#;
    assert!(keeps(&[p], &with));
    assert!(!keeps(&[p], &plain));
    // A metadata rule and a body rule in one pattern must both hold.
    let both = r#"{"eventSource":["aws:sqs"],"body":{"kind":["order"]}}"#;
    assert!(keeps(
        &[both],
        &message(r#"{"kind":"order"}"#, Attributes::new())
    ));
    assert!(!keeps(
        &[both],
        &message(r#"{"kind":"refund"}"#, Attributes::new())
    ));
}
