"""The Firestore store itself on the emulator: the customer's queued count and sync's wait.

``paynowCustomers/{c}.queued`` counts the customer's records in ``received``; sync mode
reads it in its transaction and queries the pending events only when it is above zero.
Every transition in and out of ``received`` moves it in the same commit as the status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore
from paynow.adapters.firestore_store import CUSTOMERS, FirestoreEventStore
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


def _queued(db: firestore.Client, customer: str) -> Any:
    snap = db.collection(CUSTOMERS).document(customer).get()
    return snap.get("queued") if snap.exists else None


def test_every_move_in_and_out_of_received_moves_the_count(
    store: FirestoreEventStore, db: firestore.Client, ids: Callable[[str], str]
) -> None:
    cust, user = ids("cus"), ids("usr")
    first, second = _order(ids("e1"), cust, user), _order(ids("e2"), cust, user)
    assert store.record_received(first, "queue") is None
    assert store.record_received(second, "queue") is None
    assert store.record_received(first, "queue") == "received"  # a repeat creates nothing
    assert _queued(db, cust) == 2
    assert store.process(None, first.event_id, "queue").status == "processed"
    assert _queued(db, cust) == 1
    assert store.process(None, first.event_id, "queue").status == "duplicate"
    assert _queued(db, cust) == 1
    store.mark_dead_lettered(None, second.event_id, "queue", "unknown_product", "x")
    assert _queued(db, cust) == 0
    reopened = store.reopen(second.event_id)
    assert reopened is not None and reopened.status == "received"
    assert reopened.message.ordering_key == cust  # published again behind its customer
    assert _queued(db, cust) == 1
    assert store.process(None, second.event_id, "queue").status == "processed"
    assert _queued(db, cust) == 0


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
    # Once the queued event is done, the count is zero and the inline one goes.
    assert store.process(None, queued.event_id, "queue").status == "processed"
    done = store.process(inline, inline.event_id, "sync", behind_pending=True)
    assert done.status == "processed"
    assert _queued(db, cust) == 0


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


def test_a_record_the_count_never_saw_does_not_take_it_down(
    store: FirestoreEventStore, db: firestore.Client, ids: Callable[[str], str]
) -> None:
    """One written without the count (by hand, or before the count existed) leaves it alone."""
    cust, user = ids("cus"), ids("usr")
    legacy, queued, inline = (_order(ids(k), cust, user) for k in ("old", "q", "s"))
    assert store.record_received(legacy, "queue") is None
    db.collection("webhookEvents").document(legacy.event_id).update({"queuedCounted": None})
    db.collection(CUSTOMERS).document(cust).set({"queued": 0})
    assert store.record_received(queued, "queue") is None
    assert store.process(None, legacy.event_id, "queue").status == "processed"
    assert _queued(db, cust) == 1  # still the queued one's
    behind = store.process(inline, inline.event_id, "sync", behind_pending=True)
    assert behind.status == BEHIND
