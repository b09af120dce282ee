"""BlazeFace decoding on synthetic anchors and regressors: pure numpy, no model."""

import warnings

import numpy as np
import pytest

from kiosk.model import anchors as A
from kiosk.model.detector import Window, letterbox, region, tile_windows


def test_anchor_counts_and_layout_match_the_models():
    short, full = A.anchors(A.SHORT_RANGE_GRIDS), A.anchors(A.FULL_RANGE_GRIDS)
    assert short.shape == (896, 2)
    assert full.shape == (2304, 2)
    # short range: first two anchors share the first 16x16 cell; the 8x8 grid starts at 512
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[1], short[0])
    np.testing.assert_allclose(short[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    # full range: row-major 48x48, x varies fastest
    np.testing.assert_allclose(full[1], [1.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(full[48], [0.5 / 48, 1.5 / 48])


def test_sigmoid_of_huge_logits_neither_overflows_nor_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = A.sigmoid(np.array([-1e6, -100.0, 0.0, 100.0, 1e6], dtype=np.float32))
    assert scores[0] == pytest.approx(0, abs=1e-40)
    assert scores[2] == pytest.approx(0.5)
    assert scores[-1] == pytest.approx(1.0)


def _one_face(n=2304, index=1000, size=192.0, logit=3.0):
    centres = A.anchors(A.FULL_RANGE_GRIDS)
    reg = np.zeros((1, n, 16), np.float32)
    logits = np.full((1, n, 1), -10.0, np.float32)
    reg[0, index, :4] = [9.6, -19.2, 48.0, 57.6]  # centre shift and size in input px
    reg[0, index, 4:] = np.arange(12) - 6.0
    logits[0, index, 0] = logit
    return centres, reg, logits


def test_decode_turns_regressors_into_boxes_and_keypoints_around_the_anchor():
    centres, reg, logits = _one_face()
    raw = A.decode(reg, logits, centres, 192, threshold=0.5)
    assert len(raw) == 1
    cx, cy = centres[1000] + [9.6 / 192, -19.2 / 192]
    np.testing.assert_allclose(raw.boxes[0], [cx - 0.125, cy - 0.15, cx + 0.125, cy + 0.15], atol=1e-6)
    np.testing.assert_allclose(raw.keypoints[0], centres[1000] + (np.arange(12) - 6.0).reshape(6, 2) / 192,
                               atol=1e-6)
    assert raw.scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))


def test_decode_drops_anchors_below_the_threshold():
    centres, reg, logits = _one_face(logit=0.1)  # score 0.525
    assert len(A.decode(reg, logits, centres, 192, threshold=0.6)) == 0
    assert len(A.decode(reg, logits, centres, 192, threshold=0.5)) == 1


def _raw(boxes, scores):
    boxes = np.array(boxes, dtype=np.float64)
    kps = np.repeat(boxes[:, None, :2], 6, axis=1)
    return A.RawDetections(boxes, kps, np.array(scores, dtype=np.float64))


def test_weighted_nms_merges_overlapping_boxes_by_score_and_keeps_separate_faces():
    raw = _raw([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], [0.9, 0.3, 0.8])
    out = A.weighted_nms(raw)
    assert len(out) == 2
    assert out.scores.tolist() == [0.9, 0.8]
    np.testing.assert_allclose(out.boxes[0], [0.25, 0, 10.25, 10])  # (0*0.9 + 1*0.3) / 1.2
    np.testing.assert_allclose(out.boxes[1], [50, 50, 60, 60])


def test_weighted_nms_keeps_boxes_overlapping_less_than_the_threshold():
    raw = _raw([[0, 0, 10, 10], [6, 0, 16, 10]], [0.9, 0.8])  # IoU 4/16 = 0.25 < 0.3
    assert len(A.weighted_nms(raw)) == 2


def test_weighted_nms_of_nothing_is_empty():
    out = A.weighted_nms(_raw(np.zeros((0, 4)), []))
    assert len(out) == 0
    assert out.boxes.shape == (0, 4)


def test_letterbox_centres_the_image_and_pads_with_zero():
    image = np.full((100, 200, 3), 255, np.uint8)
    tensor, scale, pad_x, pad_y = letterbox(image, 192)
    assert tensor.shape == (1, 192, 192, 3)
    assert scale == pytest.approx(0.96)
    assert (pad_x, pad_y) == (0.0, 48.0)
    assert tensor[0, 0, 0, 0] == 0.0  # padding
    assert tensor[0, 96, 96, 0] == pytest.approx(1.0)  # white pixel -> +1


def test_region_and_tiles_cover_the_roi_with_overlap():
    area = region(640, 480, (0.25, 0.0, 0.5, 1.0))
    assert area == Window(160, 0, 320, 480)
    tiles = tile_windows(area, 2)
    assert len(tiles) == 4
    assert min(t.x for t in tiles) == 160
    assert max(t.x + t.w for t in tiles) == 480
    assert max(t.y + t.h for t in tiles) == 480
    left, right = tiles[0], tiles[1]
    assert right.x < left.x + left.w  # they overlap
    assert left.inner == (False, False, True, True)
    assert tile_windows(area, 1) == []
