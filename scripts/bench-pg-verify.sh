#!/usr/bin/env bash
# The audit chain in PostgreSQL: `sustainbot audit verify --database-url` on RECORDS records (default
# 1,000,000; goal: under 10 s), against `sustainbot audit verify FILE` on the same records as a JSONL
# file (the reference), in the same run; how long `sustainbot audit import` of that file takes; and
# the store's append throughput with 1, 16 and 64 writers on one instance and on two
# (examples/pg_audit_load.rs, SECONDS_PER_CASE each, on a second, empty database).
# Needs psql and a PostgreSQL server (SUSTAINBOT_TEST_DATABASE_URL, default
# postgres://postgres@127.0.0.1:5432/postgres) where it may create and drop a database.
#
#   scripts/bench-pg-verify.sh              # prints the results
#   WRITE=1 scripts/bench-pg-verify.sh      # and writes them into BENCHMARKS.md
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-1000000}"
SECONDS_PER_CASE="${SECONDS_PER_CASE:-3}"
WRITE="${WRITE:-0}"
ADMIN_URL="${SUSTAINBOT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

cargo build --release --quiet --bin sustainbot --example gen_audit_log --example pg_audit_load
load_before=$(cut -d' ' -f1 /proc/loadavg)
work="target/bench-pg-verify"
db="sustainbot_bench_$$"
url="${ADMIN_URL%/*}/$db"
rm -rf "$work" && mkdir -p "$work"
psql "$ADMIN_URL" -qc "CREATE DATABASE $db"
psql "$ADMIN_URL" -qc "CREATE DATABASE ${db}_load"
trap 'psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS ${db}_load WITH (FORCE)"; rm -rf "$work"' EXIT

# Appends first: after the import the server is busy writing a gigabyte of pages for a while.
target/release/examples/pg_audit_load "${url}_load" "$SECONDS_PER_CASE" | tee "$work/load.txt" >&2
rate() { awk -v i="$1" -v w="$2" '$1 == i && $2 == w {print $3}' "$work/load.txt"; }

target/release/examples/gen_audit_log "$work/log.jsonl" "$RECORDS" >&2
size_mib=$(( $(stat -c %s "$work/log.jsonl") / 1024 / 1024 ))

seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >"$work/out.txt"
    end=$(date +%s.%N)
    grep -q '^OK\|^imported' "$work/out.txt" || { cat "$work/out.txt" >&2; exit 1; }
    awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}'
}

import=$(seconds target/release/sustainbot audit import "$work/log.jsonl" --database-url "$url")
echo "import $RECORDS records: ${import}s" >&2
psql "$url" -qc "VACUUM ANALYZE audit_records" >/dev/null
table_mib=$(psql "$url" -Atc "SELECT pg_total_relation_size('audit_records') / 1048576")

best_file="" best_db=""
for _ in 1 2 3; do
    f=$(seconds target/release/sustainbot audit verify "$work/log.jsonl")
    d=$(seconds target/release/sustainbot audit verify --database-url "$url")
    echo "verify $RECORDS records: file ${f}s, postgresql ${d}s" >&2
    best_file=$(awk -v a="$f" -v b="${best_file:-$f}" 'BEGIN {print (a < b ? a : b)}')
    best_db=$(awk -v a="$d" -v b="${best_db:-$d}" 'BEGIN {print (a < b ? a : b)}')
done

report=$(
    echo "<!-- bench-pg-verify.sh:start -->"
    echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, PostgreSQL $(psql "$url" -Atc 'SHOW server_version') on the same machine (load average $load_before at the start: other work shares the cores), \`scripts/bench-pg-verify.sh\` (examples/gen_audit_log.rs)."
    echo
    echo "| $RECORDS records | seconds (best of 3) |"
    echo "| --- | ---: |"
    echo "| \`sustainbot audit verify --database-url\` (table: $table_mib MiB) | **$best_db** |"
    echo "| \`sustainbot audit verify FILE\`, the same records as JSONL ($size_mib MiB): the reference | $best_file |"
    echo "| \`sustainbot audit import FILE --database-url\` (once, into an empty database) | $import |"
    echo
    echo "Appends (examples/pg_audit_load.rs, ${SECONDS_PER_CASE} s per case, records/s; each acknowledged after its commit):"
    echo
    echo "| writers | one instance | two instances on one chain |"
    echo "| ---: | ---: | ---: |"
    for w in 1 16 64; do
        echo "| $w | $(rate 1 "$w") | $(rate 2 "$w") |"
    done
    echo "<!-- bench-pg-verify.sh:end -->"
)
echo "$report"
if [ "$WRITE" = 1 ]; then
    python3 - "$report" <<'PY'
import re, sys
report = sys.argv[1]
text = open("BENCHMARKS.md").read()
pattern = re.compile(r"<!-- bench-pg-verify.sh:start -->.*?<!-- bench-pg-verify.sh:end -->", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _: report, text)
else:
    text = text.rstrip("\n") + "\n\n## PostgreSQL (scripts/bench-pg-verify.sh)\n\n" + report + "\n"
open("BENCHMARKS.md", "w").write(text)
PY
fi
