#!/usr/bin/env python3
"""Shares of a system-wide `perf record -a -g` profile by area, for scripts/profile-one-step.sh.

    perf script -i perf.data -F comm,pid,tid,ip,sym | scripts/perf_areas.py SERVER_PID

Every sample is counted once. Samples of the server process (SERVER_PID) are put in the first area
whose pattern matches any frame of their call chain (the order below decides); the other samples by
process: the spawned `true` after its exec, the spawned child before its exec (a vfork child still
running the server's code: glibc's signal reset, dup2, chdir, execve), idle, wrk, everything else.
"""

import collections
import re
import sys

# (area, pattern on any frame of a server sample's call chain); the first match wins.
SERVER_AREAS = [
    ("spawn, parent side (posix_spawn: pipes, /dev/null, env, clone3)",
     r"<std::process::Command>::spawn|common::Command>::spawn|posix_spawn|__spawni|clone3"),
    ("blocking-pool hand-offs (spawn_blocking: wake a pool thread)",
     r"blocking::pool::spawn_blocking|Spawner::spawn_task"),
    ("child wait (pidfd, reaping)", r"[Pp]idfd|PidfdReaper|wait4"),
    ("audit, request side (encode, SHA-256, hand-off to the writer)",
     r"sustainbot::audit::|Gate::record|sha2::"),
    ("run registry (runs)", r"sustainbot::runs::"),
    ("metrics", r"sustainbot::metrics::|record_metrics"),
    ("governance checks and JWT", r"sustainbot::governance::|jsonwebtoken|sustainbot::auth|AuthUser"),
    ("JSON (request parse, report and response encode)", r"serde_json"),
    ("command step: stats, pipes, capture, supervision",
     r"sustainbot::workflow::command|tokio::process::|ChildStdout|ChildStderr"),
    ("runner and gate (the rest of a run: records, reports, clones)",
     r"sustainbot::workflow::|sustainbot::pipeline::"),
    ("HTTP (hyper, axum, sockets)", r"hyper::|axum::|hyper_util|TcpStream|tcp_|sock_|accept"),
    ("logging (tracing)", r"tracing"),
]
SERVER_AREAS = [(area, re.compile(pattern)) for area, pattern in SERVER_AREAS]
SCHEDULER = "tokio scheduler, epoll, park/unpark, allocator (the rest)"


def area_of(comm, pid, tid_frames, server):
    if pid == server:
        if comm.startswith("audit-syncer"):
            return "server: audit syncer thread (fdatasync)"
        if comm.startswith("audit-"):
            return "server: audit writer thread (chain, write)"
        stack = "\n".join(tid_frames)
        # Threads of tokio's blocking pool (not the runtime's workers, which run inside it).
        if "BlockingTask" in stack or (
            "blocking::pool::Inner::run" in stack and "multi_thread::worker::run" not in stack
        ):
            return "server: blocking-pool threads (tokio::fs, thread park/unpark)"
        return "server: " + next((a for a, p in SERVER_AREAS if p.search(stack)), SCHEDULER)
    if comm == "true":
        return "child: `true` after exec (exec, ld.so, exit)"
    if comm.startswith("tokio") or comm.startswith("bare_reference") or comm.startswith("sustainbot"):
        return "child: before exec (vfork child: signal reset, dup2, chdir, execve)"
    if comm == "swapper":
        return "idle"
    if comm == "wrk":
        return "wrk (load generator)"
    return "other processes and kernel threads"


def main():
    server = sys.argv[1]
    counts = collections.Counter()
    head, frames = None, []

    def flush():
        if head is None:
            return
        match = re.match(r"\s*(.*\S)\s+(-?\d+)/(-?\d+)\s*$", head)
        comm, pid = (match.group(1), match.group(2)) if match else (head.strip(), "?")
        counts[area_of(comm, pid, frames, server)] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            head, frames = None, []
        elif head is None and not line.startswith("\t"):
            head = line
        else:
            frames.append(line.strip())
    flush()
    total = sum(counts.values()) or 1
    for area, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{100 * n / total:.2f}\t{area}")
    print(f"{total}\tsamples")


if __name__ == "__main__":
    main()
