//! `esmd redrive --from DLQ [--to QUEUE] [--rate N]` (docs/interface.md §1): starts a message
//! move task on a running daemon through the SQS JSON protocol (GetQueueAttributes for the
//! queues' ARNs, StartMessageMoveTask), then polls ListMessageMoveTasks and shows the task's
//! progress as a bar on stderr (drawn only on a terminal) until it is over. COMPLETED is a
//! success; CANCELLED (by CancelMessageMoveTask from elsewhere) and FAILED are errors naming
//! what happened.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::{base_url, http, ClientError};

/// How often the task's progress is read.
const POLL: Duration = Duration::from_millis(200);

/// What `esmd redrive` was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveArgs {
    /// `--from`: the dead-letter queue.
    pub from: String,
    /// `--to`: the destination; `None` sends each message back to its original source queue.
    pub to: Option<String>,
    /// `--rate`: `MaxNumberOfMessagesPerSecond` (1 to 500).
    pub rate: Option<u32>,
    /// `server.auth_token`, when the daemon requires one.
    pub auth_token: Option<String>,
}

/// One SQS JSON request; an error answer becomes [`ClientError::Refused`] with SQS's code.
async fn call(
    base: &str,
    token: Option<&str>,
    action: &str,
    body: Value,
) -> Result<Value, ClientError> {
    let mut req = http()?
        .post(format!("{base}/"))
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|source| {
        if source.is_connect() || source.is_timeout() {
            ClientError::Unreachable {
                endpoint: base.to_owned(),
                source,
            }
        } else {
            ClientError::BadAnswer {
                endpoint: base.to_owned(),
                source,
            }
        }
    })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let code = value["__type"]
        .as_str()
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let message = value["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| text.chars().take(500).collect());
    Err(ClientError::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

/// The ARN of queue `name`.
async fn arn_of(base: &str, token: Option<&str>, name: &str) -> Result<String, ClientError> {
    let answer = call(
        base,
        token,
        "GetQueueAttributes",
        json!({ "QueueUrl": name, "AttributeNames": ["QueueArn"] }),
    )
    .await?;
    answer["Attributes"]["QueueArn"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Refused {
            status: 200,
            code: "BadAnswer".into(),
            message: format!("GetQueueAttributes gave no QueueArn for {name}"),
        })
}

/// Runs a redrive to its end and returns the line to print.
///
/// # Errors
/// [`ClientError::Unreachable`] when no daemon answers; [`ClientError::Refused`] when it refuses
/// the task (no such queue, not a dead-letter queue, a task already running, a bad rate);
/// [`ClientError::MoveTask`] when the task ends CANCELLED or FAILED.
pub async fn redrive(endpoint: &str, args: RedriveArgs) -> Result<String, ClientError> {
    let base = base_url(endpoint)?;
    let token = args.auth_token.as_deref();
    let source_arn = arn_of(&base, token, &args.from).await?;
    let mut start = json!({ "SourceArn": source_arn });
    if let Some(to) = &args.to {
        start["DestinationArn"] = arn_of(&base, token, to).await?.into();
    }
    if let Some(rate) = args.rate {
        start["MaxNumberOfMessagesPerSecond"] = rate.into();
    }
    call(&base, token, "StartMessageMoveTask", start).await?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("redriving {}", args.from));
    let destination = args.to.as_deref().unwrap_or("their original source queues");
    loop {
        let list = call(
            &base,
            token,
            "ListMessageMoveTasks",
            json!({ "SourceArn": source_arn, "MaxResults": 1 }),
        )
        .await?;
        let task = &list["Results"][0];
        let moved = task["ApproximateNumberOfMessagesMoved"]
            .as_u64()
            .unwrap_or(0);
        let to_move = task["ApproximateNumberOfMessagesToMove"]
            .as_u64()
            .unwrap_or(0);
        bar.set_length(to_move.max(moved));
        bar.set_position(moved);
        match task["Status"].as_str().unwrap_or("") {
            "RUNNING" | "CANCELLING" => tokio::time::sleep(POLL).await,
            "COMPLETED" => {
                bar.finish_and_clear();
                return Ok(format!(
                    "moved {moved} message{} from {} to {destination}",
                    if moved == 1 { "" } else { "s" },
                    args.from
                ));
            }
            other => {
                bar.abandon();
                return Err(ClientError::MoveTask {
                    status: other.to_owned(),
                    moved,
                    to_move,
                    reason: task["FailureReason"].as_str().map(str::to_owned),
                });
            }
        }
    }
}
