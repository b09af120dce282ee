"""``kiosk bench``: per-stage latency, frames per second with tracking, and peak memory.

A replay of real faces is composed in memory (never written to disk): 640x480 frames on which ORL
people s21-s40 walk across, one person per pass, and every second pass a second person in the
other direction lower in the frame. Each walker's face is an ORL photo (shots 2-10 in turn) scaled
1.5x (face ~100 px wide). The roster is those 20 people, enrolled from shot 1 through the same stack.

Each frame goes through what the kiosk does: detect, track (IoU), and for every track that still
wants votes: align, quality gate, embed, match, decide. Reported: p50/p95 ms per stage (``detect``,
``align``, ``quality``, ``embed``, ``match``), end-to-end frames per second over the whole loop,
tracks and decisions, and the process's peak RSS (``resource.getrusage``, MB; a peak, so a later
stack's figure includes the earlier one). ``--baseline`` runs the same frames through dlib (same
tracker and gates) and prints the speed ratio. No pass/fail: the machine decides the figures.

Example::

    kiosk bench --frames 150
    kiosk bench --json --baseline
"""

from __future__ import annotations

import json
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from kiosk.model.calibrate import ORL_PAD, Stack, open_stack
from kiosk.model.match import Calibration, Gallery, best_match
from kiosk.tracker import Decider, IoUTracker

FRAME_W, FRAME_H = 640, 480
PASS_FRAMES = 40
FACE_SCALE = 1.5
PEOPLE = tuple(f"s{i}" for i in range(21, 41))
STAGES = ("detect", "align", "quality", "embed", "match")


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


def compose_frames(faces: dict[str, list[np.ndarray]], n: int) -> list[np.ndarray]:
    """``n`` 640x480 RGB frames of ORL people walking across (see the module docstring)."""
    import cv2

    background = _background()
    scaled = {p: [cv2.resize(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), None, fx=FACE_SCALE, fy=FACE_SCALE)
                  for img in faces[p][1:]] for p in PEOPLE}
    frames = []
    for index in range(n):
        walk, step = divmod(index, PASS_FRAMES)
        frame = background.copy()
        face = scaled[PEOPLE[walk % len(PEOPLE)]][step % 9]
        span = FRAME_W - face.shape[1]
        _paste(frame, face, round(step * span / (PASS_FRAMES - 1)), 20)
        if walk % 2:
            other = scaled[PEOPLE[(walk + 7) % len(PEOPLE)]][(step + 3) % 9]
            _paste(frame, other, round(span - step * span / (PASS_FRAMES - 1)), FRAME_H - other.shape[0] - 10)
        frames.append(frame)
    return frames


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


def _frame_step(stack: Stack, frame: np.ndarray, tracker: IoUTracker, decider: Decider, gallery: Gallery,
                timer: Timer, settings, now: float) -> list:
    """One frame through detect, track, gate, embed, match, decide; returns the decision events."""
    from kiosk.model.quality import assess

    events = []
    update = tracker.update(timer.time("detect", stack.detector.detect, frame), now=now)
    for track, det in update.matched:
        if not decider.wants(track):
            continue
        aligned = timer.time("align", stack.embedder.align, frame, det)
        quality = timer.time("quality", assess, frame, det, min_face_px=settings.min_face_px,
                             min_sharpness=settings.min_sharpness, max_yaw=settings.max_yaw,
                             aligned=aligned if aligned.shape[:2] == (112, 112) else None)
        if not quality.ok:
            continue
        vector = timer.time("embed", stack.embedder.embed, [aligned])[0]
        event = decider.observe(track, timer.time("match", best_match, vector, gallery), now=now)
        events += [event] if event else []
    events += [e for t in update.ended if (e := decider.end(t, now=now))]
    return events


def run_stack(stack: Stack, frames: list[np.ndarray], faces: dict[str, list[np.ndarray]], settings) -> dict:
    """Times the whole loop over ``frames`` with one stack; returns its figures."""
    gallery = enrol(stack, faces)
    calibration = Calibration.load(stack.embedder.method)
    tracker = IoUTracker(max_missed=3)
    decider = Decider(calibration, min_margin=settings.min_margin, votes_needed=settings.votes_needed,
                      max_embeddings=max(settings.max_track_embeddings, settings.votes_needed))
    timer, events = Timer(), []
    start = time.perf_counter()
    for index, frame in enumerate(frames):
        events += _frame_step(stack, frame, tracker, decider, gallery, timer, settings, now=index / 15)
    events += [e for t in tracker.end_all() if (e := decider.end(t, now=len(frames) / 15))]
    elapsed = time.perf_counter() - start
    return {"method": stack.embedder.method, "stages": timer.summary(), "frames": len(frames),
            "seconds": round(elapsed, 3), "fps": round(len(frames) / elapsed, 2),
            "tracks": max([e.track_id for e in events], default=0),
            "decisions": dict(Counter(e.kind for e in events)),
            "recognised_not_in_replay": sum(e.kind == "recognised" and e.user_id not in walkers(len(frames))
                                            for e in events),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench(settings, n_frames: int, baseline: bool) -> dict:
    """The whole benchmark (see the module docstring) as a JSON-ready dict."""
    from kiosk.datasets import orl_faces

    faces = orl_faces(settings)
    frames = compose_frames(faces, n_frames)
    report = {"frame_size": [FRAME_W, FRAME_H], "frames": n_frames, "threads": settings.threads,
              "detector": settings.detector, "runs": {}}
    for choice in ("mobilefacenet", "dlib") if baseline else ("mobilefacenet",):
        with open_stack(settings, choice) as stack:
            report["runs"][choice] = run_stack(stack, frames, faces, settings)
    if baseline:
        runs = report["runs"]
        report["speed_ratio"] = round(runs["mobilefacenet"]["fps"] / runs["dlib"]["fps"], 2)
    return report


def format_report(report: dict) -> str:
    """Plain-text figures of :func:`bench`'s report."""
    lines = [f"{report['frames']} frames of {report['frame_size'][0]}x{report['frame_size'][1]}, "
             f"detector {report['detector']}, {report['threads']} thread(s)"]
    for name, run in report["runs"].items():
        lines.append(f"{name} ({run['method']}): {run['fps']} frames/s end to end, {run['tracks']} tracks, "
                     f"decisions {run['decisions']} ({run['recognised_not_in_replay']} recognised as someone "
                     f"not in the replay), peak RSS {run['peak_rss_mb']} MB")
        for stage, s in run["stages"].items():
            lines.append(f"  {stage:<8} p50 {s['p50_ms']} ms  p95 {s['p95_ms']} ms  ({s['n']} calls)")
    if "speed_ratio" in report:
        lines.append(f"mobilefacenet is {report['speed_ratio']}x the frame rate of the dlib baseline")
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def configure_parser(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    parser.add_argument("--frames", type=positive_int, default=160, metavar="N", help="frames to replay (default 160)")
    parser.add_argument("--baseline", action="store_true", help="also run the dlib baseline (optional extra)")


def run_command(args, settings) -> int:
    report = bench(settings, args.frames, args.baseline)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
