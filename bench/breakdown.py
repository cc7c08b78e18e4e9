#!/usr/bin/env python3
"""Where a request's instructions go: a callgrind dump of the master, grouped by what each
function does, per request.

    bench/breakdown.py CALLGRIND_OUT REQUESTS

Reads the functions' own (exclusive) instruction counts from `callgrind_annotate` and sums them
by the first group below whose pattern names the function, so that every instruction counts
once. The code wasmtime compiled from the component has no symbols (callgrind shows it as an
address in `???`): it is the component's own work (routing, rendering JSON, its share of each
crossing). Needs a build with symbols (`cargo build --profile profiling`); the kernel's work
(syscalls) is not in a callgrind dump: `/proc/PID/stat`'s system time says what it costs.
"""

import re
import subprocess
import sys

# (group, pattern on "file:function"), first match wins: specific before general.
GROUPS = [
    ("the component's code (compiled wasm: routing, rendering, its side of each call)",
     r"^\?\?\?:0x|^\?\?\?:\?\?\?|wasm\[|wasm-function"),
    ("copying bytes (memcpy, memmove)", r"mem(cpy|move)|__memcpy|__memmove"),
    ("memory: allocating and freeing (mimalloc)", r"\bmi_|_mi_|mimalloc|\bmalloc\b|\bfree\b|realloc"),
    ("HTTP/1 parsing and encoding (hyper, httparse, http)", r"hyper::proto|httparse|\bhttp::|hyper::body"),
    ("hyper's connection and response plumbing", r"hyper(_util)?::"),
    ("WASI HTTP: request, response, fields, bodies (wasmtime-wasi-http)", r"wasmtime_wasi_http"),
    ("WASI streams, clocks, poll (wasmtime-wasi)", r"wasmtime_wasi\b|wasmtime_wasi::|wasmtime_wasi_io"),
    ("replog's log: reads, renders (host state)", r"replog::state::"),
    ("replog's replog:node imports (bindings)", r"replog::node::bindings"),
    ("replog: serving a request (admission, instances, calls, request ids, metrics)",
     r"replog::|prometheus::"),
    ("wasmtime: entering and leaving the component, lifting and lowering, resources",
     r"wasmtime|cranelift|wasmparser"),
    ("tokio: tasks, wakers, timers, readiness", r"tokio::|mio::"),
    ("tracing (spans and events)", r"tracing"),
    ("libc: syscall wrappers, locks, time", r"libc|__libc|pthread|clock_gettime|syscall|epoll|__GI_"),
]


# Steps of a request on the host's own stack, with everything they call (inclusive): the
# largest count among the functions a pattern names. The call into the component runs on a
# stack of its own (wasmtime's fiber), where callgrind loses the callers: what runs there is in
# the groups above (the component's code, wasmtime, WASI HTTP, the host calls' own work).
PHASES = [
    ("HTTP/1: parsing the request head", r"hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::parse"),
    ("HTTP/1: encoding the response head", r"hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::encode"),
    ("admission: the body read, a place among the instances", r"replog::server::admit::admit"),
    ("an answer kept: looked up and sent again", r"replog::node::answers::KeptAnswers::answer"),
    ("an answer kept: taken as it goes out", r"replog::node::answers::Keeping as http_body::Body>::poll_frame"),
    ("an instance taken and its store set up", r"replog::node::call::NodeCore::prepare"),
    ("the request and response outparam made for the call", r"WasiHttpCtxView>::new_incoming_request|new_response_outparam"),
    ("the request's metrics", r"replog::metrics::http::HttpMetrics::observe"),
    ("writes to the socket (the syscalls' user side)", r"TcpStream as tokio::io::async_write::AsyncWrite>::poll_write|writev"),
]


def annotate(dump, inclusive):
    return subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", dump],
        capture_output=True, text=True, check=True,
    ).stdout


def phases(dump, requests):
    line_re = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(.*)$")
    counts = []
    for line in annotate(dump, True).splitlines():
        m = line_re.match(line)
        if m:
            counts.append((int(m.group(1).replace(",", "")), m.group(2)))
    print("    steps on the host's stack (inclusive, per request):")
    for phase, pattern in PHASES:
        found = [count for count, name in counts if re.search(pattern, name)]
        if found:
            print(f"    {max(found) / requests:9,.0f}  {phase}")


def main():
    dump, requests = sys.argv[1], int(sys.argv[2])
    out = annotate(dump, False)
    line_re = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(.*)$")
    totals = {name: 0 for name, _ in GROUPS}
    other = 0
    total = 0
    for line in out.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        name = m.group(2)
        if "PROGRAM TOTALS" in name:
            continue
        total += count
        for group, pattern in GROUPS:
            if re.search(pattern, name):
                totals[group] += count
                break
        else:
            other += count
    if total == 0:
        print("    (no functions in the dump)")
        return
    print(f"    by what the code does (own instructions per request, of {total / requests:,.0f}):")
    rows = sorted(totals.items(), key=lambda kv: -kv[1]) + [("other", other)]
    for group, count in rows:
        if count:
            print(f"    {count / requests:9,.0f}  {100 * count / total:5.1f} %  {group}")
    phases(dump, requests)


if __name__ == "__main__":
    main()
