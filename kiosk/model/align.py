"""Face alignment: a similarity transform (rotation, uniform scale, shift) onto the ArcFace 112x112 template.

Four BlazeFace keypoints are used: both eyes, the nose tip and the mouth centre (the template's mouth
point is the mean of its two mouth corners). The result is what MobileFaceNet expects: 112x112x3 RGB uint8.
"""

from __future__ import annotations

import cv2
import numpy as np

from kiosk.model.types import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, Detection

SIZE = 112
# ArcFace's 5-point template in a 112x112 crop: eye on the image's left (the subject's right eye),
# eye on the image's right, nose tip, mouth corners.
ARCFACE_5 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                      [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
TEMPLATE_4 = np.vstack([ARCFACE_5[:3], ARCFACE_5[3:].mean(axis=0)])
KEYPOINTS_4 = (RIGHT_EYE, LEFT_EYE, NOSE, MOUTH)


def transform_for(keypoints: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform taking the 4 keypoints (frame px) onto the template (crop px).

    Falls back to an exact fit of the two eyes when the 4-point estimate fails (degenerate points).
    """
    src = np.asarray(keypoints, dtype=np.float64)[list(KEYPOINTS_4)]
    # A loose RANSAC threshold (template px) keeps all 4 points as inliers in normal faces, so the
    # final refinement is a least-squares fit over all of them.
    matrix, _ = cv2.estimateAffinePartial2D(src, TEMPLATE_4, method=cv2.RANSAC, ransacReprojThreshold=10.0)
    if matrix is None:
        matrix = _two_point_transform(src[:2], TEMPLATE_4[:2])
    return matrix


def _two_point_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    s, d = src[1] - src[0], dst[1] - dst[0]
    norm = float(s @ s) or 1e-9
    a = (s[0] * d[0] + s[1] * d[1]) / norm
    b = (s[0] * d[1] - s[1] * d[0]) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dst[0] - rot @ src[0])[:, None]])


def align(frame_rgb: np.ndarray, detection: Detection) -> np.ndarray:
    """The face of ``detection`` cut from ``frame_rgb`` and aligned: 112x112x3 RGB uint8.

    Parts outside the frame are filled by replicating the frame's edge.
    """
    matrix = transform_for(detection.keypoints)
    return cv2.warpAffine(frame_rgb, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
