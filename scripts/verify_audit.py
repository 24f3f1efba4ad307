#!/usr/bin/env python3
"""Verify a SustainBot audit log, written from docs/audit-format.md alone (standard library only).

usage: verify_audit.py [--public-key FILE] PATH
       verify_audit.py --legacy OLD [[--public-key FILE] PATH]
  PATH is the active log file (its rotated segments beside it are included) or their directory.
  --legacy OLD checks every line of the original (Python) server's audit log OLD its way and, with
  PATH, that a genesis record in that log holds OLD's SHA-256.
  exit 0 valid; 1 naming the first bad file and line; 2 unreadable or bad arguments
"""
import glob
import hashlib
import json
import os
import re
import sys

DOMAIN = b"sustainbot-audit-v1\n"
SIG_DOMAIN = b"sustainbot-checkpoint-v1\n"
GENESIS = "sha256:" + "0" * 64
SUFFIX = re.compile(rb',"integrity_hash":"(sha256:[0-9a-f]{64})"\}\Z')
TAGGED_SHA256 = re.compile(r"sha256:[0-9a-f]{64}\Z")
MAX_DEPTH = 512

# --- Ed25519 verification (RFC 8032, section 5.1.7), for signed checkpoints ---------------------
P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _x(y, sign):
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P or (x == 0 and sign):
        return None
    return P - x if x & 1 != sign else x


def _add(a, b):
    e, f = (a[1] - a[0]) * (b[1] - b[0]) % P, (a[1] + a[0]) * (b[1] + b[0]) % P
    g, h = 2 * a[3] * b[3] * D % P, 2 * a[2] * b[2] % P
    e, f, g, h = f - e, h - g, h + g, f + e
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, pt):
    acc = (0, 1, 1, 0)
    while s:
        if s & 1:
            acc = _add(acc, pt)
        pt, s = _add(pt, pt), s >> 1
    return acc


def _point(raw):
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    x = _x(y, raw[31] >> 7) if y < P else None
    return None if x is None else (x, y, 1, x * y % P)


BASE = _point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def ed25519_verify(public, message, signature):
    a, r = _point(public), _point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % Q
    lhs, rhs = _mul(s, BASE), _add(r, _mul(h, a))
    return (lhs[0] * rhs[2] - rhs[0] * lhs[2]) % P == 0 and (lhs[1] * rhs[2] - rhs[1] * lhs[2]) % P == 0


# --- The log ------------------------------------------------------------------------------------
def log_files(path):
    """Rotated segments (stem.<20 digits>.ext, oldest first), then the active file."""
    active = path
    if os.path.isdir(path):
        active = os.path.join(path, "audit.jsonl")
    stem, ext = os.path.splitext(os.path.basename(active))
    pattern = re.compile(re.escape(stem) + r"\.(\d{20})" + re.escape(ext) + r"\Z")
    folder = os.path.dirname(active) or "."
    segments = sorted(f for f in os.listdir(folder) if pattern.match(f))
    files = [os.path.join(folder, f) for f in segments]
    return files + ([active] if os.path.exists(active) else [])


def depth(body):
    deepest = level = 0
    in_string = escaped = False
    for b in body:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x7B, 0x5B):
            level += 1
            deepest = max(deepest, level)
        elif b in (0x7D, 0x5D):
            level -= 1
    return deepest


class Repeated(dict):
    pass


def parse(body):
    """BODY as a dict; refuses non-JSON numbers, a repeated top-level member, deep nesting."""
    if depth(body) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")

    def pairs(items):
        return (Repeated if len({k for k, _ in items}) != len(items) else dict)(items)

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    record = json.loads(body.decode("utf-8"), object_pairs_hook=pairs, parse_constant=no_constant)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if isinstance(record, Repeated):
        raise ValueError("a member appears twice")
    return record


def verify(path, public_key=None):
    """Returns (None, summary) when valid, else ((file, line), message)."""
    files = log_files(path)
    lines = []  # (file, line number, record, stated hash), all checked on their own first
    for name in files:
        with open(name, "rb") as log:
            for number, line in enumerate(log, start=1):
                where = (name, number)
                if not line.endswith(b"\n"):
                    return where, "torn line: no final newline"
                line = line[:-1]
                match = SUFFIX.search(line)
                if not match or match.start() != len(line) - 92:
                    return where, "line does not end with the integrity_hash member"
                stated, body = match.group(1).decode(), line[:-92] + b"}"
                try:
                    record = parse(body)
                except (ValueError, RecursionError) as error:
                    return where, f"not a JSON object: {error}"
                if "sha256:" + hashlib.sha256(DOMAIN + body).hexdigest() != stated:
                    return where, "integrity_hash does not match the record"
                lines.append((where, record, stated))
    prev, expected, checkpoints = GENESIS, 1, 0
    if lines and lines[0][1].get("seq") != 1:
        first = lines[0][1]
        anchors = [(r.get("removed_through_seq"), r.get("removed_last_hash")) for _, r, _ in lines if r.get("kind") == "retention"]
        if (first.get("seq", 0) - 1, first.get("prev_hash")) not in anchors:
            return lines[0][0], "the log starts after seq 1 but no retention record names the records before it"
        prev, expected = first.get("prev_hash"), first.get("seq")
    for where, record, stated in lines:
        seq = record.get("seq")
        if type(seq) is not int or seq != expected:
            return where, f"seq is {seq!r}, expected {expected}"
        if record.get("prev_hash") != prev:
            return where, "prev_hash does not match the previous record"
        if record.get("kind") == "checkpoint":
            if record.get("covered_seq") != seq - 1 or record.get("covered_hash") != prev:
                return where, "checkpoint does not cover the record before it"
            if public_key is not None:
                if record.get("public_key") != public_key.hex():
                    return where, "checkpoint signed by another key"
                message = SIG_DOMAIN + f"{seq - 1}\n{prev}\n{record.get('signed_at', '')}".encode()
                try:
                    signature = bytes.fromhex(record.get("signature", ""))
                except ValueError:
                    signature = b""
                if len(signature) != 64 or not ed25519_verify(public_key, message, signature):
                    return where, "checkpoint signature does not verify"
            checkpoints += 1
        if record.get("kind") == "genesis":
            count = record.get("lines")
            if type(count) is not int or not 1 <= count < 2**64:
                return where, "genesis record without lines (a whole number, at least 1)"
            if not isinstance(record.get("sha256"), str) or not TAGGED_SHA256.match(record["sha256"]):
                return where, "genesis record without sha256 (sha256: and 64 hex digits)"
        prev, expected = stated, expected + 1
    if public_key is not None and lines and checkpoints == 0:
        return lines[-1][0], "no signed checkpoint"
    return None, f"{len(lines)} records in {len(files)} file(s), head {prev}, {checkpoints} checkpoint(s)"


# --- The original (Python) server's audit log ("The original's audit log" in the spec) -----------
LEGACY_FORMAT = "sustainbot-python-jsonl"
LEGACY_HASH = re.compile(r"[0-9a-f]{64}\Z")
ISOFORMAT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?"
    r"([+-][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{6})?)?)?\Z"
)


def legacy_line(line):
    """The timestamp of one verified line of the original's log (without its newline)."""
    if depth(line) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")

    def unique(items):
        if len({k for k, _ in items}) != len(items):
            raise ValueError("a member name appears twice in one object")
        return dict(items)

    try:
        entry = json.loads(line.decode("utf-8"), object_pairs_hook=unique)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    stated = entry.pop("integrity_hash", None)
    if not isinstance(stated, str) or not LEGACY_HASH.match(stated):
        raise ValueError("no integrity_hash of 64 lower-case hex digits")
    if "timestamp" not in entry:
        raise ValueError("no timestamp")
    written = entry["timestamp"]
    if not isinstance(written, str) or not ISOFORMAT.match(written):
        raise ValueError("timestamp is not in the original's form (datetime.isoformat())")
    # The original hashed str(datetime): a space where isoformat() has the T.
    entry["timestamp"] = written[:10] + " " + written[11:]
    if hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest() != stated:
        raise ValueError("integrity_hash does not match the line (the line was edited)")
    return written


def verify_legacy(name):
    """(first bad (line, message) or None, lines verified, sha256 of the file, first and last timestamp)."""
    digest, count, first, last, problem = hashlib.sha256(), 0, None, None, None
    with open(name, "rb") as log:
        for number, line in enumerate(log, start=1):
            digest.update(line)
            if problem:
                continue
            if not line.endswith(b"\n"):
                problem = number, "no final newline (the last line is torn or was cut)"
                continue
            try:
                written = legacy_line(line[:-1])
            except (ValueError, RecursionError) as error:
                problem = number, str(error)
                continue
            count, first, last = count + 1, first or written, written
    return problem, count, "sha256:" + digest.hexdigest(), first, last


def genesis_records(path):
    """The genesis records of a log that verified."""
    for name in log_files(path):
        with open(name, "rb") as log:
            for line in log:
                record = json.loads(line)
                if record.get("kind") == "genesis":
                    yield record


def main_legacy(old, path, public_key):
    problem, count, sha256, first, last = verify_legacy(old)
    if problem:
        print(f"FAILED {old}: line {problem[0]}: {problem[1]}")
        return 1
    anchored = ""
    if path is not None:
        where, message = verify(path, public_key)
        if where is not None:
            print(f"FAILED {where[0]}: line {where[1]}: {message}")
            return 1
        seqs = [r.get("seq") for r in genesis_records(path)
                if r.get("sha256") == sha256 and r.get("legacy_format") == LEGACY_FORMAT]
        if not seqs:
            print(f"FAILED {old}: not anchored in {path}: no genesis record there holds {sha256}")
            return 1
        anchored = f"; anchored by the genesis record at seq {seqs[0]}"
    print(f"OK {old}: {count} lines verify in the original's format ({first} .. {last}), {sha256}{anchored}")
    return 0


def main(argv):
    args, public_key, legacy = argv[1:], None, None
    try:
        while len(args) >= 2 and args[0] in ("--public-key", "--legacy"):
            if args[0] == "--legacy":
                legacy = args[1]
            else:
                with open(args[1]) as key_file:
                    public_key = bytes.fromhex(key_file.read().strip())
            args = args[2:]
    except (OSError, ValueError) as error:
        print(f"cannot read the public key: {error}", file=sys.stderr)
        return 2
    if len(args) > 1 or (legacy is None and not args) or (legacy and public_key and not args):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * MAX_DEPTH))
    try:
        if legacy is not None:
            return main_legacy(legacy, args[0] if args else None, public_key)
        where, message = verify(args[0], public_key)
    except OSError as error:
        print(f"cannot read: {error}", file=sys.stderr)
        return 2
    if where is None:
        print(f"OK {message}")
        return 0
    print(f"FAILED {where[0]}: line {where[1]}: {message}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
