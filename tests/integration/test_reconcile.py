"""``paynow_reconcile``: an event left ``received`` with no message is found and processed once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from tests.integration.conftest import (
    RECONCILE_AFTER_SECONDS,
    balance,
    ledger,
    status_of,
    wait_for,
)


def _stuck_order(db, ids, age_seconds: float) -> None:
    """What a webhook leaves when its record was stored but its publish failed."""
    received_at = datetime.now(UTC) - timedelta(seconds=age_seconds)
    db.collection("webhookEvents").document(ids("evt")).set(
        {
            "eventType": "ON_ORDER_COMPLETED",
            "userId": ids("user"),
            "customerId": ids("cust"),
            "status": "received",
            "mode": "queue",
            "receivedAt": received_at,
            "republishedAt": received_at,  # its first publish: the webhook's
            "republishCount": 0,
            "attempts": 0,
            "lastError": None,
            "data": {
                "orderId": ids("order"),
                "lines": [{"productId": "gems-1200", "quantity": 1}],
                "totalAmount": 999,
                "currency": "usd",
            },
        }
    )


def _reconcile(stack) -> dict[str, Any]:
    answer = requests.post(stack.reconcile, timeout=60)
    assert answer.status_code == 200
    return dict(answer.json())


def test_reconcile_republishes_a_stuck_event_which_is_processed_once(stack, db, ids):
    _stuck_order(db, ids, age_seconds=RECONCILE_AFTER_SECONDS + 60)
    report = _reconcile(stack)
    assert report["status"] == "reconciled"
    assert report["found"] >= 1 and report["republished"] == report["found"]
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    _reconcile(stack)  # a second run publishes nothing new for it, or a harmless duplicate
    assert balance(db, ids("user")) == 1200
    assert list(ledger(db, ids("user"))) == [ids("evt")]


def test_reconcile_leaves_recent_events_alone(stack, db, ids):
    _stuck_order(db, ids, age_seconds=1)
    _reconcile(stack)
    assert status_of(db, ids("evt")) == "received"
    assert balance(db, ids("user")) is None


def test_reconcile_only_answers_post(stack):
    assert requests.get(stack.reconcile, timeout=10).status_code == 405
