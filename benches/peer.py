#!/usr/bin/env python3
"""esmd side by side with a peer (moto's server), in one run, with the same boto3 workload.

Workload, run against each server in turn on 127.0.0.1 (a fresh queue on each):
  1. send N messages with SendMessageBatch, 10 per call          -> messages/s
  2. receive and delete them, ReceiveMessage(10) + DeleteMessageBatch -> messages/s
     (1 and 2 alternate in rounds of 100 messages, so the queue never holds more than 100: moto's
     per-request cost grows linearly with the number of messages in the queue)
  3. L single SendMessage calls, one at a time                    -> p50 / p99 / max latency
Every message sent is checked to come back exactly once (by MessageId) before it is deleted.

Setup (once):
  python3 -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install 'moto[server]' boto3
  cargo build --release
Run:
  /tmp/peer-venv/bin/python benches/peer.py [--messages 5000] [--latency-sends 1000]

esmd runs as the release binary (target/release/esmd run --config <temp file>) with
storage.synchronous = "full" on a database under target/bench-tmp; moto_server keeps its queues in
memory. Output: one line per figure and a table of ratios (esmd / moto).
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, what, proc, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    sys.exit(f"{what} did not come up at {url}")


def client(endpoint):
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=4),
    )


def body(n):
    return '{"order":%12d,"customer":"c-%06d","payload":"%s"}' % (n, n % 1_000_000, "x" * 70)


def drain(sqs, url):
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        )


def workload(name, endpoint, n, latency_sends, round_size):
    sqs = client(endpoint)
    protocol = sqs.meta.service_model.protocol
    url = sqs.create_queue(QueueName="peer-bench", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    sent, got = set(), set()
    send_s = recv_s = 0.0
    for r in range(0, n, round_size):
        t0 = time.perf_counter()
        for b in range(r, min(n, r + round_size), 10):
            entries = [{"Id": str(i), "MessageBody": body(b + i)} for i in range(min(10, n - b))]
            out = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            if out.get("Failed"):
                sys.exit(f"{name}: SendMessageBatch failed entries: {out['Failed']}")
            sent.update(e["MessageId"] for e in out["Successful"])
        send_s += time.perf_counter() - t0

        t0 = time.perf_counter()
        empty = 0
        while len(got) < len(sent) and empty < 50:
            out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            msgs = out.get("Messages", [])
            if not msgs:
                empty += 1
                continue
            for m in msgs:
                if m["MessageId"] in got:
                    sys.exit(f"{name}: message {m['MessageId']} received twice")
                got.add(m["MessageId"])
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
            out = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            if out.get("Failed"):
                sys.exit(f"{name}: DeleteMessageBatch failed entries: {out['Failed']}")
        recv_s += time.perf_counter() - t0
    if got != sent:
        sys.exit(f"{name}: {len(sent - got)} sent messages never received")

    lat = []
    for i in range(latency_sends):
        t = time.perf_counter()
        sqs.send_message(QueueUrl=url, MessageBody=body(10_000_000 + i))
        lat.append((time.perf_counter() - t) * 1e3)
        if (i + 1) % round_size == 0:
            drain(sqs, url)  # untimed: keeps the queue as small as in the throughput rounds
    lat.sort()
    drain(sqs, url)
    r = {
        "protocol": protocol,
        "send": n / send_s,
        "receive_delete": n / recv_s,
        "p50": statistics.median(lat),
        "p99": lat[max(0, int(len(lat) * 0.99 + 0.999999) - 1)],
        "max": lat[-1],
    }
    print(
        f"peer: {name:5} ({protocol}): SendMessageBatch {r['send']:8.0f} msg/s; ReceiveMessage+DeleteMessageBatch "
        f"{r['receive_delete']:8.0f} msg/s; SendMessage latency p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms max {r['max']:.2f} ms",
        flush=True,
    )
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--latency-sends", type=int, default=1000)
    ap.add_argument("--round", type=int, default=100,
                    help="messages sent before they are received and deleted (bounds the queue depth)")
    ap.add_argument("--esmd", default=os.path.join(ROOT, "target", "release", "esmd"))
    ap.add_argument("--moto", default=shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server")
    ap.add_argument("--sync", default="full", choices=["full", "normal"])
    args = ap.parse_args()

    base = os.path.join(ROOT, "target", "bench-tmp")
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=base)
    moto_port, esmd_port = free_port(), free_port()
    cfg = os.path.join(tmp, "esmd.toml")
    with open(cfg, "w") as f:
        f.write(
            f'[server]\nlisten = "127.0.0.1:{esmd_port}"\n\n[storage]\npath = "{tmp}/esmd.db"\n'
            f'synchronous = "{args.sync}"\n\n[log]\nlevel = "warn"\n'
        )
    procs = []
    # Stop the servers on SIGTERM too (the default handler would skip the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        moto = subprocess.Popen([args.moto, "-H", "127.0.0.1", "-p", str(moto_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(moto)
        esmd = subprocess.Popen([args.esmd, "run", "--config", cfg], stdout=subprocess.DEVNULL)
        procs.append(esmd)
        wait_http(f"http://127.0.0.1:{moto_port}/moto-api/", "moto_server", moto)
        wait_http(f"http://127.0.0.1:{esmd_port}/healthz", "esmd", esmd)
        print(f"peer: {args.messages} messages in rounds of {args.round} (send them all, then receive and delete them all), "
              f"{args.latency_sends} single sends; boto3 {boto3.__version__}; "
              f"esmd synchronous={args.sync}", flush=True)
        e = workload("esmd", f"http://127.0.0.1:{esmd_port}", args.messages, args.latency_sends, args.round)
        m = workload("moto", f"http://127.0.0.1:{moto_port}", args.messages, args.latency_sends, args.round)
        print("\n| figure | esmd | moto | esmd / moto |\n|---|---|---|---|")
        for key, label, unit in [
            ("send", "SendMessageBatch(10) throughput", "msg/s"),
            ("receive_delete", "ReceiveMessage(10) + DeleteMessageBatch throughput", "msg/s"),
            ("p50", "SendMessage latency p50", "ms"),
            ("p99", "SendMessage latency p99", "ms"),
        ]:
            print(f"| {label} | {e[key]:.2f} {unit} | {m[key]:.2f} {unit} | {e[key] / m[key]:.2f} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
