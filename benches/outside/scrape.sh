#!/usr/bin/env bash
# What a Prometheus scrape costs when a queue is deep in messages that are not visible: wrk fills
# a queue whose every message is delayed (15 minutes) through SendMessageBatch of 10, then curl
# times GET /metrics from outside. The in-flight and delayed counts are read on an index up to a
# cap per queue; past it a full count taken in the background is shown (src/store/hidden.rs).
#
#   benches/outside/scrape.sh [FILL_SECONDS] [SCRAPES]      e.g. benches/outside/scrape.sh 20 20
#   ESMD_BIN=/path/to/esmd benches/outside/scrape.sh ...    (a binary built already)
#
# Needs wrk and curl. Everything listens on 127.0.0.1; the script ends only the processes it
# started, by their id.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/outside/common.sh
seconds=${1:-20}
scrapes=${2:-20}
for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk curl)" >&2; exit 2; }
done
esmd_binary
start_work
cat > "$work/esmd.toml" <<CONF
[server]
listen = "127.0.0.1:0"
[storage]
path = "$work/esmd.db"
[log]
level = "warn,esmd::daemon=info"
[queues.deep]
delay = "15min"
CONF
"$esmd_bin" run --config "$work/esmd.toml" 2> "$work/esmd.log" &
pids+=($!)
wait_ready "$work/esmd.log"
url="http://$addr"
write_send_lua "$work/send.lua" "$url/000000000000/deep"
wrk -t 2 -c 16 -d "${seconds}s" -s "$work/send.lua" "$url/" > "$work/wrk.txt"
times=()
for _ in $(seq 1 "$scrapes"); do
  times+=("$(curl -s -o "$work/metrics.txt" -w '%{time_total}' "$url/metrics")")
done
delayed=$(awk '$1 ~ /^esmd_queue_messages\{/ && /queue="deep"/ && /state="delayed"/ { print $2 }' "$work/metrics.txt")
python3 - "$delayed" "${times[@]}" <<'PY'
import sys
delayed = sys.argv[1]
t = sorted(float(x) * 1000 for x in sys.argv[2:])
print(f"scrape: queue 'deep' holds {delayed} delayed messages; GET /metrics over {len(t)} scrapes: "
      f"first {float(sys.argv[2]) * 1000:.1f} ms, p50 {t[len(t) // 2]:.1f} ms, max {t[-1]:.1f} ms")
PY
