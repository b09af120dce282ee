"""``replay:DIR``: the images of a folder played as a camera (the stand-in for a real camera).

Images (.jpg/.jpeg/.png/.pgm/.bmp) are played in name order, decoded in memory one at a time,
letterboxed to the detection size and paced at ``settings.replay_fps``. After the last image
:meth:`~FrameSource.read` returns None (no more frames), unless ``settings.replay_loop``. A file
that cannot be decoded is skipped and counted in :attr:`ReplaySource.skipped`.

Example::

    with ReplaySource("tests/data/door", width=640, height=480, fps=15) as camera:
        frames = list(iter(camera.read, None))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from kiosk.camera.base import Clock, Frame, FrameSource, Pacer, bgr_to_rgb, letterbox
from kiosk.errors import CameraError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".bmp"})


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in name order; raises :class:`CameraError` if none."""
    if not folder.is_dir():
        raise CameraError(f"The replay folder {folder} does not exist or is not a folder.")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise CameraError(
            f"The replay folder {folder} has no images (.jpg, .jpeg, .png, .pgm or .bmp)."
        )
    return images


def decode_image(path: Path) -> np.ndarray | None:
    """The picture in ``path`` as RGB, decoded in memory; None if it cannot be read or decoded."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else bgr_to_rgb(image)


class ReplaySource(FrameSource):
    """Plays the images of ``folder`` as frames of ``width`` x ``height`` at ``fps`` per second.

    ``clock`` and ``sleep`` are injectable for tests (``sleep(seconds)``; by default a wait that
    :meth:`interrupt` ends). ``loop`` True starts again after the last image.
    """

    def __init__(self, folder: str | Path, *, width: int, height: int, fps: float, loop: bool = False,
                 clock: Clock = time.monotonic, sleep: Callable[[float], object] | None = None):
        super().__init__(f"replay:{folder}")
        self.folder = Path(folder)
        self.size = (width, height)
        self.loop = loop
        self.skipped = 0
        self._pacer = Pacer(fps, clock=clock, sleep=sleep)
        self._images: list[Path] = []
        self._position = 0
        self._index = 0

    def _open(self) -> None:
        self._images = list_images(self.folder)
        self._position = 0

    def _read(self) -> Frame | None:
        failures_in_a_row = 0
        while failures_in_a_row < len(self._images):
            path = self._next_path()
            if path is None:
                return None
            image = decode_image(path)
            if image is None:
                self.skipped += 1
                failures_in_a_row += 1
                continue
            taken = self._pacer.wait()
            frame = Frame(letterbox(image, *self.size), taken, self._index)
            self._index += 1
            return frame
        raise CameraError(f"None of the {len(self._images)} images in the replay folder {self.folder} "
                          "could be decoded.")

    def _next_path(self) -> Path | None:
        if self._position >= len(self._images):
            if not self.loop:
                return None
            self._position = 0
        path = self._images[self._position]
        self._position += 1
        return path

    def _close(self) -> None:
        self._images = []

    def interrupt(self) -> None:
        self._pacer.interrupt()

    @property
    def image_count(self) -> int:
        """How many image files the folder had when opened (0 before :meth:`open`)."""
        return len(self._images)
