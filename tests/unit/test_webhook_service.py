"""``WebhookService.accept`` over the in-memory store and publisher, with the real rules."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from paynow.adapters.secrets import SecretManagerSecrets, StaticSecrets
from paynow.domain import payloads
from paynow.domain.errors import (
    Contention,
    DependencyUnavailable,
    InvalidPayload,
    InvalidSignature,
    StaleTimestamp,
    TransientError,
)
from paynow.domain.events import normalize, parse_envelope
from paynow.domain.messages import QueueMessage
from paynow.service.ports import EventStore, Publisher, SecretSource
from paynow.service.webhook import Accepted, AwaitPublish, Publish, Record, WebhookService
from pytest_mock import MockerFixture

from tests.unit.fakes import FakePublisher, FakeStore
from tests.unit.helpers import CATALOG, NOW, NOW_MS, PREVIOUS_SECRET, SECRET, settings

ORDER_ID = "411486491630371000"


@dataclass
class Harness:
    """A webhook service in ``mode`` over a fake store and publisher sharing one journal."""

    mode: str
    secrets: SecretSource = field(default_factory=lambda: StaticSecrets(SECRET, PREVIOUS_SECRET))
    store: FakeStore | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = FakeStore(CATALOG)
        self.journal = self.store.journal
        self.publisher = FakePublisher(self.journal)
        store: EventStore = self.store
        publisher: Publisher = self.publisher
        self.service = WebhookService(
            settings(WEBHOOK_MODE=self.mode, **self.env),
            store,
            publisher,
            self.secrets,
            clock=lambda: NOW,
        )

    @property
    def db(self) -> FakeStore:
        assert self.store is not None
        return self.store

    def send(
        self, doc: dict[str, Any] | bytes, secret: str = SECRET, ts_ms: int = NOW_MS
    ) -> Accepted:
        body, headers = payloads.signed(doc, secret, ts_ms)
        return self.service.accept(body, headers["PayNow-Signature"], headers["PayNow-Timestamp"])


@pytest.fixture
def queue() -> Harness:
    return Harness("queue")


@pytest.fixture
def sync() -> Harness:
    return Harness("sync")


def order(event_id: str = "e-order", user_id: str | None = "user-42", **kw: Any) -> dict[str, Any]:
    lines = kw.pop("lines", [("gems-100", 2, 398), ("gems-550", 1, 999)])
    return payloads.order_completed(
        event_id, kw.pop("order_id", ORDER_ID), kw.pop("customer", "cust-7"), user_id, lines
    )


def refund(event_id: str, amount: int, kind: str = "refund", customer: str = "cust-7") -> Any:
    build = payloads.refund if kind == "refund" else payloads.chargeback
    return build(event_id, f"r-{event_id}", ORDER_ID, customer, amount)


def unknown(event_id: str = "e-unknown") -> dict[str, Any]:
    return {"event_type": "ON_GIFTCARD_PURCHASED", "event_id": event_id, "body": {"id": "g1"}}


def mismatch(event_id: str = "e-bad") -> dict[str, Any]:
    doc = order(event_id)
    doc["body"]["lines"] = []
    return doc


def assert_invariant(store: FakeStore) -> None:
    for user_id in store.users:
        assert store.balance(user_id) == store.ledger_sum(user_id)


# --- signature -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["queue", "sync"])
def test_bad_signature_is_refused_and_nothing_is_stored(mode: str) -> None:
    h = Harness(mode)
    with pytest.raises(InvalidSignature):
        h.send(order(), secret="forged")
    assert h.db.events == {}
    assert h.journal == []
    assert h.publisher.letters == []


def test_stale_request_is_refused_and_nothing_is_stored(queue: Harness) -> None:
    with pytest.raises(StaleTimestamp):
        queue.send(order(), ts_ms=NOW_MS - 301_000)
    assert queue.db.events == {}
    assert queue.journal == []


def test_missing_headers_are_refused(queue: Harness) -> None:
    body = payloads.encode(order())
    with pytest.raises(InvalidSignature):
        queue.service.accept(body, None, None)
    assert queue.journal == []


def test_previous_secret_is_accepted(queue: Harness) -> None:
    assert queue.send(order(), secret=PREVIOUS_SECRET).status == "accepted"


def test_tolerance_comes_from_settings() -> None:
    h = Harness("queue", env={"PAYNOW_SIGNATURE_TOLERANCE_SECONDS": "10"})
    with pytest.raises(StaleTimestamp):
        h.send(order(), ts_ms=NOW_MS - 11_000)
    assert h.send(order(), ts_ms=NOW_MS - 9_000).status == "accepted"


class RotatingSecrets:
    """A source whose cached value is stale until ``refresh`` re-reads it."""

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ("old-secret",)
        self.refreshes = 0

    def current(self) -> tuple[str, ...]:
        return self.values

    def ready(self) -> tuple[str, ...]:
        return self.values

    def refresh(self) -> bool:
        self.refreshes += 1
        self.values = ("rotated-secret", "old-secret")
        return True


def test_a_rotated_secret_is_picked_up_by_one_refresh() -> None:
    secrets = RotatingSecrets()
    h = Harness("queue", secrets=secrets)
    assert h.send(order(), secret="rotated-secret").status == "accepted"
    assert secrets.refreshes == 1
    assert h.send(order("e2"), secret="old-secret").status == "accepted"
    assert secrets.refreshes == 1


def test_a_forged_signature_after_refresh_is_still_refused() -> None:
    secrets = RotatingSecrets()
    h = Harness("queue", secrets=secrets)
    with pytest.raises(InvalidSignature):
        h.send(order(), secret="forged")
    assert secrets.refreshes == 1
    assert h.journal == []


def test_missing_headers_and_stale_requests_do_not_refresh() -> None:
    secrets = RotatingSecrets()
    h = Harness("queue", secrets=secrets)
    with pytest.raises(InvalidSignature):
        h.service.accept(b"{}", None, str(NOW_MS))
    with pytest.raises(StaleTimestamp):
        h.send(order(), secret="rotated-secret", ts_ms=NOW_MS - 3_600_000)
    assert secrets.refreshes == 0


def test_secret_manager_rotation_end_to_end() -> None:
    values = {"now": "v1"}
    clock = {"t": 0.0}
    secrets = SecretManagerSecrets(
        "projects/p/secrets/s", fetch=lambda _name: values["now"], clock=lambda: clock["t"]
    )
    h = Harness("queue", secrets=secrets)
    assert h.send(order("e1"), secret="v1").status == "accepted"
    values["now"] = "v2"
    clock["t"] += 60
    assert h.send(order("e2"), secret="v2").status == "accepted"
    assert h.send(order("e3"), secret="v1").status == "accepted"  # in-flight retries still pass


class CountingVault:
    """A fake Secret Manager that counts its reads."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    def __call__(self, _name: str) -> str:
        self.reads += 1
        return self.value


def test_each_subscription_secret_in_secret_manager_is_accepted_and_others_refused() -> None:
    subscriptions = [f"sub-secret-{n}" for n in range(6)]
    vault = CountingVault("\n".join(subscriptions) + "\n")
    secrets = SecretManagerSecrets("projects/p/secrets/s", fetch=vault, clock=lambda: 0.0)
    h = Harness("queue", secrets=secrets)
    for n, secret in enumerate(subscriptions):
        assert h.send(order(f"e{n}"), secret=secret).status == "accepted"
    with pytest.raises(InvalidSignature):
        h.send(order("e-forged"), secret="sub-secret-6")
    assert vault.reads == 1  # the refresh after that mismatch is within the floor of the first


def test_a_flood_of_bad_signatures_is_not_a_flood_of_secret_manager_reads() -> None:
    """A secret added in Secret Manager is picked up without a redeploy, at a bounded cost."""
    vault = CountingVault("order-secret\nrefund-secret")
    clock = {"t": 0.0}
    secrets = SecretManagerSecrets("projects/p/secrets/s", fetch=vault, clock=lambda: clock["t"])
    h = Harness("queue", secrets=secrets)
    assert h.send(order("e0"), secret="order-secret").status == "accepted"
    for n in range(600):  # two forged requests a second for five minutes
        clock["t"] += 0.5
        with pytest.raises(InvalidSignature):
            h.send(order(f"forged-{n}"), secret=f"guess-{n}")
    assert vault.reads <= 1 + 300 / 30  # the first read, then at most one per floor
    vault.value += "\nchargeback-secret\n"  # the store subscribed to one more event type
    clock["t"] += 30
    assert h.send(order("e1"), secret="chargeback-secret").status == "accepted"
    assert h.send(order("e2"), secret="refund-secret").status == "accepted"
    assert h.db.events.keys() == {"e0", "e1", "e2"}


# --- queue mode ------------------------------------------------------------------------


def test_queue_mode_records_and_publishes(queue: Harness) -> None:
    doc = order()
    result = queue.send(doc)
    assert result == Accepted("accepted", "e-order")
    record = queue.db.events["e-order"]
    assert record["status"] == "received"
    assert record["mode"] == "queue"
    assert record["customerId"] == "cust-7"
    assert record["userId"] == "user-42"
    assert record["data"]["orderId"] == ORDER_ID
    assert queue.publisher.published == [
        QueueMessage("e-order", "ON_ORDER_COMPLETED", "cust-7", "user-42")
    ]
    assert queue.publisher.published[0].ordering_key == "cust-7"
    assert all(p.waited for p in queue.publisher.pendings)
    assert queue.db.users == {}  # nothing credited before the worker runs
    assert queue.publisher.letters == []


def test_queue_mode_ordering_key_falls_back_to_the_event_id(queue: Harness) -> None:
    doc = refund("e-r", 100)
    del doc["body"]["customer"]
    queue.send(doc)
    assert queue.publisher.published[0].ordering_key == "e-r"


def test_queue_mode_repeat_while_received_publishes_again(queue: Harness) -> None:
    assert queue.send(order()).status == "accepted"
    assert queue.send(order()).status == "accepted"
    assert len(queue.publisher.published) == 2
    assert len(queue.db.events) == 1


@pytest.mark.parametrize("final", ["processed", "ignored", "dead_lettered"])
def test_queue_mode_repeat_after_final_is_duplicate(queue: Harness, final: str) -> None:
    queue.send(order())
    queue.db.events["e-order"]["status"] = final
    assert queue.send(order()) == Accepted("duplicate", "e-order")
    assert queue.db.status("e-order") == final


def test_queue_mode_repeat_after_processing_is_duplicate_and_credits_once(queue: Harness) -> None:
    queue.send(order())
    assert queue.db.process(None, "e-order", "queue").status == "processed"
    assert queue.send(order()).status == "duplicate"
    assert queue.db.balance("user-42") == 750


def test_queue_mode_unknown_type_is_ignored_and_not_published(queue: Harness) -> None:
    assert queue.send(unknown()) == Accepted("ignored", "e-unknown")
    assert queue.publisher.published == []
    assert queue.db.status("e-unknown") == "ignored"
    assert queue.db.events["e-unknown"]["data"] == {}


def test_queue_mode_publish_failure_is_transient(queue: Harness) -> None:
    queue.publisher.publish_error = DependencyUnavailable("Pub/Sub unavailable")
    with pytest.raises(TransientError) as info:
        queue.send(order())
    assert info.value.code == "unavailable"
    assert queue.db.users == {}
    # PayNow retries; once Pub/Sub is back the same event is accepted and published again
    queue.publisher.publish_error = None
    assert queue.send(order()).status == "accepted"
    assert len(queue.publisher.published) == 2
    assert queue.db.status("e-order") == "received"


def test_queue_mode_store_failure_is_transient(queue: Harness, mocker: MockerFixture) -> None:
    mocker.patch.object(queue.db, "record_received", side_effect=Contention("busy"))
    with pytest.raises(Contention):
        queue.send(order())


def test_queue_mode_mismatch_is_dead_lettered_by_the_webhook(queue: Harness) -> None:
    result = queue.send(mismatch())
    assert result == Accepted("dead_lettered", "e-bad", error="event_mismatch")
    assert queue.publisher.published == []
    assert len(queue.publisher.letters) == 1


# --- sync mode ----------------------------------------------------------------------------


def test_sync_mode_processes_inline(sync: Harness) -> None:
    assert sync.send(order()) == Accepted("processed", "e-order")
    assert sync.db.balance("user-42") == 750
    assert sync.db.ledger["user-42"]["e-order"] == {
        "delta": 750,
        "eventId": "e-order",
        "eventType": "ON_ORDER_COMPLETED",
        "orderId": ORDER_ID,
        "reason": "order completed",
        "createdAt": sync.db.ledger["user-42"]["e-order"]["createdAt"],
    }
    assert sync.db.orders[ORDER_ID] | {"updatedAt": None} == {
        "userId": "user-42",
        "customerId": "cust-7",
        "totalAmount": 1397,
        "currency": "usd",
        "pointsCredited": 750,
        "refundedAmount": 0,
        "pointsReversed": 0,
        "refundIds": [],
        "chargebacks": {},
        "updatedAt": None,
    }
    record = sync.db.events["e-order"]
    assert (record["status"], record["mode"], record["userId"]) == ("processed", "sync", "user-42")
    assert sync.publisher.published == []
    assert sync.publisher.letters == []


def test_sync_mode_duplicate_credits_once(sync: Harness) -> None:
    sync.send(order())
    assert sync.send(order()) == Accepted("duplicate", "e-order")
    assert sync.db.balance("user-42") == 750
    assert len(sync.db.ledger["user-42"]) == 1


def test_sync_mode_same_order_under_another_event_id_credits_once(sync: Harness) -> None:
    sync.send(order("e1"))
    assert sync.send(order("e2")).status == "processed"
    assert sync.db.balance("user-42") == 750
    assert sync.db.ledger["user-42"]["e2"]["delta"] == 0


def test_sync_mode_order_refunds_and_chargeback(sync: Harness) -> None:
    sync.send(order())
    assert sync.send(refund("r1", 398)).status == "processed"
    assert sync.db.balance("user-42") == 750 - 213
    assert sync.send(refund("r2", 999)).status == "processed"
    assert sync.db.balance("user-42") == 0
    assert sync.send(refund("cb", 1397, kind="chargeback")).status == "processed"
    assert sync.db.balance("user-42") == 0
    assert sync.db.orders[ORDER_ID]["refundedAmount"] == 1397
    assert sync.db.orders[ORDER_ID]["pointsReversed"] == 750
    assert [e["delta"] for e in sync.db.ledger["user-42"].values()] == [750, -213, -537, 0]
    assert_invariant(sync.db)


def test_sync_mode_subscription_lifecycle(sync: Harness) -> None:
    sync.send(payloads.subscription("activated", "s1", "sub-1", "cust-7", "user-42"))
    sync.send(payloads.subscription("renewed", "s2", "sub-1", "cust-7", None))
    sync.send(payloads.subscription("canceled", "s3", "sub-1", "cust-7", None))
    assert sync.db.balance("user-42") == 600
    assert set(sync.db.ledger["user-42"]) == {"s1", "s2"}
    assert sync.db.subscriptions["sub-1"]["status"] == "canceled"
    assert sync.db.subscriptions["sub-1"]["userId"] == "user-42"
    assert sync.db.status("s3") == "processed"
    assert_invariant(sync.db)


def test_sync_mode_unknown_type_is_ignored(sync: Harness) -> None:
    assert sync.send(unknown()) == Accepted("ignored", "e-unknown")
    assert sync.db.status("e-unknown") == "ignored"
    assert sync.publisher.published == []
    assert sync.db.users == {}


def test_sync_mode_unknown_product_is_dead_lettered(sync: Harness) -> None:
    result = sync.send(order(lines=[("mystery-box", 1, 500)]))
    assert result == Accepted("dead_lettered", "e-order", error="unknown_product")
    [letter] = sync.publisher.letters
    attributes = letter.attributes()
    assert attributes["errorCode"] == "unknown_product"
    assert attributes["eventId"] == "e-order"
    assert attributes["source"] == "webhook"
    assert attributes["attempts"] == "1"
    assert "mystery-box" in attributes["errorMessage"]
    assert QueueMessage.decode(letter.data) == QueueMessage(
        "e-order", "ON_ORDER_COMPLETED", "cust-7", "user-42"
    )
    record = sync.db.events["e-order"]
    assert record["status"] == "dead_lettered"
    assert record["lastError"]["code"] == "unknown_product"
    assert record["data"]["lines"] == [{"productId": "mystery-box", "quantity": 1}]
    assert sync.db.users == {}
    assert sync.db.orders == {}
    assert sync.journal.index("publisher.dead_letter:e-order") < sync.journal.index(
        "store.mark_dead_lettered:e-order"
    )


def test_sync_mode_dead_lettered_event_sent_again_is_duplicate(sync: Harness) -> None:
    sync.send(order(lines=[("mystery-box", 1, 500)]))
    assert sync.send(order(lines=[("mystery-box", 1, 500)])).status == "duplicate"
    assert len(sync.publisher.letters) == 1


def test_sync_mode_order_without_user_is_dead_lettered(sync: Harness) -> None:
    result = sync.send(order(user_id=None))
    assert result == Accepted("dead_lettered", "e-order", error="no_user_id")
    assert sync.db.status("e-order") == "dead_lettered"


def test_sync_mode_refund_of_never_credited_order_is_dead_lettered(sync: Harness) -> None:
    result = sync.send(refund("r1", 100))
    assert result == Accepted("dead_lettered", "r1", error="order_not_found")
    assert sync.publisher.letters[0].attributes()["errorCode"] == "order_not_found"


def test_sync_mode_refund_in_another_currency_is_dead_lettered(sync: Harness) -> None:
    sync.send(order())
    doc = refund("r1", 100)
    doc["body"]["currency"] = "EUR"
    assert sync.send(doc).error == "event_mismatch"
    assert sync.db.balance("user-42") == 750


def test_refund_before_its_order_is_queued_behind_it() -> None:
    """Switching queue → sync: the order is still queued when its refund arrives inline."""
    queued = Harness("queue")
    queued.send(order())
    h = Harness("sync", store=queued.db)
    answer = h.send(refund("r1", 1397))
    # Not processed inline (it would overtake the order): queued behind it, answered 2xx.
    assert answer.status == "accepted"
    assert h.db.status("r1") == "received"
    assert [m.event_id for m in h.publisher.published] == ["r1"]
    assert h.publisher.letters == []
    # the worker credits the order, then the refund
    h.db.process(None, "e-order", "queue")
    h.db.process(None, "r1", "queue")
    assert h.db.balance("user-42") == 0
    assert_invariant(h.db)


def test_a_customerless_refund_in_sync_mode_is_queued_behind_its_queued_order() -> None:
    """No customer means no ordering key in common with the order: the order id links them."""
    queued = Harness("queue")
    queued.send(order())
    h = Harness("sync", store=queued.db)
    doc = refund("r1", 1397)
    doc["body"]["customer"] = None
    assert h.send(doc).status == "accepted"  # never dead-lettered for coming early
    assert h.db.status("r1") == "received"
    assert h.publisher.letters == []
    h.db.process(None, "e-order", "queue")
    h.db.process(None, "r1", "queue")
    assert h.db.balance("user-42") == 0
    assert_invariant(h.db)


def test_a_customerless_refund_of_an_order_never_seen_is_dead_lettered_inline() -> None:
    h = Harness("sync")
    doc = refund("r1", 1397)
    doc["body"]["customer"] = None
    assert h.send(doc) == Accepted("dead_lettered", "r1", error="order_not_found")


def test_an_event_received_before_the_pending_one_is_not_held_behind_it() -> None:
    """A retry of an event queued first must not wait for one queued after it."""
    queued = Harness("queue")
    queued.send(order())
    queued.send(refund("r1", 1397))
    h = Harness("sync", store=queued.db)
    assert h.send(order()).status == "processed"
    assert h.db.balance("user-42") == 750
    assert h.db.status("r1") == "received"


def test_an_ignored_type_is_not_held_behind_a_pending_event() -> None:
    queued = Harness("queue")
    queued.send(order())
    h = Harness("sync", store=queued.db)
    doc = order("e-odd")
    doc["event_type"] = "ON_SOMETHING_ELSE"
    assert h.send(doc).status == "ignored"
    assert [m.event_id for m in h.publisher.published] == []


def test_pending_event_of_another_customer_does_not_hold_a_refund(sync: Harness) -> None:
    other = order("e-other", customer="cust-8", order_id="o8")
    sync.db.record_received(normalize(parse_envelope(payloads.encode(other)), "user_id"), "queue")
    assert sync.send(refund("r1", 100)).error == "order_not_found"


def test_sync_mode_transient_store_failure_is_raised_and_nothing_dead_lettered(
    sync: Harness, mocker: MockerFixture
) -> None:
    mocker.patch.object(sync.db, "process", side_effect=Contention("too much contention"))
    with pytest.raises(Contention):
        sync.send(order())
    assert sync.publisher.letters == []
    assert sync.db.events == {}


def test_dead_letter_publish_failure_leaves_the_record_unmarked(
    sync: Harness, mocker: MockerFixture
) -> None:
    mocker.patch.object(
        sync.publisher, "dead_letter", side_effect=DependencyUnavailable("Pub/Sub unavailable")
    )
    with pytest.raises(DependencyUnavailable):
        sync.send(order(lines=[("mystery-box", 1, 500)]))
    assert "e-order" not in sync.db.events  # retried later, never dead_lettered silently


# --- event_mismatch and invalid payloads ----------------------------------------------


@pytest.mark.parametrize("mode", ["queue", "sync"])
def test_mismatch_is_dead_lettered_with_the_raw_body(mode: str) -> None:
    h = Harness(mode)
    doc = mismatch()
    result = h.send(doc)
    assert result == Accepted("dead_lettered", "e-bad", error="event_mismatch")
    [letter] = h.publisher.letters
    assert letter.data == payloads.encode(doc)
    assert letter.attributes()["source"] == "webhook"
    assert letter.attributes()["eventId"] == "e-bad"
    assert letter.attributes()["errorCode"] == "event_mismatch"
    record = h.db.events["e-bad"]
    assert record["status"] == "dead_lettered"
    assert record["data"] == {}
    assert record["lastError"]["code"] == "event_mismatch"
    assert "jane.doe@example.com" not in json.dumps(record, default=str)
    # sent again: answered duplicate, not dead-lettered twice
    assert h.send(doc).status == "duplicate"
    assert len(h.publisher.letters) == 1


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"event_type": "ON_REFUND"}', b'{"event_id": "a/b", "event_type": "X"}'],
)
def test_invalid_payload_is_raised_and_kept_once(queue: Harness, raw: bytes) -> None:
    with pytest.raises(InvalidPayload):
        queue.send(raw)
    with pytest.raises(InvalidPayload):
        queue.send(raw)
    [letter] = queue.publisher.letters
    assert letter.data == raw
    attributes = letter.attributes()
    assert attributes["errorCode"] == "invalid_payload"
    assert attributes["source"] == "webhook"
    assert "eventId" not in attributes
    assert queue.db.rejections == {hashlib.sha256(raw).hexdigest(): "invalid_payload"}
    assert queue.db.events == {}
    assert queue.publisher.published == []


def test_different_invalid_payloads_are_each_kept(queue: Harness) -> None:
    for raw in (b"one", b"two"):
        with pytest.raises(InvalidPayload):
            queue.send(raw)
    assert [x.data for x in queue.publisher.letters] == [b"one", b"two"]


def test_invalid_payload_is_remembered_only_after_it_is_kept(
    queue: Harness, mocker: MockerFixture
) -> None:
    mocker.patch.object(
        queue.publisher, "dead_letter", side_effect=DependencyUnavailable("Pub/Sub unavailable")
    )
    with pytest.raises(DependencyUnavailable):
        queue.send(b"garbage")
    assert queue.db.rejections == {}


def test_unsigned_invalid_payload_is_not_kept(queue: Harness) -> None:
    with pytest.raises(InvalidSignature):
        queue.service.accept(b"garbage", "sig", str(NOW_MS))
    assert queue.publisher.letters == []


# --- queue mode's fast path: queueable, enqueue_steps -------------------------------------


def _signed(doc: dict[str, Any] | bytes, secret: str = SECRET) -> tuple[bytes, str, str]:
    body, headers = payloads.signed(doc, secret, NOW_MS)
    return body, headers["PayNow-Signature"], headers["PayNow-Timestamp"]


def test_a_signed_handled_event_in_queue_mode_takes_the_fast_path_with_no_io(
    queue: Harness,
) -> None:
    event = queue.service.queueable(*_signed(order()))
    assert event is not None and (event.event_id, event.customer_id) == ("e-order", "cust-7")
    assert queue.journal == []  # nothing stored, nothing published: the caller does it


@pytest.mark.parametrize(
    "case",
    ["sync mode", "bad signature", "unreadable", "unhandled type", "mismatch", "no cached secret"],
)
def test_everything_else_is_left_to_accept(case: str) -> None:
    fetched: list[str] = []

    def vault(name: str) -> str:
        fetched.append(name)
        return SECRET

    secrets: SecretSource = StaticSecrets(SECRET)
    if case == "no cached secret":  # Secret Manager not read yet: accept reads it, on a thread
        secrets = SecretManagerSecrets("projects/p/secrets/s", fetch=vault)
    h = Harness("sync" if case == "sync mode" else "queue", secrets=secrets)
    docs: dict[str, dict[str, Any] | bytes] = {
        "bad signature": order(),
        "unreadable": b"nope",
        "unhandled type": unknown(),
        "mismatch": mismatch(),
    }
    body, sig, stamp = _signed(
        docs.get(case, order()), "another-secret" if case == "bad signature" else SECRET
    )
    assert h.service.queueable(body, sig, stamp) is None
    assert h.journal == [] and fetched == []


def test_enqueue_steps_publish_then_record_then_await_the_publish(queue: Harness) -> None:
    event = normalize(parse_envelope(payloads.encode(order())), "user_id")
    steps = queue.service.enqueue_steps(event)
    publish = next(steps)
    assert isinstance(publish, Publish) and publish.message == QueueMessage.for_event(event)
    record = steps.send("the publish under way")
    assert isinstance(record, Record) and (record.event, record.mode) == (event, "queue")
    wait = steps.send(None)  # the record was created
    assert isinstance(wait, AwaitPublish) and wait.pending == "the publish under way"
    with pytest.raises(StopIteration) as done:
        steps.send("message-id")
    assert done.value.value == Accepted("accepted", "e-order")


@pytest.mark.parametrize("stored", ["processed", "dead_lettered", "ignored"])
def test_enqueue_steps_end_at_a_final_record_without_awaiting_the_publish(
    queue: Harness, stored: str
) -> None:
    event = normalize(parse_envelope(payloads.encode(order())), "user_id")
    steps = queue.service.enqueue_steps(event)
    next(steps)
    steps.send("pending")
    with pytest.raises(StopIteration) as done:
        steps.send(stored)
    assert done.value.value == Accepted("duplicate", "e-order")
