//! esmd: AWS Lambda's SQS event source mapping on your own machine.
//!
//! One daemon keeps SQS-style standard and FIFO queues in one SQLite file, takes messages over
//! HTTP (the SQS JSON and query protocols and a small REST shim), and for each configured mapping
//! polls a queue in batches and invokes a function with an AWS-exact SQS event, deleting what
//! succeeded.
//!
//! # Layers (arrows point down only)
//!
//! ```text
//! main.rs   -> daemon, client, config, telemetry, domain
//! daemon    -> everything below it (the composition root)
//! api       -> store, invoke, metrics, clock, config, domain (never poller; invoke for the Invoke API)
//! poller    -> store, invoke, metrics, clock, config, domain (never api)
//! store     -> clock, config, domain      invoke -> metrics, config, domain
//! metrics   -> domain                     telemetry -> config
//! config    -> domain                     clock -> domain
//! domain    -> nothing in the crate
//! client    -> nothing in the crate   (`esmd send`, `queues`, `peek`, `explain`, `redrive`: an HTTP client)
//! ```
//!
//! # Invariants
//! - Nothing acknowledged is lost: a send is answered only after its transaction commits.
//! - Nothing is deleted without a successful invocation, except a record the mapping's filters
//!   drop: the poller deletes by receipt handle only after the function's result says so (or on
//!   arrival, for a filtered-out record), and never holds a transaction across an invocation.
//! - The api and the poller never talk directly: the store wakes pollers when messages arrive.

pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod invoke;
pub mod metrics;
pub mod poller;
pub mod store;
pub mod telemetry;
