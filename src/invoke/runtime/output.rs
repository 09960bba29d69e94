//! A runtime's stdout and stderr (one pipe, so their lines keep their order): each line goes to
//! esmd's log tagged with the function and the request id in flight, and into the invocation's
//! log tail (`START`, the output, `END`, `REPORT`; the last 4 KB are kept). [`Output::drain`] reads
//! what the pipe holds right now, so output flushed before a `/response` is never missed.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::unix::pipe;

/// How much of an invocation's log the tail keeps, as Lambda's `X-Amz-Log-Result`.
pub(crate) const TAIL_BYTES: usize = 4096;
/// The longest line forwarded; the rest of the line is dropped.
const MAX_LINE: usize = 16 * 1024;

/// The read end of a runtime's output pipe and what has been read from it.
pub(super) struct Output {
    function: String,
    pipe: pipe::Receiver,
    state: Mutex<OutputState>,
}

#[derive(Default)]
struct OutputState {
    /// A line not yet ended.
    partial: Vec<u8>,
    /// The request id in flight and its log so far.
    current: Option<(String, String)>,
    /// What the runtime wrote during Init, until the first invocation starts: the head of its
    /// log (as Lambda's log stream has Init's output before the first START).
    init: Option<String>,
}

impl Output {
    /// A pipe: the returned `OwnedFd` is the blocking write end for the child's stdout and stderr.
    pub(super) fn pipe(function: &str) -> std::io::Result<(Arc<Output>, OwnedFd)> {
        let (tx, rx) = pipe::pipe()?;
        let write = tx.into_blocking_fd()?;
        let output = Arc::new(Output {
            function: function.to_owned(),
            pipe: rx,
            state: Mutex::new(OutputState {
                init: Some(String::new()),
                ..OutputState::default()
            }),
        });
        Ok((output, write))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forwards output until the pipe closes (every writer exited).
    pub(super) async fn forward(self: Arc<Self>) {
        loop {
            if self.pipe.readable().await.is_err() || !self.drain() {
                break;
            }
        }
        let rest = std::mem::take(&mut self.lock().partial);
        if !rest.is_empty() {
            self.line(&rest);
        }
    }

    /// Reads whatever the pipe holds now; `false` at its end.
    pub(super) fn drain(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut state = self.lock();
        loop {
            match self.pipe.try_read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let mut data = &buf[..n];
                    while let Some(i) = data.iter().position(|&b| b == b'\n') {
                        let mut line = std::mem::take(&mut state.partial);
                        line.extend_from_slice(&data[..i]);
                        self.line_locked(&mut state, &line);
                        data = &data[i + 1..];
                    }
                    let room = MAX_LINE.saturating_sub(state.partial.len());
                    state
                        .partial
                        .extend_from_slice(&data[..data.len().min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn line(&self, line: &[u8]) {
        let mut state = self.lock();
        self.line_locked(&mut state, line);
    }

    fn line_locked(&self, state: &mut OutputState, line: &[u8]) {
        let line = &line[..line.len().min(MAX_LINE)];
        let text = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        match &mut state.current {
            Some((request_id, log)) => {
                tracing::info!(function = %self.function, request_id = %request_id, output = %text, "function output");
                log.push_str(&text);
                log.push('\n');
                trim_front(log);
            }
            None => {
                tracing::info!(function = %self.function, output = %text, "function output");
                if let Some(log) = &mut state.init {
                    log.push_str(&text);
                    log.push('\n');
                    trim_front(log);
                }
            }
        }
    }

    /// Starts the log of invocation `request_id`, writing its `START` line.
    pub(super) fn start(&self, request_id: &str) {
        let start = format!("START RequestId: {request_id} Version: $LATEST");
        tracing::info!(function = %self.function, request_id = %request_id, "{start}");
        let mut state = self.lock();
        let mut log = state.init.take().unwrap_or_default();
        log.push_str(&start);
        log.push('\n');
        state.current = Some((request_id.to_owned(), log));
    }

    /// What the runtime wrote during Init (all of it that is in the pipe now), once.
    pub(super) fn take_init(&self) -> String {
        self.drain();
        self.lock().init.take().unwrap_or_default()
    }

    /// Forgets the invocation in flight without ending its log (it never ran here).
    pub(super) fn abandon(&self) {
        self.lock().current = None;
    }

    /// Ends the log of the invocation in flight with `END` and `report`; returns its tail.
    pub(super) fn finish(&self, report: &str) -> String {
        self.drain();
        let Some((request_id, mut log)) = self.lock().current.take() else {
            return String::new();
        };
        let end = format!("END RequestId: {request_id}");
        tracing::info!(function = %self.function, request_id = %request_id, "{end}");
        tracing::info!(function = %self.function, request_id = %request_id, "{report}");
        log.push_str(&end);
        log.push('\n');
        log.push_str(report);
        log.push('\n');
        trim_front(&mut log);
        log
    }
}

/// Keeps the last [`TAIL_BYTES`] of `log`, cut on a character boundary.
fn trim_front(log: &mut String) {
    if log.len() <= TAIL_BYTES {
        return;
    }
    let mut cut = log.len() - TAIL_BYTES;
    while !log.is_char_boundary(cut) {
        cut += 1;
    }
    log.drain(..cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_4k_on_a_char_boundary() {
        let mut log = "é".repeat(TAIL_BYTES);
        trim_front(&mut log);
        assert!(log.len() <= TAIL_BYTES && log.len() >= TAIL_BYTES - 1);
        assert!(log.chars().all(|c| c == 'é'));
    }
}
