//! One function's execution environments: at most `max_environments` at once, warm ones reused
//! (the most recently used first), one invocation per environment, idle ones shut down after
//! `idle_timeout`, all of them killed when the pool is retired (reload) or esmd stops. An
//! invocation that finds every environment busy and no room for another waits for one, or is
//! throttled at once when its caller asked for that.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::environment::Environment;
use crate::config::FunctionConfig;
use crate::metrics::RuntimeMetrics;

/// A function's environments.
pub(super) struct Pool {
    pub function: String,
    pub config: FunctionConfig,
    pub metrics: RuntimeMetrics,
    state: Mutex<PoolState>,
    freed: Notify,
    /// Cancelled when the pool is retired or esmd stops.
    pub cancel: CancellationToken,
}

#[derive(Default)]
struct PoolState {
    /// Warm environments and when each was last used.
    idle: Vec<(Environment, Instant)>,
    /// Environments that exist or are being started, idle ones included.
    total: u32,
}

/// The right to one environment, warm or yet to start. Dropped without [`Lease::release`], it
/// kills its environment (the invocation was abandoned mid-way) and frees the slot.
pub(super) struct Lease {
    pool: Arc<Pool>,
    pub env: Option<Environment>,
    /// Set by [`Lease::release`]; a lease dropped without it frees its slot in `Drop`.
    released: bool,
}

impl Pool {
    pub(super) fn new(
        function: String,
        config: FunctionConfig,
        metrics: RuntimeMetrics,
        cancel: CancellationToken,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            function,
            config,
            metrics,
            state: Mutex::new(PoolState::default()),
            freed: Notify::new(),
            cancel,
        });
        tokio::spawn(reap(Arc::downgrade(&pool), pool.cancel.clone()));
        pool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn max(&self) -> u32 {
        match &self.config.target {
            crate::config::FunctionTarget::Runtime(r) => r.max_environments,
            _ => 1,
        }
    }

    /// A warm environment, or room for a new one; `None` when throttled (`wait` false and none
    /// free) or the pool is retired.
    pub(super) async fn acquire(self: &Arc<Self>, wait: bool) -> Option<Lease> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.cancel.is_cancelled() {
                return None;
            }
            {
                let mut state = self.lock();
                if let Some((env, _)) = state.idle.pop() {
                    drop(state);
                    self.metrics.idle_to_busy(&self.function);
                    return Some(Lease {
                        pool: self.clone(),
                        env: Some(env),
                        released: false,
                    });
                }
                if state.total < self.max() {
                    state.total += 1;
                    return Some(Lease {
                        pool: self.clone(),
                        env: None,
                        released: false,
                    });
                }
            }
            if !wait {
                return None;
            }
            tokio::select! {
                () = &mut freed => {}
                () = self.cancel.cancelled() => return None,
            }
        }
    }

    /// Kills every idle environment; busy ones are killed as they come back.
    pub(super) fn retire(&self) {
        self.cancel.cancel();
        let idle = std::mem::take(&mut self.lock().idle);
        for (env, _) in idle {
            self.forget(env);
        }
        self.freed.notify_waiters();
    }

    /// Kills `env` and frees its slot.
    fn forget(&self, mut env: Environment) {
        env.kill();
        self.metrics.state(&self.function, "idle", -1);
        self.lock().total -= 1;
    }
}

impl Lease {
    /// Gives the environment back: warm when it is still usable, else killed.
    pub(super) fn release(mut self, keep: bool) {
        self.released = true;
        let pool = self.pool.clone();
        match self.env.take() {
            Some(env) if keep && env.alive() && !pool.cancel.is_cancelled() => {
                pool.metrics.busy_to_idle(&pool.function);
                pool.lock().idle.push((env, Instant::now()));
            }
            Some(mut env) => {
                env.kill();
                pool.metrics.state(&pool.function, "busy", -1);
                pool.lock().total -= 1;
            }
            None => pool.lock().total -= 1,
        }
        pool.freed.notify_waiters();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Abandoned mid-invocation, or while its environment was starting.
        if let Some(mut env) = self.env.take() {
            env.kill();
            self.pool.metrics.state(&self.pool.function, "busy", -1);
        }
        self.pool.lock().total -= 1;
        self.pool.freed.notify_waiters();
    }
}

/// Shuts down environments idle longer than `idle_timeout`, until the pool is retired.
async fn reap(pool: std::sync::Weak<Pool>, cancel: CancellationToken) {
    let idle_timeout = match pool.upgrade().map(|p| p.config.target.clone()) {
        Some(crate::config::FunctionTarget::Runtime(r)) => r.idle_timeout,
        _ => return,
    };
    let every = (idle_timeout / 4).clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(5),
    );
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = cancel.cancelled() => {
                if let Some(pool) = pool.upgrade() {
                    pool.retire();
                }
                return;
            }
        }
        let Some(pool) = pool.upgrade() else { return };
        let expired: Vec<Environment> = {
            let mut state = pool.lock();
            let (old, warm): (Vec<_>, Vec<_>) = std::mem::take(&mut state.idle)
                .into_iter()
                .partition(|(_, used)| used.elapsed() >= idle_timeout);
            state.idle = warm;
            old.into_iter().map(|(env, _)| env).collect()
        };
        for env in expired {
            tracing::info!(function = %pool.function, pid = env.pid(), "idle execution environment shut down");
            pool.forget(env);
        }
        pool.freed.notify_waiters();
    }
}
