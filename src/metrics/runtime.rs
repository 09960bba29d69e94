//! The series of `runtime` functions' execution environments (docs/interface.md §3.3):
//! environments by state, cold starts, Init durations and invocation durations by outcome.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Records what execution environments do. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    environments: IntGaugeVec,
    cold_starts: IntCounterVec,
    init_duration: HistogramVec,
    duration: HistogramVec,
}

impl Default for RuntimeMetrics {
    /// Series on a registry of their own, never scraped (for an invoker without a daemon).
    fn default() -> Self {
        RuntimeMetrics::register(&Registry::new())
    }
}

impl RuntimeMetrics {
    pub(super) fn register(r: &Registry) -> Self {
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0, 300.0, 900.0,
        ];
        let environments = IntGaugeVec::new(
            Opts::new(
                "esmd_runtime_environments",
                "Execution environments of a runtime function by state (initialising, idle, busy).",
            ),
            &["function", "state"],
        )
        .expect("valid metric");
        let cold_starts = IntCounterVec::new(
            Opts::new(
                "esmd_runtime_cold_starts_total",
                "Execution environments started (Init) for a runtime function.",
            ),
            &["function"],
        )
        .expect("valid metric");
        let init_duration = HistogramVec::new(
            HistogramOpts::new(
                "esmd_runtime_init_duration_seconds",
                "Init duration of an execution environment: process start to its first /next.",
            )
            .buckets(buckets.clone()),
            &["function"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "esmd_runtime_invocation_duration_seconds",
                "Runtime function invocation duration (Init excluded) by outcome (success, error, timeout).",
            )
            .buckets(buckets),
            &["function", "outcome"],
        )
        .expect("valid metric");
        for c in [
            Box::new(environments.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cold_starts.clone()),
            Box::new(init_duration.clone()),
            Box::new(duration.clone()),
        ] {
            r.register(c).expect("metric names are unique");
        }
        RuntimeMetrics {
            environments,
            cold_starts,
            init_duration,
            duration,
        }
    }

    /// Creates `function`'s series, so they read 0 before its first invocation.
    pub fn register_function(&self, function: &str) {
        for state in ["initialising", "idle", "busy"] {
            self.environments.with_label_values(&[function, state]);
        }
        self.cold_starts.with_label_values(&[function]);
    }

    /// Adds `delta` environments of `function` in `state`.
    pub fn state(&self, function: &str, state: &str, delta: i64) {
        self.environments
            .with_label_values(&[function, state])
            .add(delta);
    }

    /// A new environment starts its Init.
    pub fn init_started(&self, function: &str) {
        self.cold_starts.with_label_values(&[function]).inc();
        self.state(function, "initialising", 1);
    }

    /// Init ended: `ok` makes the environment busy with its first invocation.
    pub fn init_finished(&self, function: &str, seconds: Option<f64>) {
        self.state(function, "initialising", -1);
        if let Some(s) = seconds {
            self.init_duration.with_label_values(&[function]).observe(s);
            self.state(function, "busy", 1);
        }
    }

    /// A warm environment takes an invocation.
    pub fn idle_to_busy(&self, function: &str) {
        self.state(function, "idle", -1);
        self.state(function, "busy", 1);
    }

    /// An environment is back, warm.
    pub fn busy_to_idle(&self, function: &str) {
        self.state(function, "busy", -1);
        self.state(function, "idle", 1);
    }

    /// An invocation of `function` ended with `outcome` after `seconds`.
    pub fn invoked(&self, function: &str, outcome: &str, seconds: f64) {
        self.duration
            .with_label_values(&[function, outcome])
            .observe(seconds);
    }
}
