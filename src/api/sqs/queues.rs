//! Queue actions: CreateQueue (with AWS's FIFO naming and idempotence rules), GetQueueUrl,
//! ListQueues (prefix, `MaxResults` + `NextToken`), Get/SetQueueAttributes, DeleteQueue,
//! PurgeQueue, ListDeadLetterSourceQueues, and Tag/Untag/ListQueueTags.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::json;

use super::input::Input;
use super::{empty, output, queue_attrs, ActionResult, Ctx};
use crate::api::error::SqsError;
use crate::domain::queue::{QueueName, QueueSettings};
use crate::domain::{RejectCode, Rejection};

/// The most URLs one ListQueues answer holds.
const MAX_LIST: usize = 1000;

impl Ctx {
    /// Queue `name` as stored, or `action`'s error (`QueueDoesNotExist`...).
    pub(crate) async fn queue_info(
        &self,
        name: &QueueName,
        action: &str,
    ) -> Result<crate::store::QueueInfo, SqsError> {
        self.state
            .store
            .queue(name)
            .await
            .map_err(|e| SqsError::from_store(e, action))
    }

    /// The queue named by the request's `QueueUrl`.
    pub(crate) fn queue_of(&self, input: &Input<'_>) -> Result<QueueName, SqsError> {
        Ok(self.resolve(input.required_str("QueueUrl")?)?)
    }
}

const FIFO_NAME: &str = "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length";

pub(crate) async fn create_queue(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let raw_name = input.required_str("QueueName")?;
    let attrs = input.str_map("Attributes")?.unwrap_or_default();
    let tags = input.str_map("tags")?.unwrap_or_default();
    let fifo_attr = attrs
        .get("FifoQueue")
        .map(|v| v.eq_ignore_ascii_case("true"));
    let is_fifo_name = raw_name.ends_with(".fifo");
    match (is_fifo_name, fifo_attr) {
        (false, Some(true)) => return Err(Rejection::invalid(FIFO_NAME).into()),
        (_, Some(false)) => {
            return Err(Rejection::new(
                RejectCode::InvalidAttributeName,
                "Unknown Attribute FifoQueue.",
            )
            .into())
        }
        (true, None) => return Err(Rejection::invalid(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        )
        .into()),
        _ => {}
    }
    let name = QueueName::parse(raw_name)
        .map(|n| ctx.named(n))
        .map_err(|r| {
            if is_fifo_name {
                Rejection::invalid(FIFO_NAME)
            } else {
                r
            }
        })?;
    check_tags(&tags)?;
    let settings = queue_attrs::apply(ctx, name.kind(), &QueueSettings::default(), &attrs)?;
    let (info, created) = ctx
        .state
        .store
        .create_queue(&name, &settings, &tags)
        .await
        .map_err(|e| SqsError::from_store(e, "CreateQueue"))?;
    if !created {
        if let Some(attr) = queue_attrs::first_difference(ctx, &attrs, &info, &settings) {
            return Err(Rejection::new(
                RejectCode::QueueAlreadyExists,
                format!("A queue already exists with the same name and a different value for attribute {attr}"),
            )
            .into());
        }
    }
    Ok(json!({ "QueueUrl": ctx.queue_url(&info.name) }))
}

pub(crate) async fn get_queue_url(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let raw_name = input.required_str("QueueName")?;
    if let Some(owner) = input.str("QueueOwnerAWSAccountId")? {
        if owner != ctx.state.server.account_id {
            return Err(Rejection::no_queue().into());
        }
    }
    let name = QueueName::parse(raw_name)
        .map(|n| ctx.named(n))
        .map_err(|_| Rejection::no_queue())?;
    let info = ctx.queue_info(&name, "GetQueueUrl").await?;
    Ok(json!({ "QueueUrl": ctx.queue_url(&info.name) }))
}

/// Which page a listing wants: the names after `NextToken`, at most `MaxResults` (or 1,000);
/// the answer carries a token for the next page when `MaxResults` was given and more remain.
struct Page {
    max: Option<usize>,
    after: Option<String>,
}

impl Page {
    fn parse(input: &Input<'_>) -> Result<Page, SqsError> {
        let max = match input.int("MaxResults")? {
            None => None,
            Some(n @ 1..=1000) => Some(n as usize),
            Some(n) => {
                return Err(Rejection::bad_value(
                    "MaxResults",
                    n,
                    "MaxResults must be an integer between 1 and 1000.",
                )
                .into())
            }
        };
        let after = match input.str("NextToken")? {
            None | Some("") => None,
            Some(t) => {
                let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                Some(decoded.ok_or_else(|| Rejection::invalid("Invalid NextToken value."))?)
            }
        };
        Ok(Page { max, after })
    }

    /// The page of `names` (sorted) and the next token.
    fn take(&self, names: Vec<QueueName>) -> (Vec<QueueName>, Option<String>) {
        let mut rest: Vec<QueueName> = names
            .into_iter()
            .filter(|n| self.after.as_deref().is_none_or(|a| n.name() > a))
            .collect();
        let limit = self.max.unwrap_or(MAX_LIST);
        let more = rest.len() > limit;
        rest.truncate(limit);
        let token = match (more, self.max, rest.last()) {
            (true, Some(_), Some(last)) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.name().as_bytes()),
            ),
            _ => None,
        };
        (rest, token)
    }
}

#[derive(Serialize)]
struct ListQueuesOut {
    #[serde(rename = "QueueUrls", skip_serializing_if = "Vec::is_empty")]
    queue_urls: Vec<String>,
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(crate) async fn list_queues(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let prefix = input.str("QueueNamePrefix")?.unwrap_or("");
    let page = Page::parse(&input)?;
    let all = ctx
        .state
        .store
        .queues()
        .await
        .map_err(|e| SqsError::from_store(e, "ListQueues"))?;
    // The request's region's queues only; the page token is a name of that region.
    let mut names: Vec<QueueName> = all
        .into_iter()
        .map(|q| q.name)
        .filter(|n| n.region() == ctx.region && n.name().starts_with(prefix))
        .collect();
    names.sort();
    let (names, next_token) = page.take(names);
    output(&ListQueuesOut {
        queue_urls: names.iter().map(|n| ctx.queue_url(n)).collect(),
        next_token,
    })
}

pub(crate) async fn get_queue_attributes(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let requested = input.str_list("AttributeNames")?;
    let name = ctx.queue_of(&input)?;
    let info = ctx.queue_info(&name, "GetQueueAttributes").await?;
    let names: Vec<&str> = if requested.contains(&"All") {
        queue_attrs::all_names(name.kind(), &info.settings)
    } else {
        if let Some(bad) = requested.iter().find(|n| !queue_attrs::known(n)) {
            return Err(Rejection::new(
                RejectCode::InvalidAttributeName,
                format!("Unknown Attribute {}.", super::shorten(bad)),
            )
            .into());
        }
        requested
    };
    let counts = if names.iter().any(|n| queue_attrs::needs_counts(n)) {
        Some(
            ctx.state
                .store
                .counts(&name)
                .await
                .map_err(|e| SqsError::from_store(e, "GetQueueAttributes"))?,
        )
    } else {
        None
    };
    let attributes: BTreeMap<&str, String> = names
        .iter()
        .filter_map(|n| Some((*n, queue_attrs::render(ctx, n, &info, counts.as_ref())?)))
        .collect();
    if attributes.is_empty() {
        return empty();
    }
    Ok(json!({ "Attributes": attributes }))
}

pub(crate) async fn set_queue_attributes(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let Some(attrs) = input.str_map("Attributes")? else {
        return Err(Rejection::missing("Attributes").into());
    };
    let name = ctx.queue_of(&input)?;
    let info = ctx.queue_info(&name, "SetQueueAttributes").await?;
    let settings = queue_attrs::apply(ctx, name.kind(), &info.settings, &attrs)?;
    if settings != info.settings {
        ctx.state
            .store
            .set_settings(&name, &settings)
            .await
            .map_err(|e| SqsError::from_store(e, "SetQueueAttributes"))?;
    }
    empty()
}

pub(crate) async fn delete_queue(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let name = ctx.queue_of(&input)?;
    ctx.state
        .store
        .delete_queue(&name)
        .await
        .map_err(|e| SqsError::from_store(e, "DeleteQueue"))?;
    ctx.state.metrics.remove_queue(name.as_str());
    empty()
}

pub(crate) async fn purge_queue(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let name = ctx.queue_of(&input)?;
    ctx.state
        .store
        .purge(&name)
        .await
        .map_err(|e| SqsError::from_store(e, "PurgeQueue"))?;
    empty()
}

pub(crate) async fn list_dead_letter_source_queues(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let page = Page::parse(&input)?;
    let name = ctx.queue_of(&input)?;
    ctx.queue_info(&name, "ListDeadLetterSourceQueues").await?;
    let mut sources = ctx
        .state
        .store
        .dead_letter_sources(&name)
        .await
        .map_err(|e| SqsError::from_store(e, "ListDeadLetterSourceQueues"))?;
    sources.sort();
    let (sources, next_token) = page.take(sources);
    let mut out =
        json!({ "queueUrls": sources.iter().map(|n| ctx.queue_url(n)).collect::<Vec<_>>() });
    if let Some(t) = next_token {
        out["NextToken"] = t.into();
    }
    Ok(out)
}

/// AWS's tag limits: keys 1..128 characters, values up to 256, at most 50 per request.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), Rejection> {
    if tags.len() > 50 {
        return Err(Rejection::invalid(format!(
            "Too many tags: {} (at most 50 are allowed).",
            tags.len()
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(Rejection::invalid(
                "Tag keys must be between 1 and 128 characters in length.",
            ));
        }
        if v.chars().count() > 256 {
            return Err(Rejection::invalid(format!(
                "The value of tag {} is longer than 256 characters.",
                super::shorten(k)
            )));
        }
    }
    Ok(())
}

pub(crate) async fn tag_queue(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let Some(tags) = input.str_map("Tags")? else {
        return Err(Rejection::missing("Tags").into());
    };
    check_tags(&tags)?;
    let name = ctx.queue_of(&input)?;
    ctx.state
        .store
        .tag(&name, &tags)
        .await
        .map_err(|e| SqsError::from_store(e, "TagQueue"))?;
    empty()
}

pub(crate) async fn untag_queue(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let keys: Vec<String> = input
        .str_list("TagKeys")?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let name = ctx.queue_of(&input)?;
    ctx.state
        .store
        .untag(&name, &keys)
        .await
        .map_err(|e| SqsError::from_store(e, "UntagQueue"))?;
    empty()
}

pub(crate) async fn list_queue_tags(ctx: &Ctx, input: Input<'_>) -> ActionResult {
    let name = ctx.queue_of(&input)?;
    let info = ctx.queue_info(&name, "ListQueueTags").await?;
    if info.tags.is_empty() {
        return empty();
    }
    Ok(json!({ "Tags": info.tags }))
}
