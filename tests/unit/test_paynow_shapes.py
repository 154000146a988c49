"""The payloads built in code are PayNow's reference samples, field for field.

Every other test builds its PayNow input from ``scripts/paynow_shapes``; this
one pins those builders to ``../shared/paynow-samples`` (or PAYNOW_SAMPLES_DIR).
Marked ``samples``: it needs that folder, which CI has beside the clone and
Cloud Build (which sees only the repository) deselects with ``-m "not samples"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scripts import localstack
from scripts.payloads import SAMPLE_NAMES, sample

SAMPLES = Path(
    os.environ.get("PAYNOW_SAMPLES_DIR", localstack.ROOT.parent / "shared" / "paynow-samples")
)

pytestmark = pytest.mark.samples


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_built_payload_equals_the_reference_sample(name: str) -> None:
    path = SAMPLES / f"{name}.json"
    assert path.is_file(), f"reference sample {path} is missing (set PAYNOW_SAMPLES_DIR)"
    assert sample(name) == json.loads(path.read_text())


def test_every_reference_sample_has_a_builder() -> None:
    on_disk = {p.stem for p in SAMPLES.glob("*.json")}
    assert on_disk, f"no samples in {SAMPLES}"
    assert on_disk == set(SAMPLE_NAMES)


def test_samples_are_fresh_copies() -> None:
    first = sample("order_completed")
    first["body"]["customer"]["id"] = "changed"
    assert sample("order_completed")["body"]["customer"]["id"] == "cust-7"
