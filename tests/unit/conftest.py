"""Fixtures the unit tests ask for by name."""

from __future__ import annotations

import pytest


@pytest.fixture
def emulator_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """``paynow-ops`` commands run in this process target emulators (never a cloud
    project, so nothing asks for a confirmation); their clients are mocks anyway."""
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-unit")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:2")
