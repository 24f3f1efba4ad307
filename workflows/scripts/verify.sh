#!/bin/sh
# Health check after a deploy: the environment's current bundle exists, verifies, and is VERSION.
set -eu
environment="$1"
version="$2"
root="${SUSTAINBOT_STATE:-/tmp/sustainbot-state-$(id -u)}"
current="$root/$environment/current"
(cd "$current" && sha256sum -c --quiet SHA256SUMS)
grep -qx "version=$version" "$current/manifest" || { echo "current is not $version" >&2; exit 1; }
echo "healthy: $environment runs $version"
