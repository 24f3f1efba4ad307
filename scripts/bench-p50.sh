#!/usr/bin/env bash
# One-connection p50 of a governed one-step run (workflows/one-step.json) for two server set-ups, in
# alternating rounds beside the bare reference's floors (spawn `true`; the same spawn between two
# fdatasynced appends), so the machine's drift falls on all of them alike.
#
#   scripts/bench-p50.sh                                   # A and B: the release binary as is
#   A_ENV=COMMAND_RUN_AS=root scripts/bench-p50.sh         # A with steps as root, B by default
#   A=old-binary B=target/release/sustainbot scripts/bench-p50.sh
#   ROUNDS=5 DURATION=4 scripts/bench-p50.sh
#
# Prints one line per round: the p50 and req/s of each, and each server's gap to the floor (ms).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin sustainbot --example bare_reference
A=${A:-target/release/sustainbot}
B=${B:-target/release/sustainbot}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export JWT_SECRET
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
serve() { # serve BINARY PORT LOG ENV...
    local binary=$1 port=$2 log=$3
    shift 3
    env "$@" AUDIT_LOG_PATH="$work/$log" WORKFLOWS_DIR="$PWD/workflows" AUDIT_FSYNC=always RUST_LOG=warn \
        "$binary" --host 127.0.0.1 --port "$port" >"$work/$log.out" 2>&1 &
    pids+=($!)
}
# shellcheck disable=SC2086
serve "$A" 5391 a.jsonl ${A_ENV:-BENCH_SIDE=A}
# shellcheck disable=SC2086
serve "$B" 5393 b.jsonl ${B_ENV:-BENCH_SIDE=B}
target/release/examples/bare_reference 127.0.0.1:5392 "$work/durable.jsonl" >"$work/ref.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -sf http://127.0.0.1:5391/health >/dev/null && curl -sf http://127.0.0.1:5393/health >/dev/null \
        && curl -s -o /dev/null http://127.0.0.1:5392/ && break
    sleep 0.1
done
TOKEN=$(target/release/sustainbot token --actor jake@example.org --role admin --ttl 3600)
body=$(python3 -c 'import json; r = {"workflow_name": "one-step", "aim": {"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"}, "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": None}], "constraints": ["Read-only"]}, "mission": {"objective": "Deploy app to staging with zero downtime", "success_criteria": ["Health checks pass"]}}, "drag_mode": "execute", "parameters": {"environment": "staging"}}; print(json.dumps(json.dumps(r)))')
cat >"$work/p.lua" <<LUA
wrk.method = "POST"
wrk.body = $body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
stats() { wrk -t1 -c1 -d"${DURATION}s" --latency -s "$work/p.lua" "$1" | awk '
    /^Requests\/sec/ {rps = $2}
    $1 == "50%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v = v / 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)}; p = v}
    /Non-2xx/ {print "non-2xx answers: " $0 > "/dev/stderr"}
    END {printf "%s/%d", p, rps}'; }
echo "round: floor, write-ahead floor, A, B as p50 ms/req/s; A-gap and B-gap: p50 minus the floor's"
for round in $(seq "$ROUNDS"); do
    f=$(stats http://127.0.0.1:5392/spawn)
    d=$(stats http://127.0.0.1:5392/spawn-durable)
    a=$(stats http://127.0.0.1:5391/workflows/governed/execute)
    b=$(stats http://127.0.0.1:5393/workflows/governed/execute)
    gap() { awk -v o="${1%/*}" -v f="${f%/*}" 'BEGIN {printf "%+.2f", o - f}'; }
    echo "$round: floor $f write-ahead $d A $a B $b A-gap $(gap "$a") B-gap $(gap "$b")"
done
