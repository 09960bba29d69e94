//! The serde mirror of `[functions.NAME]`: one struct per `type`, each with the asynchronous
//! invocation keys every type shares. Defaults are in `raw::default`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::default;

/// `[functions.NAME]`, tagged by `type`. Each variant's table is its own struct so that the
/// loader can read it directly (see `read`) and name the key of every bad field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(in crate::config) enum RawFunction {
    Http(RawHttp),
    Command(RawCommand),
    Log(RawLogFunction),
    Runtime(RawRuntime),
}

/// The `type` tags of [`RawFunction`].
pub(in crate::config) const FUNCTION_TYPES: [&str; 4] = ["http", "command", "log", "runtime"];

/// The keys of asynchronous invocation, the same in every function type. serde's `flatten` does
/// not combine with `deny_unknown_fields`, so each type's table repeats them through this macro.
macro_rules! raw_function {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(in crate::config) struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            #[serde(default = "default::max_retry_attempts")]
            pub max_retry_attempts: u32,
            #[serde(default = "default::max_event_age", with = "humantime_serde")]
            pub max_event_age: Duration,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub destinations: Option<RawDestinations>,
            #[serde(default = "default::retry_backoff", with = "humantime_serde")]
            pub retry_backoff: Duration,
        }
    };
}

/// `destinations = { on_success = "…", on_failure = "…" }`: queue names.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawDestinations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

raw_function! {
    /// `type = "http"`
    RawHttp {
        pub url: String,
        #[serde(default = "default::function_timeout", with = "humantime_serde")]
        pub timeout: Duration,
    }
}

raw_function! {
    /// `type = "command"`
    RawCommand {
        pub command: Vec<String>,
        #[serde(default)]
        pub env: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub working_dir: Option<String>,
        #[serde(default = "default::function_timeout", with = "humantime_serde")]
        pub timeout: Duration,
    }
}

raw_function! {
    /// `type = "log"`
    RawLogFunction {
        #[serde(default = "default::function_timeout", with = "humantime_serde")]
        pub timeout: Duration,
    }
}

raw_function! {
    /// `type = "runtime"`: a Lambda runtime served the Runtime API.
    RawRuntime {
        pub command: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub handler: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub working_dir: Option<String>,
        #[serde(default)]
        pub environment: BTreeMap<String, String>,
        #[serde(default = "default::memory_size")]
        pub memory_size: u32,
        #[serde(default = "default::function_timeout", with = "humantime_serde")]
        pub timeout: Duration,
        #[serde(default = "default::init_timeout", with = "humantime_serde")]
        pub init_timeout: Duration,
        #[serde(default = "default::max_environments")]
        pub max_environments: u32,
        #[serde(default = "default::idle_timeout", with = "humantime_serde")]
        pub idle_timeout: Duration,
    }
}
