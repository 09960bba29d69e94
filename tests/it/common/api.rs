//! The API fixture: a store on a temporary SQLite file (system clock, so long polls really
//! wait), the router served on `127.0.0.1:0`, and clients for it: an `aws_sdk_sqs::Client`
//! pointed at it with dummy credentials, and a plain `reqwest::Client` for wire-level checks.
//! Dropping the fixture stops the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use esmd::api::{self, AppState, Readiness};
use esmd::clock::Clock;
use esmd::config::ServerConfig;
use esmd::metrics::Metrics;
use esmd::store::Store;
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::storage;

/// The account id the fixture serves.
pub const ACCOUNT: &str = "000000000000";

/// A running API on port 0.
pub struct TestApi {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// An AWS SDK client for it.
    pub sqs: aws_sdk_sqs::Client,
    /// A plain HTTP client.
    pub http: reqwest::Client,
    /// The store behind it.
    pub store: Store,
    /// The readiness flag it reports.
    pub readiness: Readiness,
    /// Stops the server.
    pub cancel: CancellationToken,
    /// The server task.
    pub task: Option<JoinHandle<std::io::Result<()>>>,
    /// Holds the database file.
    pub dir: TempDir,
}

impl TestApi {
    /// A server with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose `[server]` settings `tweak` may change (e.g. to set an auth token).
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics = Arc::new(Metrics::new());
        let opts = esmd::store::StoreOptions {
            observer: esmd::daemon::metrics_observer(&metrics),
            ..Default::default()
        };
        let store = Store::open_with(&storage(&dir), Clock::System, opts)
            .await
            .expect("open store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut server = ServerConfig {
            listen: addr.to_string(),
            region: "us-east-1".into(),
            account_id: ACCOUNT.into(),
            auth_token: None,
            auth_token_file: None,
            allow_unauthenticated: false,
            shutdown_grace: Duration::from_secs(1),
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_connections: None,
        };
        tweak(&mut server);
        let serving = server.clone();
        let readiness = Readiness::default();
        let state = AppState {
            store: store.clone(),
            server: Arc::new(server),
            metrics,
            readiness: readiness.clone(),
            mappings: api::MappingCatalog::new(),
            receive_attempts: api::ReceiveAttempts::default(),
            invoker: esmd::invoke::Invoker::new(),
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { api::serve(listener, api::router(state), &serving, cancel).await }
        });
        let url = format!("http://{addr}");
        let sqs = sdk_client(&url, "x");
        TestApi {
            url,
            addr,
            sqs,
            http: reqwest::Client::new(),
            store,
            readiness,
            cancel,
            task: Some(task),
            dir,
        }
    }

    /// The URL of queue `name` as esmd forms it for this fixture's clients.
    pub fn queue_url(&self, name: &str) -> String {
        format!("{}/{ACCOUNT}/{name}", self.url)
    }

    /// Creates a queue through the SDK and returns its URL.
    pub async fn create(&self, name: &str) -> String {
        let out = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue");
        out.queue_url().expect("queue url").to_owned()
    }

    /// Creates a FIFO queue (optionally with content-based deduplication) and returns its URL.
    pub async fn create_fifo(&self, name: &str, content_dedup: bool) -> String {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let mut req = self
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(A::FifoQueue, "true");
        if content_dedup {
            req = req.attributes(A::ContentBasedDeduplication, "true");
        }
        req.send()
            .await
            .expect("create fifo queue")
            .queue_url()
            .expect("queue url")
            .to_owned()
    }

    /// `POST /` with `X-Amz-Target: AmazonSQS.<action>` and a raw body.
    pub async fn raw(&self, action: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(&self.url)
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(body)
            .send()
            .await
            .expect("request reaches the server")
    }

    /// [`TestApi::raw`] with a JSON body; returns the status, the body as JSON and the headers.
    pub async fn call(
        &self,
        action: &str,
        body: Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = self.raw(action, body.to_string()).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"));
        (status, json, headers)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            super::within(Duration::from_secs(10), "the server to stop", task)
                .await
                .expect("join")
                .expect("serve");
        }
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An SDK client for `url` with dummy credentials whose secret key is `secret`.
pub fn sdk_client(url: &str, secret: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("x", secret, None, None, "test"))
        .endpoint_url(url)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}
