"""What the recognition parts exchange: a :class:`Detection`, and the Detector / Embedder protocols.

Coordinates are frame pixels (x to the right, y down) of the RGB frame given to the detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# Rows of Detection.keypoints. "Right"/"left" are the subject's own: the subject's right eye
# appears on the LEFT of an unmirrored image.
RIGHT_EYE, LEFT_EYE, NOSE, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)
KEYPOINT_NAMES = ("right eye", "left eye", "nose tip", "mouth centre", "right ear", "left ear")


@dataclass(frozen=True, eq=False)
class Detection:
    """One face found in a frame.

    ``box`` is (x1, y1, x2, y2) in frame pixels (may extend past the frame edge for faces cut by it);
    ``keypoints`` is a (6, 2) float array of (x, y) frame pixels in the order of KEYPOINT_NAMES;
    ``score`` is the detector's confidence in 0..1.
    """

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        """Box centre (x, y) in pixels."""
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    def shifted(self, dx: float, dy: float, scale: float = 1.0) -> Detection:
        """This detection mapped by ``p * scale + (dx, dy)`` (e.g. from a tile or a resized frame)."""
        x1, y1, x2, y2 = self.box
        box = (x1 * scale + dx, y1 * scale + dy, x2 * scale + dx, y2 * scale + dy)
        return Detection(box, self.keypoints * scale + np.array([dx, dy]), self.score)


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an RGB uint8 frame (H x W x 3); returns them best score first."""

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]: ...

    def close(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns aligned faces into unit vectors.

    ``method`` names the embedding space (stored alongside vectors; vectors of different methods are
    never compared); ``dim`` is the vector length.
    """

    method: str
    dim: int

    def align(self, frame_rgb: np.ndarray, detection: Detection) -> np.ndarray:
        """The face cut out and aligned as this embedder expects it (112x112x3 RGB uint8)."""
        ...

    def embed(self, aligned: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 L2-normalised vectors for n aligned faces; (0, dim) for none."""
        ...

    def close(self) -> None: ...
