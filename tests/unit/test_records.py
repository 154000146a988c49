"""The record-state decision (``records.decide``): the one rule both stores follow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from paynow.domain.errors import EventNotVisible
from paynow.domain.records import FINAL_STATES, Processed, Step, decide, without_applying

T0 = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("status", sorted(FINAL_STATES))
def test_a_final_record_is_a_duplicate_whatever_else_is_pending(status: str) -> None:
    def pending() -> list[tuple[str, object]]:
        raise AssertionError("a final record needs no look at the pending events")

    assert decide("e1", status, T0, event_in_hand=True, pending=pending) is Step.DUPLICATE
    assert decide("e1", status, T0, event_in_hand=False) is Step.DUPLICATE


def test_an_event_received_after_a_pending_one_of_its_customer_waits() -> None:
    earlier = [("e0", T0 - timedelta(seconds=1))]
    assert decide("e1", "received", T0, event_in_hand=True, pending=lambda: earlier) is Step.BEHIND
    # with no record yet (sync mode, first delivery) its time is unknown: waiting is the safe side
    assert decide("e1", None, None, event_in_hand=True, pending=lambda: earlier) is Step.BEHIND


def test_later_pending_events_and_itself_do_not_hold_it() -> None:
    later = [("e1", T0), ("e2", T0 + timedelta(seconds=1))]
    assert decide("e1", "received", T0, event_in_hand=True, pending=lambda: later) is Step.APPLY


def test_the_worker_cannot_apply_an_event_whose_record_is_not_there() -> None:
    assert decide("e1", None, None, event_in_hand=False) is Step.NOT_VISIBLE
    with pytest.raises(EventNotVisible):
        without_applying(Step.NOT_VISIBLE, "e1")


def test_sync_mode_applies_an_event_that_has_no_record_yet() -> None:
    assert decide("e1", None, None, event_in_hand=True) is Step.APPLY
    assert decide("e1", None, None, event_in_hand=True, pending=list) is Step.APPLY


def test_the_answers_without_applying() -> None:
    assert without_applying(Step.DUPLICATE, "e1") == Processed("duplicate")
    assert without_applying(Step.BEHIND, "e1") == Processed("behind")
    with pytest.raises(ValueError, match="APPLY"):
        without_applying(Step.APPLY, "e1")
