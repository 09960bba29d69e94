//! Lambda's Invoke API (`invoke.rs`, docs/interface.md §3.8) and its event source mapping API
//! (docs/interface.md §3.5), REST-JSON as `aws lambda`,
//! boto3's `lambda` client and the SDKs speak it: `POST /2015-03-31/event-source-mappings`
//! (CreateEventSourceMapping, 202), `GET` on it (ListEventSourceMappings, by `FunctionName` or
//! `EventSourceArn`, paged with `Marker` and `MaxItems`), and `GET`, `PUT`, `DELETE` on
//! `/2015-03-31/event-source-mappings/{UUID}`.
//!
//! API mappings are stored in the database (`store/mappings.rs`). Each change leaves the mapping
//! in a transitional state (`Creating`, `Updating`, `Enabling`, `Disabling`, `Deleting`) and
//! raises the catalog's signal; the daemon then starts, restarts or stops its poller and settles
//! the state (`Enabled`, `Disabled`, or gone). A mapping in a transitional state cannot be
//! updated (`ResourceInUseException`, as Lambda). The configuration file's mappings are listed
//! too, under a UUID derived from their name, and refused on update and delete with a message
//! naming their key.

mod catalog;
mod error;
mod input;
mod invoke;
mod render;
mod resolve;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::domain::esm::{EsmSettings, EsmState};
use crate::domain::event::arn_of;
use crate::store::MappingChange;
use error::LambdaError;
use render::Entry;

pub use catalog::{file_uuid, MappingCatalog};

/// The collection's path.
pub(crate) const MAPPINGS: &str = "/2015-03-31/event-source-mappings";
/// The default and largest page of ListEventSourceMappings without `MaxItems`.
const DEFAULT_PAGE: usize = 100;

/// Every route of these APIs: the mappings under [`MAPPINGS`], and the functions' invocations.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    let collection = get(list)
        .post(create)
        .fallback(super::rest::method_not_allowed);
    axum::Router::new()
        .route(MAPPINGS, collection.clone())
        .route(&format!("{MAPPINGS}/"), collection)
        .route(
            invoke::INVOCATIONS,
            axum::routing::post(invoke::invoke).fallback(super::rest::method_not_allowed),
        )
        .route(
            &format!("{MAPPINGS}/{{uuid}}"),
            get(get_one)
                .put(update)
                .delete(delete)
                .fallback(super::rest::method_not_allowed),
        )
}

type Answer = Result<Response, LambdaError>;

fn answer(status: StatusCode, entry: &Entry, state: &AppState) -> Answer {
    Ok((status, Json(entry.render(&state.server))).into_response())
}

/// The refusal for a mapping of the configuration file.
fn read_only(uuid: &str, name: &str) -> LambdaError {
    LambdaError::invalid(format!(
        "The event source mapping {uuid} is mappings.{name} of esmd's configuration file and \
         cannot be changed through the API: edit or remove mappings.{name} in the file and reload \
         esmd (SIGHUP)"
    ))
}

/// The conflict with a mapping of the same function and queue.
fn conflict(state: &AppState, s: &EsmSettings, other: &str) -> LambdaError {
    LambdaError::conflict(format!(
        "An event source mapping with SQS arn (\" {} \") and function (\" {} \") already exists. \
         Please update or delete the existing mapping with UUID {other}",
        arn_of(&s.queue, &state.server.region, &state.server.account_id),
        s.function
    ))
}

/// A file mapping connecting the same function and queue, if any: `(uuid, name)`.
fn file_pair(known: &catalog::Known, s: &EsmSettings) -> Option<(String, String)> {
    known
        .file
        .iter()
        .find(|(_, (_, m))| m.function == s.function && m.queue == s.queue)
        .map(|(uuid, (name, _))| (uuid.clone(), name.clone()))
}

async fn create(State(state): State<AppState>, body: Bytes) -> Answer {
    let patch = input::parse(&body)?;
    let known = state.mappings.known();
    let given = patch
        .function_name
        .as_deref()
        .ok_or_else(|| LambdaError::invalid("FunctionName is required"))?;
    let function = resolve::function(given, &state.server, &known)?;
    let arn = patch.event_source_arn.as_deref().ok_or_else(|| {
        LambdaError::invalid("EventSourceArn is required: the ARN of the esmd queue to poll")
    })?;
    let settings = EsmSettings {
        function,
        queue: resolve::queue(arn, &state.server)?,
        enabled: patch.enabled.unwrap_or(true),
        batch_size: patch.batch_size.unwrap_or(10),
        batching_window_secs: patch.batching_window.unwrap_or(0),
        max_concurrency: patch.max_concurrency.flatten(),
        report_batch_item_failures: patch.report_batch_item_failures.unwrap_or(false),
        filters: patch.filters.unwrap_or_default(),
    };
    resolve::check(&settings, &state, &known).await?;
    if let Some((uuid, name)) = file_pair(&known, &settings) {
        return Err(conflict(
            &state,
            &settings,
            &format!("{uuid} (mappings.{name} of esmd's configuration file)"),
        ));
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    match state.store.create_mapping(&uuid, &settings).await {
        Ok(MappingChange::Done(stored)) => {
            tracing::info!(uuid = %uuid, function = %settings.function, queue = %settings.queue, "event source mapping created");
            state.mappings.notify();
            answer(StatusCode::ACCEPTED, &Entry::Api(stored), &state)
        }
        Ok(MappingChange::Conflict(other)) => Err(conflict(&state, &settings, &other)),
        Ok(MappingChange::Stale) => Err(LambdaError::in_use(
            "The mapping changed while it was created; try again",
        )),
        Err(e) => Err(LambdaError::store(&e)),
    }
}

/// The mapping `uuid`, from the file or the database.
async fn find(state: &AppState, uuid: &str) -> Result<Entry, LambdaError> {
    let known = state.mappings.known();
    if let Some((name, m)) = known.file.get(uuid) {
        return Ok(Entry::file(uuid, name, m, known.loaded_at));
    }
    match state.store.mapping(uuid).await {
        Ok(Some(stored)) => Ok(Entry::Api(stored)),
        Ok(None) => Err(LambdaError::not_found(format!(
            "The resource you requested does not exist. (Service: Lambda, event source mapping {uuid})"
        ))),
        Err(e) => Err(LambdaError::store(&e)),
    }
}

async fn get_one(State(state): State<AppState>, Path(uuid): Path<String>) -> Answer {
    let entry = find(&state, &uuid).await?;
    answer(StatusCode::OK, &entry, &state)
}

async fn update(State(state): State<AppState>, Path(uuid): Path<String>, body: Bytes) -> Answer {
    let stored = match find(&state, &uuid).await? {
        Entry::File { uuid, name, .. } => return Err(read_only(&uuid, &name)),
        Entry::Api(stored) => stored,
    };
    if stored.state.is_transitional() {
        return Err(LambdaError::in_use(format!(
            "Cannot update the event source mapping because it is in use: it is {}",
            stored.state.as_str()
        )));
    }
    let patch = input::parse(&body)?;
    let known = state.mappings.known();
    let old = &stored.settings;
    let function = match patch.function_name.as_deref() {
        Some(given) => resolve::function(given, &state.server, &known)?,
        None => old.function.clone(),
    };
    let settings = EsmSettings {
        function,
        queue: old.queue.clone(),
        enabled: patch.enabled.unwrap_or(old.enabled),
        batch_size: patch.batch_size.unwrap_or(old.batch_size),
        batching_window_secs: patch.batching_window.unwrap_or(old.batching_window_secs),
        max_concurrency: patch.max_concurrency.unwrap_or(old.max_concurrency),
        report_batch_item_failures: patch
            .report_batch_item_failures
            .unwrap_or(old.report_batch_item_failures),
        filters: patch.filters.unwrap_or_else(|| old.filters.clone()),
    };
    resolve::check(&settings, &state, &known).await?;
    if let Some((other, name)) = file_pair(&known, &settings) {
        return Err(conflict(
            &state,
            &settings,
            &format!("{other} (mappings.{name} of esmd's configuration file)"),
        ));
    }
    let next = match (old.enabled, settings.enabled) {
        (false, true) => EsmState::Enabling,
        (true, false) => EsmState::Disabling,
        _ => EsmState::Updating,
    };
    match state
        .store
        .update_mapping(&uuid, stored.version, &settings, next)
        .await
    {
        Ok(MappingChange::Done(stored)) => {
            tracing::info!(uuid = %uuid, state = next.as_str(), "event source mapping updated");
            state.mappings.notify();
            answer(StatusCode::ACCEPTED, &Entry::Api(stored), &state)
        }
        Ok(MappingChange::Conflict(other)) => Err(conflict(&state, &settings, &other)),
        Ok(MappingChange::Stale) => Err(LambdaError::in_use(
            "Cannot update the event source mapping because it is in use: it changed or was deleted meanwhile",
        )),
        Err(e) => Err(LambdaError::store(&e)),
    }
}

async fn delete(State(state): State<AppState>, Path(uuid): Path<String>) -> Answer {
    let mut stored = match find(&state, &uuid).await? {
        Entry::File { uuid, name, .. } => return Err(read_only(&uuid, &name)),
        Entry::Api(stored) => stored,
    };
    if stored.state == EsmState::Deleting {
        return Err(LambdaError::in_use(
            "Cannot delete the event source mapping because it is in use: it is Deleting",
        ));
    }
    match state
        .store
        .set_mapping_state(&uuid, stored.version, stored.state, EsmState::Deleting)
        .await
    {
        Ok(true) => {
            tracing::info!(uuid = %uuid, "event source mapping deleted");
            state.mappings.notify();
            stored.state = EsmState::Deleting;
            answer(StatusCode::ACCEPTED, &Entry::Api(stored), &state)
        }
        Ok(false) => Err(LambdaError::in_use(
            "Cannot delete the event source mapping because it is in use: it changed meanwhile",
        )),
        Err(e) => Err(LambdaError::store(&e)),
    }
}

/// ListEventSourceMappings' query.
#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "FunctionName")]
    function_name: Option<String>,
    #[serde(rename = "EventSourceArn")]
    event_source_arn: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Answer {
    let max = match q.max_items.as_deref() {
        None => DEFAULT_PAGE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                return Err(LambdaError::invalid(format!(
                    "MaxItems must be an integer from 1 to 10000, not {s:?}"
                )))
            }
        },
    };
    let known = state.mappings.known();
    let function = match q.function_name.as_deref() {
        Some(given) => Some(resolve::function(given, &state.server, &known)?),
        None => None,
    };
    let queue = match q.event_source_arn.as_deref() {
        Some(arn) => Some(resolve::queue(arn, &state.server)?),
        None => None,
    };
    let stored = state
        .store
        .mappings()
        .await
        .map_err(|e| LambdaError::store(&e))?;
    let mut all: Vec<Entry> = Entry::file_entries(&known)
        .chain(stored.into_iter().map(Entry::Api))
        .filter(|e| {
            function
                .as_ref()
                .is_none_or(|f| &e.settings().function == f)
        })
        .filter(|e| queue.as_ref().is_none_or(|q| &e.settings().queue == q))
        .filter(|e| q.marker.as_deref().is_none_or(|m| e.uuid() > m))
        .collect();
    all.sort_by(|a, b| a.uuid().cmp(b.uuid()));
    let more = all.len() > max;
    all.truncate(max);
    let mut out = json!({
        "EventSourceMappings": all.iter().map(|e| e.render(&state.server)).collect::<Vec<_>>(),
    });
    if more {
        if let Some(last) = all.last() {
            out["NextMarker"] = json!(last.uuid());
        }
    }
    Ok(Json(out).into_response())
}
