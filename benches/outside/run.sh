#!/usr/bin/env bash
# End-to-end throughput measured from outside esmd, as a user would see it: wrk sends SQS
# SendMessageBatch requests of 10 messages over 16 connections to the release binary, a mapping
# delivers them to an nginx `http` function answering {}, and esmd deletes them. Printed figures
# only; it fails (non-zero) if a message was not delivered or the queue is not empty at the end.
#
#   benches/outside/run.sh [SECONDS] [BATCH_SIZE] [MAX_CONCURRENCY] [WINDOW]
#   e.g. benches/outside/run.sh 20 10 5 0s ; benches/outside/run.sh 20 100 5 1s
#   ESMD_BIN=/path/to/esmd benches/outside/run.sh ...   (a binary built already)
#   ESMD_TOMBSTONE_RETENTION=0s ...                    (storage.tombstone_retention; default 1h)
#   ESMD_RUNTIME_BOOTSTRAP=/path/to/bootstrap ...      (the function is that Lambda runtime, e.g. a
#                                                       release lambda_runtime binary, as a
#                                                       `runtime` function with MAX_CONCURRENCY
#                                                       environments, instead of nginx)
#
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light); builds esmd in release first.
# Everything listens on 127.0.0.1; the script ends only the processes it started, by their id.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/outside/common.sh
. benches/outside/nginx_function.sh
seconds=${1:-20}
batch=${2:-10}
concurrency=${3:-5}
window=${4:-0s}
connections=${ESMD_OUTSIDE_CONNECTIONS:-16}

for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk nginx-light curl)" >&2; exit 2; }
done
esmd_binary
start_work

# The function: nginx answering {} to every POST (nginx_function.sh).
start_nginx_function

if [ -n "${ESMD_RUNTIME_BOOTSTRAP:-}" ]; then
  function="[functions.fn]
type = \"runtime\"
command = [\"$ESMD_RUNTIME_BOOTSTRAP\"]
timeout = \"10s\"
max_environments = $concurrency"
else
  function="[functions.fn]
type = \"http\"
url = \"http://127.0.0.1:$fn_port/\"
timeout = \"10s\""
fi
tombstones=""
[ -z "${ESMD_TOMBSTONE_RETENTION:-}" ] || tombstones="tombstone_retention = \"$ESMD_TOMBSTONE_RETENTION\""
cat > "$work/esmd.toml" <<CONF
[server]
listen = "127.0.0.1:0"
[storage]
path = "$work/esmd.db"
synchronous = "full"
$tombstones
[log]
level = "warn,esmd::daemon=info"
[queues.bench]
visibility_timeout = "60s"
$function
[mappings.m]
queue = "bench"
function = "fn"
batch_size = $batch
max_concurrency = $concurrency
batching_window = "$window"
CONF
"$esmd_bin" run --config "$work/esmd.toml" 2> "$work/esmd.log" &
pids+=($!)
esmd_pid=$!
# CPU seconds esmd has used (user + system), from its /proc entry.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$esmd_pid/stat"; }
wait_ready "$work/esmd.log"
url="http://$addr"
wait_nginx_function

write_send_lua "$work/send.lua" "$url/000000000000/bench"

metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 ~ "^"m"[{ ]" || $1 == m { s += $2 } END { printf "%d\n", s }'; }
cpu_start=$(cpu)
start=$(date +%s.%N)
wrk -t 2 -c "$connections" -d "${seconds}s" -s "$work/send.lua" "$url/" > "$work/wrk.txt"
sent_at=$(date +%s.%N)
sent=$(metric esmd_messages_sent_total)
deadline=$(( $(date +%s) + 300 ))
while :; do
  deleted=$(metric esmd_messages_deleted_total)
  [ "$deleted" -ge "$sent" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.1 # sleep-ok: polling another process's counters while it drains
done
done_at=$(date +%s.%N)
cpu_end=$(cpu)
left=$(curl -s "$url/metrics" | awk '$1 ~ /^esmd_queue_messages\{/ && /queue="bench"/ { s += $2 } END { printf "%d\n", s }')
invoked=$(curl -s "$url/metrics" | awk '$1 ~ /^esmd_mapping_events_total\{/ && /event="invoked"/ { s += $2 } END { printf "%d\n", s }')
errors=$(grep -E "Non-2xx|Socket errors" "$work/wrk.txt" || true)
python3 - "$start" "$sent_at" "$done_at" "$sent" "$deleted" "$invoked" "$left" "$batch" "$concurrency" "$window" "$seconds" "$cpu_start" "$cpu_end" <<'PY'
import sys
cpu = float(sys.argv[13]) - float(sys.argv[12])
start, sent_at, done_at = map(float, sys.argv[1:4])
sent, deleted, invoked = map(int, sys.argv[4:7])
left, batch, conc, window, secs = sys.argv[7], sys.argv[8], sys.argv[9], sys.argv[10], sys.argv[11]
print(f"outside: batch_size {batch} max_concurrency {conc} window {window}, wrk {secs}s: "
      f"sent {sent} ({sent/(sent_at-start):.0f} msg/s), delivered and deleted {deleted} "
      f"({deleted/(done_at-start):.0f} msg/s first send to last delete, drain {done_at-sent_at:.1f}s), "
      f"invoked records {invoked}, left in queue {left}")
if deleted:
    print(f"outside: esmd used {cpu:.1f} CPU seconds, {cpu / deleted * 1e6:.1f} us per message, "
          f"{cpu / (done_at - start):.2f} cores on average")
ok = deleted == sent and invoked == sent and left == "0"
print("outside: verified: every sent message delivered once, queue empty" if ok else "outside: NOT VERIFIED")
sys.exit(0 if ok else 1)
PY
[ -z "$errors" ] || echo "wrk: $errors"
