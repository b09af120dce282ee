"""BlazeFace's SSD anchors and the decoding of its raw outputs: pure numpy, no model needed.

All coordinates here are fractions of the model's square input (0..1 across the input).

- Short range (128x128): 896 anchors: a 16x16 grid (stride 8) with 2 anchors per cell, then an 8x8
  grid (stride 16) with 6 anchors per cell.
- Full range (192x192): 2304 anchors: a 48x48 grid (stride 4), one per cell.

A regressor row is ``[dx, dy, w, h, kp0x, kp0y, ..., kp5x, kp5y]`` in input pixels relative to the
anchor centre (anchor sizes are fixed at 1, so w and h are plain sizes in input pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NMS_IOU = 0.3  # MediaPipe's face-detection setting
LOGIT_CLIP = 100.0


@dataclass(frozen=True)
class RawDetections:
    """Decoded detections in input fractions: boxes (n, 4) x1,y1,x2,y2; keypoints (n, 6, 2); scores (n,)."""

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def anchors(grids: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Anchor centres (n, 2) as input fractions, for ``grids`` of (cells per side, anchors per cell)."""
    parts = []
    for cells, per_cell in grids:
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        parts.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(parts).astype(np.float64)


SHORT_RANGE_GRIDS = ((16, 2), (8, 6))
FULL_RANGE_GRIDS = ((48, 1),)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Scores in 0..1 from logits, clipped to +-100 and computed in float64 (no overflow warnings)."""
    clipped = np.clip(np.asarray(logits, dtype=np.float64), -LOGIT_CLIP, LOGIT_CLIP)
    return 1.0 / (1.0 + np.exp(-clipped))


def decode(regressors: np.ndarray, logits: np.ndarray, anchor_centres: np.ndarray, input_size: int,
           threshold: float) -> RawDetections:
    """Boxes, keypoints and scores of the anchors scoring at least ``threshold``.

    ``regressors`` is (n, 16) or (1, n, 16); ``logits`` (n,), (n, 1) or (1, n, 1).
    """
    reg = np.asarray(regressors, dtype=np.float64).reshape(-1, 16)
    scores = sigmoid(np.asarray(logits).reshape(-1))
    keep = scores >= threshold
    reg, scores, centres = reg[keep], scores[keep], anchor_centres[keep]
    cx = centres[:, 0] + reg[:, 0] / input_size
    cy = centres[:, 1] + reg[:, 1] / input_size
    w, h = reg[:, 2] / input_size, reg[:, 3] / input_size
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keypoints = centres[:, None, :] + reg[:, 4:16].reshape(-1, 6, 2) / input_size
    return RawDetections(boxes, keypoints, scores)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with each of ``boxes`` (n, 4); 0 for empty boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def weighted_nms(raw: RawDetections, iou_threshold: float = NMS_IOU) -> RawDetections:
    """MediaPipe-style weighted non-maximum suppression.

    Best score first: every remaining detection overlapping it by more than ``iou_threshold`` is
    merged into it (boxes and keypoints averaged, weighted by score); the merged one keeps the best score.
    """
    order = np.argsort(-raw.scores, kind="stable")
    boxes, kps, scores = raw.boxes[order], raw.keypoints[order], raw.scores[order]
    out_b, out_k, out_s = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        overlaps = iou(boxes[remaining[0]], boxes[remaining]) > iou_threshold
        overlaps[0] = True
        group = remaining[overlaps]
        weights = scores[group] / scores[group].sum()
        out_b.append((boxes[group] * weights[:, None]).sum(axis=0))
        out_k.append((kps[group] * weights[:, None, None]).sum(axis=0))
        out_s.append(scores[group[0]])
        remaining = remaining[~overlaps]
    if not out_s:
        return RawDetections(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0))
    return RawDetections(np.array(out_b), np.array(out_k), np.array(out_s))
