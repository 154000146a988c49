"""The payload builders of ``scripts/paynow_shapes``, which every other test builds its
PayNow input from."""

from __future__ import annotations

from scripts.payloads import sample


def test_samples_are_fresh_copies() -> None:
    first = sample("order_completed")
    first["body"]["customer"]["id"] = "changed"
    assert sample("order_completed")["body"]["customer"]["id"] == "cust-7"
