"""Quality gate: size, blur and head turn, with plain reasons."""

import cv2
import numpy as np
import pytest

from kiosk.datasets import orl_padded_rgb
from kiosk.model.quality import assess, sharpness, yaw
from kiosk.model.types import Detection

GATE = {"min_face_px": 40, "min_sharpness": 20.0, "max_yaw": 0.45}


def _kp(nose_x: float) -> np.ndarray:
    kp = np.zeros((6, 2))
    kp[0], kp[1], kp[2], kp[3] = (40, 50), (80, 50), (nose_x, 70), (60, 90)
    return kp


def test_yaw_is_zero_for_a_frontal_face_and_one_with_the_nose_before_an_eye():
    assert yaw(_kp(60)) == pytest.approx(0)
    assert yaw(_kp(70)) == pytest.approx(0.5)
    assert yaw(_kp(50)) == pytest.approx(0.5)
    assert yaw(_kp(80)) == pytest.approx(1.0)
    assert yaw(_kp(120)) == 1.0


def test_sharpness_of_a_flat_crop_is_zero_and_of_noise_is_high():
    rng = np.random.default_rng(0)
    assert sharpness(np.full((112, 112, 3), 90, np.uint8)) == 0
    assert sharpness(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) > 1000


@pytest.fixture(scope="module")
def face(engine, orl):
    frame = orl_padded_rgb(orl["s3"][0])
    [det] = engine.detect(frame)
    return frame, det


def test_a_normal_orl_photo_passes(face):
    q = assess(*face, **GATE)
    assert q.ok and q.reasons == ()
    assert q.width_px > 60 and q.sharpness > GATE["min_sharpness"] and q.yaw < 0.3


def test_the_calibrated_default_passes_normal_photos_and_fails_heavy_blur(engine, orl, group_photos):
    normal, blurred = [], []
    for person in ("s1", "s9", "s17", "s25", "s33"):
        for img in orl[person][:2]:
            frame = orl_padded_rgb(img)
            for target, image in ((normal, frame), (blurred, cv2.GaussianBlur(frame, (0, 0), 3))):
                dets = engine.detect(image)
                if dets:
                    target.append(assess(image, dets[0], **GATE).sharpness)
    for photo in group_photos.values():
        normal += [assess(photo, d, **GATE).sharpness for d in engine.detect(photo)]
    assert len(normal) > 35 and len(blurred) >= 8
    assert min(normal) >= GATE["min_sharpness"]
    assert max(blurred) < GATE["min_sharpness"]


def test_a_small_face_is_refused_with_its_size(face):
    frame, det = face
    small = Detection((det.box[0], det.box[1], det.box[0] + 32, det.box[1] + 38), det.keypoints, det.score)
    q = assess(frame, small, **GATE)
    assert not q.ok
    assert q.reasons == ("face too small (32 px < 40 px)",)


def test_a_blurred_face_is_refused(face):
    frame, det = face
    q = assess(cv2.GaussianBlur(frame, (0, 0), 4), det, **GATE)
    assert q.reasons == ("too blurred",)


def test_a_turned_face_is_refused_and_all_reasons_are_listed(face):
    frame, det = face
    turned = Detection(det.box, _kp(79) + 0, det.score)
    assert assess(frame, turned, **GATE).reasons[-1] == "turned away"
    q = assess(cv2.GaussianBlur(frame, (0, 0), 4), turned, **{**GATE, "min_face_px": 500})
    assert [r.split(" (")[0] for r in q.reasons] == ["face too small", "too blurred", "turned away"]
