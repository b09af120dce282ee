"""``kiosk run``: the kiosk as a service: teacher page, camera pipeline per class, outbox, LED/buzzer.

Start-up builds the parts and injects them into :class:`kiosk.app.Kiosk` (no globals): the event
bus, the outbox (with the spool of an earlier run), the LED/buzzer, and a pipeline factory the kiosk
calls when a class starts. The recognition models load lazily (first class or enrolment), and a
missing or broken camera never stops the service: the page shows why and marks by hand still work.

Serving: waitress with ``settings.web_threads`` threads (plain HTTP; put a TLS proxy in front, see
docs/raspberry-pi.md), or, when ``tls_cert``/``tls_key`` are set, a small TLS server (one thread per
connection, at most ``web_threads`` at once).

systemd (``Type=notify``): ``READY=1`` once the page listens; ``WATCHDOG=1`` only while the kiosk is
healthy: idle (no class), or a class whose camera loop ticked in the last :data:`STALL_SECONDS`. A hung
camera loop stops the pings, and systemd restarts the service. SIGTERM/SIGINT stop it: the class ends,
the outbox flushes for at most 5 s, what is left goes to the spool.

Output: the kiosk's ``logging`` records (INFO and up; other libraries' WARNING and up) go to stdout as
one short line each (``kiosk: <message>``, no tracebacks); systemd puts them in the journal. The red
LED's error blink has two reasons: the camera (set by the pipeline) and recording (set here while the
outbox is unhealthy: the API is down or the teacher must log in again).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import email.utils
import logging
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from kiosk.errors import ConfigError, FeedbackError
from kiosk.sdnotify import Notifier, watchdog_interval
from kiosk.status import CLOCK_SKEW_WARN_SECONDS

STALL_SECONDS = 20.0  # a running class's camera loop silent this long is hung (it ticks every <= 0.5 s)
IDLE_PING_SECONDS = 5.0  # how often the main loop wakes when systemd wants no watchdog pings
OUTBOX_FLUSH_SECONDS = 5.0
TLS_SOCKET_TIMEOUT = 30.0  # seconds a TLS connection may stall on one read or write
Clock = Callable[[], float]


# --- health and the systemd watchdog ----------------------------------------------------------------
def watchdog_ok(tick_age: float | None, stall_seconds: float = STALL_SECONDS) -> bool:
    """Whether systemd may be told the kiosk is alive.

    ``tick_age`` is the seconds since the camera loop last ticked, None when no class (no camera loop)
    runs: idle is healthy.
    """
    return tick_age is None or tick_age <= stall_seconds


class PipelineWatch:
    """Remembers the pipeline the kiosk made last, to read its ``tick_age()`` for the watchdog."""

    def __init__(self) -> None:
        self.pipeline: Any = None

    def tick_age(self) -> float | None:
        """Seconds since the running pipeline's loop ticked; None when none runs."""
        pipeline = self.pipeline
        return pipeline.tick_age() if pipeline is not None else None


class WatchdogFeeder:
    """Pings systemd's watchdog on each :meth:`feed` while :func:`watchdog_ok`; prints one line on a change.

    ``tick_age()`` returns what :func:`watchdog_ok` takes.
    """

    def __init__(self, notifier: Notifier, tick_age: Callable[[], float | None], *,
                 stall_seconds: float = STALL_SECONDS):
        self.notifier = notifier
        self.tick_age = tick_age
        self.stall_seconds = stall_seconds
        self.stalled = False

    def feed(self) -> bool:
        """One check; True when the watchdog was fed."""
        age = self.tick_age()
        ok = watchdog_ok(age, self.stall_seconds)
        if ok:
            self.notifier.watchdog()
        if ok == self.stalled:  # the verdict changed
            self.stalled = not ok
            print("kiosk: camera loop is ticking again." if ok else
                  f"kiosk: camera loop stalled for {age:.0f} s; no more watchdog pings, systemd will restart.",
                  flush=True)
        return ok


# --- clock check -------------------------------------------------------------------------------------
def clock_skew(date_header: str | None, now: float) -> float | None:
    """Server time (an HTTP ``Date`` header) minus ``now`` (epoch seconds); None when absent or unreadable."""
    if not date_header:
        return None
    try:
        return email.utils.parsedate_to_datetime(date_header).timestamp() - now
    except (TypeError, ValueError, IndexError):
        return None


def check_clock(url: str, *, timeout: float, head: Callable[..., Any] | None = None,
                now: Clock = time.time) -> str | None:
    """A one-line warning when the API's clock and ours differ by more than 2 minutes, else None.

    ``head(url, timeout=...)`` defaults to ``requests.head``; an unreachable API gives None (the
    kiosk's client checks again on every answer, and the page shows it).
    """
    if head is None:
        import requests

        head = requests.head
    try:
        response = head(url, timeout=timeout, allow_redirects=False)
    except OSError:
        return None
    skew = clock_skew(response.headers.get("Date"), now())
    if skew is None or abs(skew) <= CLOCK_SKEW_WARN_SECONDS:
        return None
    side = "behind" if skew > 0 else "ahead of"
    return (f"kiosk: warning: this clock is {abs(skew) / 60:.0f} min {side} the API's; "
            "check time sync (timesyncd/chrony).")


# --- output ------------------------------------------------------------------------------------------
class ShortFormatter(logging.Formatter):
    """``kiosk: <message>`` on one line; an exception is named by its type only (its text and traceback
    may carry a student ID or a URL with a password)."""

    def __init__(self) -> None:
        super().__init__("kiosk: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None,
                                                     "stack_info": None}))
        if record.exc_info and record.exc_info[0] is not None:
            text += f" ({record.exc_info[0].__name__})"
        return text.replace("\n", " ")


@contextlib.contextmanager
def log_to(stream: Any = None, *, level: int = logging.INFO):
    """Within the block, log records go to ``stream`` (default: stdout at the time of the call) as short
    lines: the kiosk's own from ``level``, other libraries' from WARNING. Restores the loggers after."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(ShortFormatter())
    root, ours = logging.getLogger(), logging.getLogger("kiosk")
    before = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    ours.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(before[0])
        ours.setLevel(before[1])


def recording_signal(feedback: Any) -> Callable[[bool], None]:
    """An outbox health listener that shows "marks cannot be recorded" on the LED (reason ``recording``)."""
    from kiosk.feedback import ERROR_RECORDING

    def show(healthy: bool) -> None:
        if healthy:
            feedback.clear_error(ERROR_RECORDING)
        else:
            feedback.error(ERROR_RECORDING)

    return show


# --- signals ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, signals=(signal.SIGTERM, signal.SIGINT)):
    """Within the block, the ``signals`` set ``stop`` instead of killing the process (main thread only)."""
    def handler(signum: int, frame: Any) -> None:
        # Event.set() takes a lock the interrupted main thread may hold: set it from another thread.
        threading.Thread(target=stop.set, name="kiosk-signal", daemon=True).start()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- the web servers ----------------------------------------------------------------------------------
class WaitressServer:
    """The page on waitress: plain HTTP. ``X-Forwarded-For/-Proto`` are trusted from 127.0.0.1 only
    (a local TLS proxy), so login limits see the real client and cookies know the page is secure."""

    def __init__(self, app: Any, settings: Any):
        from waitress.server import create_server

        # Request bodies stay in memory: waitress spools bodies above ``inbuf_overflow`` (512 KB by
        # default) to a temporary file, and refuses bodies above ``max_request_body_size`` (413).
        body_cap = int(settings.max_upload_mb * 1_000_000) + 1_000_000
        self._server = create_server(
            app, host=settings.host, port=settings.port, threads=settings.web_threads,
            trusted_proxy="127.0.0.1", trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"},
            clear_untrusted_proxy_headers=True, ident="kiosk",
            inbuf_overflow=body_cap + 1, max_request_body_size=body_cap)
        self.port = int(self._server.effective_port)
        self.url = f"http://{settings.host}:{self.port}/"
        self._listening_closed = False

    def run(self) -> None:
        """Serve until :meth:`close` (run it in a thread)."""
        self._server.run()

    def stop_listening(self) -> None:
        """Accept no new connections; safe to call twice."""
        if not self._listening_closed:
            self._listening_closed = True
            with contextlib.suppress(OSError):
                self._server.close()

    def close(self) -> None:
        """Stop listening and let the worker threads end (at most 2 s); safe to call twice."""
        self.stop_listening()
        self._server.task_dispatcher.shutdown(timeout=2)


class _TLSHandler(WSGIRequestHandler):
    server_version, sys_version = "kiosk", ""  # the Server header names no versions

    def log_message(self, format: str, *args: Any) -> None:  # no per-request lines (they carry addresses)
        pass

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["HTTPS"] = "on"  # wsgiref derives wsgi.url_scheme from it
        return environ


class _TLSWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref with TLS: the handshake happens in the connection's own thread; ``slots`` bounds the threads."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, slots: int):
        super().__init__(address, _TLSHandler)
        self.context = context
        self.slots = threading.BoundedSemaphore(slots)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # every thread busy: refuse rather than queue unboundedly
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(TLS_SOCKET_TIMEOUT)
            with self.context.wrap_socket(request, server_side=True) as tls:
                self.finish_request(tls, client_address)
        except OSError:  # failed handshakes (e.g. a browser refusing the certificate), resets, timeouts
            pass
        finally:
            self.shutdown_request(request)
            self.slots.release()


class TLSServer:
    """The page over HTTPS with ``settings.tls_cert``/``tls_key`` (PEM); for small deployments.

    Raises :class:`ConfigError` when the certificate or key cannot be loaded.
    """

    def __init__(self, app: Any, settings: Any):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"The TLS certificate or key cannot be loaded ({type(exc).__name__}): "
                              "check tls_cert and tls_key.") from exc
        self._server = _TLSWSGIServer((settings.host, settings.port), context, settings.web_threads)
        self._server.set_app(app)
        self.port = int(self._server.server_address[1])
        self.url = f"https://{settings.host}:{self.port}/"

    def run(self) -> None:
        """Serve until :meth:`close` (run it in a thread)."""
        self._server.serve_forever(poll_interval=0.2)

    def stop_listening(self) -> None:
        """Stop serving and close the listening socket (open connections finish); safe to call twice."""
        if self._server.socket.fileno() != -1:
            self._server.shutdown()
            self._server.server_close()

    close = stop_listening


def make_server(app: Any, settings: Any) -> WaitressServer | TLSServer:
    """The page's server, already listening; raises OSError when the port is taken."""
    return TLSServer(app, settings) if settings.tls_cert else WaitressServer(app, settings)


# --- building the kiosk ---------------------------------------------------------------------------
class Services(contextlib.ExitStack):
    """Everything ``kiosk run`` builds; closing it stops them in a safe order (class, outbox, pins).

    The keyword arguments are seams for tests and other front ends: ``engine`` (None: built from the
    settings on first use), ``camera()`` returning a new, unopened FrameSource (None: ``settings.camera``),
    and ``outbox_options`` passed on to :class:`~kiosk.outbox.Outbox` (e.g. ``backoff_cap`` seconds).
    """

    def __init__(self, settings: Any, *, engine: Any = None, camera: Callable[[], Any] | None = None,
                 outbox_options: dict[str, Any] | None = None):
        super().__init__()
        self.settings = settings
        self._engine = engine
        self._camera_factory = camera
        self._outbox_options = dict(outbox_options or {})
        self.watch = PipelineWatch()
        self.kiosk: Any = None
        self.outbox: Any = None
        self._closing_since: float | None = None

    def build(self) -> Services:
        """Make the parts; on a failure, closes what was made and re-raises."""
        try:
            self._build(self)
        except BaseException:
            self.close()
            raise
        return self

    def _build(self, stack: contextlib.ExitStack) -> None:
        from kiosk.app import Kiosk
        from kiosk.events import EventBus
        from kiosk.outbox import Outbox

        settings = self.settings
        bus = EventBus()
        stack.callback(bus.close)
        feedback = _feedback_or_none(settings)
        if feedback is not None:
            stack.callback(feedback.close)
        _make_state_dir(settings.state_dir)
        self.outbox = Outbox(settings.state_dir, client_for=self._client_for, events=bus, **self._outbox_options)
        if feedback is not None:
            self.outbox.on_health_change(recording_signal(feedback))
        spooled = self.outbox.load_spool()
        if spooled:
            print(f"kiosk: {spooled} undelivered mark(s) from the last run wait for their teacher.", flush=True)
        self.outbox.start()
        stack.callback(self._stop_outbox)  # after the kiosk's own flush: spool what is left
        self.kiosk = Kiosk(settings, engine=self._engine, events=bus, outbox=self.outbox, feedback=feedback,
                           pipeline_factory=self._make_pipeline, source_factory=self._camera)
        stack.callback(self._close_kiosk)  # ends the class, flushes the teacher's marks (within the budget)
        stack.callback(self._closing)  # runs first: the 5 s flush budget starts now

    def _closing(self) -> None:
        self._closing_since = time.monotonic()

    def _budget_left(self) -> float:
        """Seconds left of the 5 s shutdown flush budget (all of it before shutdown began)."""
        since = self._closing_since if self._closing_since is not None else time.monotonic()
        return max(0.0, OUTBOX_FLUSH_SECONDS - (time.monotonic() - since))

    def _close_kiosk(self) -> None:
        """Close the kiosk (class ended, marks flushed, tick thread stopped) within the budget's remainder."""
        self.kiosk.close(timeout=self._budget_left())

    def _stop_outbox(self) -> None:
        """Stop the outbox with what is left of the 5 s flush budget (the kiosk's flush used some)."""
        self.outbox.stop(self._budget_left())

    def _client_for(self, teacher: str) -> Any:
        return self.kiosk.client_for(teacher) if self.kiosk is not None else None

    def _camera(self) -> Any:
        if self._camera_factory is not None:
            return self._camera_factory()
        from kiosk.camera import open_source

        return open_source(self.settings.camera, self.settings)

    def _make_pipeline(self, *, on_decision: Callable[[Any], str | None]) -> Any:
        from kiosk.pipeline import Pipeline

        pipeline = Pipeline(self.settings, engine=self.kiosk.engine, source_factory=self._camera,
                            on_decision=on_decision, events=self.kiosk.events, feedback=self.kiosk.feedback)
        self.watch.pipeline = pipeline
        return pipeline


def _make_state_dir(path: str) -> None:
    """Create the spool's folder (owner only); raises :class:`ConfigError` when it cannot be made."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"The state folder {path} cannot be created ({exc.strerror or exc}): "
                          "check state_dir.") from exc


def _feedback_or_none(settings: Any) -> Any:
    """The LED/buzzer, or None (with one line saying why) when the pins cannot be used."""
    from kiosk.feedback import Feedback

    try:
        return Feedback(settings)
    except FeedbackError as exc:
        print(f"kiosk: running without LED and buzzer: {exc}", flush=True)
        return None


# --- `kiosk run` -------------------------------------------------------------------------------------
def configure_parser(parser: Any) -> None:
    parser.add_argument("--no-clock-check", action="store_true",
                        help="do not compare this clock with the API's at start-up")


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX`` would); True when it took effect.

    Each class starts fresh camera and pipeline threads, and glibc gives new threads new arenas (up to
    8 per core) that keep their memory: the soak test saw ~5 MB more RSS per class start until the cap.
    With 2 arenas the growth stays flat. A no-op off glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def run_command(args: Any, settings: Any, *, stop: threading.Event | None = None,
                notifier: Notifier | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set); 0 after a clean stop, 1 when start-up fails."""
    limit_malloc_arenas()
    stop = stop or threading.Event()
    with contextlib.ExitStack() as stack:
        stack.enter_context(log_to())
        if threading.current_thread() is threading.main_thread():
            stack.enter_context(stop_on_signals(stop))
        notifier = stack.enter_context(notifier or Notifier())
        services = stack.enter_context(Services(settings).build())
        from kiosk.web import create_app

        try:
            server = make_server(create_app(services.kiosk), settings)
        except OSError as exc:
            print(f"kiosk: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}.",
                  file=sys.stderr, flush=True)
            return 1
        threading.Thread(target=server.run, name="kiosk-web", daemon=True).start()
        try:
            print(f"kiosk: teacher page on {server.url} (camera: {_camera_kind(settings.camera)}).", flush=True)
            notifier.ready("Teacher page listening")
            if not getattr(args, "no_clock_check", False):
                _check_clock_in_background(settings)
            _serve_until(stop, notifier, WatchdogFeeder(notifier, services.watch.tick_age), services.watch)
            print("kiosk: stopping; marks not delivered within 5 s go to the spool.", flush=True)
            notifier.stopping()
            server.stop_listening()
            services.close()  # the class ends, the outbox flushes and spools, the pins are released
        finally:
            server.close()
    print("kiosk: stopped.", flush=True)
    return 0


def _serve_until(stop: threading.Event, notifier: Notifier, feeder: WatchdogFeeder, watch: PipelineWatch) -> None:
    """The main thread's loop: feed the watchdog (at half its period) and the status line until ``stop``."""
    interval = watchdog_interval() or IDLE_PING_SECONDS
    while True:
        feeder.feed()
        notifier.status(status_line(watch.pipeline))
        if stop.wait(interval):
            return


def status_line(pipeline: Any) -> str:
    """One line for ``systemctl status``: idle, or the running camera's state and rate (no names)."""
    if pipeline is None or not pipeline.running:
        return "Idle: no class running."
    stats = pipeline.stats()
    return f"Class running; camera {stats['camera_state']}, {stats['fps']:.1f} frames/s."


def _check_clock_in_background(settings: Any) -> None:
    def check() -> None:
        warning = check_clock(settings.api_url, timeout=settings.api_timeout)
        if warning:
            print(warning, flush=True)

    threading.Thread(target=check, name="kiosk-clock-check", daemon=True).start()


def _camera_kind(spec: str) -> str:
    """The camera's kind only (``rtsp``, ``replay`` ...): a URL may carry a password."""
    return spec.split(":", 1)[0] if ":" in spec else spec
