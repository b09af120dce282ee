"""A local stand-in of the university attendance API, faithful to ``wiut-api.md``, for the demo and tests.

Same paths under ``/api``, all POST, the API's own spellings, real HS256 JWTs (signed with a secret
made at start-up), 401 with ``WWW-Authenticate: Bearer error="invalid_token"``, ProblemDetails 400 on
bad bodies. Fault knobs (failure rate, latency, an unavailable window, malformed answers) are set from
Python (:meth:`SandboxState.set_knobs`) or by ``POST /sandbox/knobs`` (not under ``/api``). In memory only.

Example::

    with SandboxServer() as server:            # a free port on 127.0.0.1
        api = WiutClient(server.url)           # server.url ends in /api
        api.login(DEMO_USERNAME, DEMO_PASSWORD)
        server.state.count("Login")            # 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from werkzeug.http import http_date
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from kiosk.errors import ConfigError
from kiosk.wiut.sandbox_app import create_app
from kiosk.wiut.sandbox_data import SandboxState

DEMO_USERNAME, DEMO_PASSWORD = "teacher", "sandbox-password"  # the packaged fixture's demo teacher


class _QuietHandler(WSGIRequestHandler):
    """No per-request log lines; ``Date`` comes from the sandbox's clock (so tests may fake it)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        return http_date(self.server.sandbox_state.clock())  # type: ignore[attr-defined]

    def handle_one_request(self) -> None:
        state: SandboxState = self.server.sandbox_state  # type: ignore[attr-defined]
        if not state.dropping():
            super().handle_one_request()
            return
        # An outage that refuses service: count the call, then close the connection without an answer.
        words = self.rfile.readline(65537).decode("latin-1").split()
        if len(words) >= 2 and words[1].startswith("/api/"):
            state.note_call(words[1].split("?")[0].rsplit("/", 1)[-1])
        self.close_connection = True


class _TrackedServer(ThreadedWSGIServer):
    """Werkzeug's threaded server, but it remembers its open connections and their threads.

    Its request threads are daemons, which ``server_close`` never joins; a client that keeps a connection
    alive parks one in a read. ``close_connections`` shuts those sockets and joins the threads, so closing
    the sandbox really leaves nothing running.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: dict[threading.Thread, socket.socket] = {}
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name="wiut-sandbox-request", daemon=True)
        with self._open_lock:
            self._open[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(threading.current_thread(), None)

    def close_connections(self, timeout: float = 5.0) -> None:
        with self._open_lock:
            open_now = dict(self._open)
        for connection in open_now.values():
            with contextlib.suppress(OSError):  # already closed by its own thread
                connection.shutdown(socket.SHUT_RDWR)  # wakes a thread parked reading a kept-alive connection
        for thread in open_now:
            thread.join(timeout)


class SandboxServer:
    """The sandbox on a real HTTP server in a background thread; a context manager; ``close()`` is idempotent.

    ``port`` 0 picks a free port. ``url`` is the API base (``http://host:port/api``).
    """

    def __init__(self, state: SandboxState | None = None, host: str = "127.0.0.1", port: int = 0):
        self.state = state if state is not None else SandboxState()
        self._stop = threading.Event()
        self._server = _TrackedServer(host, port, create_app(self.state, self._stop), handler=_QuietHandler)
        self._server.sandbox_state = self.state  # type: ignore[attr-defined]
        self.host, self.port = host, self._server.server_port
        self.url = f"http://{host}:{self.port}/api"
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> SandboxServer:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="wiut-sandbox", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, end injected latency, join the threads and close the socket."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        self._server.close_connections()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- `kiosk sandbox` ------------------------------------------------------------------------------
def _latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        low_ms, high_ms = float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN or MIN-MAX milliseconds") from None
    if low_ms < 0 or high_ms < low_ms:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= MIN <= MAX")
    return low_ms / 1000, high_ms / 1000


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("the failure rate is a fraction between 0 and 1")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0 = any)")
    parser.add_argument("--data", metavar="FILE", help="fixture JSON (default: the packaged sandbox.json)")
    parser.add_argument("--access-ttl", type=float, default=900, metavar="SECONDS",
                        help="access-token lifetime (default 900)")
    parser.add_argument("--refresh-ttl", type=float, default=30 * 86400, metavar="SECONDS",
                        help="refresh-token lifetime (default 30 days)")
    parser.add_argument("--rotate-refresh", action="store_true", help="answer Refresh with a new refresh token too")
    parser.add_argument("--failure-rate", type=_rate, default=0.0, help="fraction of API calls answered 500")
    parser.add_argument("--latency-ms", type=_latency, default=(0.0, 0.0), metavar="MIN[-MAX]",
                        help="added delay per API call in milliseconds")


def run_command(args: argparse.Namespace, settings: Any) -> int:
    """Serve until interrupted. ``settings`` is unused: the sandbox has its own options."""
    data = None
    if args.data:
        try:
            data = json.loads(Path(args.data).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"Cannot read sandbox data {args.data}: {exc}.") from exc
    state = SandboxState(data, access_ttl=args.access_ttl, refresh_ttl=args.refresh_ttl)
    state.set_knobs(failure_rate=args.failure_rate, latency=args.latency_ms, rotate_refresh=args.rotate_refresh)
    try:
        server = SandboxServer(state, host=args.host, port=args.port)
    except OSError as exc:
        raise ConfigError(f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}.") from exc
    with server:
        print(f"Sandbox university API at {server.url}", flush=True)
        if DEMO_USERNAME in state.teachers:
            print(f"Demo login: {DEMO_USERNAME} / {state.teachers[DEMO_USERNAME]['password']}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        stopped = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    print("Sandbox stopped.", flush=True)
    return 0
