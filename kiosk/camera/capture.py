"""Reading a camera in its own thread, so a slow or dead camera never blocks the pipeline.

:class:`CaptureThread` opens a source made by ``source_factory``, reads frames into a small queue
that keeps the newest frames (older ones are dropped and counted), and when the camera fails to
open or stops delivering it closes it and opens a new one after a backoff (0.5, 1, 2, 5, then
every 10 s), reporting why in :attr:`CaptureThread.last_error`. A source that ends (a replay's
last image) ends the capture: state ``"ended"``, no reopening.

Example::

    with CaptureThread(lambda: open_source(settings.camera, settings)) as capture:
        while running:
            frame = capture.get(timeout=0.5)      # None: nothing new yet, or capture ended
            if frame is not None:
                process(frame)
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kiosk.camera.base import Clock, Frame, FrameSource, mask_credentials
from kiosk.errors import KioskError

DEFAULT_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
STATES = ("starting", "running", "reconnecting", "ended", "stopped")
_FPS_SMOOTHING = 0.1  # weight of the newest frame interval in the moving average


@dataclass(frozen=True)
class CaptureStatus:
    """A snapshot for the status page.

    ``state`` is one of :data:`STATES`; ``last_error`` is a plain sentence or None (no failure yet);
    ``frames`` counts frames read, ``dropped`` those thrown away unread because newer ones came;
    ``fps`` is a moving average of frames read per second (0.0 before two frames);
    ``reopen_count`` counts attempts to open the camera again after a failure.
    """

    state: str
    description: str
    last_error: str | None
    frames: int
    dropped: int
    fps: float
    reopen_count: int


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, KioskError):
        return mask_credentials(str(exc))
    return f"The camera failed unexpectedly ({type(exc).__name__})."


class CaptureThread:
    """Reads frames from ``source_factory()`` sources in a background thread.

    ``source_factory`` returns a new, unopened :class:`FrameSource` each time (it is called again to
    reconnect). ``queue_size`` frames are kept at most; ``backoff`` lists the seconds to wait before
    each reopening (the last value repeats; it starts over once frames flow again); ``clock`` gives
    monotonic seconds (for ``fps``); ``on_state(status)`` is called from the capture thread whenever
    the state or the last error changes.
    """

    def __init__(self, source_factory: Callable[[], FrameSource], *, queue_size: int = 2,
                 backoff: Sequence[float] = DEFAULT_BACKOFF, clock: Clock = time.monotonic,
                 on_state: Callable[[CaptureStatus], object] | None = None, name: str = "kiosk-capture"):
        if queue_size < 1 or not backoff:
            raise ValueError("queue_size must be at least 1 and backoff must not be empty")
        self._factory = source_factory
        self._backoff = tuple(backoff)
        self._clock = clock
        self._on_state = on_state
        self._queue: deque[Frame] = deque(maxlen=queue_size)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._source: FrameSource | None = None
        self._started = False
        self._state = "starting"
        self._description = ""
        self._last_error: str | None = None
        self._frames = self._dropped = self._reopen_count = 0
        self._fps = 0.0
        self._interval: float | None = None
        self._last_arrival: float | None = None

    # --- the consumer's side -------------------------------------------------------------------
    def start(self) -> CaptureThread:
        """Start reading in the background (once); returns self."""
        if not self._started and not self._stop.is_set():
            self._started = True
            self._thread.start()
        return self

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest kept frame, waiting up to ``timeout`` seconds (None: until one comes).

        None means no frame arrived in time, or capture has ended or stopped (see :attr:`state`).
        """
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._state in ("ended", "stopped"), timeout)
            return self._queue.popleft() if self._queue else None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading, close the camera and join the thread (at most ``timeout`` s); idempotent."""
        self._stop.set()
        source = self._source
        if source is not None:
            source.interrupt()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._set_state("stopped")

    close = stop

    def __enter__(self) -> CaptureThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- status ----------------------------------------------------------------------------------
    def status(self) -> CaptureStatus:
        """A consistent snapshot of the figures below."""
        with self._cond:
            return CaptureStatus(self._state, self._description, self._last_error, self._frames,
                                 self._dropped, round(self._fps, 2), self._reopen_count)

    state = property(lambda self: self._state, doc="One of :data:`STATES`.")
    last_error = property(lambda self: self._last_error, doc="Why the camera last failed; None if never.")
    frames = property(lambda self: self._frames, doc="Frames read so far.")
    dropped = property(lambda self: self._dropped, doc="Frames thrown away unread because newer ones came.")
    fps = property(lambda self: self._fps, doc="Moving average of frames read per second.")
    reopen_count = property(lambda self: self._reopen_count, doc="Attempts to reopen after a failure.")
    alive = property(lambda self: self._thread.is_alive(), doc="True while the capture thread runs.")

    # --- the capture thread ----------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                frames_before = self._frames
                if self._capture_one_source():
                    self._set_state("ended")
                    return
                if self._stop.is_set():
                    return
                failures = 0 if self._frames > frames_before else failures
                delay = self._backoff[min(failures, len(self._backoff) - 1)]
                failures += 1
                if self._stop.wait(delay):
                    return
                with self._cond:
                    self._reopen_count += 1
        finally:
            if self._state != "ended":
                self._set_state("stopped")

    def _capture_one_source(self) -> bool:
        """Open a source and read it until it ends (True) or fails or capture stops (False)."""
        source: FrameSource | None = None
        try:
            source = self._factory()
            self._source = source
            self._description = source.description
            source.open()
            self._set_state("running")
            return self._pump(source)
        except Exception as exc:  # any failure is reported and the camera reopened
            self._set_state("reconnecting", _describe_failure(exc))
            return False
        finally:
            self._source = None
            if source is not None:
                self._close_quietly(source)

    def _pump(self, source: FrameSource) -> bool:
        while not self._stop.is_set():
            frame = source.read()
            if frame is None:
                return True
            self._put(frame)
        return False

    def _put(self, frame: Frame) -> None:
        now = self._clock()
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self._dropped += 1
            self._queue.append(frame)
            self._frames += 1
            self._update_fps(now)
            self._cond.notify_all()

    def _update_fps(self, now: float) -> None:
        if self._last_arrival is not None and now > self._last_arrival:
            interval = now - self._last_arrival
            self._interval = interval if self._interval is None else (
                (1 - _FPS_SMOOTHING) * self._interval + _FPS_SMOOTHING * interval)
            self._fps = 1.0 / self._interval
        self._last_arrival = now

    def _close_quietly(self, source: FrameSource) -> None:
        try:
            source.close()
        except Exception as exc:  # a failing close must not stop reconnecting
            print(f"Camera {source.description}: closing failed ({type(exc).__name__}).", file=sys.stderr)

    def _set_state(self, state: str, error: str | None = None) -> None:
        with self._cond:
            changed = state != self._state or (error is not None and error != self._last_error)
            self._state = state
            if error is not None:
                self._last_error = error
            if state != "running":
                self._last_arrival = None
            self._cond.notify_all()
        if changed and self._on_state is not None:
            self._report(self.status())

    def _report(self, status: CaptureStatus) -> None:
        try:
            self._on_state(status)
        except Exception as exc:  # a broken listener must not stop the camera
            print(f"Camera status listener failed ({type(exc).__name__}).", file=sys.stderr)
