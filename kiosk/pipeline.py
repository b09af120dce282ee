"""The camera pipeline of a running class: frames -> faces -> tracks -> embeddings -> votes -> decisions.

:class:`Pipeline` runs while a class runs. :meth:`Pipeline.start` opens the camera (a
:class:`~kiosk.camera.CaptureThread`, which never blocks and reconnects by itself) and a worker thread
that, for each frame, detects faces, links them to tracks, embeds the good crops of undecided tracks
(two at a time: the embedder's batch is fixed at 2), matches them against the roster gallery and lets the
:class:`~kiosk.tracker.Decider` vote. A recognised track calls ``on_decision`` once; its answer picks the
LED/buzzer signal. :meth:`Pipeline.stop` joins both threads and closes the camera (privacy).
The work on one frame is :class:`FrameStep`, which ``kiosk bench`` drives too, so it times this path.

Events for the page (``events.publish``): ``status`` at most once a second, ``{"fps", "faces",
"tracks", "frames", "dropped", "camera" (capture state), "cameraError"}``; ``recognition`` per decided
track, ``{"kind": "recognised" | "unknown", "trackId", "userId" (None when unknown), "confidence" (%),
"outcome" (on_decision's answer)}``. Student IDs go only to these events, never to stdout/stderr.

A frame that fails (a bad image, a model error) is counted in ``stats()["frame_errors"]`` with the
reason in ``stats()["last_error"]`` and a short line on stderr; the loop carries on.

Example::

    pipeline = Pipeline(settings, engine=engine, source_factory=lambda: open_source(spec, settings),
                        on_decision=session_on_recognised, events=bus, feedback=feedback)
    with pipeline:
        pipeline.start(gallery)
        ...
        pipeline.set_gallery(new_gallery)     # after an enrolment, used from the next frame on
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kiosk.camera.base import FrameSource
from kiosk.errors import CameraError, EnrollmentRefused, KioskError
from kiosk.feedback import ERROR_CAMERA
from kiosk.model.match import Calibration, Gallery, best_match
from kiosk.tracker import Decider, IoUTracker, Track, TrackEvent

Clock = Callable[[], float]
Decision = TrackEvent  # what on_decision receives: .kind, .track_id, .user_id, .confidence, .at
EMBED_BATCH = 2  # MobileFaceNet's input batch is fixed at 2
MAX_BATCHES_PER_FRAME = 2  # at most 4 embeddings per frame; other tracks wait for the next frame
MAX_MISSED = 5  # frames a track survives without a detection before it ends
STATUS_EVERY = 1.0  # seconds between two "status" events
GET_TIMEOUT = 0.5  # seconds the worker waits for a frame before it ticks anyway
ERROR_PRINT_EVERY = 60.0  # seconds between two stderr lines about failing frames

# on_decision's answer -> the Feedback method that signals it (None: no signal).
FEEDBACK_FOR_OUTCOME = {
    "marked": "recognised",
    "already": "already_marked",
    "manual": "already_marked",
    "not_on_roster": "unknown",
    "ignored": None,
}


def describe_error(exc: BaseException) -> str:
    """A message safe to print and show: a KioskError's own sentence, else only the type and place.

    Other exceptions' messages may carry data (a ``KeyError`` of a student ID), so they are left out.
    """
    if isinstance(exc, KioskError):
        return str(exc)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else ""
    return f"{type(exc).__name__}{where}"


def as_gallery(gallery: Gallery | Mapping[str, np.ndarray] | None) -> Gallery:
    """A :class:`Gallery` from a gallery, a ``{user_id: (k, dim) vectors}`` mapping, or None (empty)."""
    if isinstance(gallery, Gallery):
        return gallery
    return Gallery.from_vectors(dict(gallery or {}))


def quality_ok(quality: Any) -> bool:
    """Whether a crop passed the quality gate: ``quality.ok`` when it has one, else its truth value."""
    return bool(getattr(quality, "ok", quality))


@dataclasses.dataclass
class Counters:
    """Figures kept across restarts of one pipeline (one class). Times are ``clock`` seconds."""

    frames: int = 0              # frames processed by the worker
    faces: int = 0               # faces in the last processed frame
    faces_seen: int = 0          # tracks started: people who came past
    embeddings: int = 0
    recognised: int = 0
    unknown: int = 0
    undecided: int = 0
    frame_errors: int = 0
    last_error: str | None = None
    last_error_printed: float | None = None
    last_recognition: float | None = None
    fps: float = 0.0             # processed frames per second, moving average
    last_frame_at: float | None = None


class FrameStep:
    """One RGB frame through the kiosk's recognition, the same code for :class:`Pipeline`'s worker and
    ``kiosk bench``: detect and gate (``engine.faces``), track, embed the good crops of the tracks that
    still want votes (fewest embeddings first, :data:`EMBED_BATCH` per ``engine.embed`` call, at most
    :data:`MAX_BATCHES_PER_FRAME` calls), match each against ``gallery()``, vote; then the ended tracks'
    last-chance decisions.

    Each decision goes to ``on_event`` as soon as it is made (so a later failure in the same frame does
    not lose it). ``counters`` gets ``frames``, ``faces``, ``faces_seen``, ``embeddings`` and ``fps``.
    ``gallery()`` is read once per embed call: a swapped gallery is used from the next call on.
    ``clock()`` is read once per frame, after detection. ``match`` is :func:`best_match` (the bench times it).
    """

    def __init__(self, engine: Any, tracker: IoUTracker, decider: Decider, *, gallery: Callable[[], Gallery],
                 on_event: Callable[[TrackEvent], None], counters: Counters | None = None,
                 clock: Clock = time.monotonic, match: Callable[[np.ndarray, Gallery], Any] = best_match):
        self.engine, self.tracker, self.decider = engine, tracker, decider
        self.counters = Counters() if counters is None else counters
        self._gallery, self._on_event, self._clock, self._match = gallery, on_event, clock, match

    @classmethod
    def for_class(cls, settings: Any, engine: Any, calibration: Calibration, *, clock: Clock = time.monotonic,
                  **kwargs: Any) -> FrameStep:
        """The kiosk's step: an :class:`IoUTracker` (``max_missed`` :data:`MAX_MISSED`) and
        ``Decider.from_settings``, both on ``clock``; ``kwargs`` as for the constructor."""
        return cls(engine, IoUTracker(max_missed=MAX_MISSED, clock=clock),
                   Decider.from_settings(settings, calibration, clock=clock), clock=clock, **kwargs)

    def __call__(self, image: np.ndarray) -> None:
        """Detect, track, embed and vote on one RGB frame."""
        faces = self.engine.faces(image)
        now = self._clock()
        self._count_frame(now, len(faces))
        quality = {id(det): q for det, q in faces}
        update = self.tracker.update([det for det, _ in faces], now=now)
        self.counters.faces_seen += len(update.started)
        wanted = [(t, d) for t, d in update.matched if self.decider.wants(t) and quality_ok(quality[id(d)])]
        wanted.sort(key=lambda pair: pair[0].embeddings_used)
        for start in range(0, min(len(wanted), EMBED_BATCH * MAX_BATCHES_PER_FRAME), EMBED_BATCH):
            self._embed_and_vote(image, wanted[start:start + EMBED_BATCH], now)
        for track in update.ended:
            if (event := self.decider.end(track, now)) is not None:
                self._on_event(event)

    def _embed_and_vote(self, image: np.ndarray, pairs: Sequence[tuple[Track, Any]], now: float) -> None:
        vectors = np.asarray(self.engine.embed(image, [det for _, det in pairs]))
        gallery = self._gallery()
        self.counters.embeddings += len(pairs)
        for (track, _), vector in zip(pairs, vectors, strict=True):
            event = self.decider.observe(track, self._match(vector, gallery), now)
            if event is not None:
                self._on_event(event)

    def _count_frame(self, now: float, faces: int) -> None:
        c = self.counters
        if c.last_frame_at is not None and now > c.last_frame_at:
            rate = 1.0 / (now - c.last_frame_at)
            c.fps = rate if c.fps == 0.0 else 0.9 * c.fps + 0.1 * rate
        c.last_frame_at, c.frames, c.faces = now, c.frames + 1, faces


@dataclasses.dataclass
class _Run:
    """What one start() .. stop() owns."""

    capture: Any
    step: FrameStep
    stop: threading.Event
    thread: threading.Thread | None = None

    @property
    def tracker(self) -> IoUTracker:
        return self.step.tracker

    @property
    def decider(self) -> Decider:
        return self.step.decider


class Pipeline:
    """Camera -> decisions for one class; see the module docstring.

    ``source_factory()`` returns a new, unopened camera (called again on every reconnect);
    ``on_decision(decision)`` is called from the worker thread for each recognised track and answers
    ``"marked" | "already" | "manual" | "not_on_roster" | "ignored"`` or None. ``events`` (an EventBus)
    gets ``status`` and ``recognition`` events; ``feedback`` drives the LED/buzzer; both may be None.
    ``clock`` gives monotonic seconds. ``calibration`` None loads the committed one for
    ``engine.method``; ``capture_factory(source_factory)`` makes the capture (tests).
    """

    def __init__(self, settings: Any, *, engine: Any, source_factory: Callable[[], FrameSource],
                 on_decision: Callable[[Decision], str | None], events: Any = None, feedback: Any = None,
                 clock: Clock = time.monotonic, calibration: Calibration | None = None,
                 capture_factory: Callable[[Callable[[], FrameSource]], Any] | None = None):
        self.settings = settings
        self.engine = engine
        self.source_factory = source_factory
        self.on_decision = on_decision
        self.events = events
        self.feedback = feedback
        self._clock = clock
        self.calibration = calibration or Calibration.load(engine.method)
        self._capture_factory = capture_factory or _default_capture
        self._gallery = as_gallery(None)
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self.counters = Counters()
        self.last_tick: float | None = None
        self._last_status: float | None = None
        self._camera_error_shown = False

    # --- control -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._run is not None

    def start(self, gallery: Gallery | Mapping[str, np.ndarray] | None) -> None:
        """Open the camera and start recognising against ``gallery``; when running, only swap the gallery."""
        self.set_gallery(gallery)
        with self._lock:
            if self._run is not None:
                return
            step = FrameStep.for_class(self.settings, self.engine, self.calibration, clock=self._clock,
                                       gallery=lambda: self._gallery, on_event=self._handle, counters=self.counters)
            run = _Run(capture=self._capture_factory(self.source_factory), step=step, stop=threading.Event())
            run.thread = threading.Thread(target=self._loop, args=(run,), name="kiosk-pipeline", daemon=True)
            self.last_tick = self._clock()
            self._run = run
            run.capture.start()
            run.thread.start()

    def set_gallery(self, gallery: Gallery | Mapping[str, np.ndarray] | None) -> None:
        """Match against ``gallery`` from the next embedding on (a single reference swap)."""
        self._gallery = as_gallery(gallery)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker, join it (at most ``timeout`` s), close the camera; safe to call twice."""
        with self._lock:
            run, self._run = self._run, None
        if run is None:
            return
        run.stop.set()
        run.capture.stop()  # closes the camera and wakes a worker waiting for a frame
        if run.thread is not None and run.thread is not threading.current_thread():
            run.thread.join(timeout)
            if run.thread.is_alive():
                print(f"Pipeline: the worker did not stop within {timeout:g} s.", file=sys.stderr, flush=True)
        self.last_tick = None
        if self._camera_error_shown and self.feedback is not None:
            self.feedback.clear_error(ERROR_CAMERA)
        self._camera_error_shown = False

    close = stop

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- status ------------------------------------------------------------------------------------
    def tick_age(self, now: float | None = None) -> float | None:
        """Seconds since the worker last went round its loop; None when not running (idle is healthy)."""
        tick = self.last_tick
        if tick is None or self._run is None:
            return None
        return max(0.0, (self._clock() if now is None else now) - tick)

    def stats(self) -> dict[str, Any]:
        """Figures for the status page: see the keys below. ``last_recognition`` is seconds ago or None."""
        c, run = self.counters, self._run
        status = run.capture.status() if run is not None else None
        now = self._clock()
        return {
            "running": run is not None,
            "fps": round(c.fps, 2),
            "camera_fps": status.fps if status else None,
            "frames": c.frames,
            "camera_frames": status.frames if status else None,
            "dropped": status.dropped if status else None,
            "faces": c.faces,
            "faces_seen": c.faces_seen,
            "tracks": len(run.tracker.tracks) if run is not None else 0,
            "embeddings": c.embeddings,
            "recognised": c.recognised,
            "unknown": c.unknown,
            "undecided": c.undecided,
            "frame_errors": c.frame_errors,
            "last_error": c.last_error,
            "last_recognition": None if c.last_recognition is None else round(now - c.last_recognition, 1),
            "camera_state": status.state if status else "off",
            "camera_error": status.last_error if status else None,
            "tick_age": self.tick_age(now),
        }

    # --- the worker --------------------------------------------------------------------------------
    def _loop(self, run: _Run) -> None:
        while not run.stop.is_set():
            frame = run.capture.get(timeout=GET_TIMEOUT)
            self.last_tick = self._clock()
            if frame is None:
                self._idle(run)
                continue
            try:
                run.step(frame.image)
            except Exception as exc:  # one bad frame must not end the class's camera: counted, reported
                self._frame_failed(exc)
            self._camera_ok()
            self._maybe_publish_status(run)
        for track in run.tracker.end_all():  # the class ended, not the person's crossing: nobody is marked now
            if (event := run.decider.end(track, last_chance=False)) is not None:
                self._count(event)

    def _idle(self, run: _Run) -> None:
        """No frame came: note a camera failure, and do not spin when the capture has ended."""
        state = run.capture.state
        if state in ("ended", "stopped"):
            run.stop.wait(GET_TIMEOUT)
        if state == "reconnecting" and not self._camera_error_shown and self.feedback is not None:
            self.feedback.error(ERROR_CAMERA)
            self._camera_error_shown = True
        self._maybe_publish_status(run)

    def _camera_ok(self) -> None:
        if self._camera_error_shown and self.feedback is not None:
            self.feedback.clear_error(ERROR_CAMERA)
        self._camera_error_shown = False

    def _handle(self, event: TrackEvent) -> None:
        """Act on one decision: attendance, LED/buzzer, and a ``recognition`` event for the page."""
        self._count(event)
        outcome = None
        if event.kind == "recognised":
            self.counters.last_recognition = self._clock()
            outcome = self.on_decision(event)
            self._signal(FEEDBACK_FOR_OUTCOME.get(outcome or "ignored"))
        elif event.kind == "unknown":
            self._signal("unknown")
        if event.kind != "undecided":
            self._publish("recognition", {"kind": event.kind, "trackId": event.track_id, "userId": event.user_id,
                                          "confidence": event.confidence, "outcome": outcome})

    def _count(self, event: TrackEvent) -> None:
        name = event.kind if event.kind in ("recognised", "unknown", "undecided") else "undecided"
        setattr(self.counters, name, getattr(self.counters, name) + 1)

    def _signal(self, method: str | None) -> None:
        if method is not None and self.feedback is not None:
            getattr(self.feedback, method)()

    def _frame_failed(self, exc: Exception) -> None:
        c, now = self.counters, self._clock()
        c.frame_errors += 1
        c.last_error = describe_error(exc)
        if c.last_error_printed is None or now - c.last_error_printed >= ERROR_PRINT_EVERY:
            c.last_error_printed = now
            print(f"Pipeline: a frame failed ({c.last_error}); {c.frame_errors} so far, carrying on.",
                  file=sys.stderr, flush=True)

    def _maybe_publish_status(self, run: _Run) -> None:
        now = self._clock()
        if self._last_status is not None and now - self._last_status < STATUS_EVERY:
            return
        self._last_status = now
        status = run.capture.status()
        self._publish("status", {"fps": round(self.counters.fps, 1), "faces": self.counters.faces,
                                 "tracks": len(run.tracker.tracks), "frames": self.counters.frames,
                                 "dropped": status.dropped, "camera": status.state, "cameraError": status.last_error})

    def _publish(self, name: str, data: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(name, data)


def _default_capture(source_factory: Callable[[], FrameSource]) -> Any:
    from kiosk.camera.capture import CaptureThread

    return CaptureThread(source_factory)


# --- enrolment from the kiosk's own camera -----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Candidate:
    rank: float
    image: np.ndarray
    detection: Any


def _rank(detection: Any, quality: Any) -> float:
    """Higher is better: a larger, more frontal, more certain face (width px x (1 - yaw) x score)."""
    box = detection.box
    width = float(getattr(quality, "width_px", box[2] - box[0]))
    yaw = min(1.0, abs(float(getattr(quality, "yaw", 0.0))))
    return width * (1.0 - yaw) * float(getattr(detection, "score", 1.0))


def capture_embeddings(engine: Any, source_factory: Callable[[], FrameSource], *, count: int = 3,
                       timeout: float = 10.0, clock: Clock = time.monotonic) -> list[np.ndarray]:
    """Up to ``count`` embeddings of the one face in front of the camera, from its best frames.

    Reads frames for at most ``timeout`` seconds (fewer once ``2 * count`` good frames are in), keeps
    frames with exactly one face that passes the quality gate, and embeds the best ``count``. Raises
    :class:`EnrollmentRefused` with a plain reason: no face, several people, a poor picture, or the
    camera failed. The camera is closed before returning; no image is kept.
    """
    problems = {"none": 0, "several": 0, "poor": 0}
    good: list[_Candidate] = []
    source = source_factory()
    deadline = clock() + timeout
    try:
        source.open()
        while clock() < deadline and len(good) < 2 * count:
            frame = source.read()
            if frame is None:
                break
            _sort_frame(engine, frame.image, good, problems)
    except CameraError as exc:
        raise EnrollmentRefused(f"The camera could not be used: {exc}") from exc
    finally:
        source.close()
    if not good:
        raise EnrollmentRefused(_refusal(problems))
    best = sorted(good, key=lambda c: c.rank, reverse=True)[:count]
    return [np.asarray(engine.embed(c.image, [c.detection]))[0] for c in best]


def _sort_frame(engine: Any, image: np.ndarray, good: list[_Candidate], problems: dict[str, int]) -> None:
    faces = engine.faces(image)
    if not faces:
        problems["none"] += 1
    elif len(faces) > 1:
        problems["several"] += 1
    elif not quality_ok(faces[0][1]):
        problems["poor"] += 1
    else:
        detection, quality = faces[0]
        good.append(_Candidate(_rank(detection, quality), image, detection))


def _refusal(problems: dict[str, int]) -> str:
    if not any(problems.values()):
        return "The camera gave no pictures: check that it is connected."
    worst = max(problems, key=lambda k: problems[k])
    return {
        "none": "No face was seen: stand in front of the camera, facing it.",
        "several": "Several people were in the picture: only the student being enrolled may face the camera.",
        "poor": "The face was too small, blurred or turned away: come closer and face the camera.",
    }[worst]
