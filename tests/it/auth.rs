//! Authentication (docs/interface.md §3.4, issue 14 points 4 and 9b/9c): SigV4 signatures expire
//! 15 minutes either side of esmd's clock (a captured request cannot be replayed later), a
//! malformed `X-Amz-Date` is refused, refusals carry the code SQS itself answers with (403), and
//! the `Bearer` scheme is case-insensitive. Requests are signed here by hand (SigV4 over
//! `host;x-amz-date`), so the test decides the date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esmd::clock::Clock;
use esmd::domain::Timestamp;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::common::daemon::TestDaemon;
use crate::common::process::EsmdProcess;

const TOKEN: &str = "auth-test-token";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
auth_token = "auth-test-token"
[queues.q]
"#;

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(msg.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` for `t`.
fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
        .to_string()
        .replace(['-', ':'], "")
}

/// A `ListQueues` request to `url`, SigV4-signed with `secret` over `host;x-amz-date`, dated
/// `date` (used as given, so it may be malformed; the scope takes its first 8 characters).
fn signed_list_queues(url: &str, secret: &str, date: &str) -> reqwest::RequestBuilder {
    let host = url.trim_start_matches("http://");
    let body = "{}";
    let day = date.get(..8).unwrap_or(date);
    let scope = format!("{day}/us-east-1/sqs/aws4_request");
    let canonical = format!(
        "POST\n/\n\nhost:{host}\nx-amz-date:{date}\n\nhost;x-amz-date\n{}",
        hex::encode(Sha256::digest(body))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for step in scope.split('/') {
        key = hmac(&key, step);
    }
    let signature = hex::encode(hmac(&key, &to_sign));
    reqwest::Client::new()
        .post(format!("{url}/"))
        .header("x-amz-target", "AmazonSQS.ListQueues")
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-date", date)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDTEST/{scope}, SignedHeaders=host;x-amz-date, \
                 Signature={signature}"
            ),
        )
        .body(body)
}

/// Status, query error code and message of an answer.
async fn outcome(req: reqwest::RequestBuilder) -> (u16, String, String) {
    let resp = req.send().await.expect("the request is answered");
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("x-amzn-query-error")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    (status, code, message)
}

#[tokio::test]
async fn a_captured_signed_request_expires_after_15_minutes_of_the_servers_clock() {
    let now = SystemTime::now();
    let millis = now
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let clock = Clock::manual(Timestamp::from_millis(millis as i64));
    let daemon = TestDaemon::start_with_clock(CONFIG, clock.clone()).await;
    let date = amz_date(now);
    // Fresh: accepted; replayed 14 minutes later: still accepted.
    assert_eq!(
        outcome(signed_list_queues(&daemon.url, TOKEN, &date))
            .await
            .0,
        200
    );
    clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(
        outcome(signed_list_queues(&daemon.url, TOKEN, &date))
            .await
            .0,
        200
    );
    // Replayed 16 minutes later: expired, in SQS's words.
    clock.advance(Duration::from_secs(2 * 60));
    let (status, code, message) = outcome(signed_list_queues(&daemon.url, TOKEN, &date)).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "SignatureDoesNotMatch;Sender")
    );
    assert!(
        message.contains(&format!("Signature expired: {date} is now earlier than")),
        "{message}"
    );
    // A date 16 minutes ahead of the clock is not yet current.
    let ahead = amz_date(now + Duration::from_secs(32 * 60));
    let (status, code, message) = outcome(signed_list_queues(&daemon.url, TOKEN, &ahead)).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "SignatureDoesNotMatch;Sender")
    );
    assert!(message.contains("Signature not yet current"), "{message}");
    assert!(daemon.stop().await, "a clean stop");
}

#[tokio::test]
async fn the_binary_refuses_an_old_or_malformed_date_with_sqs_codes() {
    let dir = TempDir::new().expect("temp dir");
    let esmd = EsmdProcess::start(dir.path(), CONFIG, &[]).await;
    let url = esmd.url();
    let now = SystemTime::now();
    // Signed now: accepted.
    let (status, ..) = outcome(signed_list_queues(&url, TOKEN, &amz_date(now))).await;
    assert_eq!(status, 200);
    // Signed 20 minutes ago (a replayed capture), in 2001, or with a garbage date: refused.
    let old = amz_date(now - Duration::from_secs(20 * 60));
    for date in [
        old.as_str(),
        "20010101T000000Z",
        "garbage-garbage!",
        "20261301T000000Z",
    ] {
        let (status, code, message) = outcome(signed_list_queues(&url, TOKEN, date)).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "SignatureDoesNotMatch;Sender"),
            "{date}: {message}"
        );
        assert!(
            message.contains("Signature expired")
                || message.contains("YYYYMMDDTHHMMSSZ")
                || message.contains("date"),
            "{date}: {message}"
        );
    }
    // A wrong secret: SignatureDoesNotMatch; a wrong bearer token: InvalidClientTokenId; no
    // credentials: MissingAuthenticationToken; each 403, as SQS answers.
    let (status, code, _) =
        outcome(signed_list_queues(&url, "not-the-token", &amz_date(now))).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "SignatureDoesNotMatch;Sender")
    );
    let list = || {
        reqwest::Client::new()
            .post(format!("{url}/"))
            .header("x-amz-target", "AmazonSQS.ListQueues")
            .header("content-type", "application/x-amz-json-1.0")
            .body("{}")
    };
    let (status, code, _) = outcome(list().bearer_auth("not-the-token")).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "InvalidClientTokenId;Sender")
    );
    let (status, code, _) = outcome(list()).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "MissingAuthenticationToken;Sender")
    );
    // The scheme is case-insensitive: `bearer` and `BEARER` work as `Bearer` does.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let resp = reqwest::Client::new()
            .get(format!("{url}/queues"))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .expect("GET /queues");
        assert_eq!(resp.status().as_u16(), 200, "scheme {scheme}");
        let (status, ..) =
            outcome(list().header("authorization", format!("{scheme} {TOKEN}"))).await;
        assert_eq!(status, 200, "scheme {scheme} on the SQS protocol");
    }
    esmd.stop().await;
}
