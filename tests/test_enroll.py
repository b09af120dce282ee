"""`kiosk enroll`: bulk enrolment from a folder or a photo service, refusals, path traversal, no password argv."""

import http.server
import threading
from typing import ClassVar

import cv2
import numpy as np
import pytest

from kiosk import datasets
from kiosk.cli import main
from kiosk.enroll import FolderPhotos, UrlPhotos, check_user_id, enroll_many
from kiosk.errors import EnrollmentRefused, KioskError, UpstreamRejected, UpstreamUnavailable
from kiosk.model import embedding_format
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_SLOT_GUID


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "..", "", "x" * 40, "id;rm", "id.jpg", "%2e%2e"])
def test_user_ids_that_could_name_other_files_are_refused(bad):
    with pytest.raises(EnrollmentRefused, match="not a valid student ID"):
        check_user_id(bad)


def test_folder_photos_never_leave_the_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"outside")
    (folder / "00012345.jpg").symlink_to(tmp_path / "secret.jpg")
    (folder / "00054321.JPG").write_bytes(b"inside")
    photos = FolderPhotos(folder, max_bytes=1000)
    with pytest.raises(EnrollmentRefused, match="outside the photo folder"):
        photos("00012345")
    with pytest.raises(EnrollmentRefused, match="not a valid student ID"):
        photos("../secret")
    assert photos("00054321") == b"inside"
    with pytest.raises(EnrollmentRefused, match="no photo"):
        photos("00099999")
    (folder / "big.jpg").write_bytes(b"x" * 2000)
    with pytest.raises(EnrollmentRefused, match="larger than"):
        FolderPhotos(folder, max_bytes=1500)("big")
    with pytest.raises(KioskError, match="does not exist"):
        FolderPhotos(tmp_path / "nope", max_bytes=1)


def test_one_bad_photo_never_stops_the_others():
    stored = {}

    def embed(data: bytes) -> np.ndarray:
        if data == b"noface":
            raise EnrollmentRefused("No face found.")
        return np.ones(4)

    summary = enroll_many(["a", "b", "c", "a"], {"a": b"ok", "b": b"noface", "c": b"ok"}.__getitem__, embed,
                          stored.__setitem__)
    assert summary.enrolled == ["a", "c"] and sorted(stored) == ["a", "c"]
    assert summary.refused == {"b": "No face found."}
    assert "1 x No face found." in summary.report()


def test_upstream_down_stops_the_run_but_a_rejected_student_does_not():
    def store_rejecting(user_id, vector):
        raise UpstreamRejected("The API refused the embedding.", call="SetEmbedding", status=400)

    summary = enroll_many(["a"], lambda u: b"", lambda d: np.ones(2), store_rejecting)
    assert summary.refused == {"a": "The API refused the embedding."}

    def store_down(user_id, vector):
        raise UpstreamUnavailable("The university API is unreachable.", call="SetEmbedding")

    with pytest.raises(UpstreamUnavailable):
        enroll_many(["a"], lambda u: b"", lambda d: np.ones(2), store_down)


class _PhotoService(http.server.BaseHTTPRequestHandler):
    photos: ClassVar[dict[str, bytes]] = {}
    seen_headers: ClassVar[list[str]] = []

    def do_GET(self):
        self.seen_headers.append(self.headers.get("X-Api-Key", ""))
        data = self.photos.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if data else 404)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def photo_service():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PhotoService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/photos/{{userId}}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_url_photos_send_the_header_and_cap_the_size(photo_service):
    _PhotoService.photos = {"00000001": b"p" * 10, "00000002": b"q" * 5000}
    _PhotoService.seen_headers = []
    fetch = UrlPhotos(photo_service, max_bytes=1000, header="X-Api-Key: placeholder-key")
    try:
        assert fetch("00000001") == b"p" * 10
        assert _PhotoService.seen_headers == ["placeholder-key"]
        with pytest.raises(EnrollmentRefused, match="no photo"):
            fetch("00000003")
        with pytest.raises(EnrollmentRefused, match="larger than"):
            fetch("00000002")
    finally:
        fetch.close()
    with pytest.raises(KioskError, match=r"\{userId\}"):
        UrlPhotos("https://photos.example/static.jpg", max_bytes=1)


@pytest.mark.slow
def test_kiosk_enroll_from_a_folder_through_the_sandbox(tmp_path, sandbox, face_settings, orl, monkeypatch, capsys):
    roster = sandbox.state.roster(DEMO_SLOT_GUID, DEMO_CLASS_ID, "mobilefacenet-v1")
    ids = [s["userId"] for s in roster][:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / f"{ids[0]}.jpg").write_bytes(_jpeg(datasets.orl_padded_rgb(orl["s21"][0])))
    (folder / f"{ids[1]}.jpg").write_bytes(_jpeg(np.full((300, 300, 3), 128, np.uint8)))  # no face
    # ids[2] has no photo at all
    monkeypatch.setattr("getpass.getpass", lambda prompt: DEMO_LOGIN[1])
    for name in [n for n in __import__("os").environ if n.startswith("KIOSK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KIOSK_API_URL", sandbox.url)
    monkeypatch.setenv("KIOSK_MODELS_DIR", face_settings.models_dir)
    monkeypatch.setenv("KIOSK_CACHE_DIR", face_settings.cache_dir)
    code = main(["enroll", "--username", DEMO_LOGIN[0], "--lesson", DEMO_SLOT_GUID, "--class-id",
                 str(DEMO_CLASS_ID), "--photos", str(folder)])
    out = capsys.readouterr()
    assert code == 1  # some were refused
    assert "Enrolled 1 student(s)" in out.out
    assert f"{ids[1]}: " in out.out and f"{ids[2]}: no photo in the folder" in out.out
    assert DEMO_LOGIN[1] not in out.out + out.err
    stored = sandbox.state.embedding(ids[0], "mobilefacenet-v1")
    assert embedding_format.decode(stored, method="mobilefacenet-v1", dim=192).shape == (1, 192)
    assert sandbox.state.embedding(ids[1], "mobilefacenet-v1") is None
