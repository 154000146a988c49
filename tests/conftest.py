"""Session fixtures shared by every suite: the official emulators, started on free ports.

If an emulator cannot start, every test that needs it fails with the
emulator's log: nothing here ever skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from scripts.local import localstack


@dataclass(frozen=True)
class Emulators:
    pubsub_host: str
    firestore_host: str
    project: str = localstack.PROJECT


@pytest.fixture(scope="session")
def emulators() -> Iterator[Emulators]:
    pubsub = localstack.start_pubsub_emulator(localstack.free_port())
    try:
        firestore = localstack.start_firestore_emulator(localstack.free_port())
    except BaseException:
        pubsub.stop()
        raise
    hosts = Emulators(pubsub_host=pubsub.address, firestore_host=firestore.address)
    saved = {
        k: os.environ.get(k)
        for k in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
    }
    os.environ.update(
        PUBSUB_EMULATOR_HOST=hosts.pubsub_host,
        FIRESTORE_EMULATOR_HOST=hosts.firestore_host,
        GOOGLE_CLOUD_PROJECT=hosts.project,
    )
    try:
        yield hosts
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        firestore.stop()
        pubsub.stop()


# --- Hypothesis profiles: "ci" by default, "full" with HYPOTHESIS_PROFILE=full ---------------
# Tests that leave max_examples to the profile get 100 cases each in CI and 3,000 in the full
# run; tests/integration/test_hostile_input.py scales its budgets from the active profile.
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile(
    "full", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
