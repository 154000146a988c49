"""PayNow's refunds, chargebacks and closes as its spec publishes them, in both modes.

Each test runs against the sync webhook and against the queue webhook (through the real
push subscription and worker), on the emulators.
"""

from __future__ import annotations

from typing import Any

import pytest
from paynow.domain import payloads

from tests.integration.conftest import balance, event, ledger, send, status_of, wait_for

ORDER_LINES = [("gems-550", 1, 999)]  # 550 points for 999 cents

pytestmark = pytest.mark.parametrize("mode", ["sync", "queue"])


def _url(stack: Any, mode: str) -> str:
    return str(stack.webhook_sync if mode == "sync" else stack.webhook_queue)


def _final(db: Any, event_id: str) -> str:
    return str(wait_for(lambda: (s := status_of(db, event_id)) != "received" and s, timeout=60))


def _credit(stack: Any, db: Any, ids: Any, mode: str) -> None:
    doc = payloads.order_completed(
        ids("o-evt"), ids("order"), ids("cust"), ids("user"), ORDER_LINES
    )
    send(_url(stack, mode), doc)
    assert _final(db, ids("o-evt")) == "processed"
    assert balance(db, ids("user")) == 550


def _refund(ids: Any, key: str, refunded: int, *, paid: int = 999, **body: Any) -> dict[str, Any]:
    doc = payloads.refund(ids(key), ids(f"rf-{key}"), ids("order"), ids("cust"), 0)
    doc["body"].update(amount=paid, store_refund_amount=refunded, **body)
    return doc


def _chargeback(ids: Any, key: str, event_type: str = "ON_CHARGEBACK", **body: Any) -> Any:
    doc = payloads.chargeback(ids(key), ids("pay"), ids("order"), ids("cust"), 999)
    doc["event_type"] = event_type
    doc["body"].update(body)
    return doc


def test_a_refund_reverses_its_store_refund_amount_share(stack, db, ids, mode):
    _credit(stack, db, ids, mode)
    # amount is the original payment's (999); store_refund_amount the refund (333): 183 of 550.
    answer = send(_url(stack, mode), _refund(ids, "r1", 333))
    assert answer.status_code == 200
    assert _final(db, ids("r1")) == "processed"
    assert balance(db, ids("user")) == 550 - 183
    assert ledger(db, ids("user"))[ids("r1")]["delta"] == -183


@pytest.mark.parametrize("status", ["failed", "canceled", "processing"])
def test_a_refund_that_is_not_completed_moves_nothing(stack, db, ids, mode, status):
    _credit(stack, db, ids, mode)
    send(_url(stack, mode), _refund(ids, "r1", 999, status=status))
    assert _final(db, ids("r1")) == "ignored"
    assert (
        event(db, ids("r1"))["reason"] == f"refund {status}: only a completed refund moves points"
    )
    assert balance(db, ids("user")) == 550
    assert ids("r1") not in ledger(db, ids("user"))


def test_one_refund_under_two_event_ids_moves_points_once(stack, db, ids, mode):
    _credit(stack, db, ids, mode)
    first, second = _refund(ids, "r1", 333), _refund(ids, "r2", 333)
    second["body"]["id"] = first["body"]["id"]
    send(_url(stack, mode), first)
    assert _final(db, ids("r1")) == "processed"
    send(_url(stack, mode), second)
    assert _final(db, ids("r2")) == "ignored"
    assert balance(db, ids("user")) == 550 - 183


def test_a_chargeback_won_by_the_store_gives_the_points_back_once(stack, db, ids, mode):
    _credit(stack, db, ids, mode)
    send(_url(stack, mode), _chargeback(ids, "cb", customer=None))
    assert _final(db, ids("cb")) == "processed"
    assert balance(db, ids("user")) == 0
    won = _chargeback(ids, "won", "ON_CHARGEBACK_CLOSED", chargeback_status="won", customer=None)
    send(_url(stack, mode), won)
    assert _final(db, ids("won")) == "processed"
    assert balance(db, ids("user")) == 550
    assert ledger(db, ids("user"))[ids("won")]["delta"] == 550
    again = _chargeback(ids, "won2", "ON_CHARGEBACK_CLOSED", chargeback_status="won")
    send(_url(stack, mode), again)
    assert _final(db, ids("won2")) == "ignored"
    assert balance(db, ids("user")) == 550


def test_a_lost_chargeback_close_moves_nothing(stack, db, ids, mode):
    _credit(stack, db, ids, mode)
    send(_url(stack, mode), _chargeback(ids, "cb"))
    assert _final(db, ids("cb")) == "processed"
    lost = _chargeback(ids, "lost", "ON_CHARGEBACK_CLOSED", chargeback_status="lost")
    send(_url(stack, mode), lost)
    assert _final(db, ids("lost")) == "ignored"
    assert balance(db, ids("user")) == 0


def test_a_won_close_of_an_order_without_a_chargeback_is_dead_lettered(stack, db, ids, mode, dlq):
    _credit(stack, db, ids, mode)
    won = _chargeback(ids, "won", "ON_CHARGEBACK_CLOSED", chargeback_status="won")
    answer = send(_url(stack, mode), won)
    assert answer.status_code == 200
    assert _final(db, ids("won")) == "dead_lettered"
    assert event(db, ids("won"))["lastError"]["code"] == "chargeback_not_found"
    (letter,) = dlq.for_event(ids("won"), timeout=60)
    assert letter.attributes["errorCode"] == "chargeback_not_found"
    assert balance(db, ids("user")) == 550


def test_a_customerless_refund_right_behind_its_queued_order_waits_for_it(stack, db, ids, mode):
    """The order is queued; the refund, with ``customer: null``, has no ordering key in common
    with it. It must wait for the order (both modes), never be dead-lettered for overtaking."""
    order = payloads.order_completed(
        ids("o-evt"), ids("order"), ids("cust"), ids("user"), ORDER_LINES
    )
    with stack.worker_firestore.down():  # the worker cannot take the order yet
        assert send(stack.webhook_queue, order).json()["status"] == "accepted"
        answer = send(_url(stack, mode), _refund(ids, "r1", 999, customer=None))
        assert answer.status_code == 200
        # sync mode finds the order queued, so queues the refund too
        assert answer.json()["status"] == "accepted"
        assert status_of(db, ids("o-evt")) == "received"
    assert _final(db, ids("o-evt")) == "processed"
    assert _final(db, ids("r1")) == "processed"
    assert balance(db, ids("user")) == 0
    record = event(db, ids("r1"))
    assert record["customerId"] is None and record["userId"] == ids("user")
