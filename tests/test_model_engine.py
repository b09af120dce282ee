"""The engine facade: faces with quality, embeddings, and enrolment photos with plain refusals."""

import struct
import threading
import zlib

import cv2
import numpy as np
import pytest

from kiosk.datasets import orl_padded_rgb, photo_bytes
from kiosk.errors import EnrollmentRefused
from kiosk.model.engine import Engine, decode_photo, image_size, parse_roi
from kiosk.model.types import Detector, Embedder


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_faces_come_with_a_quality_verdict(engine, group_photo):
    faces = engine.faces(group_photo)
    assert 5 <= len(faces) <= 6
    assert any(q.ok for _, q in faces)
    for det, q in faces:
        assert q.width_px == pytest.approx(det.width)


def test_embed_gives_one_unit_vector_per_detection(engine, group_photo):
    dets = engine.detect(group_photo)
    vectors = engine.embed(group_photo, dets)
    assert vectors.shape == (len(dets), engine.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert engine.embed(group_photo, []).shape == (0, 192)


def test_embed_photo_of_a_padded_face_and_of_its_tight_jpeg_agree(engine, orl):
    padded = engine.embed_photo(orl_padded_rgb(orl["s4"][0]))
    tight = engine.embed_photo(_jpeg(cv2.cvtColor(orl["s4"][0], cv2.COLOR_GRAY2RGB)))  # retried with padding
    assert padded.shape == (192,)
    assert float(padded @ tight) > 0.9


def test_embed_photo_of_a_real_portrait(engine, face_settings):
    vector = engine.embed_photo(photo_bytes(face_settings, "single_face"))
    assert vector.shape == (192,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_a_blank_image_has_no_face(engine):
    with pytest.raises(EnrollmentRefused, match="No face found"):
        engine.embed_photo(_jpeg(np.full((480, 640, 3), 200, np.uint8)))


def test_a_photo_of_text_has_no_face(engine):
    page = np.full((600, 800, 3), 255, np.uint8)
    for row in range(12):
        cv2.putText(page, "Attendance list: module 4BUIS012C", (20, 50 + 45 * row), cv2.FONT_HERSHEY_SIMPLEX,
                    1.0, (0, 0, 0), 2)
    with pytest.raises(EnrollmentRefused, match="No face found"):
        engine.embed_photo(_jpeg(page))


def test_two_people_side_by_side_are_refused(engine, orl):
    two = np.hstack([orl_padded_rgb(orl["s1"][0]), orl_padded_rgb(orl["s2"][0])])
    with pytest.raises(EnrollmentRefused, match=r"^2 faces found: one person per photo"):
        engine.embed_photo(_jpeg(two))


def test_a_group_photo_is_refused(engine, group_photo):
    with pytest.raises(EnrollmentRefused, match="faces found: one person per photo"):
        engine.embed_photo(group_photo)


def test_a_blurred_portrait_is_refused(engine, orl):
    blurred = cv2.GaussianBlur(orl_padded_rgb(orl["s6"][0]), (0, 0), 3)
    with pytest.raises(EnrollmentRefused, match="Too blurred"):
        engine.embed_photo(blurred)


def test_a_tiny_face_is_refused_as_too_small(engine, orl):
    frame = np.full((400, 400, 3), 127, np.uint8)
    small = cv2.resize(orl_padded_rgb(orl["s7"][0]), (80, 88), interpolation=cv2.INTER_AREA)  # box ~22 px wide
    frame[150:238, 150:230] = small
    with pytest.raises(EnrollmentRefused, match=r"^Face too small \(\d+ px < 40 px\)\.$"):
        engine.embed_photo(frame)


@pytest.mark.parametrize("data", [b"", b"hello, this is text", b"%PDF-1.4 not a photo", b"\xff\xd8\xff"])
def test_non_images_are_refused(engine, data):
    with pytest.raises(EnrollmentRefused, match=r"Not an image|truncated"):
        engine.embed_photo(data)


def test_a_truncated_jpeg_is_refused(engine, orl):
    data = _jpeg(orl_padded_rgb(orl["s1"][0]))
    with pytest.raises(EnrollmentRefused, match="truncated"):
        engine.embed_photo(data[: len(data) // 2])


def test_a_10000x10000_header_is_refused_without_decoding(engine):
    with pytest.raises(EnrollmentRefused, match=r"too large \(100 megapixels; at most 40\)"):
        engine.embed_photo(_png_header(10000, 10000) + b"\0" * 100)


def test_a_huge_jpeg_header_is_refused(orl):
    data = bytearray(_jpeg(orl_padded_rgb(orl["s1"][0])))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 10000, 10000)
    with pytest.raises(EnrollmentRefused, match="too large"):
        decode_photo(bytes(data))


def test_image_size_reads_headers(orl):
    rgb = orl_padded_rgb(orl["s1"][0])
    for ext in (".jpg", ".png", ".webp", ".bmp"):
        _, buf = cv2.imencode(ext, rgb)
        assert image_size(buf.tobytes()) == (192, 212), ext
        assert decode_photo(buf.tobytes()).shape == (212, 192, 3)
    assert image_size(b"GIF89a....") is None


def test_a_large_photo_is_shrunk_before_detection(engine, orl):
    big = cv2.resize(orl_padded_rgb(orl["s8"][0]), (2880, 3180), interpolation=cv2.INTER_LINEAR)
    assert engine.embed_photo(_jpeg(big)).shape == (192,)


def test_the_parts_follow_the_protocols(engine):
    assert isinstance(engine.detector, Detector)
    assert isinstance(engine.embedder, Embedder)


def test_parse_roi():
    assert parse_roi("") is None
    assert parse_roi("0.25,0,0.5,1") == (0.25, 0.0, 0.5, 1.0)


def test_from_settings_uses_roi_tiles_and_gate(face_settings, models_dir):
    settings = face_settings.replace(detect_roi="0.25,0,0.5,1", detect_tiles=2, min_face_px=60)
    with Engine.from_settings(settings) as eng:
        assert eng.detector.roi == (0.25, 0, 0.5, 1) and eng.detector.tiles == 2
        assert eng.gate.min_face_px == 60
        assert eng.method == "mobilefacenet-v1"
    eng.close()  # idempotent


def test_one_caller_at_a_time(engine, orl):
    frame = orl_padded_rgb(orl["s9"][0])
    expected = engine.embed(frame, engine.detect(frame))[0]
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(engine.embed(frame, engine.detect(frame))[0])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 15
    for vector in results:
        np.testing.assert_allclose(vector, expected, atol=1e-5)
