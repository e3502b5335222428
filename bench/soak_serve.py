"""Soak test of ``memtrain serve``: bounded concurrent load on 127.0.0.1, valid and malformed requests mixed.

`--connections` client threads (64) each send one request after another on fresh connections for `--duration`
seconds (20): valid completions (seeded and unseeded, text and token-id prompts), malformed bodies (not
JSON, not an object, empty or out-of-vocabulary prompts, seeds over 64 bits, max_tokens 1e9, temperature NaN,
top_p outside (0, 1], n 1e9, ...), malformed HTTP (bad Content-Length, chunked bodies, truncated bodies,
garbled request lines, unknown methods and routes), clients that hang up during a long generation, and
health checks. It prints the requests served, the answers by status, connection errors, and the server's
peak memory, and exits 1 unless every valid request got a 200, every malformed one a 4xx, no connection
failed, and the server is still up without having printed a traceback.

    python bench/soak_serve.py [--connections 64] [--duration 20] [--url http://127.0.0.1:8000]

Without `--url` it starts ``memtrain serve --port 0`` (the embedded SmolLM2-135M; `--model`, `--device`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

MALFORMED_BODIES = [
    b"[1, 2, 3]",
    b'"hello"',
    b"{not json",
    b"\xff\xfe\x00",
    b"[" * 50_000 + b"]" * 50_000,
    b"{}",
    b'{"prompt": "", "max_tokens": 4}',
    b'{"prompt": [], "max_tokens": 4}',
    b'{"prompt": [1, 49152], "max_tokens": 4}',
    b'{"prompt": [-1], "max_tokens": 4}',
    b'{"prompt": [[[1]]]}',
    b'{"prompt": "a\\ud800b"}',
    b'{"prompt": [1, true]}',
    b'{"prompt": [1, 2], "seed": 18446744073709551616}',
    b'{"prompt": [1, 2], "max_tokens": 1e9}',
    b'{"prompt": [1, 2], "max_tokens": 20000}',
    b'{"prompt": [1, 2], "max_tokens": 0}',
    b'{"prompt": [1, 2], "temperature": NaN}',
    b'{"prompt": [1, 2], "temperature": -1}',
    b'{"prompt": [1, 2], "top_p": 0}',
    b'{"prompt": [1, 2], "top_p": 1.5}',
    b'{"prompt": [1, 2], "n": 1e9}',
    b'{"prompt": [1, 2], "n": 64, "max_tokens": 4000}',
]

MALFORMED_HTTP = [
    b"POST /v1/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /nothing/here HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"DELETE /v1/completions HTTP/1.1\r\n\r\n",
    b"BREW /coffee HTTP/1.1\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
]
TRUNCATED = b"POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{}"  # then the client stops sending

TEXTS = ["The capital of France is", "Name a prime number.", "Once upon a time", "1, 2, 3, 4,"]


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_kind: Counter[tuple[str, str]] = Counter()  # (kind, status or error)
        self.wrong: list[str] = []
        self.latencies: list[float] = []

    def add(self, kind: str, outcome: str, ok: bool, seconds: float | None = None) -> None:
        with self.lock:
            self.by_kind[kind, outcome] += 1
            if not ok and len(self.wrong) < 20:
                self.wrong.append(f"{kind}: {outcome}")
            if seconds is not None:
                self.latencies.append(seconds)


def exchange(host: str, port: int, data: bytes, timeout: float, half_close: bool = False) -> str:
    """Send raw bytes, return the status code of the answer (or 'no answer')."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
        except http.client.RemoteDisconnected:
            return "no answer"
        response.read()
        return str(response.status)


def worker(host: str, port: int, deadline: float, rng: random.Random, tally: Tally, args) -> None:
    while time.monotonic() < deadline:
        kind = rng.choices(
            ["valid", "malformed body", "malformed http", "truncated", "hang-up", "health"],
            weights=[40, 30, 15, 5, 5, 5],
        )[0]
        start = time.monotonic()
        try:
            if kind in ("valid", "malformed body", "health"):
                connection = http.client.HTTPConnection(host, port, timeout=args.timeout)
                try:
                    if kind == "health":
                        connection.request("GET", "/health")
                    else:
                        if kind == "valid":
                            body = {
                                "prompt": rng.choice(TEXTS)
                                if rng.random() < 0.5
                                else [rng.randrange(49152) for _ in range(rng.randint(1, 32))],
                                "max_tokens": rng.randint(1, args.max_tokens),
                                "temperature": rng.choice([0, 0.7, 1.0]),
                                "logprobs": 1,
                            }
                            if rng.random() < 0.5:  # seeded requests run alone; unseeded ones batch
                                body["seed"] = rng.randrange(2**64)
                            data = json.dumps(body).encode()
                        else:
                            data = rng.choice(MALFORMED_BODIES)
                        connection.request(
                            "POST", "/v1/completions", body=data, headers={"Content-Type": "application/json"}
                        )
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                finally:
                    connection.close()
                ok = status == 200 if kind != "malformed body" else 400 <= status < 500
                tally.add(kind, str(status), ok, time.monotonic() - start if kind == "valid" else None)
            elif kind in ("malformed http", "truncated"):
                data = rng.choice(MALFORMED_HTTP) if kind == "malformed http" else TRUNCATED
                status = exchange(host, port, data, args.timeout, half_close=kind == "truncated")
                tally.add(kind, status, status.startswith("4"))
            else:  # a long generation the client gives up on
                body = json.dumps(
                    {"prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 2000, "temperature": 0}
                ).encode()
                with socket.create_connection((host, port), timeout=args.timeout) as sock:
                    sock.sendall(
                        b"POST /v1/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    time.sleep(rng.uniform(0.0, 1.0))
                tally.add(kind, "hung up", True)
        except (OSError, http.client.HTTPException) as exc:
            tally.add(kind, f"connection error: {type(exc).__name__}", False)


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of process `pid` in MiB, from /proc (Linux)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start_server(args) -> tuple[subprocess.Popen, str, list[str]]:
    command = [sys.executable, "-m", "memtrain", "serve", "--port", "0"]
    command += ["--model", args.model] if args.model else []
    command += ["--device", args.device] if args.device else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line)
            if match := re.search(r"serving \S+ at (http://\S+)/v1", line):
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(300) or not found:
        proc.kill()
        sys.exit("memtrain serve did not start:\n" + "".join(lines))
    return proc, found[0], lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=64, help="Concurrent client connections.")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="Seconds of load (in-flight requests finish)."
    )
    parser.add_argument("--max-tokens", type=int, default=8, help="Most tokens a valid request asks for.")
    parser.add_argument("--timeout", type=float, default=300.0, help="Client timeout per request, seconds.")
    parser.add_argument("--url", help="An already running server (default: start memtrain serve).")
    parser.add_argument("--model", help="Model for the started server.")
    parser.add_argument("--device", default="cpu", help="Device for the started server.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    proc, lines = None, []
    if args.url:
        url = args.url.rstrip("/").removesuffix("/v1")
    else:
        proc, url, lines = start_server(args)
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
    start_rss = rss_mib(proc.pid)[0] if proc else None

    tally = Tally()
    rng = random.Random(args.seed)
    started = time.monotonic()
    deadline = started + args.duration
    threads = [
        threading.Thread(target=worker, args=(host, port, deadline, random.Random(rng.random()), tally, args))
        for _ in range(args.connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started

    alive = proc is None or proc.poll() is None
    server_counts = {}
    if alive:
        try:
            connection = http.client.HTTPConnection(host, port, timeout=60)
            connection.request("GET", "/health")
            server_counts = json.loads(connection.getresponse().read()).get("requests", {})
            connection.close()
        except (OSError, http.client.HTTPException, ValueError):
            alive = False

    counts = tally.by_kind
    total = sum(counts.values())
    statuses = Counter()
    for (_, outcome), count in counts.items():
        statuses[outcome] += count
    served = counts["valid", "200"]
    valid = sum(c for (k, _), c in counts.items() if k == "valid")
    print(
        f"soak: {args.connections} connections for {args.duration:g} s against {url} "
        f"({seconds:.1f} s until the last answer)"
    )
    print(f"requests sent: {total} ({total / seconds:.1f}/s)")
    latency = ""
    if tally.latencies:
        ordered = sorted(tally.latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        latency = f", latency median {statistics.median(ordered):.2f} s, p95 {p95:.2f} s"
    print(f"completions served (200): {served} of {valid}{latency}")
    for kind in ["valid", "malformed body", "malformed http", "truncated", "hang-up", "health"]:
        outcomes = ", ".join(f"{o}: {c}" for (k, o), c in sorted(counts.items()) if k == kind)
        print(f"  {kind:15} {outcomes}")
    print("answers by status: " + ", ".join(f"{s}: {c}" for s, c in sorted(statuses.items())))
    errors_5xx = sum(c for s, c in statuses.items() if s.startswith("5"))
    connection_errors = sum(c for s, c in statuses.items() if s.startswith("connection error"))
    print(f"server errors (5xx): {errors_5xx}; connection errors: {connection_errors}")
    if server_counts:
        print("server's own count: " + ", ".join(f"{k}: {v}" for k, v in sorted(server_counts.items())))
    traceback = any("Traceback" in line for line in lines)
    if proc is not None:
        current, peak = rss_mib(proc.pid) if alive else (float("nan"), float("nan"))
        print(
            f"server memory: peak RSS {peak:.0f} MiB (at start {start_rss:.0f} MiB, at end {current:.0f} MiB)"
        )
    print(f"server: {'alive' if alive else 'DEAD'}, {'printed a traceback' if traceback else 'no traceback'}")
    if tally.wrong:
        print("wrong answers (first 20): " + "; ".join(tally.wrong))
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=30)
        if traceback:
            print("".join(lines)[-4000:])
    sys.exit(0 if alive and not tally.wrong and not traceback else 1)


if __name__ == "__main__":
    main()
