"""BlazeFace on real photos: group photo counts, keypoints, small faces with a region of interest and tiles."""

import cv2
import numpy as np
import pytest

from kiosk.datasets import orl_padded_rgb
from kiosk.errors import ModelLoadError
from kiosk.model.detector import VARIANTS, BlazeFaceDetector
from kiosk.model.types import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE

# People a person counts in each photo (33 in all); data.md: full range found all 33 at 0.5.
FACES = {"t1": 6, "multi_face": 5, "sample1": 3, "sample2": 3, "sample3": 3, "sample4": 4, "sample5": 5,
         "sample6": 4}


@pytest.fixture(scope="module")
def full(models_dir):
    with BlazeFaceDetector(models_dir / VARIANTS["full"].file_name) as det:
        yield det


def _distinct_faces(found) -> bool:
    """No two boxes on the same face (a double detection would be an extra box)."""
    boxes = [d.box for d in found]
    return all(_iou(a, b) < 0.2 for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize(("name", "people"), [("t1", 6), ("multi_face", 5)])
def test_full_range_finds_exactly_the_people_in_t1_and_multi_face(full, group_photos, name, people):
    found = full.detect(group_photos[name])
    assert len(found) == people
    assert _distinct_faces(found)
    for det in found:  # each box holds its own face's eyes: a face, not a patch of background
        x1, y1, x2, y2 = det.box
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in det.keypoints[[RIGHT_EYE, LEFT_EYE, NOSE]])


def test_full_range_finds_at_least_31_of_the_33_faces_in_the_group_photos(full, group_photos):
    counts = {name: len(full.detect(img)) for name, img in group_photos.items()}
    assert sum(counts.values()) >= 31, counts  # measured: 33
    for name, found in counts.items():
        assert found <= FACES[name], f"{name}: {found} faces found, {FACES[name]} there"
        assert _distinct_faces(full.detect(group_photos[name])), name


def test_sparse_full_range_model_works_too(models_dir, group_photo):
    with BlazeFaceDetector(models_dir / VARIANTS["sparse"].file_name, variant="sparse") as det:
        assert 5 <= len(det.detect(group_photo)) <= 6


def test_short_range_misses_distant_faces_but_finds_a_close_one(models_dir, group_photos, orl):
    with BlazeFaceDetector(models_dir / VARIANTS["short"].file_name, variant="short") as det:
        assert sum(len(det.detect(img)) for img in group_photos.values()) < 30
        assert len(det.detect(orl_padded_rgb(orl["s5"][0]))) == 1


def test_detections_are_sorted_and_inside_the_photo(full, group_photo):
    dets = full.detect(group_photo)
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)
    h, w = group_photo.shape[:2]
    for d in dets:
        assert 0.5 <= d.score <= 1
        x1, y1, x2, y2 = d.box
        assert -0.1 * w < x1 < x2 < 1.1 * w and -0.1 * h < y1 < y2 < 1.1 * h
        assert 0.6 < d.width / d.height < 1.6
        assert d.keypoints.shape == (6, 2)


def test_keypoints_are_where_a_face_has_them(full, group_photo, orl):
    dets = full.detect(group_photo) + full.detect(orl_padded_rgb(orl["s1"][0]))
    for d in dets:
        kp = d.keypoints
        eyes_y = (kp[RIGHT_EYE, 1] + kp[LEFT_EYE, 1]) / 2
        assert eyes_y < kp[NOSE, 1] < kp[MOUTH, 1], "eyes above nose above mouth"
        assert kp[RIGHT_EYE, 0] < kp[LEFT_EYE, 0], "the subject's right eye is on the image's left"
        x1, y1, x2, y2 = d.box
        assert x1 <= kp[NOSE, 0] <= x2 and y1 <= kp[NOSE, 1] <= y2


def test_a_padded_orl_face_is_found_where_it_is(full, orl):
    padded = orl_padded_rgb(orl["s1"][0], pad=50)
    [d] = full.detect(padded)
    cx, cy = d.center
    assert 50 < cx < 142 and 50 < cy < 162


def test_nothing_is_found_in_a_blank_or_noisy_frame(full):
    rng = np.random.default_rng(1)
    assert full.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert full.detect(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []


def _doorway(face_grey: np.ndarray, width_px: int, centre=(320, 220)) -> np.ndarray:
    """A 640x480 frame with an ORL face pasted in, the face ``width_px`` wide."""
    frame = np.full((480, 640, 3), (120, 110, 100), np.uint8)
    padded = orl_padded_rgb(face_grey, pad=50)
    scale = width_px / 92
    small = cv2.resize(padded, (round(192 * scale), round(212 * scale)), interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    x0, y0 = centre[0] - w // 2, centre[1] - h // 2
    frame[y0:y0 + h, x0:x0 + w] = small
    return frame


def test_roi_and_tiles_find_40px_faces_the_whole_frame_misses(models_dir, orl):
    path = models_dir / VARIANTS["full"].file_name
    frames = [_doorway(orl[p][0], 40) for p in ("s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8")]
    with BlazeFaceDetector(path) as whole, BlazeFaceDetector(path, roi=(0.25, 0, 0.5, 1), tiles=2) as door:
        found_whole = sum(bool(whole.detect(f)) for f in frames)
        found_door = sum(bool(door.detect(f)) for f in frames)
    assert found_door >= 7
    assert found_door > found_whole


def test_roi_results_are_in_frame_coordinates(models_dir, orl):
    frame = _doorway(orl["s1"][0], 80, centre=(330, 240))
    with BlazeFaceDetector(models_dir / VARIANTS["full"].file_name, roi=(0.25, 0.1, 0.5, 0.8), tiles=2) as det:
        [d] = det.detect(frame)
    assert abs(d.center[0] - 330) < 15 and abs(d.center[1] - 240) < 25


def test_faces_outside_the_roi_are_ignored(models_dir, orl):
    frame = _doorway(orl["s1"][0], 80, centre=(100, 240))
    with BlazeFaceDetector(models_dir / VARIANTS["full"].file_name, roi=(0.5, 0, 0.5, 1)) as det:
        assert det.detect(frame) == []
        assert len(det.detect_with(frame)) == 1


def test_a_model_of_the_wrong_variant_is_refused_plainly(models_dir):
    with pytest.raises(ModelLoadError, match="wrong variant"):
        BlazeFaceDetector(models_dir / VARIANTS["short"].file_name, variant="full")


def test_a_missing_or_corrupt_model_file_is_refused_plainly(tmp_path):
    with pytest.raises(ModelLoadError, match=r"missing.*kiosk models"):
        BlazeFaceDetector(tmp_path / "face_detection_full_range.tflite")
    bad = tmp_path / "face_detection_full_range.tflite"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        BlazeFaceDetector(bad)


def test_close_is_idempotent_and_detect_after_close_fails_plainly(models_dir):
    det = BlazeFaceDetector(models_dir / VARIANTS["full"].file_name)
    det.close()
    det.close()
    with pytest.raises(ModelLoadError, match="closed"):
        det.detect(np.zeros((10, 10, 3), np.uint8))
