"""The event record's state machine, and the decision every processing attempt starts with.

``webhookEvents/{eventId}`` moves ``received`` -> ``processed`` | ``ignored`` |
``dead_lettered`` and never back (only an operator's replay reopens a dead letter).
Whether an attempt may apply the points rule is decided here, once, for the
Firestore store and the tests' in-memory store alike: the stores only fetch
what the decision needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from paynow.domain.errors import EventNotVisible
from paynow.domain.messages import QueueMessage
from paynow.domain.points import Outcome

RECEIVED = "received"
PROCESSED = "processed"
IGNORED = "ignored"
DEAD_LETTERED = "dead_lettered"
FINAL_STATES = frozenset({PROCESSED, IGNORED, DEAD_LETTERED})

# What ``process`` answers besides a final state (neither is stored).
DUPLICATE = "duplicate"
BEHIND = "behind"

Pending = Iterable[tuple[str, object]]
"""(event id, ``receivedAt``) of a customer's records still ``received``."""


class Step(StrEnum):
    """What one processing attempt does with an event."""

    DUPLICATE = DUPLICATE  # already final: nothing is written again
    BEHIND = BEHIND  # an earlier event of the customer goes first: nothing is written
    NOT_VISIBLE = "not_visible"  # the worker's message came before its record
    APPLY = "apply"  # run the points rule and write its outcome


@dataclass(frozen=True)
class Processed:
    """Result of one processing transaction: ``status`` is the event's state after it."""

    status: str  # processed | ignored | duplicate | behind
    outcome: Outcome | None = None


@dataclass(frozen=True)
class Stuck:
    """An event still ``received`` whose last publish is older than reconcile's window:
    the message that publishes it again, how often reconcile already did, and its mode."""

    message: QueueMessage
    republish_count: int
    mode: str


@dataclass(frozen=True)
class Reopened:
    """An event a replay readied: its status after (``received``: publish ``message``; a
    final one stays as it was), and the ids-only message that publishes it again."""

    status: str
    message: QueueMessage


def is_final(status: object) -> bool:
    return status in FINAL_STATES


def decide(
    event_id: str,
    status: object,
    received_at: object,
    *,
    event_in_hand: bool,
    pending: Callable[[], Pending] | None = None,
) -> Step:
    """The step for an attempt on ``event_id`` whose record has ``status`` (None: no record).

    ``event_in_hand`` is sync mode: the event came with the request, so a missing
    record is created by the attempt; the worker has only the record. ``pending``,
    when given, lists the customer's events still ``received`` (called only when
    the answer depends on it): one received before this event goes first.
    """
    if is_final(status):
        return Step.DUPLICATE
    if pending is not None and has_earlier(event_id, received_at, pending()):
        return Step.BEHIND
    if status is None and not event_in_hand:
        return Step.NOT_VISIBLE
    return Step.APPLY


def without_applying(step: Step, event_id: str) -> Processed:
    """The answer of an attempt whose step is not ``APPLY``."""
    if step is Step.NOT_VISIBLE:
        raise EventNotVisible(f"event {event_id} has no record yet")
    if step is Step.APPLY:
        raise ValueError("APPLY runs the points rule; it has no answer without it")
    return Processed(status=step.value)


def has_earlier(event_id: str, received_at: object, pending: Pending) -> bool:
    """True when one of ``pending`` (another event still ``received``) may come first.

    Another event is earlier when it was received before this one; when either time
    is unknown (this event has no record yet, or a stored value is not a timestamp)
    waiting behind it is the safe side.
    """
    for other_id, theirs in pending:
        if other_id == event_id:
            continue
        if not (isinstance(theirs, datetime) and isinstance(received_at, datetime)):
            return True
        if theirs < received_at:
            return True
    return False
