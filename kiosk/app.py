"""The kiosk's control plane: one logged-in teacher, at most one running class, enrolment and status.

The teacher page (kiosk/web) and the daemon talk to :class:`Kiosk` only. It owns the teacher's
:class:`~kiosk.wiut.client.WiutClient` (tokens live in that client's memory, nowhere else), the running
:class:`~kiosk.attendance.ClassSession` and the camera :class:`~kiosk.pipeline.Pipeline` of that class.
Parts are injected (no globals): the daemon builds the outbox, event bus, feedback and a pipeline factory.

Example::

    with Kiosk(settings, events=bus, outbox=outbox, pipeline_factory=make_pipeline) as kiosk:
        kiosk.login("teacher", "placeholder-password")
        choice = kiosk.lessons(785, 1)
        kiosk.start_class(choice.preselected_guid, choice.preselected_class_id, 785, 1)
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kiosk.config import Settings
from kiosk.errors import (
    CameraError,
    ClassAlreadyRunning,
    ClassInProgress,
    EnrollmentRefused,
    KioskError,
    LoginRequired,
    NoClassRunning,
    NotOnRoster,
)
from kiosk.status import status_view
from kiosk.timetable import LessonChoice, LessonInfo, choose_lesson, ends_at_for, lesson_info

TICK_SECONDS = 1.0
FLUSH_SECONDS = 5.0          # how long a logout or take-over waits for the outgoing teacher's marks
CLOSE_SECONDS = 5.0          # the whole of close(): flush and the tick thread's end share it


@dataclasses.dataclass(frozen=True)
class PhotoRefusal:
    """Why photo number ``index`` (0-based, in upload order) cannot be used for enrolment."""

    index: int
    reason: str


class PhotosRefused(EnrollmentRefused):
    """One or more enrolment photos were refused; ``refusals`` says which and why. Nothing was stored."""

    def __init__(self, refusals: list[PhotoRefusal]):
        n = len(refusals)
        first = refusals[0]
        more = f" ({n - 1} more refused)" if n > 1 else ""
        super().__init__(f"Photo {first.index + 1}: {first.reason}{more}.")
        self.refusals = refusals


def _default_client_factory(settings: Settings) -> Callable[[], Any]:
    def make():
        from kiosk.wiut.client import WiutClient

        return WiutClient(settings.api_url, timeout=settings.api_timeout, retries=settings.api_retries)

    return make


def _now_in(settings: Settings) -> datetime:
    return datetime.now(settings.tz)


class Kiosk:
    """The control plane. Thread-safe: web threads, the tick thread and the camera thread call it.

    ``client_factory()`` makes a fresh, logged-out WiutClient; ``engine`` is built lazily with
    ``Engine.from_settings`` on the first enrolment when None; ``pipeline_factory(on_decision=...)``
    returns a Pipeline (None = no camera: marks by hand only); ``source_factory()`` opens the camera for
    an enrolment capture (None = no camera); ``clock()`` returns the aware wall time (timetable zone).
    """

    def __init__(self, settings: Settings, *, client_factory: Callable[[], Any] | None = None,
                 engine: Any = None, events: Any = None, outbox: Any = None, feedback: Any = None,
                 pipeline_factory: Callable[..., Any] | None = None,
                 source_factory: Callable[[], Any] | None = None,
                 session_factory: Callable[..., Any] | None = None,
                 clock: Callable[[], datetime] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 tick_seconds: float = TICK_SECONDS):
        self.settings = settings
        self._client_factory = client_factory or _default_client_factory(settings)
        self._engine = engine
        self._built_engine: Any = None    # the engine this kiosk built itself (closed by close())
        self.events = events if events is not None else _new_event_bus()
        self.outbox = outbox
        self.feedback = feedback
        self._pipeline_factory = pipeline_factory
        self._source_factory = source_factory
        self._session_factory = session_factory or _default_session_factory
        self.clock = clock or (lambda: _now_in(settings))
        self.monotonic = monotonic
        self._lock = threading.RLock()
        self._engine_lock = threading.Lock()
        self._store_lock = threading.Lock()       # one enrolment's read-merge-send at a time
        self._client: Any = None
        self._teacher_name: str | None = None   # set at login, cleared at logout: survives lost tokens
        self._retiring: dict[str, Any] = {}
        self._epoch = 0
        self._session: Any = None
        self._starting = False                  # a start_class is reading the roster (outside the lock)
        self._lesson: LessonInfo | None = None
        self._pipeline: Any = None
        self._seen_version: int | None = None   # the session's vectors_version the pipeline's gallery has
        self._lessons_cache: dict[tuple[int, int], Any] = {}
        self._modules_cache: dict[int, Any] = {}
        self._stop = threading.Event()
        self._closed = False
        self._ticker = threading.Thread(target=self._tick_loop, args=(tick_seconds,), name="kiosk-tick",
                                        daemon=True)
        self._ticker.start()

    # --- the teacher ---------------------------------------------------------------------------
    @property
    def teacher(self) -> str | None:
        """Username of the logged-in teacher, or None when nobody is logged in (or their tokens were lost).

        Lock-free (one reference read): every page request and live-update frame asks, also while a class starts.
        """
        client = self._client
        return client.username if client is not None else None

    @property
    def owner(self) -> str | None:
        """The teacher in control of the kiosk: set at login, cleared at logout or take-over.

        Unlike :attr:`teacher` it survives lost tokens (a revoked refresh token), so the teacher's page
        keeps working on what the kiosk holds and can tell them to log in again.
        """
        return self._teacher_name

    @property
    def epoch(self) -> int:
        """Grows each time the teacher changes or logs out: web sessions of an older epoch are void."""
        return self._epoch

    def client_for(self, teacher: str) -> Any:
        """The client acting for ``teacher`` (for the outbox), or None when that teacher is not logged in."""
        client = self._client        # no lock: the outbox asks while a take-over holds it and flushes
        if client is not None and client.username == teacher:
            return client
        return self._retiring.get(teacher)

    def login(self, username: str, password: str, *, takeover: bool = False) -> str:
        """Log ``username`` in with the university; returns the username as the university spells it.

        Raises LoginFailed, UpstreamUnavailable, or ClassInProgress when another teacher runs a class
        and ``takeover`` is False (the password was right; nothing changed).
        """
        with self._lock:
            current, known = self._client, self._teacher_name
        if current is not None and _same_name(known, username):
            return self._relogin(current, username, password)   # same teacher: fresh tokens, class keeps running
        fresh = self._client_factory()
        name = fresh.login(username, password)
        with self._lock:
            same = _same_name(self._teacher_name, name)
            if (self._session is not None or self._starting) and not same and not takeover:
                _discard(fresh)
                other = self._teacher_name or "another teacher"
                raise ClassInProgress(f"Teacher {other} is running a class: take over?", teacher=other)
            if same and self._client is not None:
                _discard(fresh)
                return self._relogin(self._client, username, password)
            self._end_class_locked(reason="another teacher took over")
            self._retire_client_locked(FLUSH_SECONDS)
            self._client, self._teacher_name = fresh, name
            self._epoch += 1
            self._lessons_cache.clear()
            self._modules_cache.clear()
        self._notify_outbox(name)
        self._publish("teacher", {"teacher": name})
        return name

    def _relogin(self, client: Any, username: str, password: str) -> str:
        """New tokens for the teacher already on the kiosk, in the client the running class uses."""
        name = client.login(username, password)
        with self._lock:
            self._teacher_name = name
        self._notify_outbox(name)
        return name

    def logout(self) -> None:
        """End the running class (pending marks flushed with these tokens, at most 5 s), then forget the tokens."""
        self._logout(FLUSH_SECONDS)

    def _logout(self, flush_seconds: float) -> None:
        with self._lock:
            if self._client is None:
                return
            self._end_class_locked(reason="the teacher logged out")
            self._retire_client_locked(flush_seconds)
            self._client = self._teacher_name = None
            self._epoch += 1
            self._lessons_cache.clear()
            self._modules_cache.clear()
        self._publish("teacher", {"teacher": None})

    def _retire_client_locked(self, flush_seconds: float) -> None:
        """Flush the outbox with the outgoing teacher's tokens (at most ``flush_seconds``), then forget them."""
        old = self._client
        if old is None:
            return
        name = old.username
        if name:
            self._retiring[name] = old
        try:
            if self.outbox is not None and name:
                self.outbox.flush(max(0.0, flush_seconds), teacher=name)
        finally:
            self._retiring.pop(name, None)
            _discard(old)

    def _notify_outbox(self, name: str) -> None:
        if self.outbox is not None and hasattr(self.outbox, "teacher_logged_in"):
            self.outbox.teacher_logged_in(name)

    def _require_client(self) -> Any:
        with self._lock:
            if self._client is None or not self._client.logged_in:
                raise LoginRequired("Nobody is logged in: log in first.")
            return self._client

    # --- timetable -----------------------------------------------------------------------------
    def modules(self) -> list[Any]:
        """The logged-in teacher's modules (``Module(id, name, code)``)."""
        found = list(self._require_client().my_modules())
        with self._lock:
            self._modules_cache.update({int(m.id): m for m in found})
        return found

    def lessons(self, module_id: int, teaching_type: int) -> LessonChoice:
        """Slots and teaching weeks of a module, sorted and with the likely choice preselected."""
        client = self._require_client()
        lessons = client.lessons(module_id, teaching_type)
        with self._lock:
            self._lessons_cache[(module_id, teaching_type)] = lessons
        return choose_lesson(lessons, teacher=client.username or "", now=self.clock())

    # --- the running class ---------------------------------------------------------------------
    def start_class(self, lesson_guid: str, class_id: int, module_id: int | None = None,
                    teaching_type: int | None = None) -> dict:
        """Start a class: read the roster, open the camera; returns the session snapshot.

        With ``module_id`` and ``teaching_type`` the slot's end time (+ grace) ends the class and the
        snapshot's ``lesson`` names the module, type, slot and week; otherwise settings.max_class_minutes
        ends it and ``lesson`` has None fields. Raises ClassAlreadyRunning, LoginRequired, Upstream*.
        """
        with self._lock:
            client = self._require_client()
            if self._session is not None or self._starting:
                raise ClassAlreadyRunning("A class is already running: end it first.")
            self._starting, epoch = True, self._epoch
        try:
            # The university calls run outside the lock: a slow roster must not hold up a logout, a take-over
            # or the tick loop (those bump the epoch, and a class whose teacher changed meanwhile is dropped).
            slot, lessons = self._find_slot(client, lesson_guid, module_id, teaching_type)
            ends_at = ends_at_for(slot, self.clock(), grace_minutes=self.settings.grace_minutes,
                                  max_minutes=self.settings.max_class_minutes)
            session = self._session_factory(
                client, self.outbox, teacher=client.username, lesson_guid=lesson_guid, class_id=int(class_id),
                embedding_method=self.settings.embedding_method, embedding_dim=self._embedding_dim(),
                ends_at=ends_at,
                max_minutes=self.settings.max_class_minutes, undo_seconds=self.settings.undo_seconds,
                roster_refresh_seconds=self.settings.roster_refresh_seconds, clock=self.clock,
                monotonic=self.monotonic, events=self.events)
            session.load_roster()
            lesson = lesson_info(self._find_module(client, module_id), teaching_type, slot, lessons, int(class_id))
            with self._lock:
                if self._epoch != epoch or self._closed:
                    session.end()
                    raise LoginRequired("The teacher logged out while the class was starting: log in again.")
                self._session, self._lesson = session, lesson
                self._start_pipeline_locked()
                return self._snapshot(session)
        finally:
            with self._lock:
                self._starting = False

    def _find_slot(self, client, lesson_guid, module_id, teaching_type) -> tuple[Any, Any]:
        """(the slot, the LessonsByParams answer) of a class being started; (None, None) when not told."""
        if module_id is None or teaching_type is None:
            return None, None
        lessons = self._lessons_cache.get((int(module_id), int(teaching_type)))
        if lessons is None:
            lessons = client.lessons(int(module_id), int(teaching_type))
        return next((s for s in lessons.slots if s.guid == lesson_guid), None), lessons

    def _find_module(self, client, module_id: int | None) -> Any:
        """The Module named ``module_id`` (for the class's header), or None when unknown or unreachable."""
        if module_id is None:
            return None
        if int(module_id) not in self._modules_cache:
            with contextlib.suppress(KioskError):
                found = {int(m.id): m for m in client.my_modules()}
                with self._lock:
                    self._modules_cache.update(found)
        return self._modules_cache.get(int(module_id))

    def _snapshot(self, session: Any, lesson: LessonInfo | None = None) -> dict:
        """The session's snapshot plus ``lesson`` (what the teacher recognises the class by)."""
        lesson = lesson or self._lesson or LessonInfo()
        return {**session.snapshot(), "lesson": lesson.to_json()}

    def _embedding_dim(self) -> int:
        """Length of the vectors the configured embedder makes (the engine's when it is already built)."""
        if self._engine is not None and isinstance(getattr(self._engine, "dim", None), int):
            return self._engine.dim
        if self.settings.embedder == "dlib":
            from kiosk.model.baseline import DIM
        else:
            from kiosk.model.embedder import DIM
        return DIM

    def _start_pipeline_locked(self) -> None:
        """Open the class's camera; on any failure the class runs without one (marks by hand)."""
        if self._pipeline_factory is None:
            return
        session = self._session
        pipeline = None
        try:
            pipeline = self._pipeline_factory(on_decision=self._on_decision)
            version = getattr(session, "vectors_version", None)
            pipeline.start(session.gallery())
        except Exception as exc:  # any camera or model failure: the class runs without a camera
            print(f"kiosk: camera pipeline did not start ({type(exc).__name__}).", flush=True)
            if pipeline is not None:
                with contextlib.suppress(Exception):
                    pipeline.stop()
            return
        self._pipeline, self._seen_version = pipeline, version

    def _on_decision(self, decision: Any) -> str | None:
        """Called by the pipeline's thread with a recognised decision (``user_id``, ``confidence``)."""
        session = self._session
        if session is None:
            return None
        return session.on_recognised(decision.user_id, int(decision.confidence))

    def end_class(self, reason: str = "ended by the teacher") -> dict | None:
        """End the running class: camera off, pending manual marks sent now. Returns the last snapshot."""
        with self._lock:
            if self._session is None:
                raise NoClassRunning("No class is running.")
            return self._end_class_locked(reason)

    def _end_class_locked(self, reason: str) -> dict | None:
        session, pipeline, lesson = self._session, self._pipeline, self._lesson
        if session is None:
            return None
        self._session = self._pipeline = self._lesson = self._seen_version = None
        if pipeline is not None:
            pipeline.stop()
        session.end()
        print(f"kiosk: class ended: {reason}.", flush=True)
        return self._snapshot(session, lesson)

    def session(self) -> dict | None:
        """The running class's snapshot (the GET /api/session JSON), or None when no class runs.

        Lock-free (one reference read), so the page stays responsive while a class starts.
        """
        session, lesson = self._session, self._lesson
        return self._snapshot(session, lesson) if session is not None else None

    def _require_session(self) -> Any:
        session = self._session
        if session is None:
            raise NoClassRunning("No class is running.")
        return session

    def mark(self, user_id: str, present: bool) -> dict:
        """A teacher's mark (present 105 / absent -1), sent after the undo window; returns the student's row."""
        return self._require_session().mark_manual(user_id, bool(present))

    def undo(self, user_id: str) -> bool:
        """Take back a manual mark still inside its undo window; False when it was already sent (or none)."""
        return self._require_session().undo(user_id)

    def mark_remaining_absent(self) -> int:
        """Mark every student without a mark absent (-1, through the undo window); returns how many."""
        return self._require_session().mark_remaining_absent()

    # --- enrolment -----------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        """The recognition engine, built on first use (models load in a few seconds)."""
        with self._engine_lock:
            if self._engine is None:
                from kiosk.model.engine import Engine

                self._engine = self._built_engine = Engine.from_settings(self.settings)
            return self._engine

    def enroll(self, user_id: str, images: list[bytes]) -> int:
        """Enrol a student from photos (each must show exactly one good face); returns vectors stored.

        Raises PhotosRefused (nothing stored) naming each refused photo. During a class the student's
        known vectors are sent too (SetEmbedding replaces) and the new ones are matched at once.
        """
        if not images:
            raise EnrollmentRefused("No photo was sent.")
        vectors, refusals = [], []
        for index, image in enumerate(images):
            try:
                vectors.append(self.engine.embed_photo(image))
            except EnrollmentRefused as exc:
                refusals.append(PhotoRefusal(index, str(exc).rstrip(".")))
        if refusals:
            raise PhotosRefused(refusals)
        return self._store_vectors(user_id, vectors)

    def enroll_capture(self, user_id: str) -> int:
        """Enrol a student from the kiosk's own camera (a few good frames of one face)."""
        if self._source_factory is None:
            raise CameraError("This kiosk has no camera configured.")
        from kiosk.pipeline import capture_embeddings

        with self._lock:
            pipeline = self._pipeline
            if pipeline is not None:
                pipeline.stop()            # the class's camera is released while capturing
        try:
            vectors = capture_embeddings(self.engine, self._source_factory, count=3, timeout=10)
        finally:
            with self._lock:
                if pipeline is not None and self._pipeline is pipeline:
                    self._seen_version = getattr(self._session, "vectors_version", None)
                    pipeline.start(self._session.gallery())
        return self._store_vectors(user_id, vectors)

    def _store_vectors(self, user_id: str, new: list[Any]) -> int:
        """Send ``new`` (plus, during a class, the student's known vectors: SetEmbedding replaces) and use them
        at once. One enrolment at a time: two at once for one student would each send only their own photos."""
        import numpy as np

        from kiosk.model.embedding_format import MAX_VECTORS, encode

        with self._store_lock:
            client = self._require_client()
            session = self._session
            known = None
            if session is not None:
                known = session.gallery().get(user_id)
            new_arr = np.asarray(new, dtype=np.float32).reshape(len(new), -1)
            vectors = new_arr if known is None or len(known) == 0 else np.vstack([np.asarray(known), new_arr])
            vectors = vectors[-MAX_VECTORS:]          # the format's cap: the newest photos win
            client.set_embedding(user_id, encode(vectors, self.settings.embedding_method),
                                 self.settings.embedding_method)
            if session is not None:
                with contextlib.suppress(NotOnRoster):
                    session.set_student_vectors(user_id, vectors)
                with self._lock:
                    if self._pipeline is not None and self._session is session:
                        self._seen_version = getattr(session, "vectors_version", None)
                        self._pipeline.set_gallery(session.gallery())
            self._publish("enrolled", {"userId": user_id, "vectors": len(vectors)})
            return len(vectors)

    # --- status --------------------------------------------------------------------------------
    def status(self) -> dict:
        """What the page's status area shows; see docs/api.md GET /api/status. Lock-free reads."""
        return status_view(owner=self._teacher_name, client=self._client, pipeline=self._pipeline,
                           class_running=self._session is not None, outbox=self.outbox, feedback=self.feedback,
                           now=self.monotonic())

    def outbox_view(self, status: dict) -> dict:
        """An outbox ``status`` (or ``outbox`` event) trimmed to what the logged-in teacher may see:
        only their own refused marks and their own name in ``loginRequired`` (nothing when nobody is in)."""
        teacher = self.owner
        return {**status,
                "loginRequired": [t for t in status.get("loginRequired", ()) if teacher and t == teacher],
                "deadLetters": [d for d in status.get("deadLetters", ()) if teacher and d.get("teacher") == teacher]}

    def retry_dead_letter(self, class_id: int, user_id: str) -> bool:
        """Queue the logged-in teacher's refused mark again; False when they have no such refused mark."""
        teacher = self._require_client().username
        if self.outbox is None:
            return False
        letters = self.outbox.dead_letters()
        if not any(d.mark.key == (class_id, user_id) and d.mark.teacher == teacher for d in letters):
            return False
        return bool(self.outbox.retry_dead_letter(class_id, user_id))

    def _publish(self, name: str, data: dict) -> None:
        if self.events is not None:
            self.events.publish(name, data)

    # --- the tick loop and shutdown ------------------------------------------------------------
    def tick(self) -> None:
        """One step: the session's own timers (it decides when its time is over: then the camera goes off
        and the class ends here), and new vectors reach the camera's gallery."""
        with self._lock:
            session = self._session
        if session is None:
            return
        if session.tick() is True:
            with self._lock:
                if self._session is session:
                    self._end_class_locked(reason="its time is over")
            return
        self._refresh_gallery(session)

    def _refresh_gallery(self, session: Any) -> None:
        """Give the camera the class's gallery again when its vectors changed (enrolled elsewhere, refresh)."""
        version = getattr(session, "vectors_version", None)
        if version is None or version == self._seen_version:
            return
        with self._lock:
            if self._session is session and self._pipeline is not None:
                self._seen_version = version
                self._pipeline.set_gallery(session.gallery())

    def _tick_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.tick()
            except KioskError as exc:      # upstream trouble during a roster refresh: keep ticking
                print(f"kiosk: tick: {exc}", flush=True)
            except Exception as exc:       # a bug must not stop classes from ending on time
                print(f"kiosk: tick failed ({type(exc).__name__}); still ticking.", flush=True)

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """End the running class, flush the teacher's marks, forget the tokens, stop the tick thread and close
        the engine this kiosk built, all within ``timeout`` real seconds (the flush first). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        self._stop.set()
        with contextlib.suppress(KioskError):
            self._logout(deadline - time.monotonic())
        if self._ticker is not threading.current_thread():
            self._ticker.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.events is not None and hasattr(self.events, "close"):
            self.events.close()
        with self._engine_lock:
            built, self._built_engine = self._built_engine, None
        if built is not None and hasattr(built, "close"):
            built.close()

    def __enter__(self) -> Kiosk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _same_name(known: str | None, username: str) -> bool:
    """True when ``username`` names the teacher ``known`` (the university's spelling; case does not matter)."""
    return bool(known) and known.strip().lower() == username.strip().lower()


def _discard(client) -> None:
    """Forget a client's tokens and close its connections."""
    client.logout()
    if hasattr(client, "close"):
        client.close()


def _new_event_bus():
    from kiosk.events import EventBus

    return EventBus()


def _default_session_factory(client, outbox, **kwargs):
    from kiosk.attendance import ClassSession

    return ClassSession(client, outbox, **kwargs)
