"""The Firestore store itself on the emulator: sync mode's wait behind a queued event.

Sync mode asks, beside its transaction's read, which of the customer's events are still
``received`` (a query on ``customerId`` and ``status``): whatever put an event there or
took it out (a queued accept, the worker, a dead letter, a replay), the record's status
is the whole truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore
from paynow.adapters import firestore_store
from paynow.adapters.firestore_store import FirestoreEventStore
from paynow.domain import payloads
from paynow.domain.events import PayNowEvent, normalize, parse_envelope
from paynow.domain.records import BEHIND

from tests.integration.conftest import Stack


@pytest.fixture
def store(stack: Stack, db: firestore.Client) -> FirestoreEventStore:
    """On the stack's project, whose demo catalog the stack fixture seeded."""
    return FirestoreEventStore(db, ttl_days=30)


def _order(event_id: str, customer: str, user: str) -> PayNowEvent:
    doc = payloads.order_completed(
        event_id, f"o-{event_id}", customer, user, [("gems-100", 1, 199)]
    )
    return normalize(parse_envelope(payloads.encode(doc)), "user_id")


def _status(db: firestore.Client, event_id: str) -> object:
    snap = db.collection("webhookEvents").document(event_id).get()
    return snap.get("status") if snap.exists else None


def test_every_move_in_and_out_of_received_moves_the_wait(
    store: FirestoreEventStore, db: firestore.Client, ids: Callable[[str], str]
) -> None:
    cust, user = ids("cus"), ids("usr")
    first, second = _order(ids("e1"), cust, user), _order(ids("e2"), cust, user)
    inline, later = _order(ids("s1"), cust, user), _order(ids("s2"), cust, user)
    assert store.record_received(first, "queue") is None
    assert store.record_received(second, "queue") is None
    assert store.record_received(first, "queue") == "received"  # a repeat creates nothing
    assert store.process(inline, inline.event_id, "sync", behind_pending=True).status == BEHIND
    assert store.process(None, first.event_id, "queue").status == "processed"
    assert store.process(inline, inline.event_id, "sync", behind_pending=True).status == BEHIND
    store.mark_dead_lettered(None, second.event_id, "queue", "unknown_product", "x")
    assert store.process(inline, inline.event_id, "sync", behind_pending=True).status == (
        "processed"
    )
    reopened = store.reopen(second.event_id)  # a replay queues it again
    assert reopened is not None and reopened.status == "received"
    assert reopened.message.ordering_key == cust  # published again behind its customer
    assert store.process(later, later.event_id, "sync", behind_pending=True).status == BEHIND
    assert store.process(None, second.event_id, "queue").status == "processed"
    assert store.process(later, later.event_id, "sync", behind_pending=True).status == "processed"
    assert [_status(db, e.event_id) for e in (first, second, inline, later)] == ["processed"] * 4


def test_sync_waits_only_behind_an_earlier_queued_event(
    store: FirestoreEventStore, db: firestore.Client, ids: Callable[[str], str]
) -> None:
    cust, user = ids("cus"), ids("usr")
    queued, inline = _order(ids("q"), cust, user), _order(ids("s"), cust, user)
    assert store.record_received(queued, "queue") is None
    behind = store.process(inline, inline.event_id, "sync", behind_pending=True)
    assert behind.status == BEHIND
    assert not db.collection("webhookEvents").document(inline.event_id).get().exists
    # Without the flag, or for another customer, nothing waits.
    other = _order(ids("o"), ids("cus2"), user)
    assert store.process(other, other.event_id, "sync", behind_pending=True).status == "processed"
    # Once the queued event is done, the inline one goes.
    assert store.process(None, queued.event_id, "queue").status == "processed"
    done = store.process(inline, inline.event_id, "sync", behind_pending=True)
    assert done.status == "processed"
    assert _status(db, inline.event_id) == "processed"


def test_a_queued_event_is_not_held_behind_one_received_after_it(
    store: FirestoreEventStore, ids: Callable[[str], str]
) -> None:
    cust, user = ids("cus"), ids("usr")
    first, later = _order(ids("a"), cust, user), _order(ids("b"), cust, user)
    store.record_received(first, "queue")
    store.record_received(later, "queue")
    # first is a PayNow retry now handled inline: later came after it, so it does not wait
    assert store.process(first, first.event_id, "sync", behind_pending=True).status == "processed"
    assert store.has_pending_predecessor(later.event_id, cust) is False
    assert store.has_pending_predecessor(first.event_id, cust) is False


def test_a_received_record_written_by_hand_still_holds_a_later_event(
    store: FirestoreEventStore, db: firestore.Client, ids: Callable[[str], str]
) -> None:
    """One the store did not write (by hand, by an older version) is seen all the same."""
    cust, user = ids("cus"), ids("usr")
    legacy, inline = _order(ids("old"), cust, user), _order(ids("s"), cust, user)
    db.collection("webhookEvents").document(legacy.event_id).set(
        {"status": "received", "customerId": cust, "receivedAt": firestore.SERVER_TIMESTAMP}
    )
    behind = store.process(inline, inline.event_id, "sync", behind_pending=True)
    assert behind.status == BEHIND
    assert _status(db, inline.event_id) is None  # nothing written


def test_the_worker_does_not_wait_in_its_transaction_for_a_late_hint(
    store: FirestoreEventStore,
    db: firestore.Client,
    ids: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record read beside the worker's begin only saves a read: when it is late, the
    transaction reads the record itself and goes on, instead of idling while it is open."""
    released = threading.Event()
    plain = firestore_store._Beside.__init__

    def late_hints(self: Any, read: Callable[[], Any], *, again: bool) -> None:
        def late() -> Any:
            released.wait(10)
            return read()

        plain(self, read if again else late, again=again)

    monkeypatch.setattr(firestore_store, "HINT_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(firestore_store._Beside, "__init__", late_hints)
    event = _order(ids("e"), ids("cus"), ids("usr"))
    assert store.record_received(event, "queue") is None
    started = time.monotonic()
    try:
        assert store.process(None, event.event_id, "queue").status == "processed"
        took = time.monotonic() - started
    finally:
        released.set()
    assert took < 5  # not the hint's 10 s
    assert _status(db, event.event_id) == "processed"
    assert db.collection("users").document(event.user_id).get().get("points") == 100
