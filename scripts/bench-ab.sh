#!/usr/bin/env bash
# A/B of two server binaries on one endpoint: both run side by side, wrk drives them in turn
# (A then B in odd rounds, B then A in even ones, so that drift of the shared machine's speed falls
# on both), and the medians of the rounds' B/A ratios are printed: of req/s, and of the server's
# CPU time per request (from /proc; steadier than req/s when other work shares the machine).
#
#   scripts/bench-ab.sh BEFORE_BINARY AFTER_BINARY
#   ROUNDS=5 DURATION=10 CONNECTIONS=64 ENDPOINT=/governance/validate scripts/bench-ab.sh A B
#   INSTRUCTIONS=1 scripts/bench-ab.sh A B    # instructions per request instead, under callgrind
#
# POST endpoints get the README's governance request (no token: validate needs none). With
# INSTRUCTIONS=1 each server runs under `valgrind --tool=callgrind` twice, serving 200 and then 1200
# requests on one keep-alive connection; the difference of the two totals over 1000 is the
# server's instructions per request, start-up excluded: repeatable on a busy machine, where req/s
# are not.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# = 2 ] || { echo "usage: $0 BEFORE_BINARY AFTER_BINARY" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
ENDPOINT="${ENDPOINT:-/governance/validate}"
METHOD="${METHOD:-POST}"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

export JWT_SECRET
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
start() { # start NAME BINARY -> sets $port (not in a subshell: cleanup must see the pid)
    port=$(free_port)
    mkdir -p "$work/$1"
    AUDIT_LOG_PATH="$work/$1/audit.jsonl" WORKFLOWS_DIR="$PWD/workflows" AUDIT_FSYNC=always RUST_LOG=warn \
        "$2" --host 127.0.0.1 --port "$port" >"$work/$1/server.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 0.1
    done
}
if [ "${INSTRUCTIONS:-0}" = 1 ]; then
    # instructions BINARY REQUESTS -> the server's total instructions (Ir) for that many requests
    instructions() {
        local port out="$work/callgrind.out" pid
        port=$(free_port)
        rm -f "$out" "$work/audit.jsonl"
        AUDIT_LOG_PATH="$work/audit.jsonl" WORKFLOWS_DIR="$PWD/workflows" RUST_LOG=warn \
            valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --host 127.0.0.1 --port "$port" \
            >"$work/valgrind.log" 2>&1 &
        pid=$!
        pids+=("$pid")
        python3 - "$port" "$2" "$ENDPOINT" "$METHOD" <<'PY'
import http.client, json, sys, time
port, count, path, method = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = json.dumps({"workflow_name": "deploy-to-staging", "aim": {"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"}, "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": None}], "constraints": ["Read-only", "No destructive ops"]}, "mission": {"objective": "Deploy app to staging with zero downtime", "success_criteria": ["Health checks pass", "Rollback ready"]}}, "drag_mode": "execute", "parameters": {"environment": "staging", "version": "v1.2.3"}})
for _ in range(600):
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
        break
    except OSError:
        time.sleep(0.1)
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(count):
    connection.request(method, path, body=body if method == "POST" else None, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    assert response.status < 300, response.status
PY
        kill -TERM "$pid"
        wait "$pid" || true
        awk '/^summary:/ {print $2} /^totals:/ {print $2}' "$out" | head -1
    }
    for binary in "$A" "$B"; do
        few=$(instructions "$binary" 200)
        many=$(instructions "$binary" 1200)
        awk -v f="$few" -v m="$many" -v b="$binary" 'BEGIN {printf "%s: %.0f instructions per request\n", b, (m - f) / 1000}'
    done
    exit 0
fi

start a "$A"
port_a=$port
pid_a=${pids[-1]}
start b "$B"
port_b=$port
pid_b=${pids[-1]}

cat >"$work/request.lua" <<LUA
wrk.method = "$METHOD"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"workflow_name": "deploy-to-staging", "aim": {"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"}, "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}], "constraints": ["Read-only", "No destructive ops"]}, "mission": {"objective": "Deploy app to staging with zero downtime", "success_criteria": ["Health checks pass", "Rollback ready"]}}, "drag_mode": "execute", "parameters": {"environment": "staging", "version": "v1.2.3"}}'
LUA
# The server's CPU time (user + system, in clock ticks) so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clock_hz=$(getconf CLK_TCK)
# measure PORT PID -> "req/s cpu_us_per_request": throughput, and the server's CPU time per request
# (less sensitive to the other load of a shared machine than req/s).
measure() {
    local before after
    before=$(cpu_ticks "$2")
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/request.lua" "http://127.0.0.1:$1$ENDPOINT" >"$work/wrk.out"
    after=$(cpu_ticks "$2")
    awk -v b="$before" -v a="$after" -v hz="$clock_hz" '
        /^Requests\/sec/ {rps = $2}
        /requests in/ {n = $1}
        /Non-2xx/ {print "non-2xx answers" > "/dev/stderr"; exit 1}
        END {printf "%s %.2f\n", rps, (a - b) / hz * 1e6 / n}' "$work/wrk.out"
}

echo "round A_req/s B_req/s B/A A_cpu_us/req B_cpu_us/req B/A" >&2
: >"$work/ratios"
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        read -r a ca < <(measure "$port_a" "$pid_a")
        read -r b cb < <(measure "$port_b" "$pid_b")
    else
        read -r b cb < <(measure "$port_b" "$pid_b")
        read -r a ca < <(measure "$port_a" "$pid_a")
    fi
    awk -v r="$round" -v a="$a" -v b="$b" -v ca="$ca" -v cb="$cb" \
        'BEGIN {printf "%d %.0f %.0f %.3f %.2f %.2f %.3f\n", r, a, b, b / a, ca, cb, cb / ca}' | tee -a "$work/ratios"
done
median() { sort -n -k"$1" "$work/ratios" | awk -v c="$1" '{v[NR] = $c} END {m = int((NR + 1) / 2); printf "%s (range %s-%s)", v[m], v[1], v[NR]}'; }
echo "req/s: median A $(median 2), median B $(median 3); median of the rounds' B/A $(median 4)"
echo "server CPU per request (us): median A $(median 5), median B $(median 6); median of the rounds' B/A $(median 7)"
