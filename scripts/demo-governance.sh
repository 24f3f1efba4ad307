#!/usr/bin/env bash
# SustainBot governance demo: the original phase-2 demo's five steps against a running server.
#
#   SUSTAINBOT_URL   server address (default http://localhost:5000)
#   JWT_SECRET       the server's secret, used to mint the demo token with `sustainbot token`
#   SUSTAINBOT_TOKEN a ready token instead of JWT_SECRET (for example the one `sustainbot --dev` prints)
#   AUDIT_LOG_PATH   the server's audit log, for step 5 (default ./logs/audit.jsonl)
#   SUSTAINBOT_BIN   the sustainbot binary (default: on PATH, else target/release, else target/debug)
#
# Needs bash, curl and the sustainbot binary. Exits non-zero when a step fails.
set -euo pipefail

BASE_URL="${SUSTAINBOT_URL:-http://localhost:5000}"
AUDIT_LOG="${AUDIT_LOG_PATH:-./logs/audit.jsonl}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ -t 1 ]; then GREEN=$'\033[0;32m'; RED=$'\033[0;31m'; BLUE=$'\033[0;34m'; NC=$'\033[0m'; else GREEN=; RED=; BLUE=; NC=; fi
ok()   { echo "${GREEN}✓ $*${NC}"; }
fail() { echo "${RED}✗ $*${NC}" >&2; exit 1; }
step() { echo; echo "${BLUE}== $* ==${NC}"; }

find_bin() {
    if [ -n "${SUSTAINBOT_BIN:-}" ]; then echo "$SUSTAINBOT_BIN"; return; fi
    if command -v sustainbot >/dev/null 2>&1; then command -v sustainbot; return; fi
    for candidate in "$HERE/target/release/sustainbot" "$HERE/target/debug/sustainbot"; do
        if [ -x "$candidate" ]; then echo "$candidate"; return; fi
    done
    fail "sustainbot binary not found: put it on PATH, build it (cargo build --release) or set SUSTAINBOT_BIN"
}

# post PATH BODY [TOKEN] [TRACE_ID] -> sets CODE and BODY
post() {
    local args=(-sS -X POST "$BASE_URL$1" -H "Content-Type: application/json" --data-binary "$2" -w $'\n%{http_code}')
    [ -n "${3:-}" ] && args+=(-H "Authorization: Bearer $3")
    [ -n "${4:-}" ] && args+=(-H "X-Trace-ID: $4")
    local response
    response=$(curl "${args[@]}") || fail "cannot reach $BASE_URL$1"
    CODE=$(tail -n 1 <<<"$response")
    BODY=$(sed '$ d' <<<"$response")
}

# json_field NAME: the string value of a top-level field of $BODY (enough for this demo's bodies)
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" <<<"$BODY" | head -n 1; }

echo "SustainBot governance demo against $BASE_URL"
curl -sS -o /dev/null "$BASE_URL/health" || fail "SustainBot is not reachable at $BASE_URL (start it: cargo run -- --dev)"

step "Step 1: JWT token for authenticated access"
if [ -n "${SUSTAINBOT_TOKEN:-}" ]; then
    TOKEN="$SUSTAINBOT_TOKEN"
    ok "using SUSTAINBOT_TOKEN"
else
    [ -n "${JWT_SECRET:-}" ] || fail "set JWT_SECRET (the server's secret) or SUSTAINBOT_TOKEN"
    BIN=$(find_bin)
    TOKEN=$(JWT_SECRET="$JWT_SECRET" "$BIN" token --actor jake@sustainnet.io --role admin --ttl 600) \
        || fail "could not mint a token with $BIN"
    ok "token minted for jake@sustainnet.io: ${TOKEN:0:40}..."
fi

VALID_REQUEST='{
  "workflow_name": "deploy-to-staging",
  "aim": {
    "actor": {"name": "Jake Smith", "email": "jake@sustainnet.io", "role": "DevOps Engineer"},
    "input": {"sources": [{"type": "slack_webhook", "description": "Slack slash command payload"}],
              "constraints": ["Read-only access to production", "No destructive operations"]},
    "mission": {"objective": "Deploy updated application to staging environment with zero downtime",
                "success_criteria": ["Health checks pass", "Zero downtime deployment", "Rollback capability maintained"]}
  },
  "drag_mode": "execute",
  "parameters": {"environment": "staging", "version": "v1.2.3"}
}'
if [ -n "${SUSTAINBOT_TOKEN:-}" ]; then
    # The demo token speaks for another human: leave the email out so the server fills it in from the token.
    VALID_REQUEST=${VALID_REQUEST/\"email\": \"jake@sustainnet.io\", /}
fi

step "Step 2: governance validation (pre-flight)"
post /governance/validate "$VALID_REQUEST"
[ "$CODE" = 200 ] || fail "expected 200, got $CODE: $BODY"
ok "valid declaration accepted"
echo "$BODY"

step "Step 3: validation failure (the original's invalid request)"
INVALID_REQUEST='{"workflow_name": "deploy-to-staging",
  "aim": {"actor": {"name": "AB", "role": "Engineer"},
          "input": {"sources": [{"type": "api", "description": "test"}]},
          "mission": {"objective": "Too short", "success_criteria": ["One"]}},
  "drag_mode": "execute", "parameters": {}}'
post /governance/validate "$INVALID_REQUEST"
[ "$CODE" = 400 ] || fail "expected 400, got $CODE: $BODY"
ok "invalid declaration rejected ($(json_field code)): $(json_field error)"

echo "... and one that reaches the accountability rule (a 2-letter actor name):"
RULE_REQUEST=${VALID_REQUEST/\"name\": \"Jake Smith\"/\"name\": \"AB\"}
post /governance/validate "$RULE_REQUEST"
[ "$CODE" = 400 ] && [ "$(json_field code)" = GOVERNANCE_VALIDATION_FAILED ] || fail "expected 400 GOVERNANCE_VALIDATION_FAILED, got $CODE: $BODY"
ok "rejected: $(json_field error)"

step "Step 4: governed workflow execution"
TRACE_ID="demo-$(date +%s)-$$"
post /workflows/governed/execute "$VALID_REQUEST" "$TOKEN" "$TRACE_ID"
[ "$CODE" = 200 ] || fail "expected 200, got $CODE: $BODY"
[ "$(json_field trace_id)" = "$TRACE_ID" ] || fail "response does not carry trace id $TRACE_ID: $BODY"
ok "governed workflow executed, trace $TRACE_ID"
echo "$BODY"

step "Step 5: audit log integrity"
if [ ! -f "$AUDIT_LOG" ]; then
    fail "no audit log at $AUDIT_LOG (set AUDIT_LOG_PATH to the server's audit log)"
fi
grep -q "\"trace_id\":\"$TRACE_ID\"" "$AUDIT_LOG" || fail "no audit record for trace $TRACE_ID in $AUDIT_LOG"
ok "audit log has $(wc -l <"$AUDIT_LOG" | tr -d ' ') records, including trace $TRACE_ID"
tail -n 1 "$AUDIT_LOG" | grep -q '"integrity_hash":"sha256:' || fail "latest record has no integrity hash"
ok "latest record is chained and hashed"
BIN=$(find_bin)
"$BIN" audit verify "$AUDIT_LOG" || fail "audit chain does not verify"
ok "hash chain verifies"

echo
ok "demo complete"
