#!/usr/bin/env bash
# What one request costs the master in host calls and in instructions, for the hot paths:
# GET /messages with 100 messages (made by the component, and the same request again, which
# the node sends as the component made it while the log stands), a lean
# POST /messages?log=false with w=3 (two secondaries at 0 ms, logs in memory), and GET /health.
# Requests of a kind go one after another on one kept-alive connection, as a client's do.
#
#   bench/crossings.sh                 (after `cargo build --release`)
#   REPLOG=target/profiling/replog bench/crossings.sh
#                                      (after `cargo build --profile profiling`: the same code
#                                      with its symbols, so the instructions get names)
#
# 1. Host calls: the master runs with the wit-bindgen import traces on (every import of
#    `wasi:*` and `replog:node/*` logs a "call" at TRACE), serves CROSSINGS_REQUESTS requests
#    of each kind, and the calls logged are counted per request, by import. The replication
#    steps a write causes are its cost too, so they are counted with it.
# 2. Instructions (where valgrind is installed; CROSSINGS_CALLGRIND=0 skips it): the master runs
#    under callgrind, counting only while the measured requests run; instruction counts do not
#    depend on what else the machine does, so two runs of one build agree closely, and two
#    builds compare. It prints instructions per request and, for a build with symbols, where
#    they go (bench/breakdown.py: by what the code does, and the host's steps).
# Heartbeats are slowed to one a minute so that idle replication does not blur the counts.
# CROSSINGS_KEEP=PREFIX keeps the callgrind dumps as PREFIX.get, PREFIX.kept, PREFIX.post and
# PREFIX.health, for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${CROSSINGS_REQUESTS:-200}
. bench/lib.sh

# N requests on one kept-alive connection, as a client that reads or writes repeatedly sends
# them (a connection per request would count the connection's setup as the request's cost).
repeat_url() { for _ in $(seq "$2"); do printf -- '-o /dev/null %s ' "$1"; done; }
# A GET the node has not answered before (a query of its own each), so that the component
# makes it, and the same GET again and again, which the node sends again as the component made
# it the first time (`log.keep-answer`) while the log stands.
get_n() {
  local first=${CALLS:-0}
  CALLS=$((first + $1))
  curl -s $(for i in $(seq "$first" $((first + $1 - 1))); do printf -- '-o /dev/null %s ' "$MASTER/messages?n=$i"; done)
}
kept_n() { curl -s $(repeat_url "$MASTER/messages" "$1"); }
health_n() { curl -s $(repeat_url "$MASTER/health" "$1"); }
post_n() { curl -s -XPOST -d "$LEAN_WRITE" $(repeat_url "$MASTER/messages?log=false" "$1"); }

# per_request LOG FROM TO N: the import calls logged between lines FROM and TO, per request.
per_request() {
  python3 - "$@" <<'PY'
import collections, re, sys
log, start, end, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
call = re.compile(r'module="([^"]+)" function="([^"]+)"\}: (?:\S+: )?call\b')
ansi = re.compile(r'\x1b\[[0-9;]*m')
counts = collections.Counter()
with open(log, errors="replace") as f:
    for i, line in enumerate(f, 1):
        if start < i <= end:
            m = call.search(ansi.sub("", line))
            if m:
                counts[f"{m.group(1)}.{m.group(2)}"] += 1
total = sum(counts.values())
print(f"    {total / n:6.1f}  host calls per request, of which:")
for name, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
    print(f"    {c / n:6.2f}  {name}")
PY
}

lines() { wc -l <"$1"; }

echo "replog $("$REPLOG" --version | awk '{print $2}') ($REPLOG), $REQUESTS requests of each kind"
MASTER_ENV=(HEARTBEAT_MS=60000
  RUST_LOG=warn,wasmtime_wasi=trace,wasmtime_wasi_http=trace,replog::node::bindings=trace)
start_cluster memory
seed 100
get_n 20 # instances kept, pages warm
from=$(lines "$MASTER_LOG")
get_n "$REQUESTS"
to=$(lines "$MASTER_LOG")
echo "GET /messages (100 messages), made by the component:"
per_request "$MASTER_LOG" "$from" "$to" "$REQUESTS"
kept_n 1
from=$(lines "$MASTER_LOG")
kept_n "$REQUESTS"
to=$(lines "$MASTER_LOG")
echo "GET /messages (100 messages), the answer kept:"
per_request "$MASTER_LOG" "$from" "$to" "$REQUESTS"
post_n 20
from=$(lines "$MASTER_LOG")
post_n "$REQUESTS"
sleep 0.5 # the replication steps after the last write
to=$(lines "$MASTER_LOG")
echo "POST /messages?log=false, w=3:"
per_request "$MASTER_LOG" "$from" "$to" "$REQUESTS"
stop_cluster

if [ "${CROSSINGS_CALLGRIND:-1}" = 0 ]; then exit 0; fi
if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
  echo "(valgrind is not installed: no instruction counts; Debian: apt-get install valgrind)"
  exit 0
fi

# callgrind_control reaches the master by its PID; each dump goes to a file of its own.
measured() { # NAME N COMMAND...: instructions per request while COMMAND runs
  local name=$1 n=$2 file
  shift 2
  callgrind_control -z "$MASTER_PID" >/dev/null 2>&1
  callgrind_control -i on "$MASTER_PID" >/dev/null 2>&1
  "$@"
  callgrind_control -i off "$MASTER_PID" >/dev/null 2>&1
  callgrind_control --dump="$name" "$MASTER_PID" >/dev/null 2>&1
  for _ in $(seq 100); do
    file=$(grep -l "^desc: Trigger: dump $name\$" "$work"/callgrind.out* 2>/dev/null | head -1 || true)
    [ -n "$file" ] && break
    sleep 0.1
  done
  [ -n "$file" ] || { echo "callgrind wrote no dump for $name" >&2; exit 1; }
  [ -n "${CROSSINGS_KEEP:-}" ] && cp "$file" "$CROSSINGS_KEEP.$name"
  awk -v n="$n" '/^totals:/ { printf "    %.0f instructions per request\n", $2 / n; exit }' "$file"
  if nm "$REPLOG" 2>/dev/null | grep ' T main$' >/dev/null; then
    python3 bench/breakdown.py "$file" "$n"
  fi
}

# Valgrind cannot reserve the terabytes of address space a pool of 1,000 instances asks for.
MASTER_ENV=(HEARTBEAT_MS=60000 MAX_INSTANCES=8)
MASTER_PREFIX=(valgrind --tool=callgrind --instr-atstart=no
  "--callgrind-out-file=$work/callgrind.out")
READY_TRIES=${CROSSINGS_READY_TRIES:-6000} # compiling the components under valgrind is slow
n=$((REQUESTS / 2))
echo "under callgrind ($n requests of each kind):"
start_cluster memory
seed 100
get_n 10
echo "  GET /messages (100 messages), made by the component:"
measured get "$n" get_n "$n"
kept_n 10
echo "  GET /messages (100 messages), the answer kept:"
measured kept "$n" kept_n "$n"
post_n 10
echo "  POST /messages?log=false, w=3:"
measured post "$n" post_n "$n"
echo "  GET /health:"
measured health "$n" health_n "$n"
stop_cluster
