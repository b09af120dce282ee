"""MobileFaceNet on LiteRT: aligned 112x112 RGB faces -> 192-d unit vectors ("mobilefacenet-v1").

The model's input batch is fixed at 2 (resizing it to 1 fails under XNNPack), so faces go through in
pairs; an odd face out is paired with a copy of itself and the copy's output dropped.

Example::

    with MobileFaceNetEmbedder("models/MobileFaceNet.tflite") as emb:
        vectors = emb.embed([emb.align(frame, d) for d in detections])   # (n, 192) float32
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiosk.errors import ModelLoadError
from kiosk.model import align as _align
from kiosk.model.detector import make_interpreter
from kiosk.model.types import Detection

METHOD = "mobilefacenet-v1"
DIM = 192
BATCH = 2


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def preprocess(faces: list[np.ndarray]) -> np.ndarray:
    """A (len, 112, 112, 3) float32 tensor from RGB uint8 crops: (x - 127.5) / 128."""
    batch = np.stack([np.asarray(f) for f in faces]).astype(np.float32)
    return (batch - 127.5) / 128.0


class MobileFaceNetEmbedder:
    """Face embedder: 192-d L2-normalised vectors from 112x112x3 RGB uint8 aligned faces.

    ``threads`` LiteRT threads. Not thread-safe: one caller at a time (the Engine holds a lock).
    """

    method = METHOD
    dim = DIM

    def __init__(self, model_path: Path | str, *, threads: int = 1):
        self._interpreter = make_interpreter(model_path, threads)
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if (len(inputs) != 1 or list(inputs[0]["shape"]) != [BATCH, 112, 112, 3]
                or len(outputs) != 1 or list(outputs[0]["shape"]) != [BATCH, DIM]):
            raise ModelLoadError(f"Model file {Path(model_path).name} is not MobileFaceNet (2x112x112x3 -> 2x192).")
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]

    def align(self, frame_rgb: np.ndarray, detection: Detection) -> np.ndarray:
        """The aligned 112x112x3 RGB uint8 crop this embedder expects."""
        return _align.align(frame_rgb, detection)

    def embed(self, aligned: list[np.ndarray]) -> np.ndarray:
        """(n, 192) float32 unit vectors for n aligned faces (112x112x3 RGB uint8); (0, 192) for none."""
        if self._interpreter is None:
            raise ModelLoadError("The embedder has been closed.")
        for face in aligned:
            if np.shape(face) != (112, 112, 3):
                raise ValueError(f"Expected aligned faces of shape 112x112x3, got {np.shape(face)}.")
        out = [self._pair(aligned[i:i + BATCH]) for i in range(0, len(aligned), BATCH)]
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, DIM), np.float32)

    def _pair(self, faces: list[np.ndarray]) -> np.ndarray:
        padded = faces if len(faces) == BATCH else [faces[0], faces[0]]
        self._interpreter.set_tensor(self._input, preprocess(padded))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)[:len(faces)].copy()

    def close(self) -> None:
        """Release the interpreter; safe to call twice."""
        self._interpreter = None

    def __enter__(self) -> MobileFaceNetEmbedder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
