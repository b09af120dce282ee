"""Alignment onto the ArcFace 112x112 template."""

import numpy as np

from kiosk.datasets import orl_padded_rgb
from kiosk.model.align import TEMPLATE_4, align, transform_for
from kiosk.model.types import Detection


def _detection_with(keypoints_4: np.ndarray) -> Detection:
    kp = np.zeros((6, 2))
    kp[:4] = keypoints_4
    kp[4:] = keypoints_4[:2]
    return Detection((0.0, 0.0, 10.0, 10.0), kp, 0.9)


def test_keypoints_land_on_the_template():
    # the template itself, rotated by 20 degrees, scaled x3 and shifted
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = TEMPLATE_4 @ rot.T * 3 + [200, 100]
    matrix = transform_for(_detection_with(src).keypoints)
    mapped = src @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, TEMPLATE_4, atol=0.05)


def test_degenerate_keypoints_still_give_a_transform():
    src = np.array([[10.0, 10.0], [30.0, 10.0], [20.0, 10.0], [20.0, 10.0]])  # collinear
    matrix = transform_for(_detection_with(src).keypoints)
    assert matrix.shape == (2, 3) and np.isfinite(matrix).all()


def test_aligned_crop_is_112_rgb_with_the_eyes_on_the_template_rows(engine, orl):
    frame = orl_padded_rgb(orl["s1"][0])
    [det] = engine.detect(frame)
    crop = align(frame, det)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    matrix = transform_for(det.keypoints)
    eyes = det.keypoints[:2] @ matrix[:, :2].T + matrix[:, 2]
    assert abs(eyes[0, 1] - 51.6) < 4 and abs(eyes[1, 1] - 51.6) < 4
    assert eyes[0, 0] < 56 < eyes[1, 0]


def test_a_face_at_the_frame_edge_is_filled_not_black(engine, orl):
    frame = orl_padded_rgb(orl["s2"][0], pad=10)
    dets = engine.detect(orl_padded_rgb(orl["s2"][0]))
    shifted = dets[0].shifted(-40, -40)  # the same face, 40 px further into the corner
    crop = align(frame, shifted)
    assert crop.shape == (112, 112, 3)
    assert (crop.reshape(-1, 3).sum(axis=1) == 0).mean() < 0.05
