//! systemd integration through `sd_notify`: READY=1 once every mapping polls, STOPPING=1 at
//! shutdown, and WATCHDOG=1 keep-alives from the event loop when the unit sets `WatchdogSec`.
//! Every call is a no-op when `NOTIFY_SOCKET` is unset.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tells systemd the daemon is ready.
pub fn ready() {
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
}

/// Tells systemd a configuration reload is in progress (followed by [`ready`]).
pub fn reloading() {
    let _ = sd_notify::notify(false, &[NotifyState::Reloading]);
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// Starts watchdog keep-alives at half the interval systemd asked for, if it asked, on
/// `tasks` until `cancel` fires. The task runs on the main runtime, so a stuck event loop stops
/// the keep-alives and systemd restarts esmd.
pub fn spawn_watchdog(tasks: &TaskTracker, cancel: CancellationToken) {
    let Some(every) = watchdog_interval() else {
        return;
    };
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
                }
            }
        }
    });
}

/// Half the watchdog interval systemd asked this process for, as sd_watchdog_enabled(3) reads
/// it: `WATCHDOG_USEC`, for this process if `WATCHDOG_PID` names one.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()?
        .parse()
        .ok()
        .filter(|&u| u > 0)?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}
