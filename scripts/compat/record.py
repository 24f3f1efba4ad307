#!/usr/bin/env python3
"""Records the original Python SustainBot's answers to tests/compat/cases.json.

Run through scripts/compat-record.sh, which prepares the Python 3.12 virtualenv this needs (the
original's requirements, PyJWT to mint tokens the way its clients do). For each profile of the
cases it starts the stand-in (standin.py) and the original from ORIGINAL/sustainbot on free loopback
ports, sends every case of the profile in file order, masks what changes from run to run, and
writes tests/compat/recorded.json. The original's code stays outside the project: it runs from a
temporary copy and only its answers are written.
"""

import argparse
import copy
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata

import jwt  # PyJWT, from the virtualenv: tokens minted exactly as the original's clients mint them

MASK = "<masked>"
STANDIN_LABEL = "standin"
DOWN_PORT = 9  # nothing listens there; the Rust test uses the same port
DOWN_LABEL = "nothing-listening"
PACKAGES = ["Flask", "Werkzeug", "PyJWT", "pydantic", "prometheus-client", "requests", "python-dotenv"]


# ---------------------------------------------------------------------------- resolving cases

def pointer_parts(pointer):
    if not pointer.startswith("/"):
        raise ValueError(f"not a JSON pointer: {pointer!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def pointer_set(doc, pointer, value):
    *parents, last = pointer_parts(pointer)
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    if isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


def pointer_remove(doc, pointer):
    *parents, last = pointer_parts(pointer)
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    del doc[int(last) if isinstance(doc, list) else last]


def resolve_json(spec, templates):
    if isinstance(spec, dict) and "$template" in spec:
        body = copy.deepcopy(templates[spec["$template"]])
        for pointer, value in spec.get("$set", {}).items():
            pointer_set(body, pointer, value)
        for pointer in spec.get("$remove", []):
            pointer_remove(body, pointer)
        return body
    return spec


def resolve_token(spec, templates):
    if spec is None:
        return None
    token = {}
    if "$template" in spec:
        token = copy.deepcopy(templates[spec["$template"]])
    for key, value in spec.items():
        if key == "$template":
            continue
        if key == "claims":
            token.setdefault("claims", {}).update(value)
        else:
            token[key] = value
    token.setdefault("alg", "HS256")
    token.setdefault("scheme", "Bearer")
    token.setdefault("secret", "server")
    return token


def resolve_request(case, cases_doc):
    spec = case["request"]
    headers = dict(spec.get("headers", {}))
    body = None
    if "json" in spec:
        body = json.dumps(resolve_json(spec["json"], cases_doc["body_templates"]))
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    elif "body" in spec:
        body = spec["body"]
    if not case.get("no_trace_id"):
        headers["X-Trace-ID"] = f"compat-{case['name']}"
    return {
        "method": spec["method"],
        "path": spec["path"],
        "headers": headers,
        "token": resolve_token(spec.get("token"), cases_doc["token_templates"]),
        "body": body,
    }


# ---------------------------------------------------------------------------- tokens

def numeric_date(spec, now):
    """A NumericDate `in` seconds from now; with `float`, time.time() arithmetic as PyJWT users
    write it (a fraction guaranteed), else whole seconds as PyJWT encodes a datetime."""
    if spec.get("float"):
        value = now + spec["in"]
        return value + 0.25 if float(value).is_integer() else value
    return int(now) + int(spec["in"])


def mint(token, cases_doc):
    now = time.time()
    claims = dict(token["claims"])
    for claim in ("iat", "nbf", "exp"):
        if claim in token:
            claims[claim] = numeric_date(token[claim], now)
    if token["alg"] == "none":
        return jwt.encode(claims, None, algorithm="none")
    secret = cases_doc["jwt_secret"] if token["secret"] == "server" else cases_doc["wrong_secret"]
    return jwt.encode(claims, secret, algorithm=token["alg"])


def authorization(token, cases_doc):
    value = mint(token, cases_doc)
    return f"{token['scheme']} {value}" if token["scheme"] else value


# ---------------------------------------------------------------------------- normalising answers

def substitute(value, addresses):
    if isinstance(value, str):
        for address, label in addresses.items():
            value = value.replace(address, label)
        return value
    if isinstance(value, list):
        return [substitute(v, addresses) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, addresses) for k, v in value.items()}
    return value


def mask_keys(value, keys):
    if isinstance(value, list):
        return [mask_keys(v, keys) for v in value]
    if isinstance(value, dict):
        return {k: (MASK if k in keys else mask_keys(v, keys)) for k, v in value.items()}
    return value


def mask_pointers(value, pointers):
    """Masks the value at each pointer that is there; absent stays absent, so presence is still
    compared."""
    for pointer in pointers:
        *parents, last = pointer_parts(pointer)
        target = value
        try:
            for part in parents:
                target = target[int(part)] if isinstance(target, list) else target[part]
            if isinstance(target, dict) and last in target:
                target[last] = MASK
            elif isinstance(target, list) and int(last) < len(target):
                target[int(last)] = MASK
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    return value


def sort_pointers(value, pointers):
    for pointer in pointers:
        target = value
        try:
            for part in pointer_parts(pointer):
                target = target[int(part)] if isinstance(target, list) else target[part]
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(target, list):
            target.sort(key=lambda v: json.dumps(v, sort_keys=True))
    return value


def normalise_json(value, case, cases_doc, addresses):
    value = substitute(value, addresses)
    value = mask_keys(value, set(cases_doc["mask_keys"]))
    value = mask_pointers(value, case.get("mask", []))
    return sort_pointers(value, case.get("sort", []))


def metric_names(text):
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "#" and parts[1] == "TYPE" and not parts[2].endswith("_created"):
            names.add(parts[2])
    return sorted(names)


def allow_methods(value):
    return sorted({m.strip().upper() for m in value.split(",") if m.strip()})


# ---------------------------------------------------------------------------- talking HTTP

def send(port, request, cases_doc):
    headers = dict(request["headers"])
    if request["token"] is not None:
        headers["Authorization"] = authorization(request["token"], cases_doc)
    body = request["body"].encode() if request["body"] is not None else None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(request["method"], request["path"], body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), response.read()
    finally:
        connection.close()


def standin_call(port, method, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, process, log_path, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode}:\n{open(log_path).read()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{what} did not answer on port {port} within {timeout}s:\n{open(log_path).read()}")


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------- recording

def record_case(case, request, status, headers, raw, calls, cases_doc, addresses):
    response = {"status": status}
    compare = case.get("compare", "json")
    text = raw.decode("utf-8", "replace")
    if compare == "metric_names":
        response["metric_names"] = metric_names(text)
    elif not raw:
        response["content"] = "empty"
    else:
        try:
            response["json"] = normalise_json(json.loads(text), case, cases_doc, addresses)
            response["content"] = "json"
        except ValueError:
            response["content"] = "text"
            response["text"] = substitute(text, addresses)
    for name in case.get("headers_compared", []):
        value = headers.get(name.lower())
        if name.lower() == "allow" and value is not None:
            value = allow_methods(value)
        response.setdefault("headers", {})[name.lower()] = value
    return {
        "name": case["name"],
        "profile": case["profile"],
        "case": case,
        "request": request,
        "response": response,
        "openclaw": [normalise_json(c, case, cases_doc, addresses) for c in calls],
    }


def run_profile(name, profile, cases, args, cases_doc, standin_port, work):
    run_dir = os.path.join(work, f"run-{name}")
    os.makedirs(os.path.join(run_dir, "logs"))
    openclaw_port = standin_port if profile["openclaw"] == "up" else DOWN_PORT
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": run_dir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "JWT_SECRET": cases_doc["jwt_secret"],
        "GOVERNANCE_ENABLED": "true" if profile["governance_enabled"] else "false",
        "AUDIT_LOG_PATH": os.path.join(run_dir, "logs", "audit.jsonl"),
        "WORKFLOWS_DIR": args.workflows,
        "LLM_MODEL": "llama2",
        "LLM_HOST": "127.0.0.1",
        "LLM_PORT": str(standin_port),
        "OPENCLAW_URL": f"http://127.0.0.1:{openclaw_port}",
    }
    log_path = os.path.join(run_dir, "original.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [args.python, os.path.join(work, "sustainbot", "main.py"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    addresses = {f"127.0.0.1:{standin_port}": STANDIN_LABEL, f"127.0.0.1:{DOWN_PORT}": DOWN_LABEL}
    recorded = []
    try:
        wait_for(port, process, log_path, f"the original ({name})")
        for case in cases:
            request = resolve_request(case, cases_doc)
            standin_call(standin_port, "DELETE", "/_standin/calls")
            status, headers, raw = send(port, request, cases_doc)
            calls = standin_call(standin_port, "GET", "/_standin/calls")
            recorded.append(record_case(case, request, status, headers, raw, calls, cases_doc, addresses))
            print(f"  {case['name']}: {status}")
    finally:
        stop(process)
    return recorded


def versions():
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def main():
    parser = argparse.ArgumentParser(description="Record the original server's answers to the compat cases")
    parser.add_argument("--original", required=True, help="a directory holding the original's sustainbot/main.py")
    parser.add_argument("--revision", default="unknown", help="the original's commit, for the record")
    parser.add_argument("--cases", required=True)
    parser.add_argument("--workflows", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--python", default=sys.executable, help="Python 3.12 with the original's requirements")
    args = parser.parse_args()
    args.workflows = os.path.abspath(args.workflows)

    with open(args.cases) as f:
        cases_doc = json.load(f)
    names = [c["name"] for c in cases_doc["cases"]]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        sys.exit(f"duplicate case names: {sorted(duplicates)}")

    work = tempfile.mkdtemp(prefix="sustainbot-compat-")
    processes = []
    try:
        # Only the server's own modules, copied: no .env of the checkout, no bytecode written there.
        shutil.copytree(os.path.join(args.original, "sustainbot"), os.path.join(work, "sustainbot"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".env"))
        port_file = os.path.join(work, "standin.port")
        standin_log = os.path.join(work, "standin.log")
        with open(standin_log, "w") as log:
            standin = subprocess.Popen(
                [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin.py"),
                 "--port-file", port_file],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        processes.append(standin)
        deadline = time.time() + 10
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline or standin.poll() is not None:
                sys.exit(f"the stand-in did not start:\n{open(standin_log).read()}")
            time.sleep(0.05)
        standin_port = int(open(port_file).read())
        wait_for(standin_port, standin, standin_log, "the stand-in")

        recorded = []
        for name, profile in cases_doc["profiles"].items():
            cases = [c for c in cases_doc["cases"] if c["profile"] == name]
            if not cases:
                continue
            print(f"profile {name}: {len(cases)} cases")
            recorded.extend(run_profile(name, profile, cases, args, cases_doc, standin_port, work))
        unknown = {c["profile"] for c in cases_doc["cases"]} - set(cases_doc["profiles"])
        if unknown:
            sys.exit(f"cases name unknown profiles: {sorted(unknown)}")
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)

    order = {n: i for i, n in enumerate(names)}
    recorded.sort(key=lambda r: order[r["name"]])
    document = {
        "about": "The original Python SustainBot's answers to cases.json, masked. Generated by "
                 "scripts/compat-record.sh; do not edit by hand.",
        "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "original": {"repository": "Honey-Badger-Labs/AIWF", "revision": args.revision},
        "versions": versions(),
        "standin_labels": {"standin": STANDIN_LABEL, "nothing_listening": DOWN_LABEL, "down_port": DOWN_PORT},
        "mask": MASK,
        "cases": recorded,
    }
    with open(args.out, "w") as f:
        json.dump(document, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(recorded)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
