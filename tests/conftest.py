"""Session fixtures shared by every suite: the official emulators, started on free ports.

If an emulator cannot start, every test that needs it fails with the
emulator's log: nothing here ever skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from scripts.local import localstack


@pytest.fixture(scope="session")
def emulators() -> Iterator[localstack.Emulators]:
    """Both emulators on free ports, and this process's Google clients pointed at them."""
    with localstack.LocalRun() as run:
        hosts = run.emulators()
        with hosts.env():
            yield hosts


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
