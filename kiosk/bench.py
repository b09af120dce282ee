"""``kiosk bench``: per-stage latency, frames per second with tracking, peak memory, and the time
from a student's first frame in view to their attendance post.

A replay of real faces is composed in memory, one frame at a time (never written to disk, never all
held at once): 640x480 frames on which ORL people s21-s40 walk across, one person per pass, and
every second pass a second person in the other direction lower in the frame. Each walker's face is
an ORL photo (shots 2-10 in turn) scaled 1.5x (face ~100 px wide). The roster is those 20 people,
enrolled from shot 1 through the same stack.

Each frame goes through the kiosk's own per-frame code, :class:`kiosk.pipeline.FrameStep` (what
the running kiosk's Pipeline calls; here without a camera thread, on 15 frames/s replay time), on an
:class:`~kiosk.model.engine.Engine` made of the stack's detector and embedder and the quality gate of
the settings: detect and gate every face, track (IoU), embed the good crops of the tracks that still
want votes (up to 2 faces per embedder call, at most 2 calls per frame), match, decide
(``Decider.from_settings``). Reported: p50/p95 ms per stage, timed around the engine's parts:
``detect`` per frame; ``quality`` per detected face (the gate, with its own 112x112 alignment);
``align`` per embedded face (the embedder's alignment); ``embed`` per embedder call (1-2 faces) and
``embed_face`` per face (a call's time / its faces); ``match`` per face; ``frame`` for the whole frame.
Also frames per second over the processing time, tracks, embeddings and decisions, and the
process's peak RSS (``resource.getrusage``, MB; a peak, so a later stack's figure includes the
earlier one). ``--baseline`` runs the same frames through dlib (same step, tracker and gates) and
prints the speed ratio. ``--walkers N`` runs the real Pipeline, ClassSession, Outbox and client
against the sandbox API on 127.0.0.1 and times first frame -> SetAttendanceStudent (see
:func:`post_latency`). ``--detection-sweep`` measures which detector set-up finds faces 30-100 px
wide. ``--json`` prints one JSON object on the last line. No pass/fail: the machine decides the figures.

Example::

    kiosk bench --frames 150 --walkers 0
    kiosk bench --json --baseline
"""

from __future__ import annotations

import functools
import json
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from kiosk.camera.base import Frame, FrameSource, Pacer
from kiosk.model.calibrate import ORL_PAD, Stack, open_stack
from kiosk.model.engine import Engine, Gate
from kiosk.model.match import Calibration, Gallery, best_match
from kiosk.pipeline import Counters, FrameStep
from kiosk.tracker import TrackEvent

FRAME_W, FRAME_H = 640, 480
PASS_FRAMES = 40
FACE_SCALE = 1.5
PEOPLE = tuple(f"s{i}" for i in range(21, 41))
REPLAY_FPS = 15.0  # the replay's time: frame index / 15 s
STAGES = ("detect", "align", "quality", "embed", "embed_face", "match", "frame")
STAGE_NOTES = {"detect": "per frame", "quality": "per detected face, with the gate's own alignment",
               "align": "per embedded face, the embedder's alignment", "embed": "per embedder call of 1-2 faces",
               "embed_face": "per face: an embed call's time / its faces", "match": "per embedded face",
               "frame": "per frame, detect to decision"}


# --- the replay -------------------------------------------------------------------------------------
def _background() -> np.ndarray:
    """A textured grey 640x480 RGB background (a fixed pseudo-random pattern, smoothed)."""
    import cv2

    noise = np.random.default_rng(7).integers(60, 200, (FRAME_H // 8, FRAME_W // 8), dtype=np.uint8)
    grey = cv2.resize(noise, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _paste(frame: np.ndarray, face: np.ndarray, x: int, y: int) -> None:
    """Pastes ``face`` (RGB) with its top-left corner at (x, y), clipped to the frame."""
    h, w = face.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, FRAME_W), min(y + h, FRAME_H)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = face[y0 - y:y1 - y, x0 - x:x1 - x]


def walkers(n: int) -> set[str]:
    """The ORL people who appear in the first ``n`` frames of :func:`compose_frames`."""
    passes = range((n + PASS_FRAMES - 1) // PASS_FRAMES)
    return ({PEOPLE[w % len(PEOPLE)] for w in passes}
            | {PEOPLE[(w + 7) % len(PEOPLE)] for w in passes if w % 2})


def iter_frames(faces: dict[str, list[np.ndarray]], n: int) -> Iterator[np.ndarray]:
    """``n`` 640x480 RGB frames of ORL people walking across (see the module docstring), made one at a
    time so the benchmark's memory figure is the kiosk's, not a buffer of frames."""
    import cv2

    background = _background()
    scaled = {p: [cv2.resize(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), None, fx=FACE_SCALE, fy=FACE_SCALE)
                  for img in faces[p][1:]] for p in PEOPLE}
    for index in range(n):
        walk, step = divmod(index, PASS_FRAMES)
        frame = background.copy()
        face = scaled[PEOPLE[walk % len(PEOPLE)]][step % 9]
        span = FRAME_W - face.shape[1]
        _paste(frame, face, round(step * span / (PASS_FRAMES - 1)), 20)
        if walk % 2:
            other = scaled[PEOPLE[(walk + 7) % len(PEOPLE)]][(step + 3) % 9]
            _paste(frame, other, round(span - step * span / (PASS_FRAMES - 1)), FRAME_H - other.shape[0] - 10)
        yield frame


def compose_frames(faces: dict[str, list[np.ndarray]], n: int) -> list[np.ndarray]:
    """:func:`iter_frames` as a list (tests)."""
    return list(iter_frames(faces, n))


# --- one run ----------------------------------------------------------------------------------------
class Timer:
    """Collects durations (ms) per stage name."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._clock = clock

    def time(self, stage: str, fn: Callable, *args, **kwargs):
        """Calls ``fn(*args, **kwargs)``, records how long it took under ``stage``, returns its result."""
        start = self._clock()
        result = fn(*args, **kwargs)
        self.samples[stage].append((self._clock() - start) * 1000)
        return result

    def summary(self) -> dict[str, dict]:
        """Per stage: calls, p50 and p95 in ms (None when the stage never ran)."""
        out = {}
        for stage in STAGES:
            values = np.array(self.samples.get(stage, []))
            out[stage] = {"n": len(values),
                          "p50_ms": round(float(np.percentile(values, 50)), 2) if len(values) else None,
                          "p95_ms": round(float(np.percentile(values, 95)), 2) if len(values) else None}
        return out


def enrol(stack: Stack, faces: dict[str, list[np.ndarray]]) -> Gallery:
    """The roster gallery: shot 1 of each bench person, padded, detected and embedded by ``stack``."""
    from kiosk.datasets import orl_padded_rgb

    vectors = {p: stack.embed_best_face(orl_padded_rgb(faces[p][0], ORL_PAD)) for p in PEOPLE}
    return Gallery.from_vectors({p: v[None] for p, v in vectors.items() if v is not None})


class _TimedDetector:
    """A detector whose ``detect`` is timed under "detect"."""

    def __init__(self, detector, timer: Timer):
        self._detector, self._timer = detector, timer

    def detect(self, frame_rgb: np.ndarray) -> list:
        return self._timer.time("detect", self._detector.detect, frame_rgb)

    def close(self) -> None:
        self._detector.close()


class _TimedEmbedder:
    """An embedder whose ``align`` is timed under "align" and ``embed`` under "embed" (per call) and
    "embed_face" (the call's time divided among its faces)."""

    def __init__(self, embedder, timer: Timer):
        self._embedder, self._timer = embedder, timer
        self.method, self.dim = embedder.method, embedder.dim

    def align(self, frame_rgb: np.ndarray, detection) -> np.ndarray:
        return self._timer.time("align", self._embedder.align, frame_rgb, detection)

    def embed(self, aligned: list[np.ndarray]) -> np.ndarray:
        vectors = self._timer.time("embed", self._embedder.embed, aligned)
        if aligned:
            self._timer.samples["embed_face"] += [self._timer.samples["embed"][-1] / len(aligned)] * len(aligned)
        return vectors

    def close(self) -> None:
        self._embedder.close()


class _TimedEngine(Engine):
    """The kiosk's :class:`Engine` on a stack's detector and embedder, each part timed, and its quality
    gate (``_assess``, called by ``faces`` for every detected face) timed under "quality"."""

    def __init__(self, stack: Stack, gate: Gate, timer: Timer):
        super().__init__(_TimedDetector(stack.detector, timer), _TimedEmbedder(stack.embedder, timer), gate)
        self._timer = timer

    def _assess(self, frame_rgb: np.ndarray, det):
        return self._timer.time("quality", super()._assess, frame_rgb, det)


class _ReplayClock:
    """The replay's time (s), set per frame: the figures do not depend on how fast the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay(engine, frames: Iterable[np.ndarray], settings, gallery: Gallery, calibration: Calibration, *,
           timer: Timer | None = None, match: Callable = best_match) -> tuple[list[TrackEvent], Counters]:
    """``frames`` through the kiosk's own step (:meth:`FrameStep.for_class`: the Pipeline's tracker,
    decider, gating and batching) at :data:`REPLAY_FPS` replay time, each whole frame timed under
    "frame" by ``timer``; at the end the tracks still in view leave (their last-chance decisions count).
    Returns every decision in order and the step's counters."""
    timer = timer or Timer()
    clock, events = _ReplayClock(), []
    step = FrameStep.for_class(settings, engine, calibration, clock=clock, gallery=lambda: gallery,
                               on_event=events.append, match=match)
    count = 0
    for count, frame in enumerate(frames, start=1):
        clock.now = (count - 1) / REPLAY_FPS
        timer.time("frame", step, frame)
    clock.now = count / REPLAY_FPS
    events += [e for t in step.tracker.end_all() if (e := step.decider.end(t, now=clock.now))]
    return events, step.counters


def run_stack(stack: Stack, faces: dict[str, list[np.ndarray]], n_frames: int, settings) -> dict:
    """Times the kiosk's step over ``n_frames`` replay frames with one stack; returns its figures.

    ``fps`` is frames / seconds spent processing them (composing a frame is not counted: a camera
    delivers it); ``stages["frame"]`` is the time of one whole frame (detect to decision). The stack
    keeps owning its models (it closes them), not the engine made of them here."""
    gallery = enrol(stack, faces)
    timer = Timer()
    engine = _TimedEngine(stack, Gate(settings.min_face_px, settings.min_sharpness, settings.max_yaw), timer)
    events, counters = replay(engine, iter_frames(faces, n_frames), settings, gallery,
                              Calibration.load(stack.embedder.method), timer=timer,
                              match=functools.partial(timer.time, "match", best_match))
    elapsed = sum(timer.samples["frame"]) / 1000
    return {"method": stack.embedder.method, "stages": timer.summary(), "frames": n_frames,
            "seconds": round(elapsed, 3), "fps": round(n_frames / elapsed, 2),
            "tracks": counters.faces_seen, "embeddings": counters.embeddings,
            "decisions": dict(Counter(e.kind for e in events)),
            "recognised_not_in_replay": sum(e.kind == "recognised" and e.user_id not in walkers(n_frames)
                                            for e in events),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench(settings, n_frames: int, baseline: bool, latency_walkers: int = 0, sweep: bool = False) -> dict:
    """The whole benchmark (see the module docstring) as a JSON-ready dict; the headline keys are
    ``frames``, ``detector``, ``detect_ms_p50``, ``embed_ms_p50`` (per face), ``embed_call_ms_p50``
    (per embedder call of 1-2 faces), ``frame_ms_p50``, ``fps``,
    ``peak_rss_mb``, ``baseline`` ({"fps", "frame_ms_p50"} or None), ``speedup_vs_baseline`` (None
    without the baseline), ``post_latency_ms`` (None when ``latency_walkers`` is 0) and
    ``detection_sweep`` (None unless ``sweep``). Raises
    BaselineUnavailable before any work when ``baseline`` is asked for but not installed."""
    from kiosk.datasets import orl_faces
    from kiosk.model.baseline import require

    if baseline:
        require()
    faces = orl_faces(settings)
    report = {"frame_size": [FRAME_W, FRAME_H], "frames": n_frames, "threads": settings.threads,
              "detector": settings.detector, "runs": {}}
    for choice in ("mobilefacenet", "dlib") if baseline else ("mobilefacenet",):
        with open_stack(settings, choice) as stack:
            report["runs"][choice] = run_stack(stack, faces, n_frames, settings)
    report.update(headline(report["runs"]))
    report["as_configured"] = None
    if settings.detect_roi or settings.detect_tiles > 1:
        # The runs above detect on the whole frame (like the baseline); the kiosk runs with ROI/tiles.
        with open_stack(settings, as_configured=True) as stack:
            run = run_stack(stack, faces, n_frames, settings)
        report["as_configured"] = {"detect_roi": settings.detect_roi, "detect_tiles": settings.detect_tiles,
                                   "fps": run["fps"], "detect_ms_p50": run["stages"]["detect"]["p50_ms"],
                                   "frame_ms_p50": run["stages"]["frame"]["p50_ms"]}
    report["post_latency_ms"] = post_latency(settings, faces, latency_walkers) if latency_walkers else None
    report["detection_sweep"] = detection_sweep(settings, faces) if sweep else None
    return report


def headline(runs: dict[str, dict]) -> dict:
    """The headline figures of the kiosk's stack and, when it ran, the dlib baseline."""
    ours = runs["mobilefacenet"]
    stages = ours["stages"]
    base = runs.get("dlib")
    return {"detect_ms_p50": stages["detect"]["p50_ms"], "embed_ms_p50": stages["embed_face"]["p50_ms"],
            "embed_call_ms_p50": stages["embed"]["p50_ms"], "frame_ms_p50": stages["frame"]["p50_ms"],
            "fps": ours["fps"], "peak_rss_mb": ours["peak_rss_mb"],
            "baseline": None if base is None else {"fps": base["fps"], "peak_rss_mb": base["peak_rss_mb"],
                                                   "frame_ms_p50": base["stages"]["frame"]["p50_ms"]},
            "speedup_vs_baseline": None if base is None else round(ours["fps"] / base["fps"], 2)}


# --- latency from the first frame in view to the post leaving the kiosk ---------------------------------
WALK_FRAMES = 30  # 2 s in view at 15 frames/s
GAP_FRAMES = 12  # empty doorway between walkers, so each track ends
DOOR_FPS = 15.0


class DoorSource(FrameSource):
    """An in-memory camera: ``walkers`` (ORL people) cross the frame one after another at ``fps``.

    ``first_seen[person]`` is the timestamp (monotonic s) of the first frame that shows them, set
    when that frame is delivered. Frames are composed on the fly; nothing touches the disk."""

    def __init__(self, faces: dict[str, list[np.ndarray]], people: list[str], *, fps: float = DOOR_FPS,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__("bench door replay")
        self._faces, self._people = faces, people
        self._pacer = Pacer(fps, clock=clock)
        self._background = _background()
        self._index = 0
        self.first_seen: dict[str, float] = {}

    def _open(self) -> None:
        pass

    def _read(self) -> Frame | None:
        walk, step = divmod(self._index, WALK_FRAMES + GAP_FRAMES)
        if walk >= len(self._people):
            return None
        image = self._compose(self._people[walk], step)
        taken = self._pacer.wait()
        if step == 0:
            self.first_seen[self._people[walk]] = taken
        frame = Frame(image, taken, self._index)
        self._index += 1
        return frame

    def _compose(self, person: str, step: int) -> np.ndarray:
        """The doorway with ``person`` at ``step`` of their walk (empty during the gap)."""
        import cv2

        frame = self._background.copy()
        if step < WALK_FRAMES:
            shots = self._faces[person][4:]  # shots 5-10: never the enrolment photos
            face = cv2.resize(cv2.cvtColor(shots[step % len(shots)], cv2.COLOR_GRAY2RGB), None,
                              fx=FACE_SCALE, fy=FACE_SCALE)
            _paste(frame, face, round(step * (FRAME_W - face.shape[1]) / (WALK_FRAMES - 1)), 20)
        return frame

    def interrupt(self) -> None:
        self._pacer.interrupt()

    def _close(self) -> None:
        self._pacer.interrupt()


def post_latency(settings, faces: dict[str, list[np.ndarray]], n_walkers: int, *, timeout: float = 20.0) -> dict:
    """Runs the kiosk's Pipeline + ClassSession + Outbox + WiutClient against the sandbox API on
    127.0.0.1 (the demo class: kiosk.demo_data) while ``n_walkers`` enrolled roster students cross a
    15 frames/s replay, and measures, per walker, from the timestamp of the first frame showing them
    to the moment their SetAttendanceStudent call leaves the client. Returns ms figures (p50, max,
    each walker's) and the walkers never posted within ``timeout`` s after the replay."""
    import tempfile
    from datetime import datetime

    from kiosk import demo_data
    from kiosk.attendance import ClassSession
    from kiosk.model.engine import Engine
    from kiosk.outbox import Outbox
    from kiosk.pipeline import Pipeline
    from kiosk.wiut.client import WiutClient
    from kiosk.wiut.sandbox import SandboxServer

    people = [demo_data.WALKERS[i % len(demo_data.WALKERS)] for i in range(n_walkers)]
    state, demo = demo_data.build_state(datetime.now(settings.tz))
    posted: dict[str, float] = {}
    source = DoorSource(faces, people)
    with (SandboxServer(state).start() as server, WiutClient(server.url, timeout=5.0) as client,
          Engine.from_settings(settings) as engine, tempfile.TemporaryDirectory() as spool_dir):
        client.login(demo_data.DEMO_USERNAME, demo_data.DEMO_PASSWORD)
        demo_data.enrol_demo_students(settings, client, engine)
        client.set_attendance = _stamping(client.set_attendance, posted)  # type: ignore[method-assign]
        with Outbox(spool_dir, client_for=lambda teacher: client) as outbox:
            session = ClassSession(client, outbox, teacher=demo_data.DEMO_USERNAME, lesson_guid=demo.lesson_guid,
                                   class_id=demo.class_id, embedding_method=engine.method, undo_seconds=0)
            session.load_roster()
            with Pipeline(settings, engine=engine, source_factory=lambda: source,
                          on_decision=lambda d: session.on_recognised(d.user_id, int(d.confidence))) as pipeline:
                pipeline.start(session.gallery())
                _wait_for_posts(posted, {demo_data.user_id_of(p) for p in people}, source, len(people), timeout)
    return _latency_figures(people, source.first_seen, posted, demo_data.user_id_of)


def _stamping(send: Callable, posted: dict[str, float]) -> Callable:
    """``send`` (WiutClient.set_attendance) noting the monotonic time each user's first call leaves."""
    def wrapper(class_id: int, user_id: str, confidence: int) -> None:
        posted.setdefault(user_id, time.monotonic())
        return send(class_id, user_id, confidence)

    return wrapper


def _wait_for_posts(posted: dict[str, float], expected: set[str], source: DoorSource, walkers_n: int,
                    timeout: float) -> None:
    """Waits until every expected user posted, or ``timeout`` s after the replay's last walker appeared."""
    deadline = None
    while not expected <= set(posted):
        if deadline is None and len(source.first_seen) == walkers_n:
            deadline = time.monotonic() + (WALK_FRAMES + GAP_FRAMES) / DOOR_FPS + timeout
        if deadline is not None and time.monotonic() > deadline:
            return
        time.sleep(0.02)


def _latency_figures(people: list[str], first_seen: dict[str, float], posted: dict[str, float],
                     user_id_of: Callable[[str], str]) -> dict:
    """ms from first frame to post per walker (a walker who walks twice counts once: the first time)."""
    each = {p: round((posted[user_id_of(p)] - first_seen[p]) * 1000, 1)
            for p in dict.fromkeys(people) if p in first_seen and user_id_of(p) in posted}
    values = np.array(list(each.values()))
    return {"fps": DOOR_FPS, "walkers": len(set(people)), "posted": len(each),
            "p50_ms": round(float(np.percentile(values, 50)), 1) if len(values) else None,
            "max_ms": round(float(values.max()), 1) if len(values) else None,
            "each_ms": list(each.values()), "never_posted": len(set(people)) - len(each)}


# --- small faces: which detector set-up finds a face 30-60 px wide in a doorway ----------------------
SWEEP_SIZES = (30, 40, 60, 100)  # ORL photo width in frame pixels (the detector's box is ~0.85x that)
DOOR_ROI = (0.25, 0.0, 0.5, 1.0)  # the centre half of the frame: a doorway seen from the side wall
SWEEP_SETUPS = (("full", None, 1), ("full", None, 2), ("full", DOOR_ROI, 1), ("full", DOOR_ROI, 2),
                ("short", None, 1), ("short", DOOR_ROI, 2))


def doorway_frame(face_grey: np.ndarray, width_px: int, centre: tuple[int, int] = (320, 220)) -> tuple:
    """A plain 640x480 RGB frame with an ORL photo (padded 50 px) scaled so the photo is ``width_px``
    wide, centred at ``centre``; returns (frame, the photo's box in the frame)."""
    import cv2

    from kiosk.datasets import orl_padded_rgb

    frame = np.full((FRAME_H, FRAME_W, 3), (120, 110, 100), np.uint8)
    scale = width_px / face_grey.shape[1]
    padded = orl_padded_rgb(face_grey, pad=ORL_PAD)
    small = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    x0, y0 = centre[0] - w // 2, centre[1] - h // 2
    frame[y0:y0 + h, x0:x0 + w] = small
    pad = ORL_PAD * scale
    return frame, (x0 + pad, y0 + pad, x0 + pad + width_px, y0 + pad + face_grey.shape[0] * scale)


def detection_sweep(settings, faces: dict[str, list[np.ndarray]]) -> list[dict]:
    """Per detector set-up and face size: the share of the 40 ORL people (shot 1) found on their face
    (a box overlapping the photo's face region), boxes found elsewhere, and detect p50 ms."""
    from kiosk.model.detector import VARIANTS, BlazeFaceDetector
    from kiosk.tracker import iou

    rows = []
    for variant, roi, tiles in SWEEP_SETUPS:
        path = f"{settings.models_dir}/{VARIANTS[variant].file_name}"
        with BlazeFaceDetector(path, variant=variant, threshold=settings.detect_threshold, roi=roi,
                               tiles=tiles) as detector:
            timer = Timer()
            for size in SWEEP_SIZES:
                found = elsewhere = 0
                for person in sorted(faces, key=lambda p: int(p[1:])):
                    frame, face_box = doorway_frame(faces[person][0], size)
                    boxes = [d.box for d in timer.time("detect", detector.detect, frame)]
                    hits = [b for b in boxes if iou(b, face_box) > 0.2]
                    found += bool(hits)
                    elsewhere += len(boxes) - len(hits)
                rows.append({"detector": variant, "roi": roi is not None, "tiles": tiles, "face_px": size,
                             "found": found, "faces": len(faces), "rate": round(found / len(faces), 3),
                             "boxes_elsewhere": elsewhere})
            for row in rows[-len(SWEEP_SIZES):]:
                row["detect_ms_p50"] = timer.summary()["detect"]["p50_ms"]
    return rows


def format_sweep(rows: list[dict]) -> str:
    """The sweep as a table: one line per set-up, the detection rate per face size."""
    setups = list(dict.fromkeys((r["detector"], r["roi"], r["tiles"]) for r in rows))
    lines = ["detection rate on ORL faces in a 640x480 doorway (photo width px): "
             + "  ".join(f"{s:>4}" for s in SWEEP_SIZES) + "   detect p50   boxes elsewhere"]
    for variant, roi, tiles in setups:
        mine = [r for r in rows if (r["detector"], r["roi"], r["tiles"]) == (variant, roi, tiles)]
        name = f"{variant}{' + ROI' if roi else ''}{f' + tiles {tiles}x{tiles}' if tiles > 1 else ''}"
        lines.append(f"  {name:<62}" + "  ".join(f"{100 * r['rate']:>3.0f}%" for r in mine)
                     + f"   {mine[0]['detect_ms_p50']:>6} ms   {sum(r['boxes_elsewhere'] for r in mine)}")
    return "\n".join(lines)


# --- the command ------------------------------------------------------------------------------------
def format_report(report: dict) -> str:
    """Plain-text figures of :func:`bench`'s report."""
    lines = [f"{report['frames']} frames of {report['frame_size'][0]}x{report['frame_size'][1]}, "
             f"detector {report['detector']} on the whole frame, {report['threads']} thread(s), "
             "each frame through the kiosk's own step (kiosk.pipeline.FrameStep)"]
    for name, run in report["runs"].items():
        lines.append(f"{name} ({run['method']}): {run['fps']} frames/s end to end, {run['tracks']} tracks, "
                     f"{run['embeddings']} faces embedded, decisions {run['decisions']} "
                     f"({run['recognised_not_in_replay']} recognised as someone not in the replay), "
                     f"peak RSS {run['peak_rss_mb']} MB")
        for stage, s in run["stages"].items():
            lines.append(f"  {stage:<10} p50 {s['p50_ms']} ms  p95 {s['p95_ms']} ms  ({s['n']} samples, "
                         f"{STAGE_NOTES[stage]})")
    if (conf := report.get("as_configured")) is not None:
        lines.append(f"as configured (detect_roi {conf['detect_roi'] or 'whole frame'}, detect_tiles "
                     f"{conf['detect_tiles']}): {conf['fps']} frames/s, detect p50 {conf['detect_ms_p50']} ms, "
                     f"frame p50 {conf['frame_ms_p50']} ms")
    if report["speedup_vs_baseline"] is not None:
        lines.append(f"mobilefacenet is {report['speedup_vs_baseline']}x the frame rate of the dlib baseline")
    else:
        from kiosk.model.baseline import missing_note

        lines.append(f"dlib baseline: {missing_note() or 'installed, not run (add --baseline)'}")
    if (lat := report["post_latency_ms"]) is not None:
        lines.append(f"first frame in view -> attendance post leaves ({lat['fps']:g} frames/s, {lat['walkers']} "
                     f"walkers, {lat['posted']} posted): p50 {lat['p50_ms']} ms, max {lat['max_ms']} ms")
    if report["detection_sweep"]:
        lines.append(format_sweep(report["detection_sweep"]))
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of at least 0."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def configure_parser(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one machine-readable JSON object (last line)")
    parser.add_argument("--frames", type=positive_int, default=160, metavar="N", help="frames to replay (default 160)")
    parser.add_argument("--baseline", action="store_true", help="also run the dlib baseline (optional extra)")
    parser.add_argument("--walkers", type=non_negative_int, default=8, metavar="N",
                        help="students crossing a 15 frames/s replay through the whole kiosk and the sandbox API "
                             "to time first frame -> attendance post (default 8; 0 skips it)")
    parser.add_argument("--detection-sweep", action="store_true",
                        help="also measure which detector set-up finds faces 30-100 px wide in a doorway")


def run_command(args, settings) -> int:
    """Prints the figures, or with ``--json`` one JSON object on one line (the last line of stdout)."""
    report = bench(settings, args.frames, args.baseline, args.walkers, args.detection_sweep)
    print(json.dumps(report, separators=(",", ":")) if args.json else format_report(report))
    return 0
