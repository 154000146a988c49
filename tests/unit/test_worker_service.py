"""``WorkerService.handle`` over the in-memory store and publisher, with the real rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from paynow.adapters.secrets import StaticSecrets
from paynow.domain import payloads
from paynow.domain.errors import (
    AwaitingEarlierEvent,
    Contention,
    DeadlineExceeded,
    DependencyUnavailable,
    EventNotVisible,
    TransientError,
    UnexpectedError,
)
from paynow.domain.events import normalize, parse_envelope
from paynow.domain.messages import QueueMessage
from paynow.service.ports import EventStore, Publisher
from paynow.service.webhook import WebhookService
from paynow.service.worker import EVENT_VISIBILITY_GRACE_SECONDS, Handled, WorkerService
from pytest_mock import MockerFixture

from tests.unit.fakes import FakePublisher, FakeStore
from tests.unit.helpers import CATALOG, NOW, SECRET, push, settings, unwrapped

ORDER_ID = "411486491630371000"
MAX_ATTEMPTS = 3


class Pipeline:
    """A queue-mode webhook and a worker sharing one store and publisher."""

    def __init__(self) -> None:
        self.journal: list[str] = []
        self.store = FakeStore(CATALOG, self.journal)
        self.publisher = FakePublisher(self.journal)
        store: EventStore = self.store
        publisher: Publisher = self.publisher
        s = settings(WEBHOOK_MODE="queue", MAX_DELIVERY_ATTEMPTS=str(MAX_ATTEMPTS))
        self.webhook = WebhookService(s, store, publisher, StaticSecrets(SECRET), clock=lambda: NOW)
        self.worker = WorkerService(s, store, publisher, clock=lambda: NOW)

    def accept(self, doc: dict[str, Any]) -> QueueMessage:
        body, h = payloads.signed(doc, SECRET, int(NOW * 1000))
        assert self.webhook.accept(body, h["PayNow-Signature"], h["PayNow-Timestamp"]).status in {
            "accepted",
            "duplicate",
        }
        return self.publisher.published[-1]

    def deliver(
        self, message: QueueMessage, age_s: float | None = 1.0, attempt: int | None = None
    ) -> Handled:
        return self.worker.handle(push(message, age_s, attempt))


@pytest.fixture
def p() -> Pipeline:
    return Pipeline()


def order(event_id: str = "e-order", lines: Any = None, user_id: str | None = "user-42") -> Any:
    lines = lines or [("gems-100", 2, 398), ("gems-550", 1, 999)]
    return payloads.order_completed(event_id, ORDER_ID, "cust-7", user_id, lines)


def refund(event_id: str, amount: int, kind: str = "refund") -> Any:
    build = payloads.refund if kind == "refund" else payloads.chargeback
    return build(event_id, f"r-{event_id}", ORDER_ID, "cust-7", amount)


def letter_before_mark(journal: list[str], event_id: str) -> bool:
    return journal.index(f"publisher.dead_letter:{event_id}") < journal.index(
        f"store.mark_dead_lettered:{event_id}"
    )


# --- the happy path --------------------------------------------------------------------


def test_worker_processes_a_received_event(p: Pipeline) -> None:
    message = p.accept(order())
    assert p.deliver(message) == Handled("processed", "e-order")
    assert p.store.status("e-order") == "processed"
    assert p.store.balance("user-42") == 750
    assert p.store.ledger["user-42"]["e-order"]["delta"] == 750
    assert p.store.orders[ORDER_ID]["pointsCredited"] == 750
    assert p.publisher.letters == []


def test_duplicate_delivery_is_acknowledged_and_credits_once(p: Pipeline) -> None:
    message = p.accept(order())
    p.deliver(message)
    assert p.deliver(message) == Handled("duplicate", "e-order")
    assert p.store.balance("user-42") == 750
    assert len(p.store.ledger["user-42"]) == 1


def test_worker_processes_a_whole_customer_history(p: Pipeline) -> None:
    messages = [
        p.accept(order()),
        p.accept(refund("r1", 398)),
        p.accept(refund("r2", 999)),
        p.accept(payloads.subscription("activated", "s1", "sub-1", "cust-7", "user-42")),
        p.accept(payloads.subscription("renewed", "s2", "sub-1", "cust-7", None)),
        p.accept(payloads.subscription("canceled", "s3", "sub-1", "cust-7", None)),
    ]
    assert [p.deliver(m).status for m in messages] == ["processed"] * 6
    assert p.store.balance("user-42") == 600
    assert p.store.balance("user-42") == p.store.ledger_sum("user-42")
    assert p.store.subscriptions["sub-1"]["status"] == "canceled"


def test_message_of_an_ignored_type_record_is_ignored(p: Pipeline) -> None:
    event_doc = {"event_type": "ON_X", "event_id": "e-x", "body": {"customer": {"id": "c"}}}
    event = normalize(parse_envelope(json.dumps(event_doc).encode()), "user_id")
    p.store.record_received(event, "queue")  # e.g. written by an earlier version
    assert p.deliver(QueueMessage("e-x", "ON_X", "c")) == Handled("ignored", "e-x")
    assert p.store.status("e-x") == "ignored"


# --- unreadable deliveries -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"garbage", b"{}", b'{"message": {"data": "***"}}', b'{"message": []}'],
)
def test_unreadable_delivery_is_dead_lettered_and_acknowledged(p: Pipeline, body: bytes) -> None:
    assert p.worker.handle(body) == Handled("dead_lettered", None, "invalid_message")
    [letter] = p.publisher.letters
    assert letter.data == body
    attributes = letter.attributes()
    assert attributes["source"] == "worker"
    assert attributes["errorCode"] == "invalid_message"
    assert "eventId" not in attributes
    assert p.store.events == {}


@pytest.mark.parametrize(
    "data", [b"not an event message", b'{"v": 2, "eventId": "e1", "eventType": "T"}']
)
def test_readable_envelope_with_unreadable_data_dead_letters_the_original_data(
    p: Pipeline, data: bytes
) -> None:
    """The contract: a dead-lettered message carries the original data (not the push JSON)."""
    assert p.worker.handle(push(data)) == Handled("dead_lettered", None, "invalid_message")
    [letter] = p.publisher.letters
    assert letter.attributes()["errorCode"] == "invalid_message"
    assert letter.data == data


# --- unwrapped pushes (--push-no-wrapper) ------------------------------------------------------


@pytest.mark.parametrize("write_metadata", [True, False])
def test_an_unwrapped_push_is_processed_like_a_wrapped_one(
    p: Pipeline, write_metadata: bool
) -> None:
    message = p.accept(order())
    body, headers = unwrapped(message, write_metadata=write_metadata)
    assert p.worker.handle(body, headers) == Handled("processed", "e-order")
    assert p.store.status("e-order") == "processed"
    assert p.store.balance("user-42") == 750
    assert p.worker.handle(*unwrapped(message)) == Handled("duplicate", "e-order")
    assert p.worker.handle(push(message)) == Handled("duplicate", "e-order")  # either form
    assert p.publisher.letters == []


def test_a_customer_history_pushed_unwrapped_ends_as_pushed_wrapped(p: Pipeline) -> None:
    twin = Pipeline()
    for doc in (
        order(),
        payloads.subscription("activated", "s1", "sub-1", "cust-7", "user-42"),
        payloads.subscription("renewed", "s2", "sub-1", "cust-7", None),
    ):
        assert p.worker.handle(*unwrapped(p.accept(doc))).status == "processed"
        assert twin.deliver(twin.accept(doc)).status == "processed"
    assert p.store.balance("user-42") == twin.store.balance("user-42") == 750 + 2 * 300
    assert p.store.ledger == twin.store.ledger


@pytest.mark.parametrize("data", [b"not an event message", b'{"v": 2, "eventId": "e1"}'])
def test_unwrapped_unreadable_data_is_dead_lettered_whole_with_its_event_id(
    p: Pipeline, data: bytes
) -> None:
    body, headers = unwrapped(data)
    headers["eventId"] = "e-attr"  # the attribute, as a header
    assert p.worker.handle(body, headers) == Handled("dead_lettered", "e-attr", "invalid_message")
    [letter] = p.publisher.letters
    assert letter.data == data
    assert letter.attributes()["eventId"] == "e-attr"


def test_unwrapped_publish_time_header_dates_a_lost_event(p: Pipeline) -> None:
    message = QueueMessage("e-lost", "ON_ORDER_COMPLETED", "cust-7")
    with pytest.raises(EventNotVisible):
        p.worker.handle(*unwrapped(message, age_s=5))
    old = unwrapped(message, age_s=EVENT_VISIBILITY_GRACE_SECONDS + 1)
    assert p.worker.handle(*old) == Handled("dead_lettered", "e-lost", "event_not_found")


def test_unwrapped_without_metadata_cannot_date_a_missing_record(p: Pipeline) -> None:
    """No publish time: the record's absence stays transient (counted, then exhausted)."""
    message = QueueMessage("e-lost", "ON_ORDER_COMPLETED", "cust-7")
    with pytest.raises(EventNotVisible):
        p.worker.handle(*unwrapped(message, write_metadata=False))


# --- record not (yet) visible ----------------------------------------------------------------


def test_missing_record_of_a_young_message_is_transient(p: Pipeline) -> None:
    with pytest.raises(EventNotVisible) as info:
        p.deliver(QueueMessage("e-late", "ON_ORDER_COMPLETED", "cust-7"), age_s=5)
    assert isinstance(info.value, TransientError)
    assert p.publisher.letters == []


def test_missing_record_without_publish_time_is_transient(p: Pipeline) -> None:
    with pytest.raises(EventNotVisible):
        p.deliver(QueueMessage("e-late", "ON_ORDER_COMPLETED", "cust-7"), age_s=None)


def test_missing_record_at_the_grace_limit_is_still_transient(p: Pipeline) -> None:
    with pytest.raises(EventNotVisible):
        p.deliver(
            QueueMessage("e-late", "ON_ORDER_COMPLETED", "cust-7"),
            age_s=EVENT_VISIBILITY_GRACE_SECONDS - 1,
        )


def test_missing_record_of_an_old_message_is_event_not_found(p: Pipeline) -> None:
    message = QueueMessage("e-lost", "ON_ORDER_COMPLETED", "cust-7")
    handled = p.deliver(message, age_s=EVENT_VISIBILITY_GRACE_SECONDS + 1)
    assert handled == Handled("dead_lettered", "e-lost", "event_not_found")
    [letter] = p.publisher.letters
    assert letter.data == message.data()
    assert letter.attributes()["eventId"] == "e-lost"
    assert letter.attributes()["source"] == "worker"
    assert p.store.events == {}  # nothing to mark: the DLQ message is the only trace


def test_event_not_found_then_paynow_retry_recreates_and_processes(p: Pipeline) -> None:
    message = QueueMessage("e-order", "ON_ORDER_COMPLETED", "cust-7", "user-42")
    p.deliver(message, age_s=EVENT_VISIBILITY_GRACE_SECONDS + 60)
    again = p.accept(order())
    assert p.deliver(again).status == "processed"
    assert p.store.balance("user-42") == 750


# --- transient failures and attempts ---------------------------------------------------------


def test_transient_failures_are_counted_then_exhausted(p: Pipeline, mocker: MockerFixture) -> None:
    message = p.accept(order())
    mocker.patch.object(p.store, "process", side_effect=Contention("too much contention"))
    for attempt in range(1, MAX_ATTEMPTS):
        with pytest.raises(Contention):
            p.deliver(message)
        assert p.store.events["e-order"]["attempts"] == attempt
        assert p.store.events["e-order"]["lastError"]["code"] == "contention"
        assert p.publisher.letters == []
    handled = p.deliver(message)
    assert handled == Handled("dead_lettered", "e-order", "attempts_exhausted")
    [letter] = p.publisher.letters
    attributes = letter.attributes()
    assert attributes["errorCode"] == "attempts_exhausted"
    assert attributes["attempts"] == str(MAX_ATTEMPTS)
    assert attributes["source"] == "worker"
    assert "contention" in attributes["errorMessage"]
    assert letter.data == message.data()
    record = p.store.events["e-order"]
    assert record["status"] == "dead_lettered"
    assert record["lastError"]["code"] == "attempts_exhausted"
    assert letter_before_mark(p.journal, "e-order")


def test_a_bug_while_processing_is_counted_then_exhausted(
    p: Pipeline, mocker: MockerFixture
) -> None:
    """A poison event ends dead-lettered by the worker, not in Pub/Sub's DLQ and reconcile."""
    message = p.accept(order())
    mocker.patch.object(p.store, "process", side_effect=KeyError("user-42 secret detail"))
    for attempt in range(1, MAX_ATTEMPTS):
        with pytest.raises(UnexpectedError):
            p.deliver(message)
        assert p.store.events["e-order"]["attempts"] == attempt
        assert p.store.events["e-order"]["lastError"] == {
            "code": "internal",
            "message": "unexpected KeyError",
        }
    handled = p.deliver(message)
    assert handled == Handled("dead_lettered", "e-order", "attempts_exhausted")
    [letter] = p.publisher.letters
    assert "secret detail" not in json.dumps(letter.attributes())
    assert p.store.events["e-order"]["status"] == "dead_lettered"


def test_pubsub_delivery_attempt_counts_when_higher(p: Pipeline, mocker: MockerFixture) -> None:
    message = p.accept(order())
    mocker.patch.object(p.store, "process", side_effect=DeadlineExceeded("deadline"))
    handled = p.deliver(message, attempt=MAX_ATTEMPTS)
    assert handled.error == "attempts_exhausted"
    assert p.publisher.letters[0].attributes()["attempts"] == str(MAX_ATTEMPTS)


def test_failure_to_count_an_attempt_still_retries(p: Pipeline, mocker: MockerFixture) -> None:
    message = p.accept(order())
    mocker.patch.object(p.store, "process", side_effect=DependencyUnavailable("Firestore down"))
    mocker.patch.object(
        p.store, "record_failure", side_effect=DependencyUnavailable("Firestore down")
    )
    for _ in range(MAX_ATTEMPTS + 2):
        with pytest.raises(DependencyUnavailable):
            p.deliver(message)
    assert p.publisher.letters == []


def test_recovery_after_transient_failures_processes_once(
    p: Pipeline, mocker: MockerFixture
) -> None:
    message = p.accept(order())
    failures = [Contention("busy")]
    real = p.store.process

    def flaky(event: Any, event_id: str, mode: str, **kw: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(event, event_id, mode, **kw)

    mocker.patch.object(p.store, "process", side_effect=flaky)
    with pytest.raises(Contention):
        p.deliver(message)
    assert p.store.balance("user-42") == 0
    assert p.deliver(message).status == "processed"
    assert p.store.balance("user-42") == 750
    assert p.store.events["e-order"]["attempts"] == 1


# --- terminal failures -------------------------------------------------------------------------


def test_terminal_failure_is_dead_lettered_before_the_record_is_marked(p: Pipeline) -> None:
    message = p.accept(order(lines=[("mystery-box", 1, 100)]))
    handled = p.deliver(message, attempt=2)
    assert handled == Handled("dead_lettered", "e-order", "unknown_product")
    [letter] = p.publisher.letters
    assert letter.data == message.data()
    attributes = letter.attributes()
    assert (attributes["eventId"], attributes["errorCode"]) == ("e-order", "unknown_product")
    assert (attributes["source"], attributes["attempts"]) == ("worker", "2")
    assert p.store.status("e-order") == "dead_lettered"
    assert p.store.events["e-order"]["lastError"]["code"] == "unknown_product"
    assert letter_before_mark(p.journal, "e-order")
    # redelivered after that: a duplicate, not a second letter
    assert p.deliver(message).status == "duplicate"
    assert len(p.publisher.letters) == 1


def test_terminal_failure_without_delivery_attempt_counts_one(p: Pipeline) -> None:
    message = p.accept(order(user_id=None))
    assert p.deliver(message).error == "no_user_id"
    assert p.publisher.letters[0].attributes()["attempts"] == "1"


def test_dead_letter_publish_failure_leaves_the_record_received(
    p: Pipeline, mocker: MockerFixture
) -> None:
    message = p.accept(order(lines=[("mystery-box", 1, 100)]))
    mocker.patch.object(
        p.publisher, "dead_letter", side_effect=DependencyUnavailable("Pub/Sub unavailable")
    )
    with pytest.raises(DependencyUnavailable):
        p.deliver(message)
    assert p.store.status("e-order") == "received"


def test_corrupt_stored_record_is_event_mismatch(p: Pipeline) -> None:
    message = p.accept(order())
    p.store.events["e-order"]["data"] = {"orderId": ORDER_ID}
    assert p.deliver(message).error == "event_mismatch"
    assert p.store.status("e-order") == "dead_lettered"


# --- per-customer order across redeliveries ------------------------------------------------------


def test_refund_before_its_order_waits_then_goes_through(p: Pipeline) -> None:
    order_message = p.accept(order())
    refund_message = p.accept(refund("r1", 1397))
    with pytest.raises(AwaitingEarlierEvent):
        p.deliver(refund_message)
    assert p.store.events["r1"]["attempts"] == 0  # waiting is not a failed attempt
    assert p.store.events["r1"]["lastError"]["code"] == "awaiting_earlier_event"
    assert p.publisher.letters == []
    p.deliver(order_message)
    assert p.deliver(refund_message) == Handled("processed", "r1")
    assert p.store.balance("user-42") == 0


def test_refund_of_an_order_that_never_came_is_dead_lettered(p: Pipeline) -> None:
    message = p.accept(refund("r1", 100))
    assert p.deliver(message) == Handled("dead_lettered", "r1", "order_not_found")
    assert p.store.status("r1") == "dead_lettered"


def test_a_later_pending_event_does_not_hold_an_earlier_refund(p: Pipeline) -> None:
    refund_message = p.accept(refund("r1", 100))
    p.accept(order("e-later"))  # received after the refund
    assert p.deliver(refund_message).error == "order_not_found"


def test_a_refund_waiting_behind_a_slow_order_never_runs_out_of_attempts(p: Pipeline) -> None:
    """However often it is delivered (redeliveries, republished copies, Pub/Sub's own count),
    a refund behind its queued order waits; it is never dead-lettered for coming early."""
    order_message = p.accept(order())
    refund_message = p.accept(refund("r1", 1397))
    for attempt in range(1, 3 * MAX_ATTEMPTS):
        with pytest.raises(AwaitingEarlierEvent):
            p.deliver(refund_message, attempt=attempt)
    assert p.store.status("r1") == "received"
    assert p.publisher.letters == []
    p.deliver(order_message)
    assert p.deliver(refund_message, attempt=3 * MAX_ATTEMPTS) == Handled("processed", "r1")
    assert p.store.balance("user-42") == 0


# --- refunds, chargebacks and closes as PayNow sends them -------------------------------------


def customerless(doc: dict[str, Any]) -> dict[str, Any]:
    """PayNow may send a refund, chargeback or close with ``customer: null``."""
    doc["body"]["customer"] = None
    doc["body"].pop("customer_id", None)
    return doc


def close(event_id: str, outcome: str = "won", payment: str = "r-cb") -> dict[str, Any]:
    doc = payloads.chargeback(event_id, payment, ORDER_ID, "cust-7", 0)
    doc["event_type"] = "ON_CHARGEBACK_CLOSED"
    doc["body"]["chargeback_status"] = outcome
    return customerless(doc)


def test_a_customerless_refund_waits_for_its_order_then_goes_through(p: Pipeline) -> None:
    order_message = p.accept(order())
    refund_message = p.accept(customerless(refund("r1", 1397)))
    assert refund_message.customer_id is None and refund_message.ordering_key == "r1"
    with pytest.raises(AwaitingEarlierEvent):
        p.deliver(refund_message)
    p.deliver(order_message)
    assert p.deliver(refund_message) == Handled("processed", "r1")
    assert p.store.balance("user-42") == 0
    assert p.store.events["r1"]["userId"] == "user-42"  # found through the order


def test_a_refund_that_is_not_completed_is_ignored_with_its_reason(p: Pipeline) -> None:
    p.deliver(p.accept(order()))
    doc = refund("r1", 1397)
    doc["body"]["status"] = "failed"
    assert p.deliver(p.accept(doc)) == Handled("ignored", "r1")
    assert p.store.balance("user-42") == 750
    assert p.store.events["r1"]["reason"] == "refund failed: only a completed refund moves points"


def test_one_refund_delivered_under_two_event_ids_moves_points_once(p: Pipeline) -> None:
    p.deliver(p.accept(order()))
    first, second = refund("r1", 398), refund("r2", 398)
    second["body"]["id"] = first["body"]["id"]
    assert p.deliver(p.accept(first)).status == "processed"
    assert p.deliver(p.accept(second)) == Handled("ignored", "r2")
    assert p.store.balance("user-42") == 750 - 213


def test_a_won_close_waits_for_its_chargeback_then_gives_the_points_back(p: Pipeline) -> None:
    p.deliver(p.accept(order()))
    chargeback = p.accept(customerless(refund("cb", 1397, kind="chargeback")))
    won = p.accept(close("won-1"))
    with pytest.raises(AwaitingEarlierEvent):
        p.deliver(won)
    assert p.deliver(chargeback).status == "processed"
    assert p.store.balance("user-42") == 0
    assert p.deliver(won) == Handled("processed", "won-1")
    assert p.store.balance("user-42") == 750
    assert p.store.ledger["user-42"]["won-1"]["delta"] == 750
    assert p.store.ledger_sum("user-42") == 750
    assert p.deliver(p.accept(close("won-2"))) == Handled("ignored", "won-2")
    assert p.store.balance("user-42") == 750


def test_a_won_close_of_an_order_without_a_chargeback_is_chargeback_not_found(
    p: Pipeline,
) -> None:
    p.deliver(p.accept(order()))
    message = p.accept(close("won-1"))
    assert p.deliver(message) == Handled("dead_lettered", "won-1", "chargeback_not_found")
    assert p.store.balance("user-42") == 750


def test_a_lost_close_is_ignored_without_its_order(p: Pipeline) -> None:
    assert p.deliver(p.accept(close("lost-1", "lost"))) == Handled("ignored", "lost-1")
    assert p.store.events["lost-1"]["reason"] == "chargeback closed lost: no points given back"
