"""Tracks (the same face across frames) and the per-track decision by votes.

Pure: no camera, no models, no I/O; time comes from an injected clock (seconds, monotonic).

:class:`IoUTracker` links each frame's face boxes to the tracks of the previous frames by
intersection-over-union with the track's predicted box (constant velocity) or its last box, so a person walking
across the frame stays one track. A track that has no box for more than ``max_missed`` frames ends.

:class:`Decider` turns per-frame matches into at most one decision per track:

- only a track still ``"pending"`` wants embeddings (:meth:`Decider.wants`), at most
  ``max_embeddings`` of them; the caller embeds only crops that passed the quality gate;
- a frame *votes* for a student when :func:`kiosk.model.match.decide` accepts it (confidence > 50 %
  and margin over the runner-up); a track becomes ``"recognised"`` when one student has
  ``votes_needed`` votes and more votes than all other students together. One frame never decides;
- a last chance when the track would otherwise end without a name (it left the view, or used up
  ``max_embeddings``): it is still ``"recognised"`` when its leader has at least 2 votes, *every one*
  at or above ``strong_confidence`` % (83 % = a false-accept rate of 1e-5 per comparison), and no
  other student has a vote. This rescues people whose crossing gave few usable frames (the quality
  gate turned most away) without marking anyone on one frame or on weak agreement. It is part of
  the kiosk's policy (:meth:`Decider.from_settings`); a bare ``Decider(...)`` leaves it off, and
  ``end(track, last_chance=False)`` skips it when the class, not the person, ended the track;
- ``"unknown"`` after ``max_embeddings`` embeddings without such a winner;
- ``"undecided"`` when the track ends while still pending.

A decided track never changes its mind: later frames (a flicker of another identity) are ignored.

Example::

    tracker, decider = IoUTracker(max_missed=5), Decider.from_settings(settings, calibration)
    update = tracker.update(detections)          # detections have .box
    for track, det in update.matched:
        if decider.wants(track) and quality_ok(det):
            event = decider.observe(track, best_match(embed(det), gallery))
    events += [e for t in update.ended if (e := decider.end(t))]
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from kiosk.model.match import Calibration, Match, decide

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
State = Literal["pending", "recognised", "unknown", "undecided"]
Clock = Callable[[], float]
STRONG_CONFIDENCE = 83  # % = FAR 1e-5 per comparison on the committed calibration (see docs/recognition.md)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap or one is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclasses.dataclass(eq=False)
class Track:
    """One face followed across frames. Times are clock seconds; ``box`` is the last seen box.

    ``votes`` counts accepted frames per user ID; ``user_id``/``confidence`` are set once the track
    is ``"recognised"`` (confidence is the median % of the winning votes); ``embeddings_used`` counts
    the embeddings the decider has seen. ``missed`` counts frames since the box was last seen.
    """

    id: int
    box: Box
    first_seen: float
    last_seen: float
    votes: Counter = dataclasses.field(default_factory=Counter)
    state: State = "pending"
    user_id: str | None = None
    confidence: int = 0
    embeddings_used: int = 0
    missed: int = 0
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre movement in px per frame
    vote_confidences: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def predicted_box(self) -> Box:
        """Where the box should be in the next frame, moving at the track's velocity."""
        steps = self.missed + 1
        dx, dy = self.velocity[0] * steps, self.velocity[1] * steps
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


@dataclasses.dataclass(frozen=True)
class TrackUpdate:
    """What one frame did: ``matched`` pairs each live track seen in this frame with its detection
    (new tracks included), ``started`` lists the new tracks, ``ended`` the tracks that just ended."""

    matched: list[tuple[Track, Any]]
    started: list[Track]
    ended: list[Track]


def _box_of(detection: Any) -> Box:
    box = getattr(detection, "box", detection)
    return tuple(float(v) for v in box)  # type: ignore[return-value]


class IoUTracker:
    """Greedy IoU association of boxes to tracks, frame after frame.

    A box's overlap with a track is the larger of its IoU with the track's predicted box (constant
    velocity) and with its last box, so both steady walking and a jittery detector keep one track.

    ``iou_threshold``: the least overlap between a box and a track's predicted box to continue the
    track. ``max_missed``: frames a track may go unseen before it ends. ``clock``: seconds, used
    when :meth:`update` is given no ``now``.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, *, clock: Clock = time.monotonic):
        if not 0 < iou_threshold <= 1:
            raise ValueError("iou_threshold must be in (0, 1].")
        if max_missed < 0:
            raise ValueError("max_missed must be 0 or more.")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._clock = clock
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> list[Track]:
        """The live tracks (a copy of the list)."""
        return list(self._tracks)

    def update(self, detections: Sequence[Any], now: float | None = None) -> TrackUpdate:
        """Feed one frame's detections (objects with ``.box``, or plain boxes); see :class:`TrackUpdate`."""
        now = self._clock() if now is None else now
        boxes = [_box_of(d) for d in detections]
        pairs = self._associate(boxes)
        matched, seen = [], set()
        for track_index, det_index in pairs:
            track = self._tracks[track_index]
            self._advance(track, boxes[det_index], now)
            matched.append((track, detections[det_index]))
            seen.add(id(track))
        ended = self._age(seen)
        started = []
        used = {d for _, d in pairs}
        for index, box in enumerate(boxes):
            if index not in used:
                track = Track(self._next_id, box, now, now)
                self._next_id += 1
                self._tracks.append(track)
                started.append(track)
                matched.append((track, detections[index]))
        return TrackUpdate(matched, started, ended)

    def end_all(self) -> list[Track]:
        """Ends every live track (the camera stopped or the class ended) and returns them."""
        ended, self._tracks = self._tracks, []
        return ended

    def _associate(self, boxes: list[Box]) -> list[tuple[int, int]]:
        """(track index, box index) pairs, best overlap first, each used once."""
        if not boxes or not self._tracks:
            return []
        scores = np.array([[max(iou(t.predicted_box(), b), iou(t.box, b)) for b in boxes] for t in self._tracks])
        pairs, used_t, used_d = [], set(), set()
        for flat in np.argsort(-scores, axis=None, kind="stable"):
            ti, di = divmod(int(flat), len(boxes))
            if scores[ti, di] < self.iou_threshold:
                break
            if ti not in used_t and di not in used_d:
                pairs.append((ti, di))
                used_t.add(ti)
                used_d.add(di)
        return pairs

    @staticmethod
    def _advance(track: Track, box: Box, now: float) -> None:
        steps = track.missed + 1
        old_cx, old_cy = (track.box[0] + track.box[2]) / 2, (track.box[1] + track.box[3]) / 2
        new_cx, new_cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        vx, vy = (new_cx - old_cx) / steps, (new_cy - old_cy) / steps
        track.velocity = (0.5 * track.velocity[0] + 0.5 * vx, 0.5 * track.velocity[1] + 0.5 * vy)
        track.box, track.last_seen, track.missed = box, now, 0

    def _age(self, seen: set[int]) -> list[Track]:
        ended, alive = [], []
        for track in self._tracks:
            if id(track) not in seen:
                track.missed += 1
            (ended if track.missed > self.max_missed else alive).append(track)
        self._tracks = alive
        return ended


@dataclasses.dataclass(frozen=True)
class TrackEvent:
    """A decision about one track: ``kind`` is ``"recognised"`` (``user_id`` and ``confidence`` %
    set), ``"unknown"`` or ``"undecided"`` (``user_id`` None). ``at`` is the clock time in seconds."""

    kind: State
    track_id: int
    user_id: str | None
    confidence: int
    at: float
    embeddings_used: int


class Decider:
    """The voting policy (see the module docstring); holds no tracks itself, only its settings."""

    def __init__(self, calibration: Calibration, *, min_margin: float = 0.05, votes_needed: int = 3,
                 max_embeddings: int = 8, strong_confidence: int | None = None,
                 clock: Clock = time.monotonic):
        """``strong_confidence``: % every vote of a 2-vote last-chance decision must reach; None (the
        constructor's default) turns the last chance off, so only ``votes_needed`` votes recognise.
        :meth:`from_settings` turns it on at :data:`STRONG_CONFIDENCE`."""
        if votes_needed < 2:
            raise ValueError("votes_needed must be at least 2: one frame never decides.")
        if max_embeddings < votes_needed:
            raise ValueError("max_embeddings must be at least votes_needed.")
        self.calibration = calibration
        self.min_margin = min_margin
        self.votes_needed = votes_needed
        self.max_embeddings = max_embeddings
        self.strong_confidence = strong_confidence
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Any, calibration: Calibration, *, clock: Clock = time.monotonic) -> Decider:
        """The kiosk's decider: ``min_margin``, ``votes_needed`` and ``max_track_embeddings`` from the
        settings (the same policy for the pipeline, ``kiosk eval`` and ``kiosk bench``)."""
        return cls(calibration, min_margin=settings.min_margin, votes_needed=settings.votes_needed,
                   max_embeddings=max(settings.max_track_embeddings, settings.votes_needed),
                   strong_confidence=STRONG_CONFIDENCE, clock=clock)

    def wants(self, track: Track) -> bool:
        """True while the track is pending and has had fewer than ``max_embeddings`` embeddings."""
        return track.state == "pending" and track.embeddings_used < self.max_embeddings

    def observe(self, track: Track, match: Match | None, now: float | None = None) -> TrackEvent | None:
        """Counts one embedded frame's match (None: empty roster); returns an event when it decides."""
        if not self.wants(track):
            return None
        track.embeddings_used += 1
        user_id, confidence = decide(match, self.calibration, self.min_margin)
        if user_id is not None:
            track.votes[user_id] += 1
            track.vote_confidences.setdefault(user_id, []).append(confidence)
        winner = self._winner(track)
        if winner is not None:
            track.state, track.user_id = "recognised", winner
            track.confidence = int(np.median(track.vote_confidences[winner]) + 0.5)
            return self._event(track, now)
        if track.embeddings_used >= self.max_embeddings:
            return self._last_chance(track, "unknown", now)
        return None

    def end(self, track: Track, now: float | None = None, *, last_chance: bool = True) -> TrackEvent | None:
        """The track ended: if it was still pending, its last-chance decision (``"recognised"`` by
        strong unanimous votes, else ``"undecided"``); None if it was already decided.
        ``last_chance`` False: straight to ``"undecided"`` (the class ended: nobody is marked now)."""
        if track.state != "pending":
            return None
        if not last_chance:
            track.state = "undecided"
            return self._event(track, now)
        return self._last_chance(track, "undecided", now)

    def _last_chance(self, track: Track, otherwise: State, now: float | None) -> TrackEvent:
        """Recognises a track with >= 2 votes, all strong, for one student only; else ``otherwise``."""
        confidences = list(track.vote_confidences.values())
        if (self.strong_confidence is not None and len(confidences) == 1 and len(confidences[0]) >= 2
                and min(confidences[0]) >= self.strong_confidence):
            track.state, track.user_id = "recognised", next(iter(track.vote_confidences))
            track.confidence = int(np.median(confidences[0]) + 0.5)
        else:
            track.state = otherwise
        return self._event(track, now)

    def _winner(self, track: Track) -> str | None:
        if not track.votes:
            return None
        leader, count = track.votes.most_common(1)[0]
        others = sum(track.votes.values()) - count
        return leader if count >= self.votes_needed and count > others else None

    def _event(self, track: Track, now: float | None) -> TrackEvent:
        at = self._clock() if now is None else now
        return TrackEvent(track.state, track.id, track.user_id, track.confidence, at, track.embeddings_used)
