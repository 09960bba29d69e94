//! Regions (docs/interface.md §3.7): SDK clients configured for different regions
//! against one esmd see two queues where they use one name, with URLs and ARNs of their region,
//! ListQueues and GetQueueUrl of their region, messages that never cross, redrive within a
//! region; raw query-protocol requests whose signature scope or host names a region; and a
//! client of the default region sees exactly the URLs esmd always answered.

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName as A;

use super::{attributes, code_and_message};
use crate::common::api::{TestApi, ACCOUNT};

/// An SDK client of `region` for `url`, signing with secret `secret`.
fn client(url: &str, region: &str, secret: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new("x", secret, None, None, "test"))
        .endpoint_url(url)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

async fn create(c: &aws_sdk_sqs::Client, name: &str) -> String {
    c.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("a URL")
        .to_owned()
}

async fn list(c: &aws_sdk_sqs::Client) -> Vec<String> {
    c.list_queues()
        .send()
        .await
        .expect("list queues")
        .queue_urls()
        .to_vec()
}

async fn arn(c: &aws_sdk_sqs::Client, url: &str) -> String {
    c.get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .expect("get attributes")
        .attributes()
        .and_then(|a| a.get(&A::QueueArn))
        .expect("QueueArn")
        .clone()
}

/// The bodies one receive of up to 10 messages returns (visibility 0, so nothing is hidden).
async fn receive(c: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    c.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive")
        .messages()
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect()
}

async fn send(c: &aws_sdk_sqs::Client, url: &str, body: &str) {
    c.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

#[tokio::test]
async fn the_same_name_in_two_regions_is_two_queues() {
    let api = TestApi::start().await;
    let home = client(&api.url, "us-east-1", "x");
    let away = client(&api.url, "eu-west-1", "x");

    let home_url = create(&home, "orders").await;
    let away_url = create(&away, "orders").await;
    // The default region's URL is what esmd always answered; another region's says its region.
    assert_eq!(home_url, format!("{}/{ACCOUNT}/orders", api.url));
    assert_eq!(
        away_url,
        format!("{}/queue/eu-west-1/{ACCOUNT}/orders", api.url)
    );
    assert_eq!(
        arn(&home, &home_url).await,
        format!("arn:aws:sqs:us-east-1:{ACCOUNT}:orders")
    );
    assert_eq!(
        arn(&away, &away_url).await,
        format!("arn:aws:sqs:eu-west-1:{ACCOUNT}:orders")
    );

    // Each region lists and finds its own.
    assert_eq!(list(&home).await, vec![home_url.clone()]);
    assert_eq!(list(&away).await, vec![away_url.clone()]);
    let found = |c: aws_sdk_sqs::Client| async move {
        c.get_queue_url()
            .queue_name("orders")
            .send()
            .await
            .expect("get queue url")
            .queue_url()
            .map(str::to_owned)
    };
    assert_eq!(found(home.clone()).await, Some(home_url.clone()));
    assert_eq!(found(away.clone()).await, Some(away_url.clone()));

    // Messages do not cross.
    send(&home, &home_url, "at home").await;
    send(&away, &away_url, "away").await;
    assert_eq!(receive(&away, &away_url).await, vec!["away"]);
    assert_eq!(receive(&home, &home_url).await, vec!["at home"]);

    // Each is its own on the metrics page, the other region's under <region>/<name>.
    let metrics = api
        .http
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("queue=\"orders\""), "{metrics}");
    assert!(metrics.contains("queue=\"eu-west-1/orders\""), "{metrics}");

    // Deleting one leaves the other.
    away.delete_queue()
        .queue_url(&away_url)
        .send()
        .await
        .expect("delete");
    assert!(list(&away).await.is_empty());
    assert_eq!(receive(&home, &home_url).await, vec!["at home"]);
    let err = away
        .get_queue_url()
        .queue_name("orders")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err.into_service_error()).0,
        "AWS.SimpleQueueService.NonExistentQueue"
    );
}

#[tokio::test]
async fn a_url_names_its_own_region_and_a_plain_url_the_clients() {
    let api = TestApi::start().await;
    let home = client(&api.url, "us-east-1", "x");
    let away = client(&api.url, "ap-south-2", "x");
    let home_url = create(&home, "jobs").await;
    let away_url = create(&away, "jobs").await;

    // A URL that names a region reaches that region's queue whoever sends to it.
    send(&home, &away_url, "to away from home").await;
    assert_eq!(receive(&away, &away_url).await, vec!["to away from home"]);
    // A plain URL names no region: it is the sending client's region's queue.
    send(&away, &home_url, "plain, from away").await;
    assert_eq!(
        receive(&away, &away_url).await.len(),
        2,
        "both messages are in the away queue"
    );
    assert!(receive(&home, &home_url).await.is_empty());
    // A bare name too.
    send(&away, "jobs", "bare").await;
    assert_eq!(receive(&away, &away_url).await.len(), 3);
    assert!(receive(&home, &home_url).await.is_empty());
}

#[tokio::test]
async fn redrive_stays_within_a_region() {
    let api = TestApi::start().await;
    let home = client(&api.url, "us-east-1", "x");
    let away = client(&api.url, "eu-central-1", "x");
    let home_dlq = create(&home, "dlq").await;
    let away_dlq = create(&away, "dlq").await;
    let away_src = create(&away, "src").await;

    // A dead-letter queue in another region is refused, as AWS refuses it.
    let err = away
        .set_queue_attributes()
        .queue_url(&away_src)
        .attributes(
            A::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq","maxReceiveCount":"1"}}"#),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err.into_service_error()),
        (
            "InvalidParameterValue".to_owned(),
            "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter target owner, type and region must be the same as the source queue.".to_owned()
        )
    );

    let policy = format!(
        r#"{{"deadLetterTargetArn":"arn:aws:sqs:eu-central-1:{ACCOUNT}:dlq","maxReceiveCount":1}}"#
    );
    away.set_queue_attributes()
        .queue_url(&away_src)
        .attributes(A::RedrivePolicy, &policy)
        .send()
        .await
        .expect("set a redrive policy of the same region");
    assert_eq!(
        attributes(&api, &away_src, &[A::RedrivePolicy]).await["RedrivePolicy"],
        policy
    );
    let sources = |c: aws_sdk_sqs::Client, url: String| async move {
        c.list_dead_letter_source_queues()
            .queue_url(url)
            .send()
            .await
            .expect("sources")
            .queue_urls()
            .to_vec()
    };
    assert_eq!(
        sources(away.clone(), away_dlq.clone()).await,
        vec![away_src.clone()]
    );
    assert!(sources(home.clone(), home_dlq.clone()).await.is_empty());

    // Received once, then moved on the second receive: to the away region's dead-letter queue.
    send(&away, &away_src, "poison").await;
    assert_eq!(receive(&away, &away_src).await, vec!["poison"]);
    assert!(receive(&away, &away_src).await.is_empty());
    let moved = away
        .receive_message()
        .queue_url(&away_dlq)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive the dead letter");
    let m = &moved.messages()[0];
    assert_eq!(m.body(), Some("poison"));
    assert_eq!(
        m.attributes()
            .and_then(|a| a
                .get(&aws_sdk_sqs::types::MessageSystemAttributeName::DeadLetterQueueSourceArn))
            .map(String::as_str),
        Some(format!("arn:aws:sqs:eu-central-1:{ACCOUNT}:src").as_str())
    );
    assert!(receive(&home, &home_dlq).await.is_empty());
}

#[tokio::test]
async fn a_signature_for_another_region_verifies_with_the_token() {
    let api = TestApi::start_with(|s| s.auth_token = Some("sesame".into())).await;
    let away = client(&api.url, "eu-west-3", "sesame");
    let url = create(&away, "signed").await;
    assert_eq!(url, format!("{}/queue/eu-west-3/{ACCOUNT}/signed", api.url));
    assert_eq!(list(&away).await, vec![url]);
    let wrong = client(&api.url, "eu-west-3", "not the token");
    assert!(wrong.list_queues().send().await.is_err());
}

/// An `Authorization` header of a SigV4 signature for `region` (esmd without a token reads its
/// scope and checks nothing else).
fn signed_for(region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=x/20260101/{region}/sqs/aws4_request, SignedHeaders=host, Signature={}",
        "0".repeat(64)
    )
}

/// The text of every `element` in an XML answer.
fn texts(xml: &str, element: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).expect("XML");
    doc.descendants()
        .filter(|n| n.tag_name().name() == element)
        .map(|n| n.text().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_query_protocol_on_region_named_hosts() {
    let api = TestApi::start().await;
    let port = api.addr.port();
    let hosts = ["us-east-1", "us-west-1", "eu-north-1"].map(|r| format!("sqs.{r}.esmd.test"));
    let http = hosts
        .iter()
        .fold(reqwest::Client::builder(), |b, h| b.resolve(h, api.addr))
        .build()
        .expect("client");
    let endpoint = format!("http://sqs.us-east-1.esmd.test:{port}/");
    let call = |url: String, region: Option<&str>, params: &[(&str, &str)]| {
        let mut req = http.get(url).query(params);
        if let Some(r) = region {
            req = req.header("authorization", signed_for(r));
        }
        async move {
            let resp = req.send().await.expect("request");
            assert!(resp.status().is_success(), "{resp:?}");
            resp.text().await.expect("body")
        }
    };
    let create = |region: &'static str| {
        let call = &call;
        let endpoint = endpoint.clone();
        async move {
            let xml = call(
                endpoint,
                Some(region),
                &[("Action", "CreateQueue"), ("QueueName", "test-queue")],
            )
            .await;
            texts(&xml, "QueueUrl").remove(0)
        }
    };
    // One endpoint, signed for three regions: three queues, each URL naming its region in the
    // host label the endpoint has, the default region's too.
    let home = create("us-east-1").await;
    let west = create("us-west-1").await;
    let north = create("eu-north-1").await;
    assert_eq!(
        home,
        format!("http://sqs.us-east-1.esmd.test:{port}/{ACCOUNT}/test-queue")
    );
    assert_eq!(
        west,
        format!("http://sqs.us-west-1.esmd.test:{port}/{ACCOUNT}/test-queue")
    );
    assert_eq!(
        north,
        format!("http://sqs.eu-north-1.esmd.test:{port}/{ACCOUNT}/test-queue")
    );

    // Each URL, used by a client signed for its region, reaches that region's queue.
    let send = [("Action", "SendMessage"), ("MessageBody", "foobar")];
    call(west.clone(), Some("us-west-1"), &send).await;
    let receive = [("Action", "ReceiveMessage"), ("VisibilityTimeout", "0")];
    let got = call(north.clone(), Some("eu-north-1"), &receive).await;
    assert!(texts(&got, "Body").is_empty(), "{got}");
    let got = call(home.clone(), Some("us-east-1"), &receive).await;
    assert!(texts(&got, "Body").is_empty(), "{got}");
    let got = call(west.clone(), Some("us-west-1"), &receive).await;
    assert_eq!(texts(&got, "Body"), vec!["foobar"]);

    // Unsigned, the host's label names the region.
    let list = [("Action", "ListQueues")];
    let got = call(
        format!("http://sqs.eu-north-1.esmd.test:{port}/"),
        None,
        &list,
    )
    .await;
    assert_eq!(texts(&got, "QueueUrl"), vec![north.clone()]);
    // Signed, the scope does, whatever the host.
    let got = call(endpoint.clone(), Some("us-west-1"), &list).await;
    assert_eq!(texts(&got, "QueueUrl"), vec![west.clone()]);
    let got = call(endpoint.clone(), Some("us-east-1"), &list).await;
    assert_eq!(texts(&got, "QueueUrl"), vec![home.clone()]);
    // A presigned URL's scope too; on a host without a label the URL names the region in its path.
    let presigned = [
        ("Action", "ListQueues"),
        ("X-Amz-Credential", "x/20260101/eu-north-1/sqs/aws4_request"),
    ];
    let got = call(format!("http://127.0.0.1:{port}/"), None, &presigned).await;
    assert_eq!(
        texts(&got, "QueueUrl"),
        vec![format!(
            "http://127.0.0.1:{port}/queue/eu-north-1/{ACCOUNT}/test-queue"
        )]
    );
}
