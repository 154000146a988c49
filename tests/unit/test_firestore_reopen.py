"""``FirestoreEventStore.reopen``, the replay's reset, on a mocked Firestore transaction."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore
from paynow.adapters import documents, firestore_store
from pytest_mock import MockerFixture

# A replay publishes the event now: reconcile's count starts again (see reopen_writes).
FRESH = {"republishCount": 0, "republishedAt": firestore.SERVER_TIMESTAMP}


def _reopen(mocker: MockerFixture, record: dict[str, Any] | None) -> tuple[str | None, Any, Any]:
    """Run ``reopen`` on ``record``: (the status it answers, the transaction, the event's
    reference). The record is read once, and the message comes from that one read."""
    db = mocker.MagicMock()
    ref = db.collection.return_value.document.return_value
    snap = mocker.MagicMock(exists=record is not None, reference=ref)
    snap.to_dict.return_value = record
    txn = db.transaction.return_value
    txn.get_all.return_value = [snap]
    mocker.patch("google.cloud.firestore.transactional", side_effect=lambda fn: fn)
    store = firestore_store.FirestoreEventStore(db, ttl_days=30)
    reopened = store.reopen("evt-1")
    txn.get_all.assert_called_once()
    if reopened is None:
        return None, txn, ref
    assert reopened.message == documents.queue_message("evt-1", record or {})
    return reopened.status, txn, ref


def test_a_dead_lettered_event_is_received_again_with_its_attempts_reset(mocker: MockerFixture):
    record = {"status": "dead_lettered", "attempts": 3, "lastError": {"code": "unknown_product"}}
    status, txn, ref = _reopen(mocker, record)
    assert status == "received"
    txn.update.assert_called_once_with(
        ref, {"status": "received", "attempts": 0, "processedAt": None, **FRESH}
    )
    txn.set.assert_not_called()


def test_the_message_to_publish_again_carries_the_record_s_ids_and_ordering_key(
    mocker: MockerFixture,
):
    record = {
        "status": "dead_lettered",
        "eventType": "ON_ORDER_COMPLETED",
        "customerId": "cust-7",
        "userId": "user-7",
    }
    db = mocker.MagicMock()
    snap = mocker.MagicMock(exists=True, reference=db.collection.return_value.document())
    snap.to_dict.return_value = record
    db.transaction.return_value.get_all.return_value = [snap]
    mocker.patch("google.cloud.firestore.transactional", side_effect=lambda fn: fn)
    reopened = firestore_store.FirestoreEventStore(db, ttl_days=30).reopen("evt-1")
    assert reopened is not None
    assert (reopened.message.event_id, reopened.message.event_type) == (
        "evt-1",
        "ON_ORDER_COMPLETED",
    )
    assert (reopened.message.ordering_key, reopened.message.user_id) == ("cust-7", "user-7")


def test_a_dead_lettered_event_of_a_customer_changes_its_record_only(mocker: MockerFixture):
    """The record's status is the whole truth: sync mode's wait finds it by query."""
    record = {"status": "dead_lettered", "attempts": 3, "customerId": "cust-7"}
    status, txn, ref = _reopen(mocker, record)
    assert status == "received"
    txn.update.assert_called_once_with(
        ref, {"status": "received", "attempts": 0, "processedAt": None, **FRESH}
    )
    txn.set.assert_not_called()


def test_a_received_event_dead_lettered_by_pubsub_starts_its_attempts_again(
    mocker: MockerFixture,
):
    """Its first transient failure after the replay must not dead-letter it at once."""
    record = {"status": "received", "attempts": 9, "lastError": {"code": "unavailable"}}
    status, txn, ref = _reopen(mocker, record)
    assert status == "received"
    txn.update.assert_called_once_with(ref, {"attempts": 0, "lastError": None, **FRESH})


@pytest.mark.parametrize("final", ["processed", "ignored"])
def test_a_final_event_is_left_as_it_is(mocker: MockerFixture, final: str):
    status, txn, _ = _reopen(mocker, {"status": final, "attempts": 0})
    assert status == final
    txn.update.assert_not_called()
    txn.set.assert_not_called()


def test_an_unknown_event_is_none(mocker: MockerFixture):
    status, txn, _ = _reopen(mocker, None)
    assert status is None
    txn.update.assert_not_called()
