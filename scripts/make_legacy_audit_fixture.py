#!/usr/bin/env python3
"""Write test fixtures in the original (Python) SustainBot's audit log format (standard library only).

usage: make_legacy_audit_fixture.py [OUT_DIR]   (default: tests/fixtures)

Writes two files of the same runs, as the original would have logged them:
  legacy-audit.jsonl            its lines as written with pydantic 2 (compact JSON, UTF-8 text)
  legacy-audit-pydantic1.jsonl  the same records as written with pydantic 1 (json.dumps defaults:
                                ", " and ": ", non-ASCII escaped), plus one line only that form can hold

The rule being mimicked (docs/audit-format.md, "The original's audit log"): each record, in memory
with its timestamp a naive UTC datetime, is hashed as the bare hex SHA-256 of
json.dumps(record, sort_keys=True, default=str), which writes the timestamp as str(datetime)
("2025-03-01 09:15:02.250000"); the line then holds the record's members in declaration order with
the timestamp as datetime.isoformat() ("2025-03-01T09:15:02.250000") and integrity_hash last.
Floats may be printed differently in a pydantic 2 line (0.00001) than in the hash (1e-05): the
value, not its spelling, is what is hashed, which is why a verifier re-encodes.
"""
import datetime
import hashlib
import json
import os
import sys

AIM = {
    "actor": {"name": "Zo\u00eb \u00dcnal \U0001F331", "email": "zoe@example.org", "role": "Sustainability Lead"},
    "input": {
        "sources": [{"type": "slack_webhook", "description": "Slash command payload", "location": None}],
        "constraints": ["Read-only", "No destructive ops"],
    },
    "mission": {
        "objective": "Publish the monthly emissions report \u2014 on time",
        "success_criteria": ["Numbers reconcile", "Sign-off by finance"],
    },
}


def runs():
    """The records, in memory, in the original's member order (timestamp as a datetime)."""
    at = datetime.datetime
    yield {
        "trace_id": "legacy-0001",
        "timestamp": at(2025, 3, 1, 9, 15, 2, 250000),
        "aim": AIM,
        "drag_mode": "execute",
        "workflow_name": "emissions-report",
        "parameters": {"month": "2025-02", "dry_run": False},
        "outcome": "success",
        "error": None,
        "duration_seconds": 1.0397410392761230,
    }
    yield {
        "trace_id": "legacy-0002",
        "timestamp": at(2025, 3, 1, 9, 16, 0),  # whole second: no fraction in either form
        "aim": AIM,
        "drag_mode": "research",
        "workflow_name": "deploy-to-staging",
        "parameters": {},
        "outcome": "rejected",
        "error": 'Prescriptive language detected in research mode: "you should"\nUse neutral phrasing',
        "duration_seconds": None,
    }
    yield {
        "trace_id": "legacy-0003",
        "timestamp": at(2025, 3, 2, 17, 45, 59, 999999),
        "aim": AIM,
        "drag_mode": "grunt",
        "workflow_name": "rotate-logs",
        "parameters": {
            "threshold": 1e-05,
            "ratio": 12.0,
            "big": 2**70,
            "negative": -3,
            "huge": 1e22,
            "tiny": 5e-324,
            "z": [1, 2.5, None, True, {"b": "\u00e9", "a": []}],
            "\u00e9t\u00e9": "summer",
            "Zeta": "upper case sorts first",
            "emoji \U0001F680": "rocket",
            "tab\tand\u0001control\u007fdel": "escaped",
        },
        "outcome": "failure",
        "error": "OpenClaw unreachable",
        "duration_seconds": 0.1,
    }
    yield {
        "trace_id": "legacy-0004",
        "timestamp": at(2025, 3, 31, 23, 59, 59, 1),
        "aim": AIM,
        "drag_mode": "draft",
        "workflow_name": "emissions-report",
        "parameters": {"note": "\u65e5\u672c\u8a9e \u0410\u0411\u0412 \u00a0nbsp", "pct": 33.33333333333333},
        "outcome": "success",
        "error": None,
        "duration_seconds": 120.0,
    }


def integrity_hash(record):
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def as_written(record):
    """The members as the line holds them: timestamp in ISO form, integrity_hash last."""
    line = dict(record, timestamp=record["timestamp"].isoformat())
    line["integrity_hash"] = integrity_hash(record)
    return line


def main(argv):
    out = argv[1] if len(argv) > 1 else os.path.join("tests", "fixtures")
    os.makedirs(out, exist_ok=True)
    records = list(runs())
    with open(os.path.join(out, "legacy-audit.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            line = json.dumps(as_written(record), separators=(",", ":"), ensure_ascii=False)
            # pydantic 2 spells this float 0.00001 where json.dumps has 1e-05 (the hash keeps 1e-05).
            f.write(line.replace('"threshold":1e-05', '"threshold":0.00001') + "\n")
    # A lone surrogate from a client's JSON survives only the ASCII-escaped (pydantic 1) form.
    records.append({
        "trace_id": "legacy-0005",
        "timestamp": datetime.datetime(2025, 4, 1, 0, 0, 0, 500),
        "aim": AIM,
        "drag_mode": "execute",
        "workflow_name": "emissions-report",
        "parameters": {"raw": "half a pair: \ud83d"},
        "outcome": "success",
        "error": None,
        "duration_seconds": 2.5,
    })
    with open(os.path.join(out, "legacy-audit-pydantic1.jsonl"), "w", encoding="ascii", newline="\n") as f:
        for record in records:
            f.write(json.dumps(as_written(record)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
