#!/usr/bin/env bash
# Audit-trail benchmarks: durable append throughput (group commit against one fdatasync per record,
# same run, same disk) at 1, 16 and 64 concurrent writers, and `sustainbot audit verify` on a
# 1,000,000-record log.
#
#   scripts/bench-audit.sh              # writes the results into BENCHMARKS.md
#   SECONDS_PER_CASE=5 WRITE=0 scripts/bench-audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_CASE="${SECONDS_PER_CASE:-3}"
RECORDS="${RECORDS:-1000000}"
WRITE="${WRITE:-1}"

cargo build --release --quiet --bin sustainbot --example audit_load --example gen_audit_log
work="target/bench-audit"   # on the project's disk, not tmpfs: syncs must reach a real device
rm -rf "$work" && mkdir -p "$work"

# Three rounds; each round measures naive and group commit back to back at 1, 16 and 64 writers.
: >"$work/append.txt"
for round in 1 2 3; do
    target/release/examples/audit_load "$work" "$SECONDS_PER_CASE" | sed "s/^/$round /" | tee -a "$work/append.txt" >&2
done

target/release/examples/gen_audit_log "$work/million.jsonl" "$RECORDS" >&2
size_mib=$(( $(stat -c %s "$work/million.jsonl") / 1024 / 1024 ))
best=""
for _ in 1 2 3; do
    start=$(date +%s.%N)
    target/release/sustainbot audit verify "$work/million.jsonl" >/dev/null
    end=$(date +%s.%N)
    t=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')
    echo "verify $RECORDS records: ${t}s" >&2
    best=$(awk -v a="$t" -v b="${best:-$t}" 'BEGIN {print (a < b ? a : b)}')
done

report=$(
    echo "<!-- bench-audit.sh:start -->"
    echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, \`SECONDS_PER_CASE=$SECONDS_PER_CASE scripts/bench-audit.sh\` (examples/audit_load.rs, examples/gen_audit_log.rs)."
    echo
    echo "| writers | naive: write + fdatasync per record (records/s, median of 3) | group commit, AUDIT_FSYNC=always (records/s, median of 3) | ratio (median of the 3 rounds' ratios; range) |"
    echo "| ---: | ---: | ---: | ---: |"
    for w in 1 16 64; do
        n=$(awk -v w="$w" '$2 == "naive" && $3 == w {print $4}' "$work/append.txt" | sort -n | sed -n 2p)
        g=$(awk -v w="$w" '$2 == "group" && $3 == w {print $4}' "$work/append.txt" | sort -n | sed -n 2p)
        ratios=$(awk -v w="$w" '$3 == w {v[$1 " " $2] = $4} END {for (r = 1; r <= 3; r++) printf "%.1f\n", v[r " group"] / v[r " naive"]}' "$work/append.txt" | sort -n)
        r=$(sed -n 2p <<<"$ratios")
        lo=$(head -1 <<<"$ratios")
        hi=$(tail -1 <<<"$ratios")
        echo "| $w | $n | $g | ${r}x (${lo}x-${hi}x) |"
    done
    echo
    echo "- \`sustainbot audit verify\` on $RECORDS records ($size_mib MiB): **${best} s** (best of 3; goal: under 5 s)."
    echo "<!-- bench-audit.sh:end -->"
)
echo "$report"
rm -rf "$work"
if [ "$WRITE" = 1 ]; then
    if [ -f BENCHMARKS.md ] && grep -q 'bench-audit.sh:start' BENCHMARKS.md; then
        python3 - "$report" <<'PY'
import re, sys
text = open("BENCHMARKS.md").read()
new = re.sub(r"<!-- bench-audit.sh:start -->.*?<!-- bench-audit.sh:end -->", lambda _: sys.argv[1], text, flags=re.S)
open("BENCHMARKS.md", "w").write(new)
PY
    else
        printf '\n## Audit trail (scripts/bench-audit.sh)\n\n%s\n' "$report" >>BENCHMARKS.md
    fi
    echo "written to BENCHMARKS.md" >&2
fi
