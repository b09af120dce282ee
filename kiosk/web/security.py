"""Security plumbing of the teacher page: in-memory uploads, server-side sessions, CSRF, login limits, headers.

Nothing here touches the disk: sessions live in a dict of this process (a restart logs every page out),
uploads are parsed into memory (never Werkzeug's spooled temporary files). Flask's signed cookie session
is not used, so there is no secret key.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import io
import secrets
import threading
import time
from collections.abc import Callable
from typing import IO

from flask import Request

SESSION_COOKIE = "kiosk_session"
SESSION_MAX_AGE = 12 * 3600
MAX_SESSIONS = 64

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


class InMemoryRequest(Request):
    """A request whose uploaded files are parsed into memory, never into temporary files on disk.

    The size is bounded by MAX_CONTENT_LENGTH (413 beyond it), so memory use is bounded too.
    """

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return io.BytesIO()


@dataclasses.dataclass
class WebSession:
    """One logged-in page: which teacher (and login epoch) it belongs to and its CSRF token."""

    username: str
    epoch: int
    csrf: str
    created: float


class SessionStore:
    """Session id (the cookie) -> :class:`WebSession`, in memory; at most ``MAX_SESSIONS`` (oldest go first).

    ``monotonic`` is the clock for the absolute lifetime (seconds).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, max_age: float = SESSION_MAX_AGE):
        self._monotonic = monotonic
        self._max_age = max_age
        self._lock = threading.Lock()
        self._sessions: dict[str, WebSession] = {}

    def create(self, username: str, epoch: int) -> tuple[str, WebSession]:
        """A new session; returns (session id for the cookie, session)."""
        sid = secrets.token_urlsafe(32)
        session = WebSession(username, epoch, secrets.token_urlsafe(32), self._monotonic())
        with self._lock:
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None, *, teacher: str | None, epoch: int) -> WebSession | None:
        """The session for ``sid`` if it still belongs to the kiosk's current teacher and epoch, else None."""
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            stale = self._monotonic() - session.created > self._max_age
            if stale or session.username != teacher or session.epoch != epoch:
                del self._sessions[sid]
                return None
            return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


def csrf_ok(session: WebSession, sent: str | None) -> bool:
    """Constant-time comparison of the X-CSRF-Token header with the session's token."""
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), str(sent).encode())


class LoginLimiter:
    """At most ``limit`` login attempts per client in any ``window`` seconds (``monotonic`` clock) that did not
    succeed. An attempt counts from the moment it starts (:meth:`begin`), so parallel guesses cannot slip in
    while the university checks the first ones; :meth:`succeeded` takes a right password back off the count.
    """

    def __init__(self, limit: int, window: float = 60.0, monotonic: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failures: dict[str, collections.deque[float]] = {}

    def _recent(self, client: str, now: float) -> collections.deque[float]:
        times = self._failures.setdefault(client, collections.deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def begin(self, client: str) -> int | None:
        """Count a login attempt of ``client`` now; None when it may go ahead, else the whole seconds until
        it may try again (the attempt was refused and not counted)."""
        now = self._monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) >= self.limit:
                return max(1, int(times[0] + self.window - now + 0.999))
            times.append(now)
            if len(self._failures) > 10_000:   # a flood of addresses: forget the idle ones
                self._failures = {k: v for k, v in self._failures.items() if v}
            return None

    def succeeded(self, client: str) -> None:
        """Take one attempt of ``client`` back off the count (the password was right)."""
        with self._lock:
            times = self._failures.get(client)
            if times:
                times.pop()


class StreamGate:
    """Counts open live-update streams and refuses one over ``cap`` (each holds a server thread)."""

    def __init__(self, cap: int):
        self.cap = cap
        self._lock = threading.Lock()
        self.open = 0

    def acquire(self) -> bool:
        with self._lock:
            if self.open >= self.cap:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)


def add_security_headers(response, *, secure: bool, api: bool):
    """Headers for every answer: CSP without inline code, no framing, no sniffing, no referrer."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "no-referrer"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    h["Permissions-Policy"] = "microphone=(), geolocation=(), payment=()"
    if api:
        h["Cache-Control"] = "no-store"
    if secure:
        h["Strict-Transport-Security"] = "max-age=31536000"
    return response
