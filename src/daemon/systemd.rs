//! systemd integration through `sd_notify`: READY=1 once every mapping polls, STOPPING=1 at
//! shutdown, and WATCHDOG=1 keep-alives from the event loop when the unit sets `WatchdogSec`.
//! Every call is a no-op when `NOTIFY_SOCKET` is unset.

use sd_notify::NotifyState;

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

/// Starts watchdog keep-alives at half the interval systemd asked for, if it asked. The task
/// runs on the main runtime, so a stuck event loop stops the keep-alives and systemd restarts
/// esmd.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    // As sd_watchdog_enabled(3): WATCHDOG_USEC, for this process if WATCHDOG_PID names one.
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
    let every = std::time::Duration::from_micros(usec / 2);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        }
    }))
}
