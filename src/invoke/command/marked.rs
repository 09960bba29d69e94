//! Finding and killing every process an invocation started, wherever it went. Each invocation's
//! process gets a fresh `ESMD_INVOCATION_ID` in its environment, which everything it starts
//! inherits; a process that leaves the function's process group (`setsid`, a double fork, a
//! daemon) still carries it. When the invocation ends, every process of esmd's user whose
//! initial environment holds that exact id is sent SIGKILL, in rounds until none is found (a
//! process forking while it is being killed is caught in the next round). The ids are random
//! UUIDs, so no other process matches; processes of other users are not readable and not
//! touched. A process that replaces its environment entirely (`env -i`) is not found: under
//! systemd the unit's `KillMode=control-group` still ends it when esmd stops.
//!
//! Orphans are re-parented to the system's reaper as usual: esmd reaps only its own direct
//! children (through tokio), so no exit status is ever taken from anyone else.

use std::fs;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The environment variable that marks an invocation's processes.
pub(in crate::invoke) const VARIABLE: &str = "ESMD_INVOCATION_ID";

/// At most this many scans of `/proc` per cleanup.
const MAX_ROUNDS: usize = 10;

/// Sends SIGKILL to every process whose environment holds `VARIABLE=id`; returns how many
/// processes were signalled in all (a process still dying when the next round looks is signalled
/// again, and counted once).
pub(super) fn kill_marked(id: &str) -> usize {
    let needle = format!("{VARIABLE}={id}");
    let me = std::process::id();
    let mut killed = std::collections::HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let found: Vec<i32> = marked(&needle).filter(|&pid| pid as u32 != me).collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            // ESRCH: it exited meanwhile; EPERM: not ours after all. Either way, nothing to do.
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
    }
    killed.len()
}

/// The pids of live processes whose initial environment holds `needle` (a zombie's environment
/// is empty, so the dead are not found again).
fn marked(needle: &str) -> impl Iterator<Item = i32> + '_ {
    let entries = fs::read_dir("/proc").into_iter().flatten().flatten();
    entries.filter_map(move |entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let environ = fs::read(entry.path().join("environ")).ok()?;
        environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_bytes())
            .then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_marked_process_is_killed_and_an_unmarked_one_is_not() {
        let id = uuid::Uuid::new_v4().to_string();
        let spawn = |marker: &str| {
            Command::new("sleep")
                .arg("60")
                .env(VARIABLE, marker)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleep")
        };
        let mut marked_child = spawn(&id);
        let mut other = spawn("another-invocation");
        // The child's environ is readable once it has exec'd; wait until it is found.
        let needle = format!("{VARIABLE}={id}");
        let pid = marked_child.id() as i32;
        while !marked(&needle).any(|p| p == pid) {
            std::thread::yield_now();
        }
        assert_eq!(kill_marked(&id), 1);
        let status = marked_child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(other.try_wait().expect("try_wait").is_none(), "untouched");
        other.kill().expect("kill");
        other.wait().expect("wait");
        assert_eq!(kill_marked(&id), 0);
    }
}
