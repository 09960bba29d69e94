#!/usr/bin/env python3
"""Attributes the samples of a `perf record --call-graph dwarf` profile of the e2e bench to the
task or thread that spent them, and breaks the store's writer task down by operation.

    ESMD_BENCH_SECONDS=10 perf record -e cpu-clock -F 400 --call-graph dwarf,32768 -o perf.data \\
        target/release/deps/e2e-<hash> throughput-b10
    perf script -i perf.data > perf.txt
    python3 benches/perf_tasks.py perf.txt

A sample belongs to the outermost recognised frame of its stack (the tokio task it ran in); the
sqlx connection threads are split into SQLite's own work, futex/scheduling, and the rest.
"""

import collections
import sys

TASKS = [
    ("load generator tasks (bench)", ["e2e::throughput::run::{{closure}}::{{closure}}"]),
    ("esmd writer task (src/store/writer.rs)", ["esmd::store::writer::Writer::run"]),
    ("esmd poller workers (src/poller/worker.rs)", ["esmd::poller::worker::Worker::run"]),
    ("HTTP server connections (esmd API and the bench function)", ["axum::serve::handle_connection"]),
    ("HTTP client connection tasks (reqwest: load generator and esmd's invoker)",
     ["hyper::client::conn", "hyper_util::client::legacy::client::Client", "hyper_util::common::lazy"]),
]
WRITER = [
    ("messages::delete", "delete operations"),
    ("messages::send", "send operations"),
    ("messages::receive", "receive operations"),
    ("messages::lease", "lease SELECT (one per receipt handle)"),
    ("queues::require", "queue row SELECT (one per operation)"),
    ("messages::claim", "claim UPDATE"),
    ("messages::expire", "expire DELETE (one per receive)"),
    ("SyncSignal", "waking the sqlx connection thread (flume signal, futex)"),
]


def samples(lines):
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif line.startswith((" ", "\t")):
            frames.append(line.strip())
        else:
            comm, frames = line.split()[0], []
    if comm is not None:
        yield comm, frames


def classify(comm, frames):
    if comm.startswith("sqlx-sqlite"):
        if any("sqlite3_step" in f or "sqlite3VdbeExec" in f or "sqlite3LockAndPrepare" in f for f in frames):
            return ["sqlx connection threads", "  SQLite itself (prepare, step)"]
        if any("futex" in f or "finish_task_switch" in f or "schedule" in f for f in frames[:12]):
            return ["sqlx connection threads", "  futex wait/wake, scheduling"]
        return ["sqlx connection threads", "  sqlx glue, channels, malloc"]
    for f in reversed(frames):
        for name, pats in TASKS:
            if any(p in f for p in pats):
                out = [name]
                if name.startswith("HTTP server"):
                    if any("esmd::api::" in g for g in frames):
                        out.append("  of which esmd's SQS API handlers")
                    elif any("e2e::harness::invoke" in g for g in frames):
                        out.append("  of which the bench function's handler")
                return out
    return ["tokio runtime itself (park/unpark, epoll, scheduling)"]


def main():
    lines = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    total, writer_n = 0, 0
    by_task, by_op = collections.Counter(), collections.Counter()
    for comm, frames in samples(lines):
        total += 1
        for c in classify(comm, frames):
            by_task[c] += 1
        if any("esmd::store::writer::Writer::run" in f for f in frames):
            writer_n += 1
            for key, label in WRITER:
                if any(key in f for f in frames):
                    by_op[label] += 1
    print(f"{total} samples")
    for k, v in by_task.most_common():
        print(f"{100 * v / total:5.1f}%  {k}")
    print(f"\nwriter task, {writer_n} samples (a sample may count under several lines):")
    for k, v in by_op.most_common():
        print(f"{100 * v / max(writer_n, 1):5.1f}%  {k}")


if __name__ == "__main__":
    main()
