"""The pipeline end to end on the emulators: webhook -> Pub/Sub push -> worker -> Firestore."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from paynow.domain import payloads

from tests.integration.conftest import (
    WORKER_MAX_ATTEMPTS,
    balance,
    event,
    ledger,
    push_envelope,
    send,
    status_of,
    wait_for,
)

SAMPLE_LINES = [("gems-100", 2, 398), ("gems-550", 1, 999)]  # 2x100 + 550 = 750 points, 1397 cents


def test_queue_mode_credits_points_through_real_push(stack, db, ids):
    doc = payloads.order_completed(ids("evt"), ids("order"), ids("cust"), ids("user"), SAMPLE_LINES)
    answer = send(stack.webhook_queue, doc)
    assert answer.status_code == 200
    assert answer.json() == {"status": "accepted", "eventId": ids("evt")}
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    record = event(db, ids("evt"))
    assert record["mode"] == "queue" and record["userId"] == ids("user")
    assert record["data"]["lines"] == [
        {"productId": "gems-100", "quantity": 2},
        {"productId": "gems-550", "quantity": 1},
    ]
    assert balance(db, ids("user")) == 750
    entry = ledger(db, ids("user"))[ids("evt")]
    assert entry["delta"] == 750 and entry["orderId"] == ids("order")
    order = db.collection("paynowOrders").document(ids("order")).get().to_dict()
    assert order["pointsCredited"] == 750 and order["totalAmount"] == 1397


def test_duplicate_webhook_credits_once(stack, db, ids):
    doc = payloads.order_completed(ids("evt"), ids("order"), ids("cust"), ids("user"), SAMPLE_LINES)
    assert send(stack.webhook_queue, doc).json()["status"] == "accepted"
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    again = send(stack.webhook_queue, doc)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert send(stack.webhook_sync, doc).json()["status"] == "duplicate"
    time.sleep(1.0)  # give any extra delivery the time to (wrongly) credit again
    assert balance(db, ids("user")) == 750
    assert list(ledger(db, ids("user"))) == [ids("evt")]


def test_concurrent_duplicates_credit_once(stack, db, ids):
    doc = payloads.order_completed(ids("evt"), ids("order"), ids("cust"), ids("user"), SAMPLE_LINES)
    answers: list[int] = []

    def deliver(url: str) -> None:
        answers.append(send(url, doc).status_code)

    threads = [
        threading.Thread(target=deliver, args=(url,))
        for url in (stack.webhook_queue, stack.webhook_sync) * 3
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 6
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    time.sleep(1.0)
    assert balance(db, ids("user")) == 750
    assert len(ledger(db, ids("user"))) == 1


def test_duplicate_push_delivery_is_acknowledged_once(stack, db, ids):
    doc = payloads.order_completed(ids("evt"), ids("order"), ids("cust"), ids("user"), SAMPLE_LINES)
    send(stack.webhook_queue, doc)
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    message = {
        "v": 1,
        "eventId": ids("evt"),
        "eventType": "ON_ORDER_COMPLETED",
        "customerId": ids("cust"),
    }
    for _ in range(2):
        again = requests.post(stack.worker, json=push_envelope(message), timeout=30)
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"
    assert balance(db, ids("user")) == 750


def test_terminal_failure_is_dead_lettered(stack, db, ids, dlq):
    doc = payloads.order_completed(
        ids("evt"), ids("order"), ids("cust"), ids("user"), [("no-such-pack", 1, 100)]
    )
    assert send(stack.webhook_queue, doc).json()["status"] == "accepted"
    wait_for(lambda: status_of(db, ids("evt")) == "dead_lettered")
    record = event(db, ids("evt"))
    assert record["lastError"]["code"] == "unknown_product"
    (letter,) = dlq.for_event(ids("evt"))
    assert letter.attributes["errorCode"] == "unknown_product"
    assert letter.attributes["source"] == "worker"
    assert letter.attributes["attempts"] == "1"
    assert b'"eventId":"' + ids("evt").encode() in letter.data
    assert balance(db, ids("user")) is None


def test_sync_mode_processes_inline(stack, db, ids):
    doc = payloads.order_completed(ids("evt"), ids("order"), ids("cust"), ids("user"), SAMPLE_LINES)
    answer = send(stack.webhook_sync, doc)
    assert answer.json() == {"status": "processed", "eventId": ids("evt")}
    # Processed before the answer: nothing to wait for.
    assert status_of(db, ids("evt")) == "processed"
    assert event(db, ids("evt"))["mode"] == "sync"
    assert balance(db, ids("user")) == 750


def test_sync_mode_terminal_failure_answers_dead_lettered(stack, db, ids, dlq):
    doc = payloads.order_completed(ids("evt"), ids("order"), ids("cust"), None, SAMPLE_LINES)
    answer = send(stack.webhook_sync, doc)
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "dead_lettered",
        "eventId": ids("evt"),
        "error": "no_user_id",
    }
    assert status_of(db, ids("evt")) == "dead_lettered"
    (letter,) = dlq.for_event(ids("evt"))
    assert letter.attributes["source"] == "webhook"
    assert letter.attributes["errorCode"] == "no_user_id"


def test_one_customers_events_apply_in_order(stack, db, ids):
    cust, user, order_id = ids("cust"), ids("user"), ids("order")
    events = [
        payloads.order_completed(ids("e1"), order_id, cust, user, SAMPLE_LINES),
        payloads.refund(ids("e2"), ids("r1"), order_id, cust, 398),
        payloads.refund(ids("e3"), ids("r2"), order_id, cust, 500),
        payloads.chargeback(ids("e4"), ids("c1"), order_id, cust, 499),
    ]
    for doc in events:
        assert send(stack.webhook_queue, doc).json()["status"] == "accepted"
    for e in ("e1", "e2", "e3", "e4"):
        wait_for(lambda e=e: status_of(db, ids(e)) == "processed")
    entries = ledger(db, user)
    # 750 credited; refund 398/1397 -> 213; 898/1397 -> 482 (so -269); chargeback: the 268 left.
    assert [entries[ids(e)]["delta"] for e in ("e1", "e2", "e3", "e4")] == [750, -213, -269, -268]
    assert balance(db, user) == 0


def test_subscription_lifecycle(stack, db, ids):
    cust, user, sub = ids("cust"), ids("user"), ids("sub")
    send(stack.webhook_queue, payloads.subscription("activated", ids("a"), sub, cust, user))
    send(stack.webhook_queue, payloads.subscription("renewed", ids("r"), sub, cust, None))
    send(stack.webhook_queue, payloads.subscription("canceled", ids("c"), sub, cust, None))
    for e in ("a", "r", "c"):
        wait_for(lambda e=e: status_of(db, ids(e)) == "processed")
    assert balance(db, user) == 600
    record = db.collection("paynowSubscriptions").document(sub).get().to_dict()
    assert record["status"] == "canceled" and record["userId"] == user
    assert set(ledger(db, user)) == {ids("a"), ids("r")}


def test_worker_firestore_outage_is_retried_and_processed_once(stack, db, ids):
    doc = payloads.order_completed(ids("evt"), ids("order"), ids("cust"), ids("user"), SAMPLE_LINES)
    proxy = stack.worker_firestore
    refused_before = proxy.refused
    with proxy.down():
        assert send(stack.webhook_queue, doc).json()["status"] == "accepted"
        # The push arrives and the worker cannot reach Firestore: it answers 5xx.
        wait_for(lambda: proxy.refused > refused_before, timeout=30)
        time.sleep(2)
        assert status_of(db, ids("evt")) == "received"
    wait_for(lambda: status_of(db, ids("evt")) == "processed", timeout=120)
    assert balance(db, ids("user")) == 750
    assert len(ledger(db, ids("user"))) == 1


@pytest.mark.parametrize(
    ("dependency", "left_behind"),
    [
        # Firestore down: nothing was stored.
        ("webhook_firestore", None),
        # Pub/Sub down: the record is kept `received`; the retry publishes it again.
        ("webhook_pubsub", "received"),
    ],
)
def test_webhook_answers_503_when_a_dependency_is_down_and_loses_nothing(
    stack, db, ids, dependency, left_behind
):
    doc = payloads.order_completed(ids("evt"), ids("order"), ids("cust"), ids("user"), SAMPLE_LINES)
    with getattr(stack, dependency).down():
        answer = send(stack.webhook_queue, doc)
        assert answer.status_code == 503
        assert answer.json()["error"] in {"unavailable", "deadline_exceeded"}
    assert status_of(db, ids("evt")) == left_behind
    # PayNow retries after the outage: accepted, and processed exactly once.
    assert send(stack.webhook_queue, doc).json()["status"] == "accepted"
    wait_for(lambda: status_of(db, ids("evt")) == "processed", timeout=120)
    assert balance(db, ids("user")) == 750
    assert len(ledger(db, ids("user"))) == 1


def test_attempts_exhausted_is_dead_lettered(stack, db, ids, dlq):
    cust = ids("cust")
    # A poison event: its order's document is corrupt (no user), so processing meets an
    # unexpected error on every delivery, which is counted like a transient failure.
    # (Waiting for an earlier event is not counted: it cannot exhaust an event.)
    db.collection("paynowOrders").document(ids("order")).set({"pointsCredited": 5})
    # A refund recorded as queued, delivered the way push does until the worker gives up.
    db.collection("webhookEvents").document(ids("evt")).set(
        {
            "eventType": "ON_REFUND",
            "customerId": cust,
            "status": "received",
            "attempts": 0,
            "receivedAt": 1,
            "data": {
                "reversalId": ids("r"),
                "orderId": ids("order"),
                "amount": 100,
                "currency": "usd",
            },
        }
    )
    message = {"v": 1, "eventId": ids("evt"), "eventType": "ON_REFUND", "customerId": cust}
    codes = [
        requests.post(stack.worker, json=push_envelope(message), timeout=30).status_code
        for _ in range(WORKER_MAX_ATTEMPTS)
    ]
    assert codes == [503] * (WORKER_MAX_ATTEMPTS - 1) + [200]
    record = event(db, ids("evt"))
    assert record["status"] == "dead_lettered"
    assert record["lastError"]["code"] == "attempts_exhausted"
    (letter,) = dlq.for_event(ids("evt"))
    assert letter.attributes["attempts"] == str(WORKER_MAX_ATTEMPTS)
    assert letter.attributes["errorCode"] == "attempts_exhausted"
