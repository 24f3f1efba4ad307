#!/usr/bin/env bash
# Records the original Python SustainBot's answers to tests/compat/cases.json into
# tests/compat/recorded.json, which tests/it/compat replays against this server.
#
#   scripts/compat-record.sh ORIGINAL_CHECKOUT
#
# ORIGINAL_CHECKOUT is a checkout of Honey-Badger-Labs/AIWF (a directory with sustainbot/main.py) or
# a git directory of it (its HEAD is extracted to a temporary directory). Nothing of it is copied
# into this project: the original runs from a temporary copy and only its answers are written.
#
# Needs Python 3.12 (PYTHON312, else python3.12 on PATH, else pyenv's 3.12) and PyPI for the first
# run: the virtualenv (target/compat-venv, reused while the requirements are the same) gets the
# original's requirements.txt plus pydantic, pinned by scripts/compat/constraints.txt. The stand-in
# Ollama/OpenClaw (scripts/compat/standin.py) and the original run on free loopback ports and are
# stopped at the end. CI never runs this: the replay test reads the committed recording only.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 ORIGINAL_CHECKOUT" >&2
    exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
original="$(cd "$1" && pwd)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

revision=unknown
if [ -f "$original/sustainbot/main.py" ]; then
    checkout="$original"
    revision="$(git -C "$original" rev-parse HEAD 2>/dev/null || echo unknown)"
elif git --git-dir="$original" rev-parse --verify -q HEAD >/dev/null; then
    checkout="$tmp/original"
    mkdir -p "$checkout"
    git --git-dir="$original" archive HEAD | tar -x -C "$checkout"
    revision="$(git --git-dir="$original" rev-parse HEAD)"
else
    echo "$1: neither a checkout with sustainbot/main.py nor a git directory" >&2
    exit 2
fi
[ -f "$checkout/sustainbot/requirements.txt" ] || { echo "no sustainbot/requirements.txt in $1" >&2; exit 2; }

# The first Python that really is 3.12 (a pyenv shim on PATH may name a version it will not run).
find_python312() {
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    local candidate
    for candidate in ${PYTHON312:-} python3.12 "$pyenv_root"/versions/3.12*/bin/python3.12; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "Python 3.12 not found: set PYTHON312=/path/to/python3.12" >&2
    exit 2
}

venv="${COMPAT_VENV:-$root/target/compat-venv}"
constraints="$root/scripts/compat/constraints.txt"
stamp="$(cat "$checkout/sustainbot/requirements.txt" "$constraints" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements-stamp" 2>/dev/null)" != "$stamp" ]; then
    python312="$(find_python312)"
    echo "creating $venv with $python312"
    rm -rf "$venv"
    "$python312" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$checkout/sustainbot/requirements.txt" -c "$constraints" pydantic
    echo "$stamp" > "$venv/.requirements-stamp"
fi
case "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" in
    3.12) ;;
    *) echo "$venv is not Python 3.12; remove it and run again" >&2; exit 2 ;;
esac

"$venv/bin/python" "$root/scripts/compat/record.py" \
    --original "$checkout" \
    --revision "$revision" \
    --cases "$root/tests/compat/cases.json" \
    --workflows "$root/tests/compat/workflows" \
    --out "$root/tests/compat/recorded.json"
echo "now: cargo test --test it compat"
