"""Soak: the demo replay on a loop (``replay_loop``, as ``KIOSK_REPLAY_LOOP=1``) for ``SOAK_SECONDS`` (default 600),
classes started and ended every ``SOAK_CLASS_SECONDS`` (default 60) through the page's JSON API, on the
`kiosk run` wiring in this process. Measured: frames processed, RSS growth from minute 2 to the end (at most
20 MB), threads and file descriptors back to their baseline (within 2), frames read = processed + dropped
(+ at most the capture queue). Figures go to ``<results>/soak.json``.

The variables are not KIOSK_* on purpose: those are settings, and unknown ones are refused.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest

from kiosk.wiut.sandbox import SandboxServer
from tests.reliability.harness import KioskUnderTest, Page, kiosk_settings, record, wait_until

pytestmark = pytest.mark.soak
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
CLASS_SECONDS = float(os.environ.get("SOAK_CLASS_SECONDS", "60"))
QUEUE_SIZE = 2  # kiosk.camera.capture.CaptureThread's queue: frames read but not yet taken when a class ends
MARK_KEYS = ("expected", "delivered", "duplicates", "wrong")
OTHER_WEEK = 61001  # the demo slot's other teaching week: classes alternate between the two


def rss_mb() -> float:
    """Resident set size of this process in MB (VmRSS)."""
    with open("/proc/self/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return kb / 1024


def threads_and_fds() -> tuple[int, int]:
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def settled(baseline: tuple[int, int], slack: int = 2) -> bool:
    now = threads_and_fds()
    return all(n <= b + slack for n, b in zip(now, baseline, strict=True))


@pytest.mark.timeout(SOAK_SECONDS + 300)  # the project's 300 s per-test limit would cut the soak short
def test_soak_classes_on_a_looping_replay(world, face_settings, engine, tmp_path):
    weeks = [world.demo, dataclasses.replace(world.demo, class_id=OTHER_WEEK)]
    with SandboxServer(world.state) as api:
        settings = kiosk_settings(face_settings, api.url, tmp_path, replay_loop=True)
        with KioskUnderTest(settings, engine) as kiosk, Page(kiosk.url) as page:
            assert page.login().status_code == 200
            page.status()
            time.sleep(1)
            baseline = threads_and_fds()
            started = time.monotonic()
            samples: list[tuple[float, float]] = []
            classes, frames, problems = [], 0, []
            while time.monotonic() - started < SOAK_SECONDS:
                demo = weeks[len(classes) % 2]
                answer = page.start(demo)
                assert answer.status_code == 201, answer.text
                class_end = min(time.monotonic() + CLASS_SECONDS, started + SOAK_SECONDS)
                while time.monotonic() < class_end:
                    time.sleep(min(5.0, max(0.0, class_end - time.monotonic())))
                    samples.append((round(time.monotonic() - started, 1), round(rss_mb(), 1)))
                stats = kiosk.pipeline.stats()
                assert page.end().status_code == 200
                missed = stats["camera_frames"] - stats["frames"] - stats["dropped"]
                classes.append({"class_id": demo.class_id, "read": stats["camera_frames"],
                                "processed": stats["frames"], "dropped": stats["dropped"], "missed": missed,
                                "fps": stats["fps"], "frame_errors": stats["frame_errors"]})
                frames += stats["frames"]
                if not 0 <= missed <= QUEUE_SIZE:
                    problems.append(classes[-1])
                time.sleep(1)
            elapsed = time.monotonic() - started
            wait_until(lambda: kiosk.services.outbox.status()["pending"] == 0, 30)
            back = wait_until(lambda: settled(baseline), 30, every=0.5)
            after = threads_and_fds()
            thread_names = sorted(t.name for t in threading.enumerate())
    from_minute = min(120.0, elapsed / 3)
    after_2min = [rss for t, rss in samples if t >= from_minute]
    growth = round(after_2min[-1] - after_2min[0], 1) if len(after_2min) >= 2 else 0.0
    marks = {cid: world.figures(cid, set(world.demo.expected_present)) for cid in (world.demo.class_id, OTHER_WEEK)}
    arenas = os.environ.get("MALLOC_ARENA_MAX")
    record("soak", "looping replay" + (f", MALLOC_ARENA_MAX={arenas}" if arenas else ""), {
        "malloc_arena_max": arenas, "class_seconds": CLASS_SECONDS,
        "seconds": round(elapsed), "classes": len(classes), "frames_processed": frames,
        "frames_dropped": sum(c["dropped"] for c in classes), "frames_missed": sum(c["missed"] for c in classes),
        "mean_fps": round(frames / max(elapsed, 1e-9), 2), "rss_mb_first": samples[0][1], "rss_mb_last": samples[-1][1],
        "rss_growth_from_minute": round(from_minute / 60, 1), "rss_growth_mb": growth,
        "threads_fds_baseline": baseline, "threads_fds_after": after, "back_to_baseline": back,
        "marks": {str(k): {x: v[x] for x in MARK_KEYS} for k, v in marks.items()},
        "rss_samples": samples[:: max(1, len(samples) // 40)], "per_class": classes})
    assert classes and frames > 0
    assert not problems, problems
    assert growth <= 20.0, (growth, samples)
    assert back, (baseline, after, thread_names)
    for figures in marks.values():
        assert figures["delivered"] == figures["expected"] and figures["duplicates"] == 0 and figures["wrong"] == 0
