"""The previous generation's stack as a baseline: dlib HOG detector + dlib ResNet 128-d embedder.

An optional extra (``pip install '.[baseline]'``: PyPI ``dlib-bin`` and ``face-recognition-models==0.3.0``,
CC0 weights) used by ``kiosk eval --baseline`` and ``kiosk bench --baseline``, and selectable as the
kiosk's embedder (setting ``embedder = "dlib"``). dlib is imported only when one of these classes is
built; without the extra they raise :class:`~kiosk.errors.BaselineUnavailable`.

Both classes follow the protocols in :mod:`kiosk.model.types`:

- :class:`DlibDetector` finds faces with dlib's HOG detector (frontal faces only, about 80 px and
  larger unless ``upsample`` > 0) and places the six keypoints from dlib's 5-point landmark model:
  eyes and nose are measured; mouth and ears are *estimates* from the eyes, nose and box.
- :class:`DlibEmbedder` (method ``dlib-resnet-v1``, dim 128) aligns with dlib's own 5-point
  landmarks inside the detection's box (so it also works on BlazeFace boxes) and returns a 150x150
  chip, the size dlib's network expects (not the 112x112 of MobileFaceNet).

Example::

    detector, embedder = DlibDetector(), DlibEmbedder()
    faces = detector.detect(frame_rgb)
    vectors = embedder.embed([embedder.align(frame_rgb, f) for f in faces])   # (n, 128) unit rows
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from kiosk.errors import BaselineUnavailable, ModelLoadError
from kiosk.model.types import Detection

METHOD = "dlib-resnet-v1"
DIM = 128
CHIP_SIZE = 150
INSTALL_HINT = "install the optional extra: pip install 'kiosk[baseline]' (dlib-bin, face-recognition-models==0.3.0)"


def _dlib() -> Any:
    try:
        return importlib.import_module("dlib")
    except ImportError as exc:
        raise BaselineUnavailable(f"The dlib baseline is not installed; {INSTALL_HINT}.") from exc


def _model_file(name: str) -> str:
    """Path of a model file of face-recognition-models, found without importing it (it uses pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BaselineUnavailable(f"The dlib baseline's models are not installed; {INSTALL_HINT}.")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ModelLoadError(f"The dlib model file {name} is missing from face-recognition-models.")
    return str(path)


def available() -> bool:
    """True when dlib and its models are installed (nothing is loaded)."""
    return all(importlib.util.find_spec(name) is not None for name in ("dlib", "face_recognition_models"))


def require() -> None:
    """Imports dlib and finds its model files, or raises BaselineUnavailable saying how to install them.
    Commands call it before any long work, so a missing extra is reported at once."""
    _dlib()
    _model_file("dlib_face_recognition_resnet_model_v1.dat")


def missing_note() -> str | None:
    """A plain sentence when the extra is not installed ("not installed; install ..."), None when it is."""
    return None if available() else f"not installed; {INSTALL_HINT}"


def _keypoints(points: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Six keypoints (types.KEYPOINT_NAMES order) from dlib's 5 points: two corners per eye, then the nose."""
    eye_a, eye_b = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    right_eye, left_eye = (eye_a, eye_b) if eye_a[0] < eye_b[0] else (eye_b, eye_a)  # subject's right = image left
    nose = points[4]
    eyes_mid = (right_eye + left_eye) / 2
    mouth = nose + 0.6 * (nose - eyes_mid)  # estimate
    right_ear = np.array([box[0], eyes_mid[1]])  # estimate: box edge at eye height
    left_ear = np.array([box[2], eyes_mid[1]])
    return np.stack([right_eye, left_eye, nose, mouth, right_ear, left_ear]).astype(np.float32)


class _Landmarks:
    """dlib's 5-point shape predictor (built once)."""

    def __init__(self) -> None:
        self._dlib = _dlib()
        self._predictor = self._dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat"))

    def shape(self, frame_rgb: np.ndarray, box: tuple[float, float, float, float]) -> Any:
        rect = self._dlib.rectangle(*(round(v) for v in box))
        return self._predictor(np.ascontiguousarray(frame_rgb), rect)


class DlibDetector:
    """dlib's HOG face detector behind the Detector protocol; ``upsample`` doubles the image that many times
    (finds smaller faces, ~4x slower each). Scores are HOG margins squashed into 0..1."""

    def __init__(self, *, upsample: int = 0) -> None:
        self._detector = _dlib().get_frontal_face_detector()
        self._landmarks = _Landmarks()
        self.upsample = upsample

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 frame, best score first."""
        frame = np.ascontiguousarray(frame_rgb)
        rects, scores, _ = self._detector.run(frame, self.upsample, 0.0)
        found = []
        for rect, score in zip(rects, scores, strict=True):
            box = (float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom()))
            shape = self._landmarks.shape(frame, box)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            found.append(Detection(box, _keypoints(points, box), float(1 / (1 + np.exp(-score)))))
        return sorted(found, key=lambda d: -d.score)

    def close(self) -> None:
        """Nothing to release (kept for the protocol)."""


class DlibEmbedder:
    """dlib's ResNet face descriptor behind the Embedder protocol (``dlib-resnet-v1``, 128-d unit vectors)."""

    method = METHOD
    dim = DIM

    def __init__(self) -> None:
        self._dlib = _dlib()
        self._landmarks = _Landmarks()
        self._net = self._dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat"))

    def align(self, frame_rgb: np.ndarray, detection: Detection) -> np.ndarray:
        """A 150x150x3 RGB uint8 chip, aligned by dlib's landmarks found inside ``detection.box``."""
        frame = np.ascontiguousarray(frame_rgb)
        shape = self._landmarks.shape(frame, detection.box)
        return self._dlib.get_face_chip(frame, shape, size=CHIP_SIZE, padding=0.25)

    def embed(self, aligned: list[np.ndarray]) -> np.ndarray:
        """(n, 128) float32 unit rows for n chips from :meth:`align`."""
        if not aligned:
            return np.zeros((0, DIM), np.float32)
        vectors = np.array([self._net.compute_face_descriptor(np.ascontiguousarray(chip)) for chip in aligned],
                           dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def close(self) -> None:
        """Nothing to release (kept for the protocol)."""
