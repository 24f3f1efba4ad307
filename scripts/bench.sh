#!/usr/bin/env bash
# HTTP throughput, latency and memory of the hot endpoints, measured with wrk from a second process.
#
#   scripts/bench.sh                 # 5 s per run, writes the results into BENCHMARKS.md
#   DURATION=10 scripts/bench.sh     # longer runs
#   WRITE=0 scripts/bench.sh         # print only
#
# Builds release, starts the server (audit durable: AUDIT_FSYNC=always, on this machine's disk) and the
# bare-axum reference server (examples/bare_reference.rs): `/parse` parses the same body, `/spawn` only
# spawns `true` in its own process group and waits (the floor of a one-step run), `/spawn-durable`
# does the same between two appends each made durable by fdatasync (the write-ahead floor: what any
# governed run must pay on this disk). Drives /health,
# /governance/validate, /workflows/governed/execute (no-op workflow) and `/parse` at 1, 16 and 64
# connections, the one-step workflow at 1, 16, 32 and 64, and both floors at 1 and 32; then alternating
# pairs for the goal ratios. Peak RSS is the server's VmHWM (high-water mark) after all runs.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5}"
WRITE="${WRITE:-1}"
PORT="${BENCH_PORT:-5391}"
REF_PORT="${BENCH_REF_PORT:-5392}"
CONNECTIONS=(1 16 64)

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk (Debian package)..." >&2
    if [ "$(id -u)" = 0 ]; then
        (apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; })
    else
        sudo apt-get install -y wrk >/dev/null
    fi
fi

cargo build --release --quiet --bin sustainbot --example bare_reference

work=$(mktemp -d)
cleanup() {
    [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "${REF_PID:-}" ] && kill "$REF_PID" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export JWT_SECRET
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# COMMAND_RUN_AS=root: the floor spawns `true` as the benchmark's own user (root here), so the
# server's steps do the same work. The default as root, steps as `nobody`, costs a fork instead of a
# vfork-like spawn: scripts/bench-p50.sh measures that difference (BENCHMARKS.md).
COMMAND_RUN_AS=root AUDIT_LOG_PATH="$work/audit.jsonl" WORKFLOWS_DIR="$PWD/workflows" AUDIT_FSYNC=always RUST_LOG=warn \
    target/release/sustainbot --host 127.0.0.1 --port "$PORT" >"$work/server.log" 2>&1 &
SERVER_PID=$!
target/release/examples/bare_reference "127.0.0.1:$REF_PORT" "$work/durable.jsonl" >"$work/ref.log" 2>&1 &
REF_PID=$!
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && curl -s -o /dev/null "http://127.0.0.1:$REF_PORT/" && break
    sleep 0.1
done
TOKEN=$(target/release/sustainbot token --actor jake@example.org --role admin --ttl 3600)

cat >"$work/body.json" <<'JSON'
{"workflow_name": "noop",
 "aim": {"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"},
         "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}],
                   "constraints": ["Read-only", "No destructive ops"]},
         "mission": {"objective": "Deploy app to staging with zero downtime",
                     "success_criteria": ["Health checks pass", "Rollback ready"]}},
 "drag_mode": "execute",
 "parameters": {"environment": "staging", "version": "v1.2.3"}}
JSON
write_lua() { # write_lua FILE WORKFLOW
    local body
    body=$(tr -d '\n' <"$work/body.json" | sed "s/\"noop\"/\"$2\"/; s/\\\\/\\\\\\\\/g; s/\"/\\\\\"/g")
    cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = "$body"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
}
write_lua "$work/post.lua" noop
write_lua "$work/one-step.lua" one-step

# run NAME URL [LUA [CONNECTIONS...]] -> appends "name|conns|req/s|p50|p99|non2xx" rows to $work/rows
run() {
    local name=$1 url=$2 script=${3:-}
    local conns=("${@:4}")
    [ ${#conns[@]} = 0 ] && conns=("${CONNECTIONS[@]}")
    for c in "${conns[@]}"; do
        local threads=$(( c < 2 ? 1 : 2 ))
        local args=(-t"$threads" -c"$c" -d"${DURATION}s" --latency)
        [ -n "$script" ] && args+=(-s "$script")
        wrk "${args[@]}" "$url" >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
        local rps p50 p99 bad
        rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$work/out")
        p50=$(awk '$1 == "50%" {print $2}' "$work/out")
        p99=$(awk '$1 == "99%" {print $2}' "$work/out")
        bad=$(awk '/Non-2xx/ {print $NF}' "$work/out")
        echo "$name|$c|$rps|$p50|$p99|${bad:-0}" | tee -a "$work/rows" >&2
    done
}

: >"$work/rows"
run "bare axum reference (parse body)" "http://127.0.0.1:$REF_PORT/parse" "$work/post.lua"
run "GET /health" "http://127.0.0.1:$PORT/health"
run "POST /governance/validate" "http://127.0.0.1:$PORT/governance/validate" "$work/post.lua"
run "POST /workflows/governed/execute (no-op, audit fsync)" "http://127.0.0.1:$PORT/workflows/governed/execute" "$work/post.lua"
rss_core_kib=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
run "POST /workflows/governed/execute (one command step, audit fsync)" "http://127.0.0.1:$PORT/workflows/governed/execute" "$work/one-step.lua" 1 16 32 64
run "floor: spawn \`true\` in its own process group and wait (bare reference)" "http://127.0.0.1:$REF_PORT/spawn" "$work/post.lua" 1 32
run "write-ahead floor: the same spawn between two fdatasynced appends (bare reference)" "http://127.0.0.1:$REF_PORT/spawn-durable" "$work/post.lua" 1 32

# The goal ratio, from alternating pairs at 64 connections (the machine's speed drifts: pair them).
: >"$work/pairs"
for _ in 1 2 3 4 5; do
    r=$(wrk -t2 -c64 -d"${DURATION}s" -s "$work/post.lua" "http://127.0.0.1:$REF_PORT/parse" | awk '/^Requests\/sec/ {print $2}')
    v=$(wrk -t2 -c64 -d"${DURATION}s" -s "$work/post.lua" "http://127.0.0.1:$PORT/governance/validate" | awk '/^Requests\/sec/ {print $2}')
    awk -v v="$v" -v r="$r" 'BEGIN {printf "%.3f %.0f %.0f\n", v / r, v, r}' | tee -a "$work/pairs" >&2
done
pair_median=$(sort -n "$work/pairs" | awk '{a[NR] = $1} END {printf "%.0f", 100 * a[int((NR + 1) / 2)]}')
pair_range=$(sort -n "$work/pairs" | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f%%-%.0f%%", 100 * lo, 100 * hi}')

# The engine's own cost: a governed one-step run against the floor (spawn `true` in its own process
# group, wait), alternating pairs at 32 connections for throughput and at 1 connection for the p50.
# wrk_stats CONNS URL -> "req/s p50_ms"
wrk_stats() {
    local threads=$(( $1 < 2 ? 1 : 2 ))
    wrk -t"$threads" -c"$1" -d"${DURATION}s" --latency -s "$3" "$2" | awk '
        /^Requests\/sec/ {rps = $2}
        $1 == "50%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v = v / 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v = v * 1000}; p50 = v}
        END {printf "%.0f %.3f\n", rps, p50}'
}
: >"$work/floor32"
: >"$work/floor1"
for _ in 1 2 3 4 5; do
    read -r f _ < <(wrk_stats 32 "http://127.0.0.1:$REF_PORT/spawn" "$work/post.lua")
    read -r o _ < <(wrk_stats 32 "http://127.0.0.1:$PORT/workflows/governed/execute" "$work/one-step.lua")
    awk -v o="$o" -v f="$f" 'BEGIN {printf "%.3f %.0f %.0f\n", o / f, o, f}' | tee -a "$work/floor32" >&2
done
# At 1 connection, triplets: floor, write-ahead floor, one-step (gap, one-step, floor, write-ahead).
for _ in 1 2 3 4 5; do
    read -r _ f < <(wrk_stats 1 "http://127.0.0.1:$REF_PORT/spawn" "$work/post.lua")
    read -r _ d < <(wrk_stats 1 "http://127.0.0.1:$REF_PORT/spawn-durable" "$work/post.lua")
    read -r _ o < <(wrk_stats 1 "http://127.0.0.1:$PORT/workflows/governed/execute" "$work/one-step.lua")
    awk -v o="$o" -v f="$f" -v d="$d" 'BEGIN {printf "%.3f %.3f %.3f %.3f\n", o - f, o, f, d}' | tee -a "$work/floor1" >&2
done
median() { sort -n "$1" | awk -v col="$2" '{a[NR] = $col} END {print a[int((NR + 1) / 2)]}'; }
floor_ratio=$(median "$work/floor32" 1)
floor_ratio_range=$(sort -n "$work/floor32" | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2fx-%.2fx", lo, hi}')
floor_rps=$(median "$work/floor32" 3)
step_rps=$(median "$work/floor32" 2)
floor_p50_gap=$(median "$work/floor1" 1)
floor_p50_range=$(sort -n "$work/floor1" | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f-%.2f ms", lo, hi}')
floor_p50=$(median "$work/floor1" 3)
durable_gap=$(awk '{print $4 - $3}' "$work/floor1" | sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)]}')
own_gap=$(awk '{print $2 - $4}' "$work/floor1" | sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)]}')

rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")

# The disk's own cost of one durable record, in this run: 500 appends of a 300-byte line, each
# followed by fdatasync, in the audit log's directory (what the write-ahead rule pays twice per run).
fdatasync_p50=$(python3 - "$work/fsync-probe" <<'PY'
import os, statistics, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
line, times = b"x" * 299 + b"\n", []
for _ in range(500):
    start = time.perf_counter()
    os.write(fd, line)
    os.fdatasync(fd)
    times.append(time.perf_counter() - start)
print(f"{statistics.median(times) * 1000:.2f}")
PY
)
verdict=$(target/release/sustainbot audit verify --json "$work/audit.jsonl") || { echo "audit log does not verify after the benchmark: $verdict" >&2; exit 1; }
records=$(sed -n 's/.*"records":\([0-9]*\).*/\1/p' <<<"$verdict")

ref64=$(awk -F'|' '$1 ~ /reference/ && $2 == 64 {print $3}' "$work/rows")
val64=$(awk -F'|' '$1 ~ /validate/ && $2 == 64 {print $3}' "$work/rows")
exe64=$(awk -F'|' '$1 ~ /no-op/ && $2 == 64 {print $3}' "$work/rows")
p50() { awk -F'|' -v name="$1" -v c="$2" 'index($1, name) && $2 == c {v = $4; if (v ~ /us$/) {sub(/us$/, "", v); v = v / 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v = v * 1000}; print v}' "$work/rows"; }
step_ratio() { awk -v a="$(p50 "one command step" "$1")" -v b="$(p50 "validate" "$1")" 'BEGIN {printf "%.1f", a / b}'; }
ratio=$(awk -v a="$val64" -v b="$ref64" 'BEGIN {printf "%.0f", 100 * a / b}')
exe_ratio=$(awk -v a="$exe64" -v b="$val64" 'BEGIN {printf "%.0f", 100 * a / b}')

report=$(
    echo "<!-- bench.sh:start -->"
    echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m)), \`DURATION=$DURATION scripts/bench.sh\`; wrk on the same machine, loopback."
    echo
    echo "| endpoint | connections | req/s | p50 | p99 | non-2xx |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' "$work/rows"
    echo
    echo "- validate at 64 connections: **${pair_median}%** of the bare-axum reference (median of 5 alternating pairs, range $pair_range; ${ratio}% in the table's single run; goal: at least 80%)."
    echo "- governed execute at 64 connections: **${exe_ratio}%** of validate (two fsynced audit records per run; $records records written across the log's segments, chain verified; goal of the audit-trail issue: at least 25%)."
    echo "- governed execute of a one-step workflow (a real \`true\` child process, two fsynced records): p50 **$(step_ratio 1)x** validate's at 1 connection, $(step_ratio 16)x at 16, $(step_ratio 64)x at 64 (goal of the workflow-engine issue: at most 2x)."
    echo "- governed one-step run against the floor (the bare reference spawning \`true\` in its own process group and waiting): **$(printf '%.2f' "$floor_ratio")x** the floor's throughput at 32 connections (median of 5 alternating pairs, range $floor_ratio_range; medians $step_rps against $floor_rps runs/s; goal: at least 0.6x); p50 at 1 connection **$(printf '%+.2f' "$floor_p50_gap") ms** from the floor's ${floor_p50} ms (median of 5 alternating rounds, range $floor_p50_range; goal: within 1 ms); in the same rounds the write-ahead floor (the same spawn between two fdatasynced appends, nothing else) sat **+${durable_gap} ms** above the floor and the governed run +${own_gap} ms above the write-ahead floor (medians of the rounds' differences); the two durable records alone take about $(awk -v a="$(p50 "no-op" 1)" -v b="$(p50 "validate" 1)" 'BEGIN {printf "%.2f", a - b}') ms (the no-op workflow's p50 minus validate's at 1 connection in the table; the disk's own fdatasync p50 was ${fdatasync_p50} ms in this run, paid twice, one after the other, by the write-ahead rule)."
    echo "- server peak RSS (VmHWM): **$(( rss_core_kib / 1024 )) MiB** through the health, validate and no-op execute runs up to 64 connections (goal of the core-server issue: under 30 MiB); $(( rss_kib / 1024 )) MiB after the one-step runs too (child processes, run registry)."
    echo "<!-- bench.sh:end -->"
)
echo "$report"
if [ "$WRITE" = 1 ]; then
    # The plot of the table: req/s and p99 against connections, per endpoint.
    python3 scripts/plot_bench.py "$work/rows" docs/bench-http.svg
    if [ -f BENCHMARKS.md ] && grep -q 'bench.sh:start' BENCHMARKS.md; then
        python3 - "$report" <<'PY'
import re, sys
text = open("BENCHMARKS.md").read()
new = re.sub(r"<!-- bench.sh:start -->.*?<!-- bench.sh:end -->", lambda _: sys.argv[1], text, flags=re.S)
open("BENCHMARKS.md", "w").write(new)
PY
    else
        printf '\n## HTTP endpoints (scripts/bench.sh)\n\n%s\n' "$report" >>BENCHMARKS.md
    fi
    echo "written to BENCHMARKS.md" >&2
fi
