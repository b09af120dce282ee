"""``usb:N``, ``rtsp://...`` and ``file:PATH`` cameras through OpenCV's ``VideoCapture``.

Frames come out of OpenCV as BGR; they are turned into RGB and letterboxed to the detection size.
A video file ends (:meth:`~FrameSource.read` returns None) and is paced at its own frame rate;
a USB camera or a network stream that stops delivering raises :class:`CameraError` so the capture
thread reconnects. Network streams get open/read timeouts so a dead camera cannot hang a read.

Example::

    with OpenCVSource("rtsp://user:pass@10.0.0.5/stream", width=640, height=480) as camera:
        print(camera.description)      # rtsp://***@10.0.0.5/stream
        frame = camera.read()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2

from kiosk.camera.base import Clock, Frame, FrameSource, Pacer, bgr_to_rgb, letterbox
from kiosk.errors import CameraError

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
NETWORK_TIMEOUT_MS = 5000


class OpenCVSource(FrameSource):
    """A camera opened by ``VideoCapture``: ``target`` is ``usb:N``, a stream URL or ``file:PATH``.

    ``clock``/``sleep`` are injectable (pacing of video files; ``sleep(seconds)``).
    """

    def __init__(self, target: str, *, width: int, height: int, clock: Clock = time.monotonic,
                 sleep: Callable[[float], object] | None = None):
        super().__init__(target)
        self.target = target
        self.size = (width, height)
        self.is_file = target.startswith("file:")
        self._clock = clock
        self._sleep = sleep
        self._pacer: Pacer | None = None
        self._capture: cv2.VideoCapture | None = None
        self._index = 0

    def _open(self) -> None:
        capture = self._make_capture()
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"Could not open camera {self.description}.")
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        self._pacer = Pacer(fps if 0 < fps <= 240 else None, clock=self._clock, sleep=self._sleep)

    def _make_capture(self) -> cv2.VideoCapture:
        if self.target.startswith("usb:"):
            return self._usb_capture(self.target[4:])
        if self.is_file:
            path = Path(self.target[5:])
            if not path.is_file():
                raise CameraError(f"The video file {path} does not exist.")
            return cv2.VideoCapture(str(path))
        if self.target.startswith(NETWORK_SCHEMES):
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS]
            return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, timeouts)
        raise CameraError(f"Camera {self.description} is not usb:N, rtsp://... or file:PATH.")

    def _usb_capture(self, number: str) -> cv2.VideoCapture:
        if not number.isdigit():
            raise CameraError(f"Camera {self.description}: after usb: comes a device number, e.g. usb:0.")
        capture = cv2.VideoCapture(int(number))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        return capture

    def _read(self) -> Frame | None:
        assert self._capture is not None and self._pacer is not None
        ok, image = self._capture.read()
        if not ok or image is None:
            if self.is_file:
                return None
            raise CameraError(f"Camera {self.description} stopped delivering frames.")
        taken = self._pacer.wait()
        frame = Frame(letterbox(bgr_to_rgb(image), *self.size), taken, self._index)
        self._index += 1
        return frame

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def interrupt(self) -> None:
        if self._pacer is not None:
            self._pacer.interrupt()
