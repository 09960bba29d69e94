//! The one integration-test binary (one link step on a 2-core machine). Each module tests one
//! part of esmd through its public surface: real SQLite files in temporary directories, real
//! HTTP on port 0, real processes.

mod api_rest;
mod api_sqs;
mod auth;
mod ci_script;
mod common;
mod config;
mod config_fuzz;
mod conformance;
mod copy_storage;
mod crash;
mod daemon;
mod faults;
mod filter_vectors;
mod filters;
mod hardening;
mod invoke;
mod invoke_api;
mod invoke_api_runtime;
mod invoke_async;
mod lambda_api;
mod ops;
mod peek;
mod poller;
mod postgres_daemon;
mod queue_limits;
mod redrive;
mod remote_source;
mod runtime;
mod runtime_config;
mod runtime_lifecycle;
mod runtime_mapping;
mod runtime_protocol;
mod server_config;
mod soak;
mod store;
mod store_counts;
mod store_file;
mod supervision;
mod tidy;
