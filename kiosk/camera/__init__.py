"""Cameras: every kind behind :class:`FrameSource`, chosen by a spec string with :func:`open_source`.

Specs (``settings.camera`` / ``KIOSK_CAMERA``): ``picamera`` (Pi camera, picamera2), ``usb:N``,
``rtsp://...`` (also ``rtsps://``, ``http(s)://``), ``file:PATH`` (a video file) and ``replay:DIR``
(a folder of images). :class:`CaptureThread` reads a source in its own thread, reconnecting
with backoff.

Example::

    camera = open_source(settings.camera, settings)   # not opened yet
    with camera:
        frame = camera.read()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kiosk.camera.base import Clock, Frame, FrameSource, letterbox, mask_credentials
from kiosk.camera.capture import CaptureStatus, CaptureThread
from kiosk.errors import CameraError

__all__ = ["CaptureStatus", "CaptureThread", "Frame", "FrameSource", "letterbox", "mask_credentials",
           "open_source"]


def open_source(spec: str, settings: Any, *, clock: Clock = time.monotonic,
                sleep: Callable[[float], object] | None = None) -> FrameSource:
    """A new, not yet opened camera for ``spec``; raises :class:`CameraError` for an unknown spec.

    ``settings`` gives ``camera_width``/``camera_height`` (the detection size) and, for replay,
    ``replay_fps``/``replay_loop``. ``clock``/``sleep(seconds)`` are injectable for pacing.
    The picamera2 module is imported only when ``spec`` is ``picamera``.
    """
    size = {"width": settings.camera_width, "height": settings.camera_height}
    if spec == "picamera":
        from kiosk.camera.picam import PicameraSource

        return PicameraSource(**size, clock=clock)
    if spec.startswith("replay:"):
        from kiosk.camera.replay import ReplaySource

        return ReplaySource(spec[len("replay:"):], **size, fps=settings.replay_fps,
                            loop=settings.replay_loop, clock=clock, sleep=sleep)
    if spec.startswith(("usb:", "file:", "rtsp://", "rtsps://", "http://", "https://")):
        from kiosk.camera.opencv import OpenCVSource

        return OpenCVSource(spec, **size, clock=clock, sleep=sleep)
    raise CameraError(f"Camera {mask_credentials(spec)} is not one of picamera, usb:N, rtsp://..., "
                      "file:PATH or replay:DIR.")
