"""Settings: defaults, TOML file, KIOSK_* overrides, bounds and unknown keys."""

import pytest

from kiosk.cli import main
from kiosk.config import load_settings
from kiosk.errors import ConfigError


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr("kiosk.config.DEFAULT_CONFIG", tmp_path / "missing.toml")
    s = load_settings(env={})
    assert s.api_url == "https://newattendanceapi.wiut.uz/api"
    assert s.timezone == "Asia/Tashkent"
    assert s.replay_fps == 15.0
    assert s.tz.key == "Asia/Tashkent"


def test_file_then_env_override(tmp_path):
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text('port = 9000\ncamera = "usb:1"\nreplay_loop = true\n')
    s = load_settings(cfg, env={"KIOSK_PORT": "9100", "KIOSK_REPLAY_FPS": "5"})
    assert (s.port, s.camera, s.replay_loop, s.replay_fps) == (9100, "usb:1", True, 5.0)


def test_named_config_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_settings(tmp_path / "nope.toml", env={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KIOSK_PORTT": "1"}, "KIOSK_PORTT"),
        ({"KIOSK_PORT": "70000"}, "above the maximum"),
        ({"KIOSK_PORT": "eighty"}, "not a valid int"),
        ({"KIOSK_REPLAY_LOOP": "maybe"}, "not a valid bool"),
        ({"KIOSK_DETECTOR": "medium"}, "not one of full, short"),
        ({"KIOSK_API_URL": "https://example.invalid/v2"}, "must end in /api"),
        ({"KIOSK_TIMEZONE": "Mars/Olympus"}, "not a known time zone"),
        ({"KIOSK_CAMERA": "webcam"}, "is not one of picamera"),
        ({"KIOSK_TLS_CERT": "/etc/cert.pem"}, "given together"),
        ({"KIOSK_DETECT_ROI": "0.5,0,0.8,1"}, "stay inside"),
        ({"KIOSK_SSE_MAX_STREAMS": "30", "KIOSK_WEB_THREADS": "31"}, "must exceed"),
        ({"KIOSK_VOTES_NEEDED": "5", "KIOSK_MAX_TRACK_EMBEDDINGS": "4"}, "at least votes_needed"),
        ({"KIOSK_UNDO_SECONDS": "nan"}, "not a finite number"),
        ({"KIOSK_MAX_UPLOAD_MB": "inf"}, "not a finite number"),
        ({"KIOSK_EMBEDDING_METHOD": "mobile facenet;v1"}, "letters, digits"),
    ],
)
def test_bad_values_are_named(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_unknown_key_in_file_is_named(tmp_path):
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text("api_urll = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting 'api_urll'"):
        load_settings(cfg, env={})


def test_wrong_type_in_file(tmp_path):
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text("port = '8080'\nthreads = true\n")
    with pytest.raises(ConfigError, match="threads"):
        load_settings(cfg, env={})


def test_check_config_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("kiosk.config.DEFAULT_CONFIG", tmp_path / "missing.toml")
    for name in [n for n in __import__("os").environ if n.startswith("KIOSK_")]:
        monkeypatch.delenv(name)
    assert main(["check-config"]) == 0
    assert "valid" in capsys.readouterr().out
    monkeypatch.setenv("KIOSK_PORT", "0")
    assert main(["check-config"]) == 1
    assert "below the minimum" in capsys.readouterr().err


def test_replace_revalidates():
    s = load_settings(env={})
    assert s.replace(port=9001).port == 9001
    with pytest.raises(ConfigError):
        s.replace(port=-1)


def test_embedding_method_follows_the_embedder_unless_named():
    assert load_settings(env={}).embedding_method == "mobilefacenet-v1"
    assert load_settings(env={"KIOSK_EMBEDDER": "dlib"}).embedding_method == "dlib-resnet-v1"
    assert load_settings(env={"KIOSK_EMBEDDING_METHOD": "mfn-2026"}).embedding_method == "mfn-2026"
