//! From what a request names to what esmd has: `FunctionName` (a name, a partial ARN
//! `ACCOUNT:function:NAME` or a full ARN, optionally `:$LATEST`) to a configured function, and
//! `EventSourceArn` to an esmd queue; and the checks Lambda makes on a mapping's settings as a
//! whole ([`check`]), with Lambda's exceptions and, where Lambda has one, its message.

use std::time::Duration;

use super::catalog::Known;
use super::error::LambdaError;
use crate::api::AppState;
use crate::config::{
    ServerConfig, MAX_BATCHING_WINDOW, MAX_BATCH_SIZE_FIFO, MAX_BATCH_SIZE_WITHOUT_WINDOW,
    MIN_MAX_FILTERS,
};
use crate::domain::esm::EsmSettings;
use crate::domain::event::{arn_of, queue_arn};
use crate::domain::filter::Pattern;
use crate::domain::queue::{is_region, QueueName};
use crate::domain::RejectCode;
use crate::store::StoreError;

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME`.
pub(crate) fn function_arn(server: &ServerConfig, name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{}:function:{name}",
        server.region, server.account_id
    )
}

/// The configured function `given` names. `ResourceNotFoundException` ("Function not found:
/// ARN", as Lambda) when there is none, or when an ARN names another region or account.
pub(crate) fn function(
    given: &str,
    server: &ServerConfig,
    known: &Known,
) -> Result<String, LambdaError> {
    let not_found = |name: &str| {
        LambdaError::not_found(format!(
            "Function not found: {}",
            if given.starts_with("arn:") {
                given.to_owned()
            } else {
                function_arn(server, name)
            }
        ))
    };
    let name = match given.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "lambda", region, account, "function", name, rest @ ..] => {
            if *region != server.region || *account != server.account_id {
                return Err(not_found(name));
            }
            qualified(name, rest).ok_or_else(|| not_found(name))?
        }
        [account, "function", name, rest @ ..] if account.len() == 12 => {
            if *account != server.account_id {
                return Err(not_found(name));
            }
            qualified(name, rest).ok_or_else(|| not_found(name))?
        }
        _ if known.functions.contains_key(given) => given,
        [name, rest @ ..] => qualified(name, rest).ok_or_else(|| not_found(given))?,
        [] => given,
    };
    if known.functions.contains_key(name) {
        Ok(name.to_owned())
    } else {
        Err(not_found(name))
    }
}

/// `name` if the qualifier is absent or `$LATEST` (esmd's functions have no versions or aliases).
fn qualified<'a>(name: &'a str, qualifier: &[&str]) -> Option<&'a str> {
    match qualifier {
        [] | ["$LATEST"] => Some(name),
        _ => None,
    }
}

/// The esmd queue `arn` names: `arn:aws:sqs:REGION:ACCOUNT:NAME` with esmd's account, the queue
/// of that region (docs/interface.md §3.7).
pub(crate) fn queue(arn: &str, server: &ServerConfig) -> Result<QueueName, LambdaError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let expected = queue_arn("REGION", &server.account_id, "NAME");
    match parts.as_slice() {
        ["arn", _, "sqs", region, account, name]
            if is_region(region) && *account == server.account_id =>
        {
            let region = if *region == server.region { "" } else { region };
            QueueName::parse(name)
                .map(|q| q.in_region(region))
                .map_err(|e| {
                    LambdaError::invalid(format!("EventSourceArn {arn}: invalid queue name: {e}"))
                })
        }
        ["arn", _, "sqs", ..] => Err(LambdaError::invalid(format!(
            "EventSourceArn {arn} is not one of esmd's queues: their ARNs are {expected} \
             (server.account_id)"
        ))),
        _ => Err(LambdaError::invalid(format!(
            "EventSourceArn {arn} is not an SQS queue's ARN: esmd maps its own SQS queues only \
             ({expected})"
        ))),
    }
}

/// Lambda's checks of a mapping's settings as a whole: the function exists, the queue exists,
/// `BatchSize` within the queue kind's limit, a batching window for more than 10 records (none
/// on FIFO), at most 5 filters that each compile, and a function timeout no longer than the
/// queue's visibility timeout.
pub(crate) async fn check(
    s: &EsmSettings,
    state: &AppState,
    known: &Known,
) -> Result<(), LambdaError> {
    let timeout = known
        .functions
        .get(&s.function)
        .map(|f| f.timeout)
        .ok_or_else(|| {
            LambdaError::not_found(format!(
                "Function not found: {}",
                function_arn(&state.server, &s.function)
            ))
        })?;
    let queue = match state.store.queue(&s.queue).await {
        Ok(q) => q,
        Err(StoreError::Rejected(r)) if r.code == RejectCode::QueueDoesNotExist => {
            return Err(LambdaError::invalid(format!(
                "Error occurred while ReceiveMessage. SQS Error Code: \
                 AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue \
                 does not exist: {}",
                arn_of(&s.queue, &state.server.region, &state.server.account_id)
            )))
        }
        Err(e) => return Err(LambdaError::store(&e)),
    };
    if s.queue.is_fifo() {
        if s.batch_size > MAX_BATCH_SIZE_FIFO {
            return Err(LambdaError::invalid(format!(
                "BatchSize {} is above the maximum of {MAX_BATCH_SIZE_FIFO} for a FIFO queue",
                s.batch_size
            )));
        }
        if s.batching_window_secs != 0 {
            return Err(LambdaError::invalid(
                "Batching window is not supported for FIFO queues",
            ));
        }
    } else if s.batch_size > MAX_BATCH_SIZE_WITHOUT_WINDOW && s.batching_window_secs == 0 {
        return Err(LambdaError::invalid(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is \
             greater than 10",
        ));
    }
    debug_assert!(u64::from(s.batching_window_secs) <= MAX_BATCHING_WINDOW.as_secs());
    if s.filters.len() > MIN_MAX_FILTERS as usize {
        return Err(LambdaError::invalid(format!(
            "FilterCriteria holds {} filters; the limit is {MIN_MAX_FILTERS} per event source mapping",
            s.filters.len()
        )));
    }
    for (i, p) in s.filters.iter().enumerate() {
        Pattern::compile(p).map_err(|e| {
            LambdaError::invalid(format!("FilterCriteria.Filters[{i}].Pattern {p}: {e}"))
        })?;
    }
    let visibility = queue.settings.visibility_timeout;
    if timeout > visibility {
        return Err(LambdaError::invalid(format!(
            "Queue visibility timeout: {} is less than Function timeout: {}",
            seconds(visibility),
            seconds(timeout)
        )));
    }
    Ok(())
}

/// "30 seconds", as Lambda words it.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} seconds", d.as_secs())
    } else {
        format!("{} seconds", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerConfig {
        ServerConfig {
            listen: "127.0.0.1:0".to_owned(),
            region: "eu-central-1".to_owned(),
            account_id: "000000000000".to_owned(),
            auth_token: None,
            auth_token_file: None,
            allow_unauthenticated: false,
            shutdown_grace: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            max_connections: None,
        }
    }

    #[test]
    fn a_function_is_named_by_name_partial_arn_or_arn() {
        let server = server();
        let mut known = Known::default();
        known.functions.insert(
            "resize".to_owned(),
            crate::config::FunctionConfig {
                timeout: Duration::from_secs(3),
                target: crate::config::FunctionTarget::Log,
                async_config: Default::default(),
            },
        );
        let arn = function_arn(&server, "resize");
        for given in [
            "resize".to_owned(),
            "resize:$LATEST".to_owned(),
            format!("{}:function:resize", server.account_id),
            arn.clone(),
            format!("{arn}:$LATEST"),
        ] {
            assert_eq!(
                function(&given, &server, &known).ok().as_deref(),
                Some("resize"),
                "{given}"
            );
        }
        for given in [
            "other".to_owned(),
            "resize:prod".to_owned(),
            arn.replace(&server.region, "eu-west-9"),
        ] {
            let e = function(&given, &server, &known).expect_err(&given);
            assert_eq!(e.kind(), "ResourceNotFoundException");
        }
    }

    #[test]
    fn an_event_source_must_be_one_of_esmds_queues() {
        let server = server();
        let arn = queue_arn(&server.region, &server.account_id, "orders.fifo");
        assert_eq!(
            queue(&arn, &server).ok().map(|q| q.to_string()).as_deref(),
            Some("orders.fifo")
        );
        let away = arn.replace(&server.region, "eu-west-9");
        assert_eq!(
            queue(&away, &server).ok().map(|q| q.to_string()).as_deref(),
            Some("eu-west-9/orders.fifo"),
            "an ARN of another region names that region's queue"
        );
        for bad in [
            arn.replace(&server.account_id, "123456789012"),
            "arn:aws:kinesis:us-east-1:000000000000:stream/s".to_owned(),
            "orders".to_owned(),
        ] {
            assert_eq!(
                queue(&bad, &server).expect_err(&bad).kind(),
                "InvalidParameterValueException"
            );
        }
    }
}
