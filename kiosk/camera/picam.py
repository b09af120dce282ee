"""``picamera``: the Raspberry Pi camera through picamera2 (imported only when this camera is chosen).

picamera2 comes from Raspberry Pi OS (``sudo apt install python3-picamera2``), not from PyPI; the
virtualenv must be made with ``--system-site-packages`` to see it. Two streams are configured:
``main`` (twice the detection size, for showing or enrolment) and ``lores`` at the detection size;
detection reads ``lores``, as in picamera2's ``opencv_face_detect_2.py`` example. Both are YUV420
(the only ``lores`` format a Pi 4 has) in the SMPTE 170M colour space (BT.601, limited range),
which is exactly what OpenCV's I420 conversion assumes.

picamera2's YUV420 is I420 (Y plane, then U, then V). Its manual converts with
``cv2.COLOR_YUV420p2RGB``, which is OpenCV's YV12 (V before U): that swaps the chroma planes and
gives BGR-like colours meant for ``cv2.imshow``. For true RGB, :func:`to_rgb` uses
``cv2.COLOR_YUV2RGB_I420``.

Example::

    with PicameraSource(width=640, height=480) as camera:
        frame = camera.read()
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from kiosk.camera.base import Clock, Frame, FrameSource
from kiosk.errors import CameraError

MISSING = ("python3-picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install python3-picamera2' "
           "and create the virtualenv with --system-site-packages, or choose another camera (usb:0, replay:DIR).")


def import_picamera2() -> tuple[Any, Any]:
    """The ``Picamera2`` class and the ``libcamera`` module; :class:`CameraError` when missing."""
    try:
        import libcamera
        from picamera2 import Picamera2
    except ImportError as exc:
        raise CameraError(MISSING) from exc
    return Picamera2, libcamera


def to_rgb(array: np.ndarray, fmt: str, width: int, height: int) -> np.ndarray:
    """A picamera2 ``capture_array`` result of format ``fmt`` as ``height`` x ``width`` x 3 RGB.

    YUV420 arrives as one plane of (height * 3 / 2) rows x stride bytes (I420); rows may be padded
    beyond ``width``. picamera2's RGB888 is B, G, R in memory (what OpenCV calls BGR) and BGR888 is
    R, G, B; the X formats carry a fourth, unused byte.
    """
    if fmt == "YUV420":
        return cv2.cvtColor(array, cv2.COLOR_YUV2RGB_I420)[:height, :width]
    conversions = {"RGB888": cv2.COLOR_BGR2RGB, "XRGB8888": cv2.COLOR_BGRA2RGB, "XBGR8888": cv2.COLOR_RGBA2RGB}
    if fmt == "BGR888":
        return np.ascontiguousarray(array[:height, :width, :3])
    if fmt not in conversions:
        raise CameraError(f"The picamera2 format {fmt} is not supported (use YUV420 or RGB888).")
    return cv2.cvtColor(np.ascontiguousarray(array[:height, :width]), conversions[fmt])


class PicameraSource(FrameSource):
    """The Pi camera: ``lores`` stream of ``width`` x ``height`` (YUV420) for detection.

    ``main_size`` is the (width, height) of the ``main`` stream, by default twice the detection size.
    """

    def __init__(self, *, width: int, height: int, main_size: tuple[int, int] | None = None,
                 clock: Clock = time.monotonic):
        super().__init__("picamera")
        self.size = (width, height)
        self.main_size = main_size or (width * 2, height * 2)
        self._clock = clock
        self._camera: Any = None
        self._index = 0

    def _open(self) -> None:
        picamera2_class, libcamera = import_picamera2()
        try:
            camera = picamera2_class()
        except (IndexError, RuntimeError, OSError) as exc:
            raise CameraError("No Raspberry Pi camera was found (is it connected and enabled?).") from exc
        try:
            config = camera.create_video_configuration(
                main={"size": self.main_size, "format": "YUV420"},
                lores={"size": self.size, "format": "YUV420"},
                colour_space=libcamera.ColorSpace.Smpte170m(),
            )
            camera.configure(config)
            camera.start()
        except (RuntimeError, OSError, ValueError) as exc:
            camera.close()
            raise CameraError(f"The Raspberry Pi camera could not be started: {exc}.") from exc
        self._camera = camera

    def _read(self) -> Frame | None:
        try:
            array = self._camera.capture_array("lores")
        except (RuntimeError, OSError) as exc:
            raise CameraError("The Raspberry Pi camera stopped delivering frames.") from exc
        image = to_rgb(array, "YUV420", *self.size)
        frame = Frame(image, self._clock(), self._index)
        self._index += 1
        return frame

    def _close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
            finally:
                camera.close()
