//! AddPermission and RemovePermission: statements of the queue's `Policy` document, added and
//! removed by label as AWS does (docs/semantics.md §6.1). The policy is kept and reported, never
//! enforced: esmd has no IAM.
//!
//! AWS's statements look like
//! `{"Sid":"<label>","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::<account>:root"},
//! "Action":"SQS:<action>","Resource":"<queue arn>"}` (a list where several accounts or actions
//! are given), in a document `{"Version":"2008-10-17","Id":"<queue arn>/SQSDefaultPolicy",…}`.
//! Removing the last statement removes the policy.

use serde_json::{json, Map, Value};

use super::input::Input;
use super::{empty, ActionResult, Ctx};
use crate::api::error::SqsError;
use crate::domain::queue::QueueName;
use crate::domain::Rejection;

/// The actions a permission may name (AWS's list; `*` is all of them).
const ACTIONS: [&str; 9] = [
    "*",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
];

/// Labels: letters, digits, hyphens and underscores, up to 80.
fn valid_label(label: &str) -> bool {
    (1..=80).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn label_error(label: &str, reason: &str) -> SqsError {
    Rejection::invalid(format!(
        "Value {} for parameter Label is invalid. Reason: {reason}",
        super::shorten(label)
    ))
    .into()
}

/// One value, or a list when there are several (as AWS writes principals and actions).
fn one_or_many(mut items: Vec<String>) -> Value {
    if items.len() == 1 {
        Value::String(items.remove(0))
    } else {
        Value::Array(items.into_iter().map(Value::String).collect())
    }
}

/// The queue's policy as a JSON object, or a new empty one.
fn policy_of(ctx: &Ctx, name: &QueueName, stored: Option<&str>) -> Map<String, Value> {
    let parsed = stored.and_then(|p| serde_json::from_str::<Value>(p).ok());
    if let Some(Value::Object(p)) = parsed {
        return p;
    }
    let mut p = Map::new();
    p.insert("Version".into(), json!("2008-10-17"));
    p.insert(
        "Id".into(),
        json!(format!("{}/SQSDefaultPolicy", ctx.queue_arn(name))),
    );
    p.insert("Statement".into(), json!([]));
    p
}

fn statements(policy: &mut Map<String, Value>) -> &mut Vec<Value> {
    let entry = policy
        .entry("Statement")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        // A single statement object is valid IAM too.
        let single = entry.take();
        *entry = Value::Array(vec![single]);
    }
    match entry {
        Value::Array(list) => list,
        _ => unreachable!("made an array above"),
    }
}

fn has_label(statement: &Value, label: &str) -> bool {
    statement.get("Sid").and_then(Value::as_str) == Some(label)
}

pub(crate) async fn add_permission(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let label = input.required_str("Label")?;
    let accounts = input.str_list("AWSAccountIds")?;
    let actions = input.str_list("Actions")?;
    let name = ctx.queue_of(&input)?;
    if accounts.is_empty() {
        return Err(Rejection::missing("AWSAccountIds").into());
    }
    if actions.is_empty() {
        return Err(Rejection::missing("Actions").into());
    }
    if !valid_label(label) {
        return Err(label_error(
            label,
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    if let Some(bad) = actions.iter().find(|a| !ACTIONS.contains(a)) {
        return Err(Rejection::invalid(format!(
            "Value SQS:{} for parameter ActionName is invalid. Reason: Please refer to the \
             appropriate WSDL for a list of valid actions.",
            super::shorten(bad)
        ))
        .into());
    }
    if let Some(bad) = accounts
        .iter()
        .find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Rejection::invalid(format!(
            "Value {} for parameter PrincipalId is invalid. Reason: Unable to verify.",
            super::shorten(bad)
        ))
        .into());
    }
    let info = ctx.queue_info(&name, "AddPermission").await?;
    let mut policy = policy_of(ctx, &name, info.settings.policy.as_deref());
    let list = statements(&mut policy);
    if list.iter().any(|s| has_label(s, label)) {
        return Err(label_error(label, "Already exists."));
    }
    let mut statement = Map::new();
    statement.insert("Sid".into(), json!(label));
    statement.insert("Effect".into(), json!("Allow"));
    let principals = accounts
        .iter()
        .map(|a| format!("arn:aws:iam::{a}:root"))
        .collect();
    statement.insert(
        "Principal".into(),
        json!({ "AWS": one_or_many(principals) }),
    );
    let actions = actions.iter().map(|a| format!("SQS:{a}")).collect();
    statement.insert("Action".into(), one_or_many(actions));
    statement.insert("Resource".into(), json!(ctx.queue_arn(&name)));
    list.push(Value::Object(statement));
    save(ctx, &name, info.settings, Some(policy), "AddPermission").await
}

pub(crate) async fn remove_permission(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let label = input.required_str("Label")?;
    let name = ctx.queue_of(&input)?;
    let info = ctx.queue_info(&name, "RemovePermission").await?;
    let mut policy = policy_of(ctx, &name, info.settings.policy.as_deref());
    let list = statements(&mut policy);
    let before = list.len();
    list.retain(|s| !has_label(s, label));
    if list.len() == before {
        return Err(label_error(label, "can't find label."));
    }
    let remaining = (!list.is_empty()).then_some(policy);
    save(ctx, &name, info.settings, remaining, "RemovePermission").await
}

async fn save(
    ctx: &Ctx,
    name: &QueueName,
    mut settings: crate::domain::queue::QueueSettings,
    policy: Option<Map<String, Value>>,
    action: &str,
) -> ActionResult {
    settings.policy = policy.map(|p| Value::Object(p).to_string());
    ctx.state
        .store
        .set_settings(name, &settings)
        .await
        .map_err(|e| SqsError::from_store(e, action))?;
    empty()
}
