"""Tracks and votes with synthetic boxes and matches: who gets marked, and when."""

import itertools

import pytest

from kiosk.model.match import Calibration, Match
from kiosk.tracker import Decider, IoUTracker, iou

CAL = Calibration(method="test", knots=((0.2, 0.0), (0.5, 50.0), (0.8, 100.0)), far_at_50=0.001)
GOOD = 0.7  # -> 83 %, accepted
WEAK = 0.45  # -> 42 %, not accepted


def walk(start_x, y=100, size=80, step=12, frames=40):
    return [(start_x + i * step, y, start_x + i * step + size, y + size) for i in range(frames)]


def match(user, sim=GOOD, margin=0.3):
    return Match(user, sim, sim - margin, margin)


def decider(**kw):
    kw.setdefault("strong_confidence", 83)  # the kiosk's policy (Decider.from_settings)
    return Decider(CAL, min_margin=0.05, votes_needed=3, max_embeddings=6, clock=lambda: 99.0, **kw)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0


def test_a_person_crossing_the_frame_is_one_track():
    tracker = IoUTracker(max_missed=3)
    ids = set()
    for t, box in enumerate(walk(0, step=25, frames=24)):
        update = tracker.update([box], now=float(t))
        ids |= {track.id for track, _ in update.matched}
    assert ids == {1}
    track = tracker.tracks[0]
    assert (track.first_seen, track.last_seen) == (0.0, 23.0)


def test_a_crossing_person_survives_missed_detections():
    tracker = IoUTracker(max_missed=3)
    ids = set()
    for t, box in enumerate(walk(0, step=20, frames=30)):
        if t % 3 == 1:  # the detector misses every third frame
            assert tracker.update([], now=t).ended == []
            continue
        ids |= {track.id for track, _ in tracker.update([box], now=t).matched}
    assert ids == {1}


def test_two_people_passing_each_other_are_two_tracks_that_keep_their_identity():
    tracker = IoUTracker()
    left, right = walk(0, y=100, step=15, frames=30), walk(450, y=150, step=-15, frames=30)
    owner = {}  # track id -> which walker its boxes came from
    for t, (a, b) in enumerate(zip(left, right, strict=True)):
        for track, det in tracker.update([a, b], now=t).matched:
            owner.setdefault(track.id, set()).add("left" if det is a else "right")
    assert owner == {1: {"left"}, 2: {"right"}}


def test_two_people_side_by_side_keep_their_own_ids():
    tracker = IoUTracker()
    for t in range(10):
        update = tracker.update([(10 + t, 100, 90 + t, 180), (300 - t, 100, 380 - t, 180)], now=t)
        by_x = sorted((det[0], track.id) for track, det in update.matched)
        assert [track_id for _, track_id in by_x] == [1, 2]


def test_a_track_ends_after_max_missed_frames_and_a_return_is_a_new_track():
    tracker = IoUTracker(max_missed=2)
    tracker.update([(0, 0, 50, 50)], now=0)
    assert tracker.update([], now=1).ended == []
    assert tracker.update([], now=2).ended == []
    ended = tracker.update([], now=3).ended
    assert [t.id for t in ended] == [1]
    assert [t.id for t in tracker.update([(0, 0, 50, 50)], now=4).started] == [2]


def test_end_all_and_injected_clock():
    clock = itertools.count(100.0)
    tracker = IoUTracker(clock=lambda: next(clock))
    tracker.update([(0, 0, 50, 50)])
    assert tracker.tracks[0].first_seen == 100.0
    assert [t.id for t in tracker.end_all()] == [1]
    assert tracker.tracks == []


def test_detections_with_a_box_attribute_are_returned_with_their_track():
    class Det:
        def __init__(self, box):
            self.box = box

    det = Det((0, 0, 40, 40))
    update = IoUTracker().update([det], now=0)
    assert update.matched[0][1] is det


def new_track():
    tracker = IoUTracker()
    return tracker.update([(0, 0, 50, 50)], now=0).started[0]


def test_one_good_frame_never_decides_and_the_track_ends_undecided():
    d, track = decider(), new_track()
    assert d.observe(track, match("a")) is None
    assert track.state == "pending"
    event = d.end(track, now=5.0)
    assert (event.kind, event.user_id, event.at) == ("undecided", None, 5.0)
    assert d.end(track) is None  # only once


def test_votes_needed_agreeing_frames_recognise_with_median_confidence():
    d, track = decider(), new_track()
    events = [d.observe(track, match("a", s)) for s in (0.6, 0.7, 0.8)]
    assert events[:2] == [None, None]
    assert events[2].kind == "recognised" and events[2].user_id == "a"
    assert events[2].confidence == CAL.confidence(0.7)
    assert events[2].at == 99.0 and events[2].embeddings_used == 3
    assert not d.wants(track) and d.end(track) is None


def test_weak_or_close_frames_do_not_vote():
    d, track = decider(), new_track()
    for _ in range(5):
        assert d.observe(track, match("a", WEAK)) is None
    assert d.observe(track, match("a", GOOD, margin=0.01)).kind == "unknown"
    assert track.votes == {}


def test_a_flicker_of_a_wrong_identity_does_not_flip_a_decision():
    d, track = decider(), new_track()
    results = [d.observe(track, match(u)) for u in ("a", "b", "a", "a")]
    assert results[-1].user_id == "a"
    assert d.observe(track, match("b")) is None
    assert (track.state, track.user_id) == ("recognised", "a")


def test_no_consistent_winner_after_max_embeddings_is_unknown():
    d, track = decider(), new_track()
    events = [d.observe(track, match(u)) for u in ("a", "b", "a", "b", "c", "c")]
    assert events[:-1] == [None] * 5
    assert events[-1].kind == "unknown" and events[-1].user_id is None
    assert not d.wants(track)


def test_leader_must_outvote_all_others_together():
    d, track = Decider(CAL, votes_needed=3, max_embeddings=10), new_track()
    for u in ("a", "b", "b", "a", "c", "a"):
        assert d.observe(track, match(u)) is None  # a has 3 of 6
    assert d.observe(track, match("a")).user_id == "a"  # 4 of 7


def test_an_empty_roster_counts_as_an_embedding_without_a_vote():
    d, track = decider(), new_track()
    events = [d.observe(track, None) for _ in range(6)]
    assert events[-1].kind == "unknown"


def test_decider_refuses_single_frame_decisions():
    with pytest.raises(ValueError):
        Decider(CAL, votes_needed=1)
    with pytest.raises(ValueError):
        Decider(CAL, votes_needed=4, max_embeddings=3)


def test_a_jittery_detector_does_not_split_a_slow_walker():
    # boxes alternate between two scales and jump back, as dlib's HOG does on a turning head
    tracker = IoUTracker(max_missed=3)
    xs = [42, 50, 65, 60, 89, 123, 89, 148, 176, 150]
    ids = set()
    for t, x in enumerate(xs):
        size = 104 if t % 2 else 124
        ids |= {track.id for track, _ in tracker.update([(x, 77, x + size, 77 + size)], now=t).matched}
    assert ids == {1}


# --- the last chance: two strong, unanimous votes recognise a track that would otherwise end unnamed ----
STRONG = 0.7  # -> 83 %, exactly the strong threshold
ACCEPTED_NOT_STRONG = 0.6  # -> 67 %: a vote, but not a strong one


def test_two_strong_unanimous_votes_recognise_a_track_when_it_ends():
    d, track = decider(), new_track()
    assert [d.observe(track, match("a", s)) for s in (STRONG, 0.8)] == [None, None]  # not before it ends
    assert track.state == "pending"
    event = d.end(track, now=7.0)
    assert (event.kind, event.user_id, event.at, event.embeddings_used) == ("recognised", "a", 7.0, 2)
    assert event.confidence == round((CAL.confidence(STRONG) + CAL.confidence(0.8)) / 2)


@pytest.mark.parametrize("sims_and_users", [
    [(STRONG, "a")],                                   # one frame never decides, however strong
    [(STRONG, "a"), (ACCEPTED_NOT_STRONG, "a")],       # a vote below the strong threshold
    [(STRONG, "a"), (STRONG, "a"), (STRONG, "b")],     # another student has a vote
    [(WEAK, "a"), (WEAK, "a"), (STRONG, "a")],         # frames that do not vote do not count
])
def test_the_last_chance_needs_two_strong_votes_for_one_student_only(sims_and_users):
    d, track = decider(), new_track()
    for sim, user in sims_and_users:
        assert d.observe(track, match(user, sim)) is None
    event = d.end(track)
    assert (event.kind, event.user_id) == ("undecided", None)


def test_the_last_chance_also_applies_when_the_embeddings_run_out():
    d, track = decider(), new_track()
    events = [d.observe(track, match("a", sim)) for sim in (STRONG, WEAK, WEAK, WEAK, WEAK, STRONG)]
    assert events[:-1] == [None] * 5
    assert (events[-1].kind, events[-1].user_id) == ("recognised", "a")  # not "unknown"


def test_the_last_chance_can_be_turned_off():
    d, track = decider(strong_confidence=None), new_track()
    for _ in range(2):
        d.observe(track, match("a", 0.8))
    assert d.end(track).kind == "undecided"
    assert Decider(CAL).strong_confidence is None  # a bare Decider keeps the plain votes_needed rule


def test_a_track_ended_by_the_end_of_class_gets_no_last_chance():
    d, track = decider(), new_track()
    for _ in range(2):
        d.observe(track, match("a", 0.8))
    event = d.end(track, last_chance=False)
    assert (event.kind, event.user_id) == ("undecided", None)


def test_from_settings_takes_the_kiosks_policy():
    class Settings:
        min_margin, votes_needed, max_track_embeddings = 0.07, 4, 9

    d = Decider.from_settings(Settings, CAL, clock=lambda: 5.0)
    assert (d.min_margin, d.votes_needed, d.max_embeddings, d.strong_confidence) == (0.07, 4, 9, 83)
