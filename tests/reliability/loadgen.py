"""Load generator for the page, run as a second process: ``python -m tests.reliability.loadgen`` reads a JSON
job on stdin (``url``, ``username``, ``password``, ``seconds``, ``rate``, ``streams``) and prints one JSON
result on stdout: SSE streams opened up to the cap, what one more stream got, and the latency of ``rate``
API calls per second for ``seconds`` (open loop: a slow answer does not slow the schedule).

Loopback only: the URL must be http://127.0.0.1:PORT.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

CALLS = ("/api/session", "/api/status", "/api/me", "/api/session", "/api/status", "/api/modules")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


class Stream(threading.Thread):
    """One live page: GET /api/events, counting events until ``stop`` is set."""

    def __init__(self, http: requests.Session, url: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.http, self.url, self.stop = http, url, stop
        self.status: int | None = None
        self.events = 0
        self.snapshot = threading.Event()

    def run(self) -> None:
        try:
            with self.http.get(f"{self.url}/api/events", stream=True, timeout=(5, 30)) as answer:
                self.status = answer.status_code
                for line in answer.iter_lines():
                    if line.startswith(b"event:"):
                        self.events += 1
                        if b"snapshot" in line:
                            self.snapshot.set()
                    if self.stop.is_set():
                        break
        except requests.RequestException:
            pass
        finally:
            self.snapshot.set()


def one_over(http: requests.Session, url: str) -> dict[str, Any]:
    """What the stream over the cap gets, and how fast."""
    started = time.monotonic()
    try:
        with http.get(f"{url}/api/events", stream=True, timeout=(5, 10)) as answer:
            body = answer.raw.read(2000, decode_content=True).decode(errors="replace")
            return {"status": answer.status_code, "seconds": round(time.monotonic() - started, 3), "body": body}
    except requests.RequestException as exc:
        return {"status": None, "seconds": round(time.monotonic() - started, 3), "body": type(exc).__name__}


def hammer(http: requests.Session, url: str, seconds: float, rate: float) -> dict[str, Any]:
    """``rate`` calls a second for ``seconds``; latency in ms and the statuses seen."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def call(path: str) -> None:
        t0 = time.perf_counter()
        try:
            code = str(http.get(f"{url}{path}", timeout=10).status_code)
        except requests.RequestException as exc:
            code = type(exc).__name__
        ms = (time.perf_counter() - t0) * 1000
        with lock:
            latencies.append(ms)
            statuses[code] = statuses.get(code, 0) + 1

    total = int(seconds * rate)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(call, CALLS[n % len(CALLS)])
    took = time.monotonic() - start
    return {"calls": len(latencies), "seconds": round(took, 1), "rate": round(len(latencies) / took, 1),
            "statuses": statuses, "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "max_ms": max(latencies, default=None)}


def run(job: dict[str, Any]) -> dict[str, Any]:
    url = job["url"]
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit("loadgen talks to 127.0.0.1 only")
    with requests.Session() as http:
        login = http.post(f"{url}/api/login", json={"username": job["username"], "password": job["password"]},
                          timeout=30)
        login.raise_for_status()
        stop = threading.Event()
        streams = [Stream(http, url, stop) for _ in range(job["streams"])]
        for stream in streams:
            stream.start()
            stream.snapshot.wait(15)
        over = one_over(http, url)
        load = hammer(http, url, job["seconds"], job["rate"])
        stop.set()
        result = {"streams_open": sum(s.status == 200 for s in streams), "stream_events": [s.events for s in streams],
                  "over_cap": over, "api": load}
    for stream in streams:
        stream.join(35)
    result["streams_ended"] = sum(not s.is_alive() for s in streams)
    return result


def main() -> int:
    print(json.dumps(run(json.load(sys.stdin))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
