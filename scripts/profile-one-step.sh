#!/usr/bin/env bash
# Where a governed one-step run's time goes, against the floor (the bare reference spawning `true` in
# its own process group): a system-wide `perf record -a -g` of each at 32 connections, shares of the
# samples by area (scripts/perf_areas.py), and each area per run in units of one `true` process (every
# run spawns exactly one, so a share divided by the `true` share is a per-run cost that other load on
# the machine does not dilute).
#
#   scripts/profile-one-step.sh              # 10 s per profile
#   DURATION=20 scripts/profile-one-step.sh
#
# Builds the server and the reference with debug info and frame pointers (into target/profiling, so
# the release build is left alone), installs perf and wrk if missing (Debian packages), keeps the
# perf.data files in target/profiling/perf.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${BENCH_PORT:-5393}"
REF_PORT="${BENCH_REF_PORT:-5394}"

install() { # install COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 (Debian package)..." >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y "$2" >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null; }
}
install wrk wrk
install perf linux-perf

export CARGO_TARGET_DIR=target/profiling
CARGO_PROFILE_RELEASE_DEBUG=true RUSTFLAGS="-C force-frame-pointers=yes" \
    cargo build --release --quiet --bin sustainbot --example bare_reference
bin=target/profiling/release
out=target/profiling/perf
mkdir -p "$out"

work=$(mktemp -d)
cleanup() {
    [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "${REF_PID:-}" ] && kill "$REF_PID" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export JWT_SECRET
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
AUDIT_LOG_PATH="$work/audit.jsonl" WORKFLOWS_DIR="$PWD/workflows" AUDIT_FSYNC=always RUST_LOG=warn \
    "$bin/sustainbot" --host 127.0.0.1 --port "$PORT" >"$work/server.log" 2>&1 &
SERVER_PID=$!
"$bin/examples/bare_reference" "127.0.0.1:$REF_PORT" >"$work/ref.log" 2>&1 &
REF_PID=$!
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && curl -s -o /dev/null "http://127.0.0.1:$REF_PORT/" && break
    sleep 0.1
done
TOKEN=$("$bin/sustainbot" token --actor jake@example.org --role admin --ttl 3600)
body='{"workflow_name": "one-step", "aim": {"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"}, "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}], "constraints": ["Read-only", "No destructive ops"]}, "mission": {"objective": "Deploy app to staging with zero downtime", "success_criteria": ["Health checks pass", "Rollback ready"]}}, "drag_mode": "execute", "parameters": {"environment": "staging", "version": "v1.2.3"}}'
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA

# profile NAME URL PID
profile() {
    wrk -t2 -c"$CONNECTIONS" -d2s -s "$work/post.lua" "$2" >/dev/null # warm-up
    perf record -q -a -g -F 1999 -o "$out/$1.data" -- \
        wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/post.lua" "$2" >"$work/$1.wrk" 2>/dev/null
    grep -q 'Non-2xx' "$work/$1.wrk" && { cat "$work/$1.wrk" >&2; exit 1; }
    perf script -i "$out/$1.data" -F comm,pid,tid,ip,sym 2>/dev/null | scripts/perf_areas.py "$3" >"$work/$1.areas"
    echo "$1: $(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$work/$1.wrk") runs/s under perf" >&2
}
profile one-step "http://127.0.0.1:$PORT/workflows/governed/execute" "$SERVER_PID"
profile floor "http://127.0.0.1:$REF_PORT/spawn" "$REF_PID"

echo "perf record -a -g -F 1999, $CONNECTIONS connections, ${DURATION} s each, $(date -u +%Y-%m-%d), $(nproc) cores"
echo
python3 - "$work/one-step.areas" "$work/floor.areas" <<'PY'
import sys
def read(path):
    shares = {}
    for line in open(path):
        value, area = line.rstrip("\n").split("\t", 1)
        shares[area] = float(value)
    return shares
step, floor = read(sys.argv[1]), read(sys.argv[2])
TRUE = "child: `true` after exec (exec, ld.so, exit)"
areas = [a for a in step if a != "samples"] + [a for a in floor if a not in step and a != "samples"]
print("| area | one-step: % of samples | one-step: per run (x one `true`) | floor: % of samples | floor: per run (x one `true`) |")
print("| --- | ---: | ---: | ---: | ---: |")
for area in areas:
    s, f = step.get(area, 0.0), floor.get(area, 0.0)
    print(f"| {area} | {s:.1f}% | {s / step[TRUE]:.3f} | {f:.1f}% | {f / floor[TRUE]:.3f} |")
def total(shares):  # everything a run costs, per `true`, without idle and other processes
    return sum(v for a, v in shares.items() if a not in ("samples", "idle", "other processes and kernel threads")) / shares[TRUE]
print()
print(f"Per run, everything but idle and other processes: one-step {total(step):.2f}, floor {total(floor):.2f} "
      f"(x one `true`): a CPU-bound throughput ratio of {total(floor) / total(step):.2f}x.")
print(f"Samples: one-step {int(step['samples'])}, floor {int(floor['samples'])}.")
PY
