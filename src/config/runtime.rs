//! The rules of `type = "runtime"` functions (docs/interface.md §4.4): the bootstrap's argv,
//! its environment (never one of the variables esmd sets, nor one that would change how the
//! runtime works), the memory size and the execution environments' limits.

use std::path::PathBuf;
use std::time::Duration;

use super::command::check_command;
use super::raw::RawRuntime;
use super::read::Problems;
use super::RuntimeConfig;

/// Lambda's memory bounds, in MB.
const MEMORY_SIZES: std::ops::RangeInclusive<u32> = 128..=10_240;
/// The most execution environments one function may have.
const MAX_ENVIRONMENTS: u32 = 1000;
/// The longest Init esmd waits for (Lambda's function timeout maximum).
const MAX_INIT_TIMEOUT: Duration = Duration::from_secs(900);

/// Variables esmd sets itself (docs/interface.md §4.4) or that must never be set because they
/// change how a runtime works (Managed Instances mode, SnapStart, a binary log descriptor).
pub(crate) const RESERVED_VARIABLES: [&str; 16] = [
    "AWS_LAMBDA_RUNTIME_API",
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_MAX_CONCURRENCY",
    "_LAMBDA_TELEMETRY_LOG_FD",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
];

pub(super) fn check(name: &str, r: RawRuntime, p: &mut Problems<'_>) -> RuntimeConfig {
    check_command(
        name,
        &r.command,
        &r.environment,
        "environment",
        r.working_dir.as_deref(),
        p,
    );
    for var in r.environment.keys() {
        if RESERVED_VARIABLES.contains(&var.as_str()) {
            p.at(
                &["functions", name, "environment", var],
                "is reserved: esmd sets it (or must never set it) for a runtime",
            );
        }
    }
    if r.handler.as_deref() == Some("") || r.handler.as_deref().is_some_and(|h| h.contains('\0')) {
        p.at(
            &["functions", name, "handler"],
            "must be a non-empty name such as \"app.handler\"",
        );
    }
    if !MEMORY_SIZES.contains(&r.memory_size) {
        p.at(
            &["functions", name, "memory_size"],
            format!(
                "{} is out of range: Lambda allows 128 to 10240 (MB)",
                r.memory_size
            ),
        );
    }
    if r.init_timeout.is_zero() || r.init_timeout > MAX_INIT_TIMEOUT {
        p.at(
            &["functions", name, "init_timeout"],
            "must be greater than 0s and at most 15m",
        );
    }
    if !(1..=MAX_ENVIRONMENTS).contains(&r.max_environments) {
        p.at(
            &["functions", name, "max_environments"],
            format!(
                "{} is out of range: 1 to {MAX_ENVIRONMENTS}",
                r.max_environments
            ),
        );
    }
    if r.idle_timeout.is_zero() {
        p.at(
            &["functions", name, "idle_timeout"],
            "must be greater than 0s",
        );
    }
    RuntimeConfig {
        argv: r.command,
        handler: r.handler,
        working_dir: r.working_dir.map(PathBuf::from),
        env: r.environment,
        memory_size: r.memory_size,
        init_timeout: r.init_timeout,
        max_environments: r.max_environments,
        idle_timeout: r.idle_timeout,
    }
}
