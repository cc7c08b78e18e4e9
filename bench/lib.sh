# What a script that measures replog as processes needs (bench/crossings.sh): a cluster of
# separate `replog serve` processes on free loopback ports, each with its own data directory (or
# none), a cluster secret, and every process stopped by its PID on exit. Sourced, not run.
#
# Reads REPLOG (the binary) and READY (the path that says a node is ready); sets MASTER (the
# master's base URL), MASTER_PID and `nodes` ("name pid" of each node). `MASTER_PREFIX` (an
# array) runs the master under another program, e.g. valgrind; `MASTER_ENV` (an array of
# NAME=value) adds to its environment; READY_TRIES bounds the wait for a node (tenths of a
# second).

REPLOG=${REPLOG:-./target/release/replog}
READY=${BENCH_READY_PATH:-/ready}
READY_TRIES=${READY_TRIES:-300}
MASTER_PREFIX=("${MASTER_PREFIX[@]+"${MASTER_PREFIX[@]}"}")
MASTER_ENV=("${MASTER_ENV[@]+"${MASTER_ENV[@]}"}")

[ -x "$REPLOG" ] || { echo "$REPLOG is missing: build it first (cargo build --release)" >&2; exit 1; }

work=$(mktemp -d /tmp/replog-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A port on 127.0.0.1 that nothing listens on.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # URL: waits up to READY_TRIES tenths of a second for a 200
  for _ in $(seq "$READY_TRIES"); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  exit 1
}

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

export CLUSTER_SECRET
CLUSTER_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
nodes=()

# start_cluster STORAGE: memory or disk (each node its own directory under $work)
start_cluster() {
  local storage=$1 s1 s2 m
  s1=$(free_port) s2=$(free_port) m=$(free_port)
  local -a store=(--in-memory)
  nodes=()
  for spec in "secondary1 $s1" "secondary2 $s2"; do
    set -- $spec
    [ "$storage" = disk ] && store=(--data-dir "$work/$storage-$1")
    PORT=$2 BIND=127.0.0.1 "$REPLOG" serve --role secondary --name "$1" "${store[@]}" \
      >"$work/$storage-$1.log" 2>&1 &
    pids+=($!)
    nodes+=("$1 $!")
    wait_for "http://127.0.0.1:$2$READY"
  done
  [ "$storage" = disk ] && store=(--data-dir "$work/$storage-master")
  MASTER_LOG="$work/$storage-master.log"
  env PORT="$m" BIND=127.0.0.1 SECONDARIES="http://127.0.0.1:$s1,http://127.0.0.1:$s2" \
    "${MASTER_ENV[@]}" "${MASTER_PREFIX[@]}" "$REPLOG" serve --role master --name master \
    "${store[@]}" >"$MASTER_LOG" 2>&1 &
  MASTER_PID=$!
  pids+=($!)
  nodes+=("master $!")
  MASTER="http://127.0.0.1:$m"
  wait_for "$MASTER$READY"
}

stop_cluster() {
  for node in "${nodes[@]}"; do
    set -- $node
    kill "$2" 2>/dev/null || true
    wait "$2" 2>/dev/null || true
  done
}

# seed N: appends N messages of about 40 bytes, one at a time, for GET /messages to serve.
seed() {
  for i in $(seq "$1"); do
    curl -s -o /dev/null -XPOST "$MASTER/messages?log=false" -d "{\"msg\":\"message number $i of the benchmark log\"}"
  done
}

# The lean write it sends: about sixty bytes, acknowledged by all three nodes (as the reads bench does).
LEAN_WRITE='{"msg":"a lean write of about sixty bytes, acknowledged by all","w":3}'
