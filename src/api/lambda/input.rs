//! Reading the JSON body of CreateEventSourceMapping and UpdateEventSourceMapping into a
//! [`Patch`]: the members that apply to an SQS mapping, each checked for its type and Lambda's
//! model range, with a message naming the member. Members that exist only for streams, Kafka,
//! MQ or DocumentDB are refused by name; `Tags`, `KMSKeyArn`, `MetricsConfig` and
//! `LoggingConfig` are accepted and ignored (esmd has no tagging, KMS or CloudWatch); members
//! Lambda's model does not have are ignored, as AWS's services do.

use serde_json::{Map, Value};

use super::error::LambdaError;

/// The members of one request; `None` when absent.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Patch {
    /// `EventSourceArn`.
    pub(crate) event_source_arn: Option<String>,
    /// `FunctionName`: a name or an ARN.
    pub(crate) function_name: Option<String>,
    /// `Enabled`.
    pub(crate) enabled: Option<bool>,
    /// `BatchSize`.
    pub(crate) batch_size: Option<u32>,
    /// `MaximumBatchingWindowInSeconds`.
    pub(crate) batching_window: Option<u32>,
    /// `FunctionResponseTypes`: whether it holds `ReportBatchItemFailures`.
    pub(crate) report_batch_item_failures: Option<bool>,
    /// `ScalingConfig`: `Some(None)` when it is given without `MaximumConcurrency` (removing it).
    pub(crate) max_concurrency: Option<Option<u32>>,
    /// `FilterCriteria.Filters[].Pattern`: `Some(empty)` removes the filters.
    pub(crate) filters: Option<Vec<String>>,
}

/// Members that configure other kinds of event source and cannot apply to an SQS queue.
const NOT_FOR_SQS: &[&str] = &[
    "StartingPosition",
    "StartingPositionTimestamp",
    "ParallelizationFactor",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "TumblingWindowInSeconds",
    "Topics",
    "Queues",
    "DestinationConfig",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "ProvisionedPollerConfig",
];

/// Reads a request body (empty means `{}`).
pub(crate) fn parse(body: &[u8]) -> Result<Patch, LambdaError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| LambdaError::invalid(format!("The request body is not valid JSON: {e}")))?
    };
    let Value::Object(members) = value else {
        return Err(LambdaError::invalid(
            "The request body must be a JSON object",
        ));
    };
    let mut patch = Patch::default();
    for (name, v) in &members {
        if v.is_null() {
            continue;
        }
        match name.as_str() {
            "EventSourceArn" => patch.event_source_arn = Some(string(name, v)?),
            "FunctionName" => patch.function_name = Some(string(name, v)?),
            "Enabled" => patch.enabled = Some(boolean(name, v)?),
            "BatchSize" => patch.batch_size = Some(integer(name, v, 1, 10_000)?),
            "MaximumBatchingWindowInSeconds" => {
                patch.batching_window = Some(integer(name, v, 0, 300)?)
            }
            "FunctionResponseTypes" => patch.report_batch_item_failures = Some(response_types(v)?),
            "ScalingConfig" => patch.max_concurrency = Some(scaling(v)?),
            "FilterCriteria" => patch.filters = Some(filters(v)?),
            "Tags" | "KMSKeyArn" | "MetricsConfig" | "LoggingConfig" => {}
            other if NOT_FOR_SQS.contains(&other) => {
                return Err(LambdaError::invalid(format!(
                    "Unsupported {other} parameter for an SQS event source mapping: esmd polls \
                     SQS queues only, and {other} configures other kinds of event source"
                )))
            }
            _ => {}
        }
    }
    Ok(patch)
}

fn string(name: &str, v: &Value) -> Result<String, LambdaError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| LambdaError::invalid(format!("{name} must be a string, not {v}")))
}

fn boolean(name: &str, v: &Value) -> Result<bool, LambdaError> {
    v.as_bool()
        .ok_or_else(|| LambdaError::invalid(format!("{name} must be true or false, not {v}")))
}

fn integer(name: &str, v: &Value, min: i64, max: i64) -> Result<u32, LambdaError> {
    let n = v
        .as_i64()
        .ok_or_else(|| LambdaError::invalid(format!("{name} must be an integer, not {v}")))?;
    if !(min..=max).contains(&n) {
        return Err(LambdaError::invalid(format!(
            "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: \
             Member must have value {} {}",
            lower_camel(name),
            if n < min {
                "greater than or equal to"
            } else {
                "less than or equal to"
            },
            if n < min { min } else { max }
        )));
    }
    u32::try_from(n).map_err(|_| LambdaError::invalid(format!("{name} {n} is out of range")))
}

/// `batchSize` for `BatchSize`, as AWS's validation messages name members.
fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn response_types(v: &Value) -> Result<bool, LambdaError> {
    let list = v.as_array().ok_or_else(|| {
        LambdaError::invalid(format!("FunctionResponseTypes must be a list, not {v}"))
    })?;
    if list.len() > 1 {
        return Err(LambdaError::invalid(
            "FunctionResponseTypes may hold at most one value, ReportBatchItemFailures",
        ));
    }
    match list.first() {
        None => Ok(false),
        Some(Value::String(s)) if s == "ReportBatchItemFailures" => Ok(true),
        Some(other) => Err(LambdaError::invalid(format!(
            "1 validation error detected: Value '[{}]' at 'functionResponseTypes' failed to \
             satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value \
             set: [ReportBatchItemFailures]]",
            other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned)
        ))),
    }
}

fn scaling(v: &Value) -> Result<Option<u32>, LambdaError> {
    let obj = v
        .as_object()
        .ok_or_else(|| LambdaError::invalid(format!("ScalingConfig must be an object, not {v}")))?;
    match obj.get("MaximumConcurrency") {
        None | Some(Value::Null) => Ok(None),
        Some(n) => integer("MaximumConcurrency", n, 2, 1000).map(Some),
    }
}

fn filters(v: &Value) -> Result<Vec<String>, LambdaError> {
    let obj = v.as_object().ok_or_else(|| {
        LambdaError::invalid(format!("FilterCriteria must be an object, not {v}"))
    })?;
    let list = match obj.get("Filters") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "FilterCriteria.Filters must be a list, not {other}"
            )))
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            f.get("Pattern")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    LambdaError::invalid(format!(
                    "FilterCriteria.Filters[{i}] must be an object with a Pattern string, not {f}"
                ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_with_their_types_and_ranges() {
        let p = parse(
            br#"{"FunctionName":"f","BatchSize":50,"MaximumBatchingWindowInSeconds":2,
                 "FunctionResponseTypes":["ReportBatchItemFailures"],"ScalingConfig":{},
                 "FilterCriteria":{"Filters":[{"Pattern":"{}"}]},"Tags":{"a":"b"},"Other":1}"#,
        )
        .expect("a valid body");
        assert_eq!(p.batch_size, Some(50));
        assert_eq!(p.batching_window, Some(2));
        assert_eq!(p.report_batch_item_failures, Some(true));
        assert_eq!(p.max_concurrency, Some(None));
        assert_eq!(p.filters, Some(vec!["{}".to_owned()]));
        assert_eq!(parse(b"").expect("empty is {}"), Patch::default());
        for (body, kind) in [
            (&br#"{"BatchSize":0}"#[..], "InvalidParameterValueException"),
            (br#"{"BatchSize":"10"}"#, "InvalidParameterValueException"),
            (
                br#"{"StartingPosition":"LATEST"}"#,
                "InvalidParameterValueException",
            ),
            (
                br#"{"FunctionResponseTypes":["Other"]}"#,
                "InvalidParameterValueException",
            ),
            (
                br#"{"ScalingConfig":{"MaximumConcurrency":1}}"#,
                "InvalidParameterValueException",
            ),
            (br#"[1]"#, "InvalidParameterValueException"),
        ] {
            let e = parse(body).expect_err("refused");
            assert_eq!(e.kind(), kind, "{}", String::from_utf8_lossy(body));
        }
    }
}
