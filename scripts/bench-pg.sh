#!/usr/bin/env bash
# Governed no-op runs at 64 connections: the PostgreSQL store against the JSONL store, and the same load
# spread over two and three instances on one database, in one run of this script.
#
#   scripts/bench-pg.sh                 # 5 s per measurement, 3 alternating rounds, prints a table
#   DURATION=10 ROUNDS=5 scripts/bench-pg.sh
#   WRITE=1 scripts/bench-pg.sh         # also writes the figures into BENCHMARKS.md (between its markers)
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth as `postgres`, or PG_ADMIN_URL) and wrk. Each round runs
# JSONL (AUDIT_FSYNC=always, this machine's disk), then one, two and three instances on a fresh database
# (synchronous_commit on, the server's default), back to back so that the machine's drift hits all
# alike; the table gives medians and the ratios to JSONL. Where the chain head saturates: every
# instance's group-commit batches (sustainbot_audit_batch_records) give the commits per second and the
# records per commit; the commit floor is one transaction that updates one row, committed by one client
# at a time (pgbench), i.e. the WAL flush every chain commit waits for.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
WRITE="${WRITE:-0}"
CONNS=64
BASE_PORT="${BENCH_PORT:-5491}"
ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is needed" >&2; exit 1; }
cargo build --release --quiet --bin sustainbot

work=$(mktemp -d)
PIDS=()
DB=""
stop_servers() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    PIDS=()
}
cleanup() {
    stop_servers || true
    [ -n "$DB" ] && psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

export JWT_SECRET
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export RUST_LOG=warn WORKFLOWS_DIR="$PWD/workflows" AUDIT_FSYNC=always COMMAND_RUN_AS=root
TOKEN=$(target/release/sustainbot token --actor jake@example.org --role admin --ttl 36000)
body='{"workflow_name": "noop", "aim": {"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"}, "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}], "constraints": ["Read-only"]}, "mission": {"objective": "Deploy app to staging with zero downtime", "success_criteria": ["Health checks pass"]}}, "drag_mode": "execute", "parameters": {"environment": "staging", "version": "v1.2.3"}}'
escaped=$(printf '%s' "$body" | sed 's/\\/\\\\/g; s/"/\\"/g')
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "$escaped"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA

wait_up() { # wait_up PORT
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.1; done
    echo "server on :$1 did not start" >&2; cat "$work"/*.log >&2; exit 1
}

fresh_db() {
    [ -n "$DB" ] && psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    DB="sustainbot_bench_$$_$RANDOM"
    psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
}

db_url() { echo "${ADMIN_URL%/*}/$DB"; }

# start_jsonl, start_pg N: servers on BASE_PORT, BASE_PORT+1, ...
start_jsonl() {
    AUDIT_LOG_PATH="$work/jsonl/audit.jsonl" target/release/sustainbot --host 127.0.0.1 --port "$BASE_PORT" \
        >"$work/jsonl.log" 2>&1 &
    PIDS+=($!)
    wait_up "$BASE_PORT"
}
start_pg() {
    fresh_db
    local i
    for i in $(seq 0 $(($1 - 1))); do
        DATABASE_URL="$(db_url)" SUSTAINBOT_INSTANCE_ID="bench-$i" \
            target/release/sustainbot --host 127.0.0.1 --port $((BASE_PORT + i)) >"$work/pg$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in $(seq 0 $(($1 - 1))); do wait_up $((BASE_PORT + i)); done
}

batches() { # batches N: "count sum" of the batch histogram summed over N instances
    local i c=0 s=0 line
    for i in $(seq 0 $(($1 - 1))); do
        line=$(curl -s "http://127.0.0.1:$((BASE_PORT + i))/metrics" | awk '
            /^sustainbot_audit_batch_records_count/ {c = $2} /^sustainbot_audit_batch_records_sum/ {s = $2}
            END {printf "%d %d", c, s}')
        c=$((c + ${line% *})); s=$((s + ${line#* }))
    done
    echo "$c $s"
}

# load N: 64 connections split over N instances (one wrk each, at once); prints "req/s commits/s records/commit"
load() {
    local n=$1 i per rps=0 bad=0 before after
    per=$((CONNS / n))
    # warm-up
    for i in $(seq 0 $((n - 1))); do
        wrk -t1 -c"$per" -d1s -s "$work/post.lua" "http://127.0.0.1:$((BASE_PORT + i))/workflows/governed/execute" >/dev/null &
    done
    wait
    before=$(batches "$n")
    for i in $(seq 0 $((n - 1))); do
        wrk -t1 -c"$per" -d"${DURATION}s" -s "$work/post.lua" \
            "http://127.0.0.1:$((BASE_PORT + i))/workflows/governed/execute" >"$work/wrk$i" 2>&1 &
    done
    wait
    after=$(batches "$n")
    for i in $(seq 0 $((n - 1))); do
        rps=$(awk -v r="$rps" '/^Requests\/sec/ {r += $2} END {printf "%.0f", r}' "$work/wrk$i")
        bad=$((bad + $(awk '/Non-2xx/ {print $NF} END {print 0}' "$work/wrk$i" | head -1)))
    done
    [ "$bad" = 0 ] || { echo "non-2xx answers: $bad" >&2; cat "$work"/wrk* "$work"/*.log >&2; exit 1; }
    local commits records
    commits=$(( ${after% *} - ${before% *} ))
    records=$(( ${after#* } - ${before#* } ))
    awk -v r="$rps" -v c="$commits" -v n="$records" -v d="$DURATION" \
        'BEGIN {printf "%d %.0f %.1f\n", r, c / d, (c > 0 ? n / c : 0)}'
}

: >"$work/rows"
for round in $(seq "$ROUNDS"); do
    rm -rf "$work/jsonl"
    start_jsonl; echo "jsonl $(load 1)" | tee -a "$work/rows" >&2; stop_servers
    for n in 1 2 3; do
        start_pg "$n"; echo "pg$n $(load "$n")" | tee -a "$work/rows" >&2; stop_servers
    done
    echo "round $round done" >&2
done

# The commit floor: one client updating one row per transaction, synchronous commit (pgbench).
fresh_db
psql -q "$(db_url)" -c "CREATE TABLE head (id int PRIMARY KEY, seq bigint); INSERT INTO head VALUES (1, 0)" >/dev/null
echo "UPDATE head SET seq = seq + 1 WHERE id = 1;" >"$work/commit.sql"
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -n 1)
floor_tps=$("$PGBENCH" -n -c1 -T"$DURATION" -f "$work/commit.sql" "$(db_url)" 2>/dev/null \
    | awk '/^tps/ {printf "%.0f", $3}')

# PostgreSQL's own floor: the least SQL any PostgreSQL store must run per governed run (two chained
# records of this size, the run's row written and ended), ten runs per transaction (group commit), by
# pgbench alone on this machine (no server, no wrk). Every PostgreSQL-backed run costs at least this
# machine time on top of what the server and wrk cost per run (the JSONL figure), so with both
# sharing this machine's cores, PostgreSQL's req/s cannot exceed 1 / (1/floor + 1/jsonl).
fresh_db
psql -q "$(db_url)" -f migrations/0001_shared_state.sql >/dev/null
line=$(curl -s "http://127.0.0.1:$BASE_PORT/health" >/dev/null 2>&1; sed -n 2p "$work/jsonl/audit.jsonl" 2>/dev/null | sed "s/'/''/g")
[ -n "$line" ] || line='{"kind":"run"}'
cat >"$work/floor.sql" <<SQL
BEGIN;
UPDATE audit_head SET seq = seq + 20 WHERE id = 1 RETURNING seq \gset
INSERT INTO audit_records SELECT :seq - i, convert_to('$line', 'UTF8'), md5(random()::text), 'run', md5(random()::text), now(), 'b' FROM generate_series(0, 19) i;
INSERT INTO runs (trace_id, workflow_name, drag_mode, actor, principal, request, governed, status, owner, lease_until, started_at) SELECT 't' || :seq || '-' || i, 'noop', 'execute', 'jake@example.org', '{"actor": "jake@example.org", "role": "admin"}', '{"workflow_name": "noop"}', true, 'running', 'b', now(), now() FROM generate_series(1, 10) i;
UPDATE runs SET status = 'succeeded', finished_at = now(), steps = '[]' WHERE trace_id IN (SELECT 't' || :seq || '-' || i FROM generate_series(1, 10) i);
COMMIT;
SQL
pg_floor=$("$PGBENCH" -n -c2 -j2 -T"$DURATION" -f "$work/floor.sql" "$(db_url)" 2>/dev/null \
    | awk '/^tps/ {printf "%.0f", $3 * 10}')
# The same without the run's row: the chain alone (what a store without shared run state would pay).
fresh_db
psql -q "$(db_url)" -f migrations/0001_shared_state.sql >/dev/null
grep -v "runs" "$work/floor.sql" >"$work/floor-chain.sql"
chain_floor=$("$PGBENCH" -n -c2 -j2 -T"$DURATION" -f "$work/floor-chain.sql" "$(db_url)" 2>/dev/null \
    | awk '/^tps/ {printf "%.0f", $3 * 10}')

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
col() { awk -v k="$1" -v c="$2" '$1 == k {print $c}' "$work/rows" | median; }
jsonl=$(col jsonl 2)
table=$(
    echo "| store | instances | req/s (median of $ROUNDS) | ratio to JSONL | chain commits/s | records per commit | ms per commit |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    echo "| JSONL (fdatasync) | 1 | $jsonl | 1.00 | $(col jsonl 3) | $(col jsonl 4) | $(awk -v c="$(col jsonl 3)" 'BEGIN {printf "%.2f", c ? 1000 / c : 0}') |"
    for n in 1 2 3; do
        r=$(col "pg$n" 2); c=$(col "pg$n" 3)
        echo "| PostgreSQL | $n | $r | $(awk -v a="$r" -v b="$jsonl" 'BEGIN {printf "%.2f", a / b}') | $c | $(col "pg$n" 4) | $(awk -v c="$c" 'BEGIN {printf "%.2f", c ? 1000 / c : 0}') |"
    done
)
bound=$(awk -v j="$jsonl" -v f="$pg_floor" 'BEGIN {printf "%.0f", 1 / (1 / j + 1 / f)}')
chain_bound=$(awk -v j="$jsonl" -v f="$chain_floor" 'BEGIN {printf "%.0f", 1 / (1 / j + 1 / f)}')
echo
echo "$table"
echo
echo "PostgreSQL alone, the least SQL per run (pgbench, 10 runs per transaction): $pg_floor runs/s;"
echo "bound for any PostgreSQL store beside the server on this machine, 1/(1/floor + 1/jsonl): $bound req/s = $(awk -v b="$bound" -v j="$jsonl" 'BEGIN {printf "%.2f", b / j}')x JSONL"
echo "the chain alone (no run rows): $chain_floor runs/s; bound $chain_bound req/s = $(awk -v b="$chain_bound" -v j="$jsonl" 'BEGIN {printf "%.2f", b / j}')x JSONL"
echo "commit floor (pgbench, one client, one-row update per transaction, synchronous commit): $floor_tps tps = $(awk -v t="$floor_tps" 'BEGIN {printf "%.2f", t ? 1000 / t : 0}') ms per commit"
if [ "$WRITE" = 1 ]; then
    {
        echo "Measured $(date -u +%Y-%m-%d), \`DURATION=$DURATION ROUNDS=$ROUNDS scripts/bench-pg.sh\` ($(nproc) cores; wrk, the servers and PostgreSQL share them):"
        echo
        echo "$table"
        echo
        echo "PostgreSQL alone, the least SQL per run (pgbench, 10 runs per transaction): $pg_floor runs/s; bound for any"
        echo "PostgreSQL store beside the server on this machine, 1/(1/floor + 1/jsonl): $bound req/s ="
        echo "$(awk -v b="$bound" -v j="$jsonl" 'BEGIN {printf "%.2f", b / j}')x JSONL. The chain alone, without the run rows: $chain_floor runs/s, bound"
        echo "$chain_bound req/s = $(awk -v b="$chain_bound" -v j="$jsonl" 'BEGIN {printf "%.2f", b / j}')x JSONL. Commit floor (pgbench, one client, one-row update per transaction): $floor_tps tps."
    } >"$work/block"
    # Between the markers of BENCHMARKS.md's section.
    awk -v block="$work/block" '
        /<!-- bench-pg.sh:start -->/ {print; while ((getline line < block) > 0) print line; skip = 1; next}
        /<!-- bench-pg.sh:end -->/ {skip = 0}
        !skip {print}' BENCHMARKS.md >"$work/bench.md" && cp "$work/bench.md" BENCHMARKS.md
fi
