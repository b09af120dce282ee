"""What every camera gives the pipeline: :class:`Frame` and the small :class:`FrameSource` base.

One file per camera kind sits next to this one (``picam.py``, ``opencv.py``, ``replay.py``); choose one
with :func:`kiosk.camera.open_source`. Every source delivers RGB frames already at the detection size
(``settings.camera_width`` x ``settings.camera_height``), letterboxed so the aspect ratio is kept.

Example::

    with open_source("replay:demo/faces", settings) as camera:
        while (frame := camera.read()) is not None:
            detect(frame.image)
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.errors import CameraError

Clock = Callable[[], float]
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


@dataclass(frozen=True)
class Frame:
    """One picture from a camera.

    ``image`` is H x W x 3 uint8 in RGB order at the detection size; ``timestamp`` is the
    ``time.monotonic()`` second (or the source's injected clock) the frame was taken; ``index``
    counts the frames a source delivered, from 0.
    """

    image: np.ndarray
    timestamp: float
    index: int


def mask_credentials(text: str) -> str:
    """``text`` with any ``scheme://user:password@`` turned into ``scheme://***@`` (safe to print)."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width`` x ``height`` pixels keeping its aspect, centred on black.

    Works for any number of channels; the result has the same dtype and channels as the input.
    """
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((height, width, *image.shape[2:]), dtype=image.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """An OpenCV BGR (or greyscale) picture as 3-channel RGB."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class Pacer:
    """Spaces reads ``1 / fps`` seconds apart on an injectable clock.

    ``sleep(seconds)`` defaults to waiting on an internal event, so :meth:`interrupt` (from any
    thread) ends a wait at once. ``fps`` None or 0 means no pacing.
    """

    def __init__(self, fps: float | None, *, clock: Clock = time.monotonic,
                 sleep: Callable[[float], object] | None = None):
        self.interval = 1.0 / fps if fps else 0.0
        self._clock = clock
        self._wake = threading.Event()
        self._sleep = sleep or self._wake.wait
        self._next: float | None = None

    def wait(self) -> float:
        """Wait until the next frame is due; returns the clock reading at which it is taken."""
        now = self._clock()
        if self._next is not None and now < self._next and not self._wake.is_set():
            self._sleep(self._next - now)
            now = self._clock()
        on_schedule = self._next is not None and now <= self._next + self.interval
        # Behind schedule (slow decode, a pause): restart from now instead of bursting to catch up.
        self._next = (self._next if on_schedule else now) + self.interval
        return now

    def interrupt(self) -> None:
        """End the current wait at once and stop pacing (the source is being stopped)."""
        self._wake.set()


class FrameSource(ABC):
    """A camera: :meth:`open`, then :meth:`read` frames, then :meth:`close` (or use ``with``).

    A source is used once: open it once, close it once (closing again does nothing); to reconnect,
    make a new one. ``description`` is safe to print or show (never a password). Subclasses
    implement ``_open``, ``_read`` and ``_close``.
    """

    def __init__(self, description: str):
        self.description = mask_credentials(description)
        self._opened = False
        self._closed = False

    def open(self) -> None:
        """Start the camera; raises :class:`CameraError` with a plain reason when it cannot."""
        if self._closed:
            raise CameraError(f"Camera {self.description} was closed; open a new one.")
        if not self._opened:
            self._open()
            self._opened = True

    def read(self) -> Frame | None:
        """The next frame; None when there are no more (a replay or video file ended).

        Raises :class:`CameraError` when the camera stopped delivering (unplugged, stream lost).
        """
        if not self._opened or self._closed:
            raise CameraError(f"Camera {self.description} is not open.")
        return self._read()

    def close(self) -> None:
        """Release the camera; safe to call more than once and before :meth:`open`."""
        if self._closed:
            return
        self._closed = True
        if self._opened:
            self._close()

    def interrupt(self) -> None:  # noqa: B027 - an optional hook: most sources never wait
        """Ask a :meth:`read` that is waiting (pacing) to return soon; safe from another thread."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self) -> Frame | None: ...

    @abstractmethod
    def _close(self) -> None: ...
