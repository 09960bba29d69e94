//! `type = "runtime"` functions (docs/interface.md §4.4): real Lambda runtimes (awslambdaric,
//! `lambda_runtime`, a custom `bootstrap`) run as execution environments and served the Runtime
//! API. [`Runtimes`] holds one pool of environments per function, for as long as the invoker
//! lives; a pool whose function's configuration changed (a reload) is retired and its
//! environments killed, and [`Runtimes::shutdown`] kills them all.
//!
//! `api` serves the Runtime API, `environment` runs one runtime through its lifecycle, `output`
//! forwards its output and keeps the log tail, `pool` scales and reuses environments.

mod api;
mod environment;
mod output;
mod pool;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use self::api::Event;
use self::environment::{Ended, Environment, Spec};
use self::pool::Pool;
use super::{response, Invocation, InvokeTarget};
use crate::config::{FunctionConfig, RuntimeConfig};
use crate::metrics::RuntimeMetrics;

/// The account id in the ARNs given to runtimes.
const ACCOUNT_ID: &str = "000000000000";

/// Every runtime function's environments.
#[derive(Debug)]
pub(super) struct Runtimes {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    metrics: RuntimeMetrics,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("function", &self.function)
            .finish()
    }
}

/// What one runtime invocation gives back.
pub(super) struct RuntimeInvoked {
    pub invocation: Invocation,
    /// The invocation's log: `START`, the runtime's output, `END`, `REPORT` (last 4 KB).
    pub log: Option<String>,
}

/// Per-invocation settings from the caller.
pub(super) struct Call<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub client_context: Option<&'a str>,
    /// Answer [`Invocation::Throttled`] at once instead of waiting for an environment.
    pub throttle_when_busy: bool,
}

impl Runtimes {
    pub(super) fn new(metrics: RuntimeMetrics, cancel: CancellationToken) -> Self {
        Runtimes {
            pools: Mutex::default(),
            metrics,
            cancel,
        }
    }

    /// The pool of `function` as configured by `config`; a pool made for another configuration
    /// is retired.
    fn pool(&self, function: &str, config: &FunctionConfig) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(function) {
            if pool.config == *config && !pool.cancel.is_cancelled() {
                return pool.clone();
            }
            tracing::info!(
                function,
                "configuration changed: execution environments replaced"
            );
            pool.retire();
        }
        self.metrics.register_function(function);
        let pool = Pool::new(
            function.to_owned(),
            config.clone(),
            self.metrics.clone(),
            self.cancel.child_token(),
        );
        pools.insert(function.to_owned(), pool.clone());
        pool
    }

    /// Retires the pools of functions no longer configured as they are in `functions`.
    pub(super) fn reconfigure(
        &self,
        functions: &std::collections::BTreeMap<String, FunctionConfig>,
    ) {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|name, pool| {
            let keep = functions.get(name) == Some(&pool.config);
            if !keep {
                tracing::info!(function = %name, "configuration changed: execution environments shut down");
                pool.retire();
            }
            keep
        });
    }

    /// Kills every environment.
    pub(super) fn shutdown(&self) {
        self.cancel.cancel();
        let pools = std::mem::take(&mut *self.pools.lock().unwrap_or_else(PoisonError::into_inner));
        for pool in pools.values() {
            pool.retire();
        }
    }

    /// Invokes a runtime function once.
    pub(super) async fn invoke(
        &self,
        target: &InvokeTarget<'_>,
        runtime: &RuntimeConfig,
        payload: Vec<u8>,
        call: Call<'_>,
    ) -> RuntimeInvoked {
        let pool = self.pool(target.function, target.config);
        let function_arn = format!(
            "arn:aws:lambda:{}:{ACCOUNT_ID}:function:{}",
            target.region, target.function
        );
        let spec = Spec {
            function: target.function,
            region: target.region,
            runtime,
        };
        let mut event = Event {
            request_id: call.request_id.to_owned(),
            deadline_ms: 0,
            function_arn: function_arn.clone(),
            trace_id: call.trace_id.map(str::to_owned),
            client_context: call.client_context.map(str::to_owned),
            payload,
        };
        let timeout = target.config.timeout;
        let metrics = &pool.metrics;
        loop {
            let Some(mut lease) = pool.acquire(!call.throttle_when_busy).await else {
                return RuntimeInvoked {
                    invocation: Invocation::Throttled,
                    log: None,
                };
            };
            // What is left of the function's timeout once an Init retried within it is done.
            let mut budget = timeout;
            let mut env = match lease.env.take() {
                Some(env) => env,
                None => {
                    let init = Initialising::new(metrics, target.function);
                    let mut started =
                        Environment::start(&spec, call.request_id, runtime.init_timeout).await;
                    let retry_from = Instant::now();
                    let retried = started.as_ref().is_err_and(|f| f.timed_out);
                    if retried {
                        // Lambda retries an Init that overran once, inside the invocation and
                        // bounded by the function's timeout (docs/interface.md §4.4).
                        tracing::warn!(
                            function = target.function,
                            request_id = call.request_id,
                            "Init timed out; retrying it within the invocation's timeout"
                        );
                        started = Environment::start(&spec, call.request_id, timeout).await;
                    }
                    match started {
                        Ok(env) => {
                            init.done(env.init_duration.map(|d| d.as_secs_f64()));
                            budget = timeout
                                .saturating_sub(retry_from.elapsed())
                                .max(Duration::from_millis(1));
                            env
                        }
                        Err(failure) => {
                            init.done(None);
                            lease.release(false);
                            tracing::warn!(function = target.function, mapping = target.mapping, request_id = call.request_id, error = %failure.why, "execution environment failed to initialise");
                            let invocation = if failure.timed_out && retried {
                                Invocation::TimedOut
                            } else {
                                Invocation::RuntimeError {
                                    why: failure.why,
                                    document: failure.document,
                                }
                            };
                            return RuntimeInvoked {
                                invocation,
                                log: Some(failure.log),
                            };
                        }
                    }
                }
            };
            let started = Instant::now();
            let ended = env.invoke(event, budget).await;
            let elapsed = started.elapsed();
            let (invocation, keep, outcome) = match ended {
                Ended::Gone(back) => {
                    // It died while idle (after a 413, awslambdaric exits): start another.
                    event = back;
                    lease.env = Some(env);
                    lease.release(false);
                    continue;
                }
                Ended::Response(body) => (response(body), true, "success"),
                Ended::Error {
                    document,
                    why,
                    keep,
                } => (Invocation::RuntimeError { why, document }, keep, "error"),
                Ended::TimedOut => (Invocation::TimedOut, false, "timeout"),
            };
            metrics.invoked(target.function, outcome, elapsed.as_secs_f64());
            let ms = elapsed.as_secs_f64() * 1000.0;
            let init = env
                .init_duration
                .take()
                .map(|d| format!("Init Duration: {:.2} ms\t", d.as_secs_f64() * 1000.0))
                .unwrap_or_default();
            let report = format!(
                "REPORT RequestId: {id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\t\
                 Memory Size: {memory} MB\tMax Memory Used: {used} MB\t{init}",
                id = call.request_id,
                billed = ms.ceil() as u64,
                memory = runtime.memory_size,
                used = env.max_memory_mb(),
            );
            let log = env.finish_log(&report);
            lease.env = Some(env);
            lease.release(keep);
            return RuntimeInvoked {
                invocation,
                log: Some(log),
            };
        }
    }
}

/// An Init in progress, for the metrics: the `initialising` gauge goes back down however Init
/// ends, also when the invocation is abandoned in the middle of it.
struct Initialising<'a> {
    metrics: &'a RuntimeMetrics,
    function: &'a str,
    done: bool,
}

impl<'a> Initialising<'a> {
    fn new(metrics: &'a RuntimeMetrics, function: &'a str) -> Self {
        metrics.init_started(function);
        Initialising {
            metrics,
            function,
            done: false,
        }
    }

    /// Init ended: with its duration when the environment is ready (it is busy then).
    fn done(mut self, seconds: Option<f64>) {
        self.done = true;
        self.metrics.init_finished(self.function, seconds);
    }
}

impl Drop for Initialising<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.init_finished(self.function, None);
        }
    }
}
