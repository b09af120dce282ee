"""`kiosk bench`: the replay it composes, and a short real run that prints every figure."""

import json

import numpy as np
import pytest

from kiosk import cli
from kiosk.bench import PASS_FRAMES, STAGES, Timer, compose_frames, walkers


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


@pytest.mark.slow
def test_kiosk_bench_json_prints_every_figure(capsys, orl, models_dir, monkeypatch):
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    assert cli.main(["bench", "--json", "--frames", "20"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frame_size"] == [640, 480] and report["frames"] == 20
    run = report["runs"]["mobilefacenet"]
    assert {"stages", "fps", "tracks", "decisions", "peak_rss_mb", "seconds"} <= set(run)
    assert set(run["stages"]) == set(STAGES)
    assert run["stages"]["detect"]["n"] == 20
    assert run["fps"] > 0 and run["peak_rss_mb"] > 0
    assert run["tracks"] >= 1 and run["recognised_not_in_replay"] == 0
