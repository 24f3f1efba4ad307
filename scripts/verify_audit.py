#!/usr/bin/env python3
"""Verify a SustainBot audit log, written from docs/audit-format.md alone (standard library only).

usage: verify_audit.py PATH     exit 0 when valid; 1 naming the first bad line; 2 when unreadable
"""
import hashlib
import json
import re
import sys

DOMAIN = b"sustainbot-audit-v1\n"
SUFFIX = re.compile(rb',"integrity_hash":"(sha256:[0-9a-f]{64})"\}$')


def verify(path):
    prev, expected_seq = "sha256:" + "0" * 64, 1
    with open(path, "rb") as log:
        for number, line in enumerate(log, start=1):
            if not line.endswith(b"\n"):
                return number, "torn line: no final newline"
            line = line[:-1]
            match = SUFFIX.search(line)
            if not match or match.start() != len(line) - 92:
                return number, "line does not end with the integrity_hash member"
            stated = match.group(1).decode()
            body = line[:-92] + b"}"
            try:
                record = json.loads(body)
            except ValueError as error:
                return number, f"not a JSON object: {error}"
            if not isinstance(record, dict):
                return number, "not a JSON object"
            seq = record.get("seq")
            if type(seq) is not int or seq != expected_seq:
                return number, f"seq is {seq!r}, expected {expected_seq}"
            if record.get("prev_hash") != prev:
                return number, "prev_hash does not match the previous record"
            if "sha256:" + hashlib.sha256(DOMAIN + body).hexdigest() != stated:
                return number, "integrity_hash does not match the record"
            prev, expected_seq = stated, expected_seq + 1
    return None, f"{expected_seq - 1} records, head {prev}"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    try:
        line, message = verify(sys.argv[1])
    except OSError as error:
        print(f"cannot read {sys.argv[1]}: {error}", file=sys.stderr)
        sys.exit(2)
    if line is None:
        print(f"OK {message}")
        sys.exit(0)
    print(f"FAILED line {line}: {message}")
    sys.exit(1)
