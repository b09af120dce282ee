"""Settings: defaults, overridden by a TOML file, overridden by ``KIOSK_*`` environment variables.

The TOML file has flat top-level keys with the same names as the settings below; the environment
variable for a key is ``KIOSK_`` + the key in upper case (``api_url`` -> ``KIOSK_API_URL``). No file is
needed: the default file (``/etc/kiosk/kiosk.toml``) may be missing, a file named with ``--config``
may not. Unknown keys (in the file or as ``KIOSK_*`` variables) are rejected with the key named, so a
typo never silently falls back to a default.

Example::

    settings = load_settings()              # defaults + /etc/kiosk/kiosk.toml + KIOSK_*
    settings = load_settings("kiosk.toml", env={"KIOSK_PORT": "9000"})
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kiosk.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/kiosk/kiosk.toml")
ENV_PREFIX = "KIOSK_"
# Variables that start with KIOSK_ but are not settings (used by tests and the demo).
ENV_IGNORED = frozenset({"KIOSK_CONFIG"})
REPO_ROOT = Path(__file__).resolve().parent.parent
METHOD_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # what the faceEmbeding format accepts as a method
# The method name each embedder writes into its embeddings (and asks the API for by default).
EMBEDDER_METHODS = {"mobilefacenet": "mobilefacenet-v1", "dlib": "dlib-resnet-v1"}


def _default_state_dir() -> str:
    # systemd's StateDirectory= sets STATE_DIRECTORY; elsewhere use the XDG state folder.
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    return str(Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "kiosk")


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one setting is parsed and checked."""

    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None


SPECS: dict[str, Spec] = {
    # --- the university API
    "api_url": Spec(str, "https://newattendanceapi.wiut.uz/api", "Base URL of the attendance API, ending in /api."),
    "api_timeout": Spec(float, 10.0, "Seconds to wait for one API answer.", 0.5, 120),
    "api_retries": Spec(int, 3, "Retries of a call that is safe to repeat (timeouts, 5xx, 429).", 0, 10),
    "embedding_method": Spec(str, "", "embedderMetod / embeddingType name in the API; empty = the embedder's own "
                             "(mobilefacenet-v1 or dlib-resnet-v1)."),
    "timezone": Spec(str, "Asia/Tashkent", "Time zone of the timetable (slot times)."),
    # --- camera
    "camera": Spec(str, "picamera", "picamera, usb:N, rtsp://..., file:PATH or replay:DIR."),
    "replay_fps": Spec(float, 15.0, "Frames per second of a replay:DIR camera.", 0.1, 120),
    "replay_loop": Spec(bool, False, "Loop a replay:DIR camera instead of stopping after the last image."),
    "camera_width": Spec(int, 640, "Width of the frames the detector sees.", 160, 4096),
    "camera_height": Spec(int, 480, "Height of the frames the detector sees.", 120, 4096),
    # --- recognition engine
    "models_dir": Spec(str, str(REPO_ROOT / "models"), "Folder with the model files and SHA256SUMS."),
    "cache_dir": Spec(str, str(REPO_ROOT / ".cache"), "Download cache for registry packages (models, face data)."),
    "embedder": Spec(str, "mobilefacenet", "Face embedder: mobilefacenet (LiteRT) or dlib (optional baseline extra).",
                     choices=("mobilefacenet", "dlib")),
    "detector": Spec(str, "full", "BlazeFace model: full (faces 1-4 m away) or short (< 2 m).",
                     choices=("full", "short")),
    "detect_threshold": Spec(float, 0.5, "Minimum detector score.", 0.05, 0.99),
    "detect_roi": Spec(str, "", "Region of the frame to detect in, 'x,y,w,h' as fractions; empty = whole frame."),
    "detect_tiles": Spec(int, 2, "Also detect on NxN overlapping tiles of the region, so faces of 30-40 px "
                         "(2-3 m away) are found; 1 = off (faster, faces from ~60 px).", 1, 4),
    "threads": Spec(int, 1, "LiteRT interpreter threads (1 was fastest on 2 cores).", 1, 8),
    "min_face_px": Spec(int, 40, "Quality gate: minimum face width in pixels.", 16, 1000),
    "min_sharpness": Spec(float, 20.0, "Quality gate: minimum variance of the Laplacian of the face crop.", 0, 10000),
    "max_yaw": Spec(float, 0.45, "Quality gate: maximum yaw estimated from keypoints (0 = frontal, 1 = profile).",
                    0.05, 1.0),
    "min_margin": Spec(float, 0.05, "Minimum cosine margin of the best roster match over the second best.", 0, 1),
    "votes_needed": Spec(int, 3, "Agreeing frames needed before a track is decided.", 2, 30),
    "max_track_embeddings": Spec(int, 8, "Embeddings computed per track at most.", 2, 100),
    # --- the running class
    "grace_minutes": Spec(int, 15, "Minutes a class keeps running after its slot's end time.", 0, 240),
    "max_class_minutes": Spec(int, 180, "Maximum length of a class whose slot time is unknown.", 10, 720),
    "roster_refresh_seconds": Spec(int, 60, "How often the roster is re-read (marks made elsewhere).", 5, 3600),
    "undo_seconds": Spec(float, 5.0, "Manual marks wait this long before they are sent (undo window).", 0, 60),
    "state_dir": Spec(str, _default_state_dir(), "Folder for the spool of undelivered marks (the only file)."),
    # --- feedback hardware
    "gpio": Spec(str, "auto", "Pin factory: auto (real pins on a Pi, mock elsewhere), mock or native.",
                 choices=("auto", "mock", "native")),
    "led_green_pin": Spec(int, 17, "BCM pin of the green LED.", 0, 27),
    "led_red_pin": Spec(int, 27, "BCM pin of the red LED.", 0, 27),
    "buzzer_pin": Spec(int, 22, "BCM pin of the buzzer.", 0, 27),
    # --- the teacher page
    "host": Spec(str, "0.0.0.0", "Address the page listens on."),
    "port": Spec(int, 8080, "Port the page listens on.", 1, 65535),
    "web_threads": Spec(int, 24, "WSGI worker threads (must exceed sse_max_streams).", 4, 256),
    "sse_max_streams": Spec(int, 8, "Concurrent live-update streams at most.", 1, 200),
    "tls_cert": Spec(str, "", "TLS certificate file (PEM); empty = plain HTTP (use a TLS proxy)."),
    "tls_key": Spec(str, "", "TLS private key file (PEM)."),
    "max_upload_mb": Spec(float, 12.0, "Largest enrolment upload in MB.", 0.1, 100),
    "login_attempts_per_minute": Spec(int, 5, "Failed logins allowed per client per minute.", 1, 100),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Validated settings; build it with :func:`load_settings`."""

    api_url: str
    api_timeout: float
    api_retries: int
    embedding_method: str
    timezone: str
    camera: str
    replay_fps: float
    replay_loop: bool
    camera_width: int
    camera_height: int
    models_dir: str
    cache_dir: str
    embedder: str
    detector: str
    detect_threshold: float
    detect_roi: str
    detect_tiles: int
    threads: int
    min_face_px: int
    min_sharpness: float
    max_yaw: float
    min_margin: float
    votes_needed: int
    max_track_embeddings: int
    grace_minutes: int
    max_class_minutes: int
    roster_refresh_seconds: int
    undo_seconds: float
    state_dir: str
    gpio: str
    led_green_pin: int
    led_red_pin: int
    buzzer_pin: int
    host: str
    port: int
    web_threads: int
    sse_max_streams: int
    tls_cert: str
    tls_key: str
    max_upload_mb: float
    login_attempts_per_minute: int

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated again."""
        return _validated({**dataclasses.asdict(self), **changes}, source="override")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{text!r} is not a boolean (use 1/0, true/false, yes/no)")


def _coerce(key: str, value: Any, spec: Spec, source: str) -> Any:
    where = f"{key} (from {source})"
    try:
        if isinstance(value, str) and spec.type is not str:
            value = _parse_bool(value) if spec.type is bool else spec.type(value.strip())
        elif spec.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
    except ValueError as exc:
        raise ConfigError(f"Setting {where}: {value!r} is not a valid {spec.type.__name__}.") from exc
    if not isinstance(value, spec.type) or (spec.type is not bool and isinstance(value, bool)):
        raise ConfigError(f"Setting {where}: expected {spec.type.__name__}, got {type(value).__name__}.")
    if spec.type is float and not math.isfinite(value):
        raise ConfigError(f"Setting {where}: {value} is not a finite number.")
    if spec.min is not None and value < spec.min:
        raise ConfigError(f"Setting {where}: {value} is below the minimum {spec.min}.")
    if spec.max is not None and value > spec.max:
        raise ConfigError(f"Setting {where}: {value} is above the maximum {spec.max}.")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"Setting {where}: {value!r} is not one of {', '.join(spec.choices)}.")
    return value


def _check_consistency(values: dict[str, Any]) -> None:
    url = values["api_url"]
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"Setting api_url: {url!r} must start with http:// or https://.")
    if not url.rstrip("/").endswith("/api"):
        raise ConfigError(f"Setting api_url: {url!r} must end in /api (e.g. https://host/api).")
    try:
        ZoneInfo(values["timezone"])
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"Setting timezone: {values['timezone']!r} is not a known time zone.") from exc
    if values["web_threads"] <= values["sse_max_streams"] + 2:
        raise ConfigError(
            "Setting web_threads must exceed sse_max_streams by at least 3, so live streams "
            "cannot starve ordinary requests."
        )
    method = values["embedding_method"]
    if method and not METHOD_NAME.fullmatch(method):
        raise ConfigError(f"Setting embedding_method: {method!r} must be 1-64 letters, digits, '.', '_' or '-'.")
    if values["max_track_embeddings"] < values["votes_needed"]:
        raise ConfigError("Setting max_track_embeddings must be at least votes_needed, or no track could be decided.")
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        raise ConfigError("Settings tls_cert and tls_key must be given together.")
    camera = values["camera"]
    if not (camera == "picamera" or camera.startswith(("usb:", "rtsp://", "rtsps://", "http://",
                                                        "https://", "file:", "replay:"))):
        raise ConfigError(
            f"Setting camera: {camera!r} is not one of picamera, usb:N, rtsp://..., file:PATH, replay:DIR."
        )
    if values["detect_roi"]:
        try:
            parts = [float(p) for p in values["detect_roi"].split(",")]
        except ValueError:
            parts = []
        ok = len(parts) == 4 and all(0 <= p <= 1 for p in parts) and parts[2] > 0 and parts[3] > 0
        if not ok or parts[0] + parts[2] > 1.0001 or parts[1] + parts[3] > 1.0001:
            raise ConfigError(
                f"Setting detect_roi: {values['detect_roi']!r} must be 'x,y,w,h' fractions of the frame "
                "(e.g. 0.25,0,0.5,1) that stay inside it."
            )


def _validated(raw: dict[str, Any], source: str) -> Settings:
    values = {}
    for key, spec in SPECS.items():
        values[key] = _coerce(key, raw.get(key, spec.default), spec, source)
    _check_consistency(values)
    if not values["embedding_method"]:
        values["embedding_method"] = EMBEDDER_METHODS[values["embedder"]]
    return Settings(**values)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror or exc}.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from exc
    for key, value in data.items():
        if key not in SPECS:
            raise ConfigError(f"Config file {path}: unknown setting {key!r}.")
        if isinstance(value, dict):
            raise ConfigError(f"Config file {path}: setting {key!r} must be a plain value, not a table.")
    return data


def load_settings(path: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file, then ``KIOSK_*`` variables; raises :class:`ConfigError`.

    ``path`` None means the default file, used only if it exists. ``env`` defaults to ``os.environ``.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    file_path = Path(path) if path is not None else None
    if file_path is None and env.get("KIOSK_CONFIG"):
        file_path = Path(env["KIOSK_CONFIG"])
    if file_path is not None:
        raw.update(read_toml(file_path))
    elif DEFAULT_CONFIG.is_file():
        raw.update(read_toml(DEFAULT_CONFIG))
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_IGNORED:
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in SPECS:
            raise ConfigError(f"Unknown environment variable {name} (no setting {key!r}).")
        raw[key] = value
    source = "defaults, " + (str(file_path) if file_path else "no config file") + " and KIOSK_* variables"
    return _validated(raw, source=source)


def describe() -> str:
    """Every setting with its default and meaning, for ``--help`` and the README."""
    lines = []
    for key, spec in SPECS.items():
        bounds = ""
        if spec.choices:
            bounds = f" [{'|'.join(spec.choices)}]"
        elif spec.min is not None:
            bounds = f" [{spec.min:g}..{spec.max:g}]"
        lines.append(f"  {ENV_PREFIX}{key.upper():<26} {spec.help}{bounds} (default: {spec.default!r})")
    return "\n".join(lines)


# --- `kiosk check-config` -----------------------------------------------------------------------
def configure_parser(parser) -> None:
    parser.add_argument("--show", action="store_true", help="print the effective settings")


def run_command(args, settings: Settings) -> int:
    # Settings were validated while loading; reaching here means they are valid.
    print("Configuration is valid.")
    if args.show:
        for key, value in dataclasses.asdict(settings).items():
            print(f"{key} = {value!r}")
    return 0
