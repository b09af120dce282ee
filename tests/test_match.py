"""Matching against a roster and the confidence mapping, with synthetic vectors."""

import json

import numpy as np
import pytest

from kiosk.errors import ModelLoadError
from kiosk.model.match import Calibration, Gallery, Match, best_match, decide


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def basis(i, dim=8):
    v = np.zeros(dim, np.float32)
    v[i] = 1
    return v


CAL = Calibration(method="test", knots=((0.2, 0.0), (0.5, 50.0), (0.8, 100.0)), far_at_50=0.001)


def test_student_score_is_the_best_of_their_vectors():
    gallery = Gallery.from_vectors({"a": np.stack([basis(0), basis(1)]), "b": basis(2)[None]})
    match = best_match(basis(1), gallery)
    assert match.user_id == "a"
    assert match.similarity == pytest.approx(1.0)
    assert match.second_similarity == pytest.approx(0.0)
    assert match.margin == pytest.approx(1.0)


def test_second_similarity_is_another_student_not_the_same_students_second_vector():
    a = np.stack([unit([1, 0.1, 0, 0, 0, 0, 0, 0]), unit([1, 0.2, 0, 0, 0, 0, 0, 0])])
    b = unit([0.6, 0.8, 0, 0, 0, 0, 0, 0])[None]
    match = best_match(unit([1, 0, 0, 0, 0, 0, 0, 0]), Gallery.from_vectors({"a": a, "b": b}))
    assert match.user_id == "a"
    assert match.second_similarity == pytest.approx(0.6, abs=1e-6)


def test_one_student_roster_has_second_similarity_minus_one_and_empty_gallery_no_match():
    match = best_match(basis(0), Gallery.from_vectors({"a": basis(0)[None]}))
    assert match.second_similarity == -1.0
    assert best_match(basis(0), Gallery.from_vectors({}, dim=8)) is None
    assert decide(None, CAL, 0.05) == (None, 0)


def test_students_without_vectors_are_left_out():
    gallery = Gallery.from_vectors({"a": np.zeros((0, 8)), "b": basis(3)[None]})
    assert gallery.user_ids == ("b",)


def test_gallery_renormalises_rows_and_refuses_mixed_dimensions():
    gallery = Gallery.from_vectors({"a": 5 * basis(0)[None]})
    assert np.allclose(np.linalg.norm(gallery.vectors, axis=1), 1)
    with pytest.raises(ValueError):
        Gallery.from_vectors({"a": basis(0)[None], "b": np.ones((1, 4))})


def test_confidence_is_monotonic_bounded_and_hits_the_knots():
    sims = np.linspace(-1, 1, 401)
    confs = [CAL.confidence(s) for s in sims]
    assert np.all(np.diff(confs) >= 0)
    assert confs[0] == 0 and confs[-1] == 100
    assert CAL.confidence(0.5) == 50
    assert CAL.confidence(0.65) == 75
    assert CAL.similarity_at(50) == pytest.approx(0.5)


def test_decide_needs_more_than_50_percent_and_the_margin():
    assert decide(Match("a", 0.65, 0.1, 0.55), CAL, 0.05) == ("a", 75)
    assert decide(Match("a", 0.5, 0.1, 0.4), CAL, 0.05) == (None, 50)  # exactly 50 % is not enough
    assert decide(Match("a", 0.65, 0.62, 0.03), CAL, 0.05) == (None, 75)  # too close to the runner-up


@pytest.mark.parametrize("knots", [((0.5, 0), (0.4, 50)), ((0.1, 60), (0.5, 50)), ((0.1, 0),), ((0.1, 0), (0.2, 120))])
def test_calibration_refuses_non_monotonic_or_out_of_range_knots(knots):
    with pytest.raises(ValueError):
        Calibration(method="x", knots=knots, far_at_50=0.001)


def test_calibration_round_trips_through_json(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"methods": {"test": CAL.to_dict()}}))
    assert Calibration.load("test", path) == CAL


def test_missing_or_broken_calibration_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="kiosk calibrate"):
        Calibration.load("test", tmp_path / "missing.json")
    path = tmp_path / "cal.json"
    path.write_text('{"methods": {}}')
    with pytest.raises(ModelLoadError, match="no valid entry"):
        Calibration.load("test", path)
    path.write_text('{"methods": {"test": {"method": "test", "knots": [[0.5, 0], [0.4, 50]], "far_at_50": 0.001}}}')
    with pytest.raises(ModelLoadError, match="malformed"):
        Calibration.load("test", path)
