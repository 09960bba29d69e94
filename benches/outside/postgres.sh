#!/usr/bin/env bash
# End-to-end throughput of esmd instances sharing one PostgreSQL database, measured from outside
# as benches/outside/run.sh measures one SQLite instance: INSTANCES esmd processes with
# storage.backend = "postgres" on one database, the same queue and mapping configured in each
# (one max_concurrency across them all), wrk sending SQS SendMessageBatch requests of 10 spread
# evenly over the instances (16 connections in all), an nginx `http` function answering {}.
# Printed figures only; it fails (non-zero) if a message was not delivered exactly once or the
# queue is not empty at the end.
#
#   benches/outside/postgres.sh [INSTANCES] [SECONDS] [BATCH_SIZE] [MAX_CONCURRENCY] [WINDOW]
#   e.g. benches/outside/postgres.sh 1 20 10 5 0s ; benches/outside/postgres.sh 4 20 10 5 0s
#   ESMD_BIN=/path/to/esmd ...   (a binary built already)
#   ESMD_PG_BIN=/usr/lib/postgresql/15/bin ...   (default: the newest /usr/lib/postgresql/*/bin)
#
# PostgreSQL runs from the distribution's packages (apt-get install postgresql) in a temporary
# directory on a free port, with fsync on (durable, as SQLite's synchronous = "full"); as the
# postgres user when this runs as root. Needs wrk and nginx. Everything listens on 127.0.0.1;
# the script ends only the processes it started, by their id.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/outside/common.sh
. benches/outside/nginx_function.sh
instances=${1:-1}
seconds=${2:-20}
batch=${3:-10}
concurrency=${4:-5}
window=${5:-0s}
connections=${ESMD_OUTSIDE_CONNECTIONS:-16}

for tool in wrk nginx curl psql; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk nginx-light curl postgresql)" >&2; exit 2; }
done
pg_bin=${ESMD_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$pg_bin/initdb" ] || { echo "no PostgreSQL in $pg_bin (apt-get install postgresql)" >&2; exit 2; }
esmd_binary
start_work
chmod 755 "$work"
[ -z "${ESMD_PG_LOG_TO:-}" ] || trap 'cp "$work/pg/log" "$ESMD_PG_LOG_TO" 2>/dev/null; cleanup' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL, as an unprivileged user when root (initdb refuses root).
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(setpriv --reuid=postgres --regid=postgres --clear-groups)
  id postgres >/dev/null 2>&1 || as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
mkdir -p "$work/pg"
[ "$(id -u)" != 0 ] || chown "$(echo "${as_pg[1]}" | cut -d= -f2)" "$work/pg"
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U esmd --auth=trust >/dev/null
pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg/data" -k "$work/pg" -p "$pg_port" \
  -c listen_addresses=127.0.0.1 -c max_connections=200 ${ESMD_PG_OPTIONS:-} > "$work/pg/log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
  sleep 0.05 # sleep-ok: waiting for PostgreSQL to accept connections
done
psql -q -h 127.0.0.1 -p "$pg_port" -U esmd -d postgres -c "CREATE DATABASE bench"
db="postgres://esmd@127.0.0.1:$pg_port/bench"

# The function: nginx answering {} to every POST (nginx_function.sh).
start_nginx_function

urls=()
esmd_pids=()
for i in $(seq 1 "$instances"); do
  cat > "$work/esmd$i.toml" <<CONF
[server]
listen = "127.0.0.1:0"
[storage]
backend = "postgres"
url = "$db"
[log]
level = "warn,esmd::daemon=info"
[queues.bench]
visibility_timeout = "60s"
[functions.fn]
type = "http"
url = "http://127.0.0.1:$fn_port/"
timeout = "10s"
[mappings.m]
queue = "bench"
function = "fn"
batch_size = $batch
max_concurrency = $concurrency
batching_window = "$window"
CONF
  "$esmd_bin" run --config "$work/esmd$i.toml" 2> "$work/esmd$i.log" &
  pids+=($!)
  esmd_pids+=($!)
  wait_ready "$work/esmd$i.log"
  urls+=("http://$addr")
done
wait_nginx_function

write_send_lua "$work/send.lua" "http://localhost/000000000000/bench"

# A series summed over every instance.
metric() {
  for u in "${urls[@]}"; do curl -s "$u/metrics"; done |
    awk -v m="$1" -v f="${2:-}" '($1 ~ "^"m"[{ ]" || $1 == m) && (f == "" || index($0, f)) { s += $2 } END { printf "%d\n", s }'
}
cpu() {
  local t=0
  for p in "${esmd_pids[@]}"; do
    t=$(awk -v hz="$(getconf CLK_TCK)" -v t="$t" '{ printf "%.3f\n", t + ($14 + $15) / hz }' "/proc/$p/stat")
  done
  echo "$t"
}
per=$(( connections / instances )); [ "$per" -ge 1 ] || per=1
cpu_start=$(cpu)
start=$(date +%s.%N)
wrks=()
for i in "${!urls[@]}"; do
  wrk -t 1 -c "$per" -d "${seconds}s" -s "$work/send.lua" "${urls[$i]}/" > "$work/wrk$i.txt" &
  wrks+=($!)
done
for w in "${wrks[@]}"; do wait "$w"; done
sent_at=$(date +%s.%N)
sent=$(metric esmd_messages_sent_total)
deadline=$(( $(date +%s) + 300 ))
count_left() { psql -qtA -h 127.0.0.1 -p "$pg_port" -U esmd -d bench -c "SELECT count(*) FROM messages"; }
while :; do
  [ "$(count_left)" = 0 ] && break
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.1 # sleep-ok: polling the database while the instances drain it
done
# The last deletes' counters are raised as their answers come back.
for _ in $(seq 1 50); do
  sent=$(metric esmd_messages_sent_total)
  deleted=$(metric esmd_messages_deleted_total)
  [ "$deleted" -ge "$sent" ] && break
  sleep 0.1 # sleep-ok: polling other processes' counters
done
done_at=$(date +%s.%N)
cpu_end=$(cpu)
left=$(count_left)
invoked=$(metric esmd_mapping_events_total 'event="invoked"')
errors=$(grep -hE "Non-2xx|Socket errors" "$work"/wrk*.txt || true)
[ -z "$errors" ] || echo "wrk: $errors"
python3 - "$start" "$sent_at" "$done_at" "$sent" "$deleted" "$invoked" "$left" "$batch" "$concurrency" "$window" "$seconds" "$cpu_start" "$cpu_end" "$instances" <<'PY'
import sys
cpu = float(sys.argv[13]) - float(sys.argv[12])
start, sent_at, done_at = map(float, sys.argv[1:4])
sent, deleted, invoked = map(int, sys.argv[4:7])
left, batch, conc, window, secs, n = sys.argv[7], sys.argv[8], sys.argv[9], sys.argv[10], sys.argv[11], sys.argv[14]
print(f"postgres: {n} instance(s), batch_size {batch} max_concurrency {conc} window {window}, wrk {secs}s: "
      f"sent {sent} ({sent/(sent_at-start):.0f} msg/s), delivered and deleted {deleted} "
      f"({deleted/(done_at-start):.0f} msg/s first send to last delete, drain {done_at-sent_at:.1f}s), "
      f"invoked records {invoked}, left in the database {left}")
if deleted:
    print(f"postgres: the esmd processes used {cpu:.1f} CPU seconds, {cpu / deleted * 1e6:.1f} us per message")
# Every acknowledged send delivered (a send whose client gave up after the commit, as wrk's
# timeout does, is stored and delivered without being counted as sent), none twice, none left.
ok = deleted >= sent and invoked == deleted and left == "0"
print("postgres: verified: every acknowledged message delivered once, the database empty" if ok else "postgres: NOT VERIFIED")
sys.exit(0 if ok else 1)
PY
