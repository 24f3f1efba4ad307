#!/bin/sh
# "Deploys" a bundle to ENVIRONMENT: verifies its checksum and points
# $SUSTAINBOT_STATE/<environment>/current at it (an atomic symlink swap), keeping the previous one
# as a rollback target.
set -eu
bundle="$1"
environment="$2"
(cd "$bundle" && sha256sum -c --quiet SHA256SUMS)
root="${SUSTAINBOT_STATE:-/tmp/sustainbot-state-$(id -u)}"
target="$root/$environment"
mkdir -p "$target"
if [ -L "$target/current" ]; then
    ln -sfn "$(readlink "$target/current")" "$target/previous"
fi
ln -sfn "$bundle" "$target/current.new"
mv -T "$target/current.new" "$target/current"
echo "deployed $(basename "$bundle") to $environment"
