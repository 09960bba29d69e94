//! Queue attributes esmd keeps and reports without enforcing, through the AWS SDK, with the
//! values and errors AWS recorded (LocalStack's validated suite): `Policy` set and cleared,
//! AddPermission/RemovePermission building it by label, and the server-side encryption trio
//! `SqsManagedSseEnabled`, `KmsMasterKeyId`, `KmsDataKeyReusePeriodSeconds`.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::QueueAttributeName as A;
use serde_json::{json, Value};

use super::{attributes, code_and_message};
use crate::common::api::TestApi;

fn set(pairs: &[(A, &str)]) -> Option<std::collections::HashMap<A, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), (*v).to_owned()))
            .collect(),
    )
}

async fn policy(api: &TestApi, url: &str) -> Option<Value> {
    attributes(api, url, &[A::Policy])
        .await
        .get("Policy")
        .map(|p| serde_json::from_str(p).expect("the policy is JSON"))
}

#[tokio::test]
async fn policy_is_stored_reported_and_cleared() {
    let api = TestApi::start().await;
    let url = api.create("guarded").await;
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"sqs:SendMessage","Resource":"*"}]}"#;
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(set(&[(A::Policy, doc)]))
        .send()
        .await
        .unwrap();
    let all = attributes(&api, &url, &[A::All]).await;
    assert_eq!(all.get("Policy").map(String::as_str), Some(doc));
    assert_eq!(
        policy(&api, &url).await.unwrap()["Statement"][0]["Action"],
        "sqs:SendMessage"
    );
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(set(&[(A::Policy, "")]))
        .send()
        .await
        .unwrap();
    assert!(!attributes(&api, &url, &[A::All])
        .await
        .contains_key("Policy"));

    let err = api
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(set(&[(A::Policy, "not json")]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err).0, "InvalidAttributeValue");
}

#[tokio::test]
async fn add_and_remove_permission_by_label() {
    let api = TestApi::start().await;
    let url = api.create("shared").await;
    let arn = attributes(&api, &url, &[A::QueueArn]).await["QueueArn"].clone();
    api.sqs
        .add_permission()
        .queue_url(&url)
        .label("crossaccount")
        .aws_account_ids("000000000000")
        .aws_account_ids("668614515564")
        .actions("ReceiveMessage")
        .send()
        .await
        .unwrap();
    let p = policy(&api, &url)
        .await
        .expect("a policy after AddPermission");
    assert_eq!(p["Version"], "2008-10-17");
    assert_eq!(p["Id"], format!("{arn}/SQSDefaultPolicy"));
    assert_eq!(
        p["Statement"],
        json!([{
            "Sid": "crossaccount",
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::000000000000:root", "arn:aws:iam::668614515564:root"]},
            "Action": "SQS:ReceiveMessage",
            "Resource": arn,
        }])
    );

    // A label is unique.
    let err = api
        .sqs
        .add_permission()
        .queue_url(&url)
        .label("crossaccount")
        .aws_account_ids("668614515564")
        .actions("SendMessage")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidParameterValue".to_owned(),
            "Value crossaccount for parameter Label is invalid. Reason: Already exists.".to_owned()
        )
    );
    api.sqs
        .add_permission()
        .queue_url(&url)
        .label("second")
        .aws_account_ids("000000000000")
        .actions("SendMessage")
        .actions("DeleteMessage")
        .send()
        .await
        .unwrap();
    let sids = |p: &Value| -> Vec<String> {
        p["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap().to_owned())
            .collect()
    };
    let p = policy(&api, &url).await.unwrap();
    assert_eq!(sids(&p), ["crossaccount", "second"]);
    assert_eq!(
        p["Statement"][1]["Action"],
        json!(["SQS:SendMessage", "SQS:DeleteMessage"])
    );

    api.sqs
        .remove_permission()
        .queue_url(&url)
        .label("crossaccount")
        .send()
        .await
        .unwrap();
    assert_eq!(sids(&policy(&api, &url).await.unwrap()), ["second"]);
    api.sqs
        .remove_permission()
        .queue_url(&url)
        .label("second")
        .send()
        .await
        .unwrap();
    // The last statement gone, the policy is gone.
    assert_eq!(policy(&api, &url).await, None);
    let err = api
        .sqs
        .remove_permission()
        .queue_url(&url)
        .label("second")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            "InvalidParameterValue".to_owned(),
            "Value second for parameter Label is invalid. Reason: can't find label.".to_owned()
        )
    );
    let err = api
        .sqs
        .add_permission()
        .queue_url(&url)
        .label("bad label!")
        .aws_account_ids("000000000000")
        .actions("SendMessage")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err).0, "InvalidParameterValue");
}

#[tokio::test]
async fn encryption_attributes_read_back_as_aws_reports_them() {
    let api = TestApi::start().await;
    let url = api.create("sealed").await;
    let sse = [
        A::SqsManagedSseEnabled,
        A::KmsMasterKeyId,
        A::KmsDataKeyReusePeriodSeconds,
    ];
    let want = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // New queues have SSE-SQS on.
    assert_eq!(
        attributes(&api, &url, &sse).await,
        want(&[("SqsManagedSseEnabled", "true")])
    );
    // A KMS key: SSE-SQS off, the key and its reuse period reported.
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(set(&[
            (A::KmsMasterKeyId, "testKeyId"),
            (A::KmsDataKeyReusePeriodSeconds, "6000"),
            (A::SqsManagedSseEnabled, "false"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes(&api, &url, &sse).await,
        want(&[
            ("KmsDataKeyReusePeriodSeconds", "6000"),
            ("KmsMasterKeyId", "testKeyId"),
            ("SqsManagedSseEnabled", "false"),
        ])
    );
    assert!(attributes(&api, &url, &[A::All])
        .await
        .contains_key("KmsMasterKeyId"));
    // Clearing the key leaves no encryption and hides the reuse period.
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(set(&[
            (A::KmsMasterKeyId, ""),
            (A::KmsDataKeyReusePeriodSeconds, "300"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes(&api, &url, &sse).await,
        want(&[("SqsManagedSseEnabled", "false")])
    );
    // One kind of SSE at a time.
    let err = api
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(set(&[
            (A::KmsMasterKeyId, "k"),
            (A::SqsManagedSseEnabled, "true"),
        ]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err).0, "InvalidAttributeName");
    let err = api
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(set(&[(A::KmsDataKeyReusePeriodSeconds, "59")]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err).0, "InvalidAttributeValue");
    api.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(set(&[(A::SqsManagedSseEnabled, "true")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes(&api, &url, &sse).await,
        want(&[("SqsManagedSseEnabled", "true")])
    );
}
