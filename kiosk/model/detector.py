"""MediaPipe BlazeFace face detection on LiteRT, with our own decoder (:mod:`kiosk.model.anchors`).

Small faces: the model sees the frame shrunk to 192x192 (full range) or 128x128 (short range), so a
40 px face in a 640x480 frame becomes ~12 px and is often missed. ``roi`` (the doorway) and ``tiles``
(NxN overlapping tiles of the region, plus the whole region) make faces larger in the model's input.

Example::

    with BlazeFaceDetector("models/face_detection_full_range.tflite", roi=(0.25, 0, 0.5, 1)) as det:
        for d in det.detect(frame_rgb):
            print(d.box, d.score)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kiosk.errors import ModelLoadError
from kiosk.model import anchors as A
from kiosk.model.types import Detection

TILE_OVERLAP = 0.3  # tiles overlap by this fraction of a tile, so a face up to that size fits whole in one


@dataclass(frozen=True)
class Variant:
    """One BlazeFace model: its square input size (px) and anchor grids."""

    input_size: int
    grids: tuple[tuple[int, int], ...]
    file_name: str


VARIANTS = {
    "full": Variant(192, A.FULL_RANGE_GRIDS, "face_detection_full_range.tflite"),
    "short": Variant(128, A.SHORT_RANGE_GRIDS, "face_detection_short_range.tflite"),
    "sparse": Variant(192, A.FULL_RANGE_GRIDS, "face_detection_full_range_sparse.tflite"),
}


def make_interpreter(model_path: Path | str, threads: int):
    """A LiteRT interpreter with tensors allocated; ModelLoadError if the file is missing or unreadable."""
    from ai_edge_litert.interpreter import Interpreter

    path = Path(model_path)
    if not path.is_file():
        raise ModelLoadError(f"Model file {path.name} is missing from {path.parent}: run `kiosk models`.")
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"Model file {path.name} could not be loaded (corrupt?): run `kiosk models`.") from exc
    return interpreter


@dataclass(frozen=True)
class Window:
    """A rectangle of the frame the model is run on (pixels); ``inner`` flags which edges are tile seams."""

    x: int
    y: int
    w: int
    h: int
    inner: tuple[bool, bool, bool, bool] = (False, False, False, False)  # left, top, right, bottom


def region(frame_w: int, frame_h: int, roi: tuple[float, float, float, float] | None) -> Window:
    """The frame area to search, from ``roi`` fractions (x, y, w, h); None means the whole frame."""
    if roi is None:
        return Window(0, 0, frame_w, frame_h)
    x, y = round(roi[0] * frame_w), round(roi[1] * frame_h)
    w = max(1, min(frame_w - x, round(roi[2] * frame_w)))
    h = max(1, min(frame_h - y, round(roi[3] * frame_h)))
    return Window(x, y, w, h)


def tile_windows(area: Window, n: int, overlap: float = TILE_OVERLAP) -> list[Window]:
    """``n`` x ``n`` tiles covering ``area``, neighbours overlapping by ``overlap`` of a tile."""
    if n <= 1:
        return []
    tw, th = area.w / (n - (n - 1) * overlap), area.h / (n - (n - 1) * overlap)
    tiles = []
    for j in range(n):
        for i in range(n):
            x0, y0 = area.x + round(i * tw * (1 - overlap)), area.y + round(j * th * (1 - overlap))
            x1 = area.x + area.w if i == n - 1 else min(area.x + area.w, round(x0 + tw))
            y1 = area.y + area.h if j == n - 1 else min(area.y + area.h, round(y0 + th))
            tiles.append(Window(x0, y0, x1 - x0, y1 - y0, (i > 0, j > 0, i < n - 1, j < n - 1)))
    return tiles


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """``image`` scaled to fit ``size`` x ``size``, centred, padded with 0 after scaling values to [-1, 1].

    Returns (1 x size x size x 3 float32 tensor, scale, pad_x, pad_y): input px = image px * scale + pad.
    """
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    tensor = np.zeros((1, size, size, 3), np.float32)
    pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
    tensor[0, pad_y:pad_y + nh, pad_x:pad_x + nw] = resized.astype(np.float32) / 127.5 - 1.0
    return tensor, scale, float(pad_x), float(pad_y)


class BlazeFaceDetector:
    """Face detector: BlazeFace full range (faces 1-4 m away) or short range (< 2 m) on LiteRT.

    ``threshold`` is the minimum score (0..1); ``threads`` LiteRT threads; ``roi`` (x, y, w, h) as
    fractions of the frame, None = whole frame; ``tiles`` N runs the model on NxN overlapping tiles
    of the region as well as on the whole region (N*N + 1 model runs per frame). Not thread-safe:
    use one detector per thread, or a lock (the Engine has one).
    """

    def __init__(self, model_path: Path | str, *, variant: str = "full", threshold: float = 0.5,
                 threads: int = 1, roi: tuple[float, float, float, float] | None = None, tiles: int = 1):
        if variant not in VARIANTS:
            raise ModelLoadError(f"Detector variant {variant!r} is not one of {', '.join(VARIANTS)}.")
        self.variant = VARIANTS[variant]
        self.threshold = threshold
        self.roi = roi
        self.tiles = tiles
        self._anchors = A.anchors(self.variant.grids)
        self._interpreter = make_interpreter(model_path, threads)
        self._input, self._regressors, self._scores = self._pick_tensors(Path(model_path).name)

    def _pick_tensors(self, name: str) -> tuple[int, int, int]:
        inputs = self._interpreter.get_input_details()
        size, n = self.variant.input_size, len(self._anchors)
        if len(inputs) != 1 or list(inputs[0]["shape"]) != [1, size, size, 3]:
            raise ModelLoadError(f"Model file {name} does not take a 1x{size}x{size}x3 input: wrong variant?")
        by_shape = {tuple(d["shape"]): d["index"] for d in self._interpreter.get_output_details()}
        if (1, n, 16) not in by_shape or (1, n, 1) not in by_shape:
            raise ModelLoadError(f"Model file {name} does not have {n}-anchor outputs: wrong variant?")
        return inputs[0]["index"], by_shape[(1, n, 16)], by_shape[(1, n, 1)]

    def _run(self, image: np.ndarray) -> A.RawDetections:
        tensor, scale, pad_x, pad_y = letterbox(image, self.variant.input_size)
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        raw = A.decode(self._interpreter.get_tensor(self._regressors), self._interpreter.get_tensor(self._scores),
                       self._anchors, self.variant.input_size, self.threshold)
        raw = A.weighted_nms(raw)
        size = self.variant.input_size
        pad = np.array([pad_x, pad_y])
        boxes = (raw.boxes * size - np.tile(pad, 2)) / scale
        keypoints = (raw.keypoints * size - pad) / scale
        return A.RawDetections(boxes, keypoints, raw.scores)

    def _detect_in(self, frame: np.ndarray, win: Window) -> A.RawDetections:
        raw = self._run(frame[win.y:win.y + win.h, win.x:win.x + win.w])
        offset = np.array([win.x, win.y], dtype=np.float64)
        boxes, kps = raw.boxes + np.tile(offset, 2), raw.keypoints + offset
        if any(win.inner):  # drop faces cut by a tile seam: a neighbouring tile holds them whole
            margin = 2.0
            cut = ((win.inner[0] & (boxes[:, 0] < win.x + margin)) | (win.inner[1] & (boxes[:, 1] < win.y + margin))
                   | (win.inner[2] & (boxes[:, 2] > win.x + win.w - margin))
                   | (win.inner[3] & (boxes[:, 3] > win.y + win.h - margin)))
            boxes, kps, scores = boxes[~cut], kps[~cut], raw.scores[~cut]
            return A.RawDetections(boxes, kps, scores)
        return A.RawDetections(boxes, kps, raw.scores)

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 frame (H x W x 3), best score first; boxes and keypoints in frame pixels."""
        return self.detect_with(frame_rgb, roi=self.roi, tiles=self.tiles)

    def detect_with(self, frame_rgb: np.ndarray, *, roi: tuple[float, float, float, float] | None = None,
                    tiles: int = 1) -> list[Detection]:
        """Like :meth:`detect` with another region / tiling (e.g. the whole photo for enrolment)."""
        if self._interpreter is None:
            raise ModelLoadError("The detector has been closed.")
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            raise ValueError(f"Expected an RGB frame of shape HxWx3, got {frame_rgb.shape}.")
        area = region(frame_rgb.shape[1], frame_rgb.shape[0], roi)
        parts = [self._detect_in(frame_rgb, win) for win in [area, *tile_windows(area, tiles)]]
        if len(parts) == 1:
            raw = parts[0]
        else:
            raw = A.weighted_nms(A.RawDetections(np.concatenate([p.boxes for p in parts]),
                                                 np.concatenate([p.keypoints for p in parts]),
                                                 np.concatenate([p.scores for p in parts])))
        order = np.argsort(-raw.scores, kind="stable")
        return [Detection(tuple(float(v) for v in raw.boxes[i]), raw.keypoints[i].astype(np.float64),
                          float(raw.scores[i])) for i in order]

    def close(self) -> None:
        """Release the interpreter; safe to call twice."""
        self._interpreter = None

    def __enter__(self) -> BlazeFaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
