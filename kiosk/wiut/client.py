"""Typed calls to the university attendance API (``wiut-api.md``), with timeouts, retries and tokens.

One :class:`WiutClient` per kiosk, shared by the outbox thread and the web threads. Every call has a
timeout. Calls that are safe to repeat are retried with exponential backoff and jitter on connection
errors, timeouts, 5xx and 429 (honouring ``Retry-After``); see :data:`CALLS` for which. ``requests``
exceptions never leave this module: they become :mod:`kiosk.errors` with ``.call`` and ``.status``.

Example::

    with WiutClient("http://127.0.0.1:8765/api", timeout=5) as api:
        api.login("teacher", "placeholder-password")
        modules = api.my_modules()
        lessons = api.lessons(modules[0].id, teaching_type=1)
"""

from __future__ import annotations

import email.utils
import enum
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from kiosk.errors import (
    KioskError,
    LoginFailed,
    LoginRequired,
    MalformedResponse,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from kiosk.wiut.auth import TokenAuth, token_claims
from kiosk.wiut.models import Lessons, Module, RosterStudent, field, parse_modules, parse_roster, require_object

SEMINAR, WORKSHOP = 1, 2
# The confidences SetAttendanceStudent accepts: camera 51..100, present by hand 105, absent by hand -1.
MANUAL_PRESENT, MANUAL_ABSENT = 105, -1
BACKOFF_CAP_S = 8.0
RETRY_AFTER_MAX_S = 30.0  # a longer Retry-After ends the call; the caller (outbox) tries again later


class Retry(enum.Enum):
    """Which failures a call may be repeated after."""

    NEVER = "never"  # Refresh: a second try could race a rotated refresh token
    CONNECT = "connect"  # Login: only when nothing reached the server; a failed login is never repeated
    SAFE = "safe"  # reads, and writes that set a value: connection errors, timeouts, 5xx, 429


# call name -> (path under the base URL, retry policy)
CALLS: dict[str, tuple[str, Retry]] = {
    "Login": ("/Auth/Login", Retry.CONNECT),
    "Refresh": ("/Auth/Refresh", Retry.NEVER),
    "MyModulesStaff": ("/Attendance/MyModulesStaff", Retry.SAFE),
    "LessonsByParams": ("/Attendance/LessonsByParams", Retry.SAFE),
    "StudentsByLesson": ("/Attendance/StudentsByLesson", Retry.SAFE),
    "SetEmbedding": ("/Attendance/SetEmbedding", Retry.SAFE),  # replaces the stored value: repeatable
    "SetAttendanceStudent": ("/Attendance/SetAttendanceStudent", Retry.SAFE),  # sets a value: repeatable
}


def valid_confidence(confidence: int) -> bool:
    """True for the values SetAttendanceStudent takes: 51..100, 105 or -1."""
    if isinstance(confidence, bool) or not isinstance(confidence, int):
        return False
    return 51 <= confidence <= 100 or confidence in (MANUAL_PRESENT, MANUAL_ABSENT)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``; None when absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


_LONG_NUMBER = re.compile(r"\d{5,}")


def problem_summary(response: requests.Response) -> str:
    """``title`` and ``errors`` of a ProblemDetails body, shortened; ``""`` for another body."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body["title"])] if body.get("title") else []
    errors = body.get("errors")
    if isinstance(errors, dict):
        for name, messages in errors.items():
            text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            parts.append(f"{name}: {text}")
    # The API may echo a value back ("The value '00019880' is not valid"): keep IDs out of messages.
    return _LONG_NUMBER.sub("<number>", " ".join(parts))[:300]


class WiutClient:
    """The university API for one logged-in teacher; thread-safe; ``close()`` is idempotent.

    ``timeout`` is seconds per HTTP request; ``retries`` is how many times a call that is safe to
    repeat is tried again; ``backoff`` is the first retry's delay in seconds (doubled each time, capped
    at 8 s, with jitter). ``clock`` returns local epoch seconds. A given ``session`` is not closed here.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, retries: int = 3,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.time,
                 backoff: float = 0.5):
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = backoff
        self._clock = clock
        self._own_session = session is None
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._skew: float | None = None
        self._closed = False
        self._auth = TokenAuth(self._refresh_tokens, clock=clock, skew=self.clock_skew)

    def __repr__(self) -> str:
        return f"WiutClient({self._base!r}, logged_in={self.logged_in})"

    def __enter__(self) -> WiutClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Forget the tokens and close the HTTP session (if this client made it)."""
        self._auth.forget()
        if not self._closed and self._own_session:
            self._session.close()
        self._closed = True

    # --- login state -------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self._auth.logged_in

    @property
    def username(self) -> str | None:
        """The logged-in teacher's username (``unique_name``); None when logged out."""
        return self._auth.username

    @property
    def access_expires_at(self) -> float | None:
        """Local epoch seconds when the access token expires (it is refreshed before); None if logged out."""
        return self._auth.expires_at

    @property
    def login_expires_at(self) -> float | None:
        """Local epoch seconds when the refresh token expires (the teacher must log in again then); None when
        logged out or when the refresh token has no readable expiry."""
        return self._auth.login_expires_at

    def clock_skew(self) -> float | None:
        """Server ``Date`` minus the local clock in seconds (1 s resolution), from the last answer; None before."""
        with self._lock:
            return self._skew

    def login(self, username: str, password: str) -> str:
        """Log in; returns the username from the token. Raises LoginFailed for a wrong username/password."""
        response = self._send("Login", json={"username": username, "password": password}, auth=False)
        body = require_object(self._json("Login", response), "Login")
        access = field(body, "accessToken", str, "Login")
        refresh = field(body, "refreshToken", str, "Login")
        name = token_claims(access, "Login").get("unique_name")
        if not isinstance(name, str) or not name:
            raise MalformedResponse("The university API answered Login with a token without a username.",
                                    call="Login")
        self._auth.forget()
        self._auth.set_tokens(access, refresh, call="Login")
        return name

    def logout(self) -> None:
        """Forget the tokens (the API has no logout call)."""
        self._auth.forget()

    # --- the calls ---------------------------------------------------------------------------
    def my_modules(self) -> list[Module]:
        """The modules the logged-in teacher teaches."""
        return parse_modules(self._json("MyModulesStaff", self._send("MyModulesStaff")))

    def lessons(self, module_id: int, teaching_type: int) -> Lessons:
        """Slots and teaching weeks of a module; ``teaching_type`` 1 = seminar, 2 = workshop."""
        body = {"moduleId": int(module_id), "teachingType": int(teaching_type)}
        return Lessons.from_json(self._json("LessonsByParams", self._send("LessonsByParams", json=body)))

    def students(self, lesson_guid: str, class_id: int, embedding_type: str) -> list[RosterStudent]:
        """The roster of one class with each student's stored mark and embeddings of ``embedding_type``."""
        params = {"LessonGuidId": lesson_guid, "embeddingType": embedding_type, "classId": int(class_id)}
        return parse_roster(self._json("StudentsByLesson", self._send("StudentsByLesson", params=params)))

    def set_embedding(self, user_id: str, face_embeding: str, method: str) -> None:
        """Store ``face_embeding`` for (user_id, method); the API is assumed to replace the old value."""
        body = {"userId": str(user_id), "pathImage": "string", "faceEmbeding": face_embeding,
                "embedderMetod": method}
        self._require_not_html("SetEmbedding", self._send("SetEmbedding", json=body))

    def set_attendance(self, class_id: int, user_id: str, confidence: int) -> None:
        """Record a mark; ``confidence`` 51..100 (camera), 105 (present by hand) or -1 (absent by hand)."""
        if not valid_confidence(confidence):
            raise ValueError(f"Confidence {confidence!r} is not 51..100, 105 or -1.")
        if isinstance(class_id, bool) or not isinstance(class_id, int):
            raise ValueError("classId must be an integer.")
        body = {"classId": class_id, "userId": str(user_id), "confidence": confidence}
        self._require_not_html("SetAttendanceStudent", self._send("SetAttendanceStudent", json=body))

    def _require_not_html(self, call: str, response: requests.Response) -> None:
        """A 2xx web page (a Wi-Fi captive portal, a proxy's sign-in) did not store anything: say so, so
        the outbox keeps the mark, instead of counting it as delivered. The API's own 2xx body is unstated."""
        if "html" in response.headers.get("Content-Type", "").lower() and response.content.strip():
            raise MalformedResponse(f"The university API answered {call} with an HTML page.", call=call,
                                    status=response.status_code)

    # --- plumbing ----------------------------------------------------------------------------
    def _refresh_tokens(self, access: str, refresh: str) -> tuple[str, str | None]:
        """TokenAuth's refresher: Bearer (possibly expired) access token plus the refresh token in the body."""
        response = self._send("Refresh", json={"refreshToken": refresh}, auth=False,
                              headers={"Authorization": f"Bearer {access}"})
        body = require_object(self._json("Refresh", response), "Refresh")
        new_refresh = body.get("refreshToken")
        return field(body, "accessToken", str, "Refresh"), new_refresh if isinstance(new_refresh, str) else None

    def _send(self, call: str, *, json: Any = None, params: dict[str, Any] | None = None,
              auth: bool = True, headers: dict[str, str] | None = None) -> requests.Response:
        """POST one call with its retry policy; returns a 2xx response or raises a KioskError."""
        path, policy = CALLS[call]
        attempt = 0
        while True:
            delay: float | None = None
            try:
                response = self._session.post(self._base + path, json=json, params=params, headers=headers,
                                              auth=self._auth if auth else None, timeout=self._timeout)
            except KioskError as exc:
                raise _with_call(exc, call) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                status, failure = None, _failure_text(exc)
                repeatable = policy is Retry.SAFE or (
                    policy is Retry.CONNECT and isinstance(exc, requests.ConnectionError)
                    and not isinstance(exc, requests.ReadTimeout))
            except requests.RequestException as exc:
                raise UpstreamUnavailable(f"The university API call {call} failed ({type(exc).__name__}).",
                                          call=call) from None
            else:
                self._note_date(response)
                if response.ok:
                    return response
                status = response.status_code
                if status != 429 and status < 500:
                    raise self._rejection(call, response)
                failure = f"answered {status}"
                repeatable = policy is Retry.SAFE
                delay = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
                response.close()
                if delay is not None and delay > RETRY_AFTER_MAX_S:
                    failure += f" and asked to wait {delay:.0f} s"
                    repeatable = False
            if not repeatable or attempt >= self._retries:
                tries = f", after {attempt + 1} tries" if attempt else ""
                raise UpstreamUnavailable(f"The university API {failure} ({call}{tries}).",
                                          call=call, status=status)
            time.sleep(delay if delay is not None else self._backoff_delay(attempt))
            attempt += 1

    def _backoff_delay(self, attempt: int) -> float:
        ceiling = min(BACKOFF_CAP_S, self._backoff * (2 ** attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _rejection(self, call: str, response: requests.Response) -> UpstreamError:
        status = response.status_code
        if call == "Login" and status in (400, 401):
            return LoginFailed("The university rejected the username or password.", call=call, status=status)
        if call == "Refresh" and status in (400, 401, 403):
            return LoginRequired("The university login has expired: log in again.", call=call, status=status)
        if status == 401:
            self._auth.forget()
            return LoginRequired(f"The university API no longer accepts this login ({call}): log in again.",
                                 call=call, status=status)
        detail = problem_summary(response)
        return UpstreamRejected(f"The university API refused {call} ({status})" + (f": {detail}" if detail else "."),
                                call=call, status=status)

    def _json(self, call: str, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = "an HTML page" if "html" in response.headers.get("Content-Type", "") else "a body that is not JSON"
            raise MalformedResponse(f"The university API answered {call} with {kind}.", call=call,
                                    status=response.status_code) from None

    def _note_date(self, response: requests.Response) -> None:
        try:
            server = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
        except (KeyError, TypeError, ValueError, IndexError):
            return
        with self._lock:
            self._skew = server - self._clock()


def _with_call(exc: KioskError, call: str) -> KioskError:
    if isinstance(exc, UpstreamError) and not exc.call:
        exc.call = call
    return exc


def _failure_text(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "did not answer in time"
    return "could not be reached"
