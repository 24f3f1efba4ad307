#!/usr/bin/env bash
# Runs the original's three demo scripts (scripts/demo-governance.sh, demo-authentication.sh,
# demo-observability.sh of Honey-Badger-Labs/AIWF) against this server, as a team switching over
# would, and prints their output.
#
#   scripts/compat-demos.sh ORIGINAL_CHECKOUT
#
# ORIGINAL_CHECKOUT: a checkout of the original, or a git directory of it. The demos run from a
# temporary copy of it (they read ./logs/ and the repository's own files), against
# target/release/sustainbot (built here if missing) on 127.0.0.1:5000, which the demos hard-code.
# The server and the demos run in a private network namespace (unshare -n, as root) when possible,
# so port 5000 of the machine is left alone. The demos mint tokens with PyJWT: the virtualenv of
# scripts/compat-record.sh (target/compat-venv) when it exists, else python3 must have it.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 ORIGINAL_CHECKOUT" >&2
    exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
original="$(cd "$1" && pwd)"

if [ "${COMPAT_DEMOS_INSIDE:-}" != 1 ] && [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    exec unshare -n env COMPAT_DEMOS_INSIDE=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [ -f "$original/scripts/demo-governance.sh" ]; then
    cp -r "$original" "$work/aiwf"
else
    mkdir "$work/aiwf"
    git --git-dir="$original" archive HEAD | tar -x -C "$work/aiwf"
fi
mkdir -p "$work/aiwf/logs"
cp -r "$root/workflows" "$work/workflows"

binary="$root/target/release/sustainbot"
[ -x "$binary" ] || (cd "$root" && cargo build --release)
venv="${COMPAT_VENV:-$root/target/compat-venv}"
[ -x "$venv/bin/python3" ] && export PATH="$venv/bin:$PATH"
python3 -c 'import jwt' 2>/dev/null || { echo "python3 has no PyJWT: run scripts/compat-record.sh first, or pip install PyJWT" >&2; exit 2; }

secret="compat-demo-secret-0123456789abcdef0123"
start_server() {
    env -i PATH="$PATH" HOME="$work" \
        JWT_SECRET="$1" WORKFLOWS_DIR="$work/workflows" \
        AUDIT_LOG_PATH="$work/aiwf/logs/audit.jsonl" \
        JSON_LOGGING_ENABLED=true JSON_LOG_PATH="$work/aiwf/logs/sustainbot.jsonl" \
        "$binary" --host 127.0.0.1 --port 5000 >"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        curl -sf http://127.0.0.1:5000/health >/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || { wait "$server_pid" || true; server_pid=""; return 1; }
        sleep 0.1
    done
    return 1
}

echo "=== the authentication demo's secret (demo-secret-key-for-testing, 27 bytes) at start-up:"
if start_server "demo-secret-key-for-testing"; then
    echo "(started: unexpected)"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
else
    cat "$work/server.log"
fi
echo

start_server "$secret" || { cat "$work/server.log"; exit 1; }
cd "$work/aiwf"
status=0
for demo in demo-governance demo-authentication demo-observability; do
    echo "=================== $demo.sh (server JWT_SECRET: a 39-byte test secret)"
    SUSTAINBOT_URL=http://localhost:5000 JWT_SECRET="$secret" bash "scripts/$demo.sh" || { echo "($demo.sh exited $?)"; status=1; }
    echo
done
exit $status
