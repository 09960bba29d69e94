#!/usr/bin/env python3
"""Idle latency measured from outside esmd, as a user would see it: from a SendMessage
request leaving the sender to the function receiving the invocation that carries it.

Three processes: esmd (the release binary), a function (a minimal HTTP/1.1 server in its own
process, timestamping the first bytes of each request) and this sender. One message at a time,
each sent only once the previous one reached the function, so the daemon is idle at every send.
Both timestamps come from CLOCK_MONOTONIC, which is one clock for every process of the machine.

    benches/outside/latency.py [SENDS]        (default 2000; needs ESMD_BIN or a release build)
    ESMD_STORAGE='backend = "postgres"\nurl = "postgres://..."' ...   (the [storage] table's
                                              keys instead of a temporary SQLite file)
    ESMD_INSTANCES=N ...                      (with a shared database: N esmd processes with the
                                              same queue and mapping; sends go to the first, and
                                              whichever instance's poller wakes delivers)

Prints p50, p90, p99 and max in milliseconds. Ends only the processes it started, by their id.
"""

import http.client
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time


def function_server(port_out, receipts):
    """The function: answers {} to every request, and reports (body's seq, arrival time)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port_out.send(srv.getsockname()[1])

    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            arrived = None
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                if arrived is None:
                    arrived = time.monotonic_ns()
                buf += chunk
            if arrived is None:
                arrived = time.monotonic_ns()
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:length], buf[length:]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            for record in json.loads(body)["Records"]:
                receipts.send((int(record["body"]), arrived))

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main():
    sends = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    esmd_bin = os.environ.get("ESMD_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "esmd")
    if not os.path.exists(esmd_bin):
        sys.exit(f"no esmd binary at {esmd_bin}: cargo build --release, or set ESMD_BIN")

    port_rx, port_tx = multiprocessing.Pipe(duplex=False)
    got_rx, got_tx = multiprocessing.Pipe(duplex=False)
    fn = multiprocessing.Process(target=function_server, args=(port_tx, got_tx), daemon=True)
    fn.start()
    fn_port = port_rx.recv()

    work = tempfile.mkdtemp()
    conf = os.path.join(work, "esmd.toml")
    storage = os.environ.get("ESMD_STORAGE", "").replace("\\n", "\n") or \
        f'path = "{work}/esmd.db"\nsynchronous = "full"'
    with open(conf, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:0"
[storage]
{storage}
[log]
level = "warn,esmd::daemon=info"
[queues.lat]
[functions.fn]
type = "http"
url = "http://127.0.0.1:{fn_port}/"
[mappings.m]
queue = "lat"
function = "fn"
batch_size = 10
""")
    instances = int(os.environ.get("ESMD_INSTANCES", "1"))
    procs = []
    try:
        addr = None
        for i in range(instances):
            log = open(os.path.join(work, f"esmd{i}.log"), "w+")
            procs.append(subprocess.Popen([esmd_bin, "run", "--config", conf], stderr=log))
            found = None
            deadline = time.monotonic() + 15
            while found is None and time.monotonic() < deadline:
                log.seek(0)
                m = re.search(r"esmd ready address=([0-9.:]+)", log.read())
                if m:
                    found = m.group(1)
                else:
                    time.sleep(0.05)  # sleep-ok: waiting for another process to log that it is ready
            if found is None:
                sys.exit(f"esmd {i} did not start")
            addr = addr or found
        host, port = addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))
        headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.SendMessage"}
        queue_url = f"http://{addr}/000000000000/lat"
        latencies = []
        for seq in range(-50, sends):  # the first 50 warm up connections and caches
            body = json.dumps({"QueueUrl": queue_url, "MessageBody": str(seq)})
            sent = time.monotonic_ns()
            conn.request("POST", "/", body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                sys.exit(f"send failed: {resp.status}")
            if not got_rx.poll(10):
                sys.exit(f"message {seq} did not reach the function within 10 s")
            got, arrived = got_rx.recv()
            if got != seq:
                sys.exit(f"expected message {seq}, the function got {got}")
            if seq >= 0:
                latencies.append((arrived - sent) / 1e6)
        latencies.sort()
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        print(f"outside latency, send request -> function receipt, {sends} idle sends, "
              f"{instances} instance(s): "
              f"p50 {pick(0.5):.2f} ms, p90 {pick(0.9):.2f} ms, p99 {pick(0.99):.2f} ms, "
              f"max {latencies[-1]:.2f} ms")
    finally:
        for esmd in procs:
            esmd.terminate()
        for esmd in procs:
            esmd.wait(timeout=30)
        fn.terminate()
        fn.join()


if __name__ == "__main__":
    main()
