"""Shared fixtures of the reliability suites: the demo class enrolled once per session, a fresh world per test."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.reliability.harness import DemoWorld, demo_embeddings


@pytest.fixture(scope="session")
def embeddings(face_settings, engine, models_dir):
    """The demo class's faceEmbeding strings, made once through the real engine (photos 1-4 of each person)."""
    return demo_embeddings(face_settings, engine)


@pytest.fixture
def world(embeddings, face_settings):
    """A fresh demo university (a slot of the demo class running now) with every mark and token recorded."""
    return DemoWorld.create(embeddings, datetime.now(face_settings.tz))
