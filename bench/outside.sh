#!/usr/bin/env bash
# replog measured from outside, as a user would, beside a static file server in the same run.
#
#   bench/outside.sh            (after `cargo build --release`)
#
# Starts a master and two secondaries (delays 0) as separate `replog serve` processes on free
# loopback ports, and Debian's nginx serving the exact bytes of the master's
# `GET /messages` with 100 messages (where nginx is installed; the script says so when it is
# not). Then, with wrk (BENCH_THREADS threads, BENCH_CONNECTIONS connections, BENCH_SECONDS
# seconds each, the load generator on the same machine):
#   1. GET /messages (100 messages) from the master, and the same bytes from nginx;
#   2. lean POST /messages?log=false with w=3, logs in memory;
#   3. the same with logs on disk (each node its own data directory).
# It prints req/s, p50 and p99 of each and their ratio to the static server (GET) or to memory
# (disk), and each node's RSS right after start and after the load. Every process it starts is
# stopped by its PID when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
SECONDS_EACH=${BENCH_SECONDS:-8}

command -v wrk >/dev/null || { echo "wrk is needed (Debian: apt-get install wrk)" >&2; exit 1; }
. bench/lib.sh

report_rss() { # LABEL
  local line="  RSS $1:"
  for node in "${nodes[@]}"; do
    set -- $node
    line+=" $1 $(rss_mb "$2") MB"
  done
  echo "$line"
}

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_wrk NAME URL [LUA]: prints "NAME req/s p50 p99" (latencies in ms), then the CPU time
# each node spent per request during the run (what a request costs where; the machine has
# `nproc` cores for the nodes and wrk together).
results=()
run_wrk() {
  local name=$1 url=$2 script=${3:-} out
  local -a extra=() before=()
  [ -n "$script" ] && extra=(-s "$script")
  for node in "${nodes[@]}"; do
    set -- $node
    before+=("$(cpu_ticks "$2")")
  done
  set -- "$name" "$url"
  out=$(timeout $((SECONDS_EACH + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_EACH}s" \
    --latency "${extra[@]}" "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local errors
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [ -n "$errors" ] && echo "  $name: $errors" >&2
  results+=("$name $rps $(to_ms "$p50") $(to_ms "$p99")")
  printf '  %-34s %10s req/s  p50 %8s ms  p99 %8s ms\n' "$name" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")"
  case "$name" in *nginx*) return ;; esac
  local requests ticks=$(getconf CLK_TCK) line="    CPU per request:" i=0
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  for node in "${nodes[@]}"; do
    set -- $node
    line+=$(awk -v t="$(( $(cpu_ticks "$2") - before[i] ))" -v hz="$ticks" -v n="$requests" -v who="$1" \
      'BEGIN { printf " %s %.0f us", who, t / hz * 1e6 / n }')
    i=$((i + 1))
  done
  echo "$line"
}

to_ms() { # wrk's "1.23ms" / "456.00us" / "1.2s" into milliseconds
  awk -v t="$1" 'BEGIN {
    if (t ~ /us$/) { sub(/us$/, "", t); printf "%.3f", t / 1000 }
    else if (t ~ /ms$/) { sub(/ms$/, "", t); printf "%.3f", t }
    else if (t ~ /s$/) { sub(/s$/, "", t); printf "%.3f", t * 1000 }
    else print t }'
}

field() { # the COLUMN-th field of the result named NAME
  for r in "${results[@]}"; do
    set -- $r
    if [ "$1" = "$NAME" ]; then eval "echo \${$COLUMN}"; fi
  done
}

cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$LEAN_WRITE'
LUA

echo "replog $("$REPLOG" --version | awk '{print $2}'), wrk -t$THREADS -c$CONNECTIONS -d${SECONDS_EACH}s, $(nproc) cores"

echo "in memory:"
start_cluster memory
report_rss "idle after start"
seed 100
curl -s "$MASTER/messages" >"$work/messages.json"
echo "  GET /messages: $(wc -c <"$work/messages.json") bytes, $(grep -o '"message number' "$work/messages.json" | wc -l) messages"
run_wrk get-replog "$MASTER/messages"

static_rps=""
if command -v nginx >/dev/null; then
  port=$(free_port)
  mkdir -p "$work/nginx/www"
  cp "$work/messages.json" "$work/nginx/www/messages"
  # nginx's workers drop root: they must be able to read what they serve.
  chmod 755 "$work" "$work/nginx" "$work/nginx/www"
  chmod 644 "$work/nginx/www/messages"
  cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$port; root $work/nginx/www; }
}
CONF
  nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
  pids+=($!)
  nginx_pid=$!
  wait_for "http://127.0.0.1:$port/messages"
  cmp -s "$work/messages.json" <(curl -s "http://127.0.0.1:$port/messages") \
    || { echo "nginx does not serve the same bytes" >&2; exit 1; }
  run_wrk get-nginx-static "http://127.0.0.1:$port/messages"
  kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true
  NAME=get-nginx-static COLUMN=2; static_rps=$(field)
else
  echo "  (nginx is not installed: no static file server to compare with; Debian: apt-get install nginx-light)"
fi

run_wrk post-w3-memory "$MASTER/messages?log=false" "$work/post.lua"
report_rss "after the load"
stop_cluster

echo "on disk:"
start_cluster disk
run_wrk post-w3-disk "$MASTER/messages?log=false" "$work/post.lua"
report_rss "after the load"
stop_cluster

echo "ratios:"
NAME=get-replog COLUMN=2; get_rps=$(field)
NAME=post-w3-memory COLUMN=2; memory_rps=$(field)
NAME=post-w3-disk COLUMN=2; disk_rps=$(field)
if [ -n "$static_rps" ]; then
  awk -v a="$get_rps" -v b="$static_rps" 'BEGIN { printf "  GET /messages: replog / static file server = %.0f %%\n", 100 * a / b }'
fi
awk -v a="$disk_rps" -v b="$memory_rps" 'BEGIN { printf "  POST w=3: on disk / in memory = %.0f %%\n", 100 * a / b }'
