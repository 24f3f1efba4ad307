#!/bin/sh
# Builds a release bundle for VERSION into $SUSTAINBOT_STATE/builds/VERSION (default under /tmp):
# a manifest and a checksum. Prints the bundle's path on stdout for the next step.
set -eu
version="$1"
case "$version" in
    v[0-9]*.[0-9]*.[0-9]*) ;;
    *) echo "not a release version: $version" >&2; exit 2 ;;
esac
root="${SUSTAINBOT_STATE:-/tmp/sustainbot-state-$(id -u)}"
bundle="$root/builds/$version"
mkdir -p "$bundle"
printf 'version=%s\nbuilt_at=%s\ntrace=%s\n' "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${SUSTAINBOT_TRACE_ID:-}" >"$bundle/manifest"
(cd "$bundle" && sha256sum manifest >SHA256SUMS)
echo "built $version" >&2
echo "$bundle"
