"""Quality gate: only faces that are big enough, sharp enough and turned towards the camera are embedded.

- Size: the detection box width in frame pixels.
- Sharpness: the variance of the Laplacian of the grey ALIGNED 112x112 crop (so it does not depend on
  how large the face is in the frame, only on how much detail survived). Calibrated on the ORL faces
  and the group photos: see models/README.md ("Quality gate").
- Yaw: how far the nose tip sits from the eye midpoint along the eye line, divided by half the eye
  distance: 0 frontal, 1 when the nose is in front of one eye (near profile). Always >= 0.

Example::

    q = assess(frame, det, min_face_px=40, min_sharpness=20, max_yaw=0.45)
    if not q.ok:
        print("; ".join(q.reasons))
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.model.align import align
from kiosk.model.types import LEFT_EYE, NOSE, RIGHT_EYE, Detection


@dataclass(frozen=True)
class Quality:
    """The verdict on one face; ``reasons`` are plain phrases, empty when ``ok``."""

    ok: bool
    reasons: tuple[str, ...]
    width_px: float
    sharpness: float
    yaw: float


def sharpness(aligned_rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop (higher = sharper; ~0 for a flat image)."""
    grey = cv2.cvtColor(aligned_rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def yaw(keypoints: np.ndarray) -> float:
    """Head turn from keypoints: 0 frontal, 1 with the nose in front of an eye (clipped to 0..1)."""
    right, left, nose = (np.asarray(keypoints[i], dtype=np.float64) for i in (RIGHT_EYE, LEFT_EYE, NOSE))
    axis = left - right
    distance = float(np.hypot(*axis))
    if distance < 1e-6:
        return 1.0
    offset = float((nose - (right + left) / 2) @ (axis / distance))
    return min(1.0, abs(offset) / (distance / 2))


def assess(frame_rgb: np.ndarray, det: Detection, *, min_face_px: float, min_sharpness: float,
           max_yaw: float, aligned: np.ndarray | None = None) -> Quality:
    """Check one detected face; ``aligned`` is its aligned crop if already computed (None = align here)."""
    crop = align(frame_rgb, det) if aligned is None else aligned
    width, sharp, turn = float(det.width), sharpness(crop), yaw(det.keypoints)
    reasons = []
    if width < min_face_px:
        reasons.append(f"face too small ({width:.0f} px < {min_face_px:.0f} px)")
    if sharp < min_sharpness:
        reasons.append("too blurred")
    if turn > max_yaw:
        reasons.append("turned away")
    return Quality(not reasons, tuple(reasons), width, sharp, turn)
