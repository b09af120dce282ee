"""`kiosk bench`: the replay it composes, that it runs the Pipeline's own per-frame step, and a short
real run that prints every figure."""

import json

import numpy as np
import pytest

from kiosk import cli, datasets
from kiosk.bench import (
    GAP_FRAMES,
    PASS_FRAMES,
    STAGES,
    WALK_FRAMES,
    DoorSource,
    Timer,
    _latency_figures,
    _TimedEngine,
    compose_frames,
    detection_sweep,
    doorway_frame,
    format_sweep,
    headline,
    replay,
    walkers,
)
from kiosk.config import load_settings
from kiosk.model.calibrate import Stack
from kiosk.model.engine import Gate
from kiosk.pipeline import Pipeline
from tests.helpers import wait_until, without_dlib
from tests.test_pipeline import (
    CALIBRATION,
    ENROLLED,
    STRANGER,
    TWO_PEOPLE,
    FakeEngine,
    Recorder,
    ScriptedCapture,
    gallery,
    image,
    walk_past,
)


def fake_faces():
    rng = np.random.default_rng(1)
    return {f"s{i}": [rng.integers(0, 255, (112, 92), dtype=np.uint8) for _ in range(10)] for i in range(1, 41)}


def test_replay_frames_are_640x480_rgb_and_faces_walk_across():
    frames = compose_frames(fake_faces(), PASS_FRAMES)
    assert len(frames) == PASS_FRAMES
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in frames)
    first, last = frames[0], frames[-1]
    assert not np.array_equal(first[20:188, :138], last[20:188, :138])  # the face left the left edge
    assert walkers(PASS_FRAMES) == {"s21"}
    assert walkers(2 * PASS_FRAMES) == {"s21", "s22", "s29"}  # the second pass has two people


def test_timer_reports_p50_p95_per_stage():
    ticks = iter([0.0, 0.001, 0.0, 0.003])
    timer = Timer(clock=lambda: next(ticks))
    assert timer.time("detect", lambda x: x + 1, 1) == 2
    timer.time("detect", lambda: None)
    summary = timer.summary()
    assert set(summary) == set(STAGES)
    assert summary["detect"]["n"] == 2 and summary["detect"]["p50_ms"] == pytest.approx(2.0)
    assert summary["embed"] == {"n": 0, "p50_ms": None, "p95_ms": None}


def test_door_source_notes_when_each_walker_first_appears_and_then_ends():
    ticks = iter(range(1000))
    source = DoorSource(fake_faces(), ["s21", "s22"], fps=0, clock=lambda: float(next(ticks)))
    with source:
        frames = list(iter(source.read, None))
    assert len(frames) == 2 * (WALK_FRAMES + GAP_FRAMES)
    assert all(f.image.shape == (480, 640, 3) for f in frames)
    assert source.first_seen == {"s21": frames[0].timestamp, "s22": frames[WALK_FRAMES + GAP_FRAMES].timestamp}
    empty = frames[WALK_FRAMES].image
    assert np.array_equal(empty, frames[-1].image)  # the doorway is empty between walkers
    assert not np.array_equal(frames[0].image, empty)


def test_latency_is_from_first_frame_to_the_post_and_missing_posts_are_counted():
    first_seen = {"s1": 10.0, "s2": 20.0, "s3": 30.0}
    posted = {"u1": 10.2, "u2": 20.5}
    figures = _latency_figures(["s1", "s2", "s3", "s1"], first_seen, posted, lambda p: "u" + p[1:])
    assert figures["each_ms"] == [200.0, 500.0]
    assert (figures["p50_ms"], figures["max_ms"]) == (350.0, 500.0)
    assert (figures["walkers"], figures["posted"], figures["never_posted"]) == (3, 2, 1)


def test_headline_figures_and_the_speed_ratio():
    def run(fps, detect, frame):
        stage = {"detect": {"p50_ms": detect}, "embed": {"p50_ms": 14.0}, "embed_face": {"p50_ms": 9.0},
                 "frame": {"p50_ms": frame}}
        return {"fps": fps, "stages": stage, "peak_rss_mb": 120.0}

    ours = headline({"mobilefacenet": run(90.0, 5.0, 6.0)})
    assert ours["baseline"] is None and ours["speedup_vs_baseline"] is None
    assert (ours["embed_ms_p50"], ours["embed_call_ms_p50"]) == (9.0, 14.0)  # per face, per embedder call
    both = headline({"mobilefacenet": run(90.0, 5.0, 6.0), "dlib": run(15.0, 40.0, 45.0)})
    assert both["speedup_vs_baseline"] == 6.0
    assert both["baseline"]["fps"] == 15.0 and both["baseline"]["frame_ms_p50"] == 45.0
    assert (both["fps"], both["detect_ms_p50"], both["frame_ms_p50"]) == (90.0, 5.0, 6.0)


def test_bench_baseline_without_dlib_says_how_to_install_before_any_work(capsys, monkeypatch):
    without_dlib(monkeypatch)
    monkeypatch.setattr(datasets, "orl_faces", lambda settings: pytest.fail("the benchmark ran"))
    assert cli.main(["bench", "--baseline", "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "dlib baseline is not installed" in err and "pip install 'kiosk[baseline]'" in err


@pytest.mark.slow
def test_kiosk_bench_json_prints_every_figure(capsys, orl, models_dir, monkeypatch):
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    assert cli.main(["bench", "--json", "--frames", "20", "--walkers", "2"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["frame_size"] == [640, 480] and report["frames"] == 20 and report["detector"] == "full"
    for key in ("detect_ms_p50", "embed_ms_p50", "frame_ms_p50", "fps", "peak_rss_mb"):
        assert report[key] > 0, key
    assert report["baseline"] is None and report["speedup_vs_baseline"] is None
    run = report["runs"]["mobilefacenet"]
    assert set(run["stages"]) == set(STAGES)
    assert run["stages"]["detect"]["n"] == run["stages"]["frame"]["n"] == 20
    assert run["tracks"] >= 1 and run["recognised_not_in_replay"] == 0
    latency = report["post_latency_ms"]
    # two enrolled roster students cross the door: both are posted, each after their first frame
    assert (latency["walkers"], latency["posted"], latency["never_posted"]) == (2, 2, 0)
    assert all(ms > 0 for ms in latency["each_ms"]) and latency["max_ms"] >= latency["p50_ms"]


def test_doorway_frame_places_the_face_where_it_says():
    face = np.zeros((112, 92), np.uint8)
    frame, box = doorway_frame(face, 46)
    assert frame.shape == (480, 640, 3)
    x1, y1, x2, y2 = (round(v) for v in box)
    assert (x2 - x1, y2 - y1) == (46, 56)
    assert frame[(y1 + y2) // 2, (x1 + x2) // 2].tolist() == [0, 0, 0]  # the (black) face is there
    assert frame[5, 5].tolist() == [120, 110, 100]


@pytest.mark.slow
def test_detection_sweep_shows_tiles_and_roi_find_the_small_faces_the_whole_frame_misses(orl, face_settings):
    people = {p: orl[p] for p in ("s1", "s2", "s3", "s4", "s5")}
    rows = detection_sweep(face_settings, people)
    rate = {(r["detector"], r["roi"], r["tiles"], r["face_px"]): r["rate"] for r in rows}
    assert rate[("full", True, 2, 40)] >= 0.8 > rate[("full", False, 1, 40)]
    assert rate[("full", False, 1, 100)] == 1.0
    assert rate[("short", False, 1, 40)] == 0.0
    assert all(r["faces"] == 5 and r["detect_ms_p50"] > 0 for r in rows)
    assert "full + ROI + tiles 2x2" in format_sweep(rows)


# --- the bench runs the kiosk's own per-frame step --------------------------------------------------
def pipeline_decides(settings, engine, frames, roster, calibration=None):
    """What a running Pipeline decides on ``frames``: its recognition events, counters and decisions."""
    bus, capture = Recorder(), ScriptedCapture()
    pipeline = Pipeline(settings, engine=engine, source_factory=lambda: None, on_decision=lambda d: "marked",
                        events=bus, calibration=calibration, capture_factory=lambda factory: capture)
    with pipeline:
        pipeline.start(roster)
        capture.feed(frames)
        assert wait_until(lambda: pipeline.counters.frames + pipeline.counters.frame_errors >= len(frames),
                          timeout=120), "the pipeline stopped processing frames"
        stats = pipeline.stats()
    recognitions = [(d["kind"], d["trackId"], d["userId"], d["confidence"]) for n, d in bus.events
                    if n == "recognition"]
    return recognitions, stats


def bench_decides(events, counters):
    """The same figures from the bench's replay."""
    recognitions = [(e.kind, e.track_id, e.user_id, e.confidence) for e in events if e.kind != "undecided"]
    return recognitions, {"faces_seen": counters.faces_seen, "embeddings": counters.embeddings,
                          "undecided": sum(e.kind == "undecided" for e in events), "frame_errors": 0}


def test_the_bench_replay_decides_what_the_pipeline_decides_on_the_same_frames(tmp_path):
    settings = load_settings(env={"KIOSK_STATE_DIR": str(tmp_path), "KIOSK_VOTES_NEEDED": "3",
                                  "KIOSK_MAX_TRACK_EMBEDDINGS": "6"})
    empty = [image(0)] * 8
    frames = (walk_past(ENROLLED, 14) + empty + [image(TWO_PEOPLE, 20 + 4 * i) for i in range(10)] + empty
              + walk_past(STRANGER, 14) + empty + walk_past(STRANGER, 2) + empty)
    kiosk_engine, bench_engine = FakeEngine(), FakeEngine()
    expected, stats = pipeline_decides(settings, kiosk_engine, frames, gallery(), CALIBRATION)
    events, counters = replay(bench_engine, frames, settings, gallery(), CALIBRATION)
    got, figures = bench_decides(events, counters)
    assert [kind for kind, *_ in expected] == ["recognised", "recognised", "unknown", "unknown"]
    assert got == expected
    assert figures == {key: stats[key] for key in figures}
    assert figures["undecided"] == 1  # the two-frame pass: too few votes
    # the same batching: two people in view share one embedder call of 2
    assert bench_engine.embed_batches == kiosk_engine.embed_batches and 2 in bench_engine.embed_batches
    assert counters.frames == len(frames)


def test_the_timed_engine_times_each_stage_around_the_kiosks_engine():
    ticks = iter(range(10_000))
    timer = Timer(clock=lambda: next(ticks) / 1000)  # every reading 1 ms after the one before
    found = [FakeEngine._det(ENROLLED, 100.0), FakeEngine._det(STRANGER, 300.0)]

    class Detector:
        def detect(self, frame):
            return found

    class Embedder:
        method, dim = "test", 8

        def align(self, frame, det):
            return np.zeros((112, 112, 3), np.uint8)

        def embed(self, aligned):
            return np.zeros((len(aligned), 8), np.float32)

    engine = _TimedEngine(Stack("test", Detector(), Embedder()), Gate(min_face_px=0, min_sharpness=0), timer)
    faces = engine.faces(np.zeros((480, 640, 3), np.uint8))
    assert [det for det, _ in faces] == found
    assert engine.embed(np.zeros((480, 640, 3), np.uint8), [det for det, _ in faces]).shape == (2, 8)
    summary = timer.summary()
    assert {stage: summary[stage]["n"] for stage in ("detect", "quality", "align", "embed", "embed_face")} == {
        "detect": 1, "quality": 2, "align": 2, "embed": 1, "embed_face": 2}
    assert summary["embed_face"]["p50_ms"] == pytest.approx(summary["embed"]["p50_ms"] / 2)


@pytest.mark.slow
def test_the_bench_replay_with_the_real_engine_decides_what_the_pipeline_decides(face_settings, engine, orl):
    from kiosk.bench import _background, enrol
    from kiosk.model.match import Calibration

    stack = Stack("mobilefacenet", engine.detector, engine.embedder)  # the session's engine keeps them open
    roster = enrol(stack, orl)
    frames = compose_frames(orl, 2 * PASS_FRAMES) + [_background()] * 8
    expected, stats = pipeline_decides(face_settings, engine, frames, roster)
    timer = Timer()
    timed = _TimedEngine(stack, engine.gate, timer)
    events, counters = replay(timed, frames, face_settings, roster, Calibration.load(engine.method), timer=timer)
    got, figures = bench_decides(events, counters)
    assert got == expected and figures == {key: stats[key] for key in figures}
    assert {user for kind, _, user, _ in got if kind == "recognised"} <= walkers(2 * PASS_FRAMES)
    assert any(kind == "recognised" for kind, *_ in got), "nobody was recognised: the replay tests nothing"
    summary = timer.summary()
    assert summary["frame"]["n"] == summary["detect"]["n"] == len(frames)
    assert summary["embed_face"]["n"] == counters.embeddings > summary["embed"]["n"] > 0
