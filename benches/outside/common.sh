# Sourced by the outside benchmarks (run.sh, postgres.sh, scrape.sh): what each of them needs
# before its own part.
#
#   esmd_binary            sets esmd_bin: $ESMD_BIN (a binary built already, to compare two
#                          builds in alternating runs), else a release build of this checkout
#   start_work             makes the scratch directory $work and the array pids of the
#                          processes the script started, ended by id (and $work removed) on exit
#   wait_ready LOG         waits for the esmd logging to LOG to be ready; sets addr
#   write_send_lua FILE URL
#                          wrk's script: SendMessageBatch of 10 to the queue URL
esmd_binary() {
  esmd_bin=${ESMD_BIN:-}
  if [ -z "$esmd_bin" ]; then
    cargo build --release --locked --bin esmd >/dev/null 2>&1 || cargo build --release --locked --bin esmd
    esmd_bin="${CARGO_TARGET_DIR:-target}/release/esmd"
  fi
}

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}

start_work() {
  work=$(mktemp -d)
  pids=()
  trap cleanup EXIT
}

wait_ready() {
  addr=""
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/.*esmd ready address=\([0-9.:]*\).*/\1/p' "$1" | head -1)
    [ -n "$addr" ] && return 0
    sleep 0.05 # sleep-ok: waiting for another process to log that it is ready
  done
  echo "esmd did not start:" >&2
  cat "$1" >&2
  exit 1
}

write_send_lua() {
  cat > "$1" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "AmazonSQS.SendMessageBatch"
local entries = {}
for i = 1, 10 do
  entries[#entries + 1] = string.format('{"Id":"m%d","MessageBody":"message %d of a batch from wrk"}', i, i)
end
wrk.body = '{"QueueUrl":"QUEUE_URL","Entries":[' .. table.concat(entries, ",") .. ']}'
LUA
  sed -i "s|QUEUE_URL|$2|" "$1"
}
