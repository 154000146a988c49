"""Parsing PayNow bodies: envelope errors, normalized fields per type, no PII kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from paynow.domain import events as ev
from paynow.domain import payloads
from paynow.domain.errors import EventMismatch, InvalidPayload
from paynow.domain.messages import QueueMessage

PII = payloads.PII
IDS = payloads.IDS


def parse(doc: dict[str, Any], key: str = "user_id") -> ev.PayNowEvent:
    return ev.normalize(ev.parse_envelope(payloads.encode(doc)), key)


# --- parse_envelope ----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b'{"event_id": "e1", "event_type": "ON_REFUND"',  # truncated
        b"\xff\xfe{}",  # not UTF-8
        '{"event_id": "é"}'.encode("latin-1"),
        b"[]",
        b'[{"event_id": "e1", "event_type": "ON_REFUND"}]',
        b'"a string"',
        b"42",
        b"null",
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b'{"event_id": "e1", "event_type": "ON_REFUND", "n": ' + b"1" * 5000 + b"}",
    ],
)
def test_parse_envelope_rejects_what_is_not_a_paynow_event(raw: bytes) -> None:
    with pytest.raises(InvalidPayload) as info:
        ev.parse_envelope(raw)
    assert info.value.code == "invalid_payload"


@pytest.mark.parametrize(
    "event_id",
    [None, "", 123, 4.5, True, ["e1"], {"id": "e1"}, "a/b", ".", "..", "x" * 129, "spa ce"],
)
def test_parse_envelope_needs_an_id_string(event_id: object) -> None:
    doc: dict[str, Any] = {"event_type": "ON_REFUND", "body": {}}
    if event_id is not None:
        doc["event_id"] = event_id
    with pytest.raises(InvalidPayload, match="event_id"):
        ev.parse_envelope(json.dumps(doc).encode())


@pytest.mark.parametrize("event_type", [None, "", 7, "x" * 129])
def test_parse_envelope_needs_an_event_type(event_type: object) -> None:
    doc: dict[str, Any] = {"event_id": "e1", "body": {}}
    if event_type is not None:
        doc["event_type"] = event_type
    with pytest.raises(InvalidPayload, match="event_type"):
        ev.parse_envelope(json.dumps(doc).encode())


def test_parse_envelope_returns_id_type_and_body() -> None:
    doc = payloads.event("ON_REFUND")
    envelope = ev.parse_envelope(payloads.encode(doc))
    assert envelope.event_id == payloads.EVENT_IDS["ON_REFUND"]
    assert envelope.event_type == "ON_REFUND"
    assert envelope.body == doc["body"]


def test_parse_envelope_keeps_a_missing_body_as_none() -> None:
    envelope = ev.parse_envelope(b'{"event_id": "e1", "event_type": "ON_PING"}')
    assert envelope.body is None


# --- normalize: each sample type ---------------------------------------------


def test_order_sample_is_normalized() -> None:
    event = parse(payloads.event("ON_ORDER_COMPLETED"))
    assert event.event_id == payloads.EVENT_IDS["ON_ORDER_COMPLETED"]
    assert event.event_type == ev.EventType.ORDER_COMPLETED
    assert event.customer_id == IDS["customer"]
    assert event.user_id == "user-42"
    assert event.handled
    assert event.details == ev.OrderCompleted(
        order_id=IDS["order"],
        lines=(ev.OrderLine(IDS["product"], 2), ev.OrderLine(IDS["product2"], 1)),
        total_amount=1397,
        currency="usd",
    )
    assert event.record_data() == {
        "orderId": IDS["order"],
        "lines": [
            {"productId": IDS["product"], "quantity": 2},
            {"productId": IDS["product2"], "quantity": 1},
        ],
        "totalAmount": 1397,
        "currency": "usd",
    }


def test_order_currency_is_lowercased() -> None:
    doc = payloads.event("ON_ORDER_COMPLETED")
    doc["body"]["currency"] = "EUR"
    details = parse(doc).details
    assert isinstance(details, ev.OrderCompleted)
    assert details.currency == "eur"


def test_a_refund_reverses_its_store_refund_amount_not_the_payment_amount() -> None:
    doc = payloads.event("ON_REFUND")
    doc["body"].update(currency="USD", amount=999, store_refund_amount=333, status="Completed")
    event = parse(doc)
    assert event.event_type == ev.EventType.REFUND
    assert event.customer_id == IDS["customer"]
    assert event.user_id is None  # refunds carry no checkout metadata
    assert event.details == ev.Refund(
        refund_id=doc["body"]["id"],
        order_id=IDS["order"],
        amount=333,
        currency="usd",
        status="completed",
    )
    assert event.record_data() == {
        "reversalId": doc["body"]["id"],
        "orderId": IDS["order"],
        "amount": 333,
        "currency": "usd",
        "status": "completed",
    }


@pytest.mark.parametrize("missing", ["store_refund_amount", "status", "currency", "order_id"])
def test_a_refund_without_a_field_processing_reads_is_event_mismatch(missing: str) -> None:
    doc = payloads.event("ON_REFUND")
    del doc["body"][missing]
    with pytest.raises(EventMismatch, match=missing):
        parse(doc)


def test_a_refund_needs_neither_the_payment_amount_nor_a_customer() -> None:
    doc = payloads.event("ON_REFUND")
    del doc["body"]["amount"]
    doc["body"]["customer"] = None
    event = parse(doc)
    assert event.customer_id is None
    assert event.ordering_key == event.event_id
    assert isinstance(event.details, ev.Refund)
    assert event.details.amount == doc["body"]["store_refund_amount"] == 1397


def test_a_chargeback_is_its_payment_and_order_only() -> None:
    doc = payloads.event("ON_CHARGEBACK")
    for unused in ("amount", "currency", "status", "chargeback_status"):
        del doc["body"][unused]
    event = parse(doc)
    assert event.details == ev.Chargeback(
        payment_id=doc["body"]["id"], order_id=doc["body"]["order_id"]
    )
    assert event.record_data() == {
        "reversalId": doc["body"]["id"],
        "orderId": doc["body"]["order_id"],
    }


def test_a_chargeback_close_carries_its_outcome() -> None:
    doc = payloads.event("ON_CHARGEBACK")
    doc["event_type"] = "ON_CHARGEBACK_CLOSED"
    doc["body"].update(chargeback_status="WON", customer=None)
    event = parse(doc)
    assert event.customer_id is None
    assert event.details == ev.ChargebackClosed(
        payment_id=doc["body"]["id"], order_id=doc["body"]["order_id"], outcome="won"
    )
    del doc["body"]["chargeback_status"]
    with pytest.raises(EventMismatch, match="chargeback_status"):
        parse(doc)


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("ON_REFUND", {"reversalId": "r1", "orderId": "o1", "amount": 5, "currency": "usd"}),
        ("ON_CHARGEBACK", {"reversalId": "p1", "orderId": "o1"}),
        ("ON_CHARGEBACK_CLOSED", {"reversalId": "p1", "orderId": "o1", "outcome": "won"}),
    ],
)
def test_stored_reversals_are_rebuilt(event_type: str, data: dict[str, object]) -> None:
    event = ev.from_record("e1", event_type, None, None, data)
    assert event.details is not None
    rebuilt = event.record_data()
    # a refund recorded before statuses were read moved points: it is rebuilt as completed
    assert rebuilt == {**data, **({"status": "completed"} if event_type == "ON_REFUND" else {})}


@pytest.mark.parametrize(
    ("kind", "status"),
    [("activated", "active"), ("renewed", "active"), ("canceled", "canceled")],
)
def test_subscription_samples_are_normalized(kind: str, status: str) -> None:
    event = parse(payloads.event(f"ON_SUBSCRIPTION_{kind.upper()}"))
    assert event.event_type == f"ON_SUBSCRIPTION_{kind.upper()}"
    assert event.customer_id == IDS["customer"]
    assert event.user_id == "user-42"
    assert event.details == ev.SubscriptionChange(
        subscription_id=IDS["subscription"],
        product_id=IDS["plan"],
        status=status,
        current_period_end="2026-12-22T12:00:00Z",
    )
    assert event.record_data() == {
        "subscriptionId": IDS["subscription"],
        "productId": IDS["plan"],
        "status": status,
        "currentPeriodEnd": "2026-12-22T12:00:00Z",
    }


def test_user_id_comes_from_the_configured_metadata_key() -> None:
    doc = payloads.event("ON_ORDER_COMPLETED")
    doc["body"]["checkout"]["metadata"] = {"user_id": "wrong", "app_uid": "player-9"}
    assert parse(doc, key="app_uid").user_id == "player-9"
    assert parse(doc, key="user_id").user_id == "wrong"
    assert parse(doc, key="absent").user_id is None


@pytest.mark.parametrize(
    "checkout",
    [None, "x", {"metadata": None}, {"metadata": []}, {"metadata": {"user_id": 42}}],
)
def test_missing_or_malformed_metadata_gives_no_user(checkout: object) -> None:
    doc = payloads.event("ON_ORDER_COMPLETED")
    doc["body"]["checkout"] = checkout
    assert parse(doc).user_id is None


def test_invalid_user_id_is_dropped() -> None:
    doc = payloads.event("ON_ORDER_COMPLETED")
    doc["body"]["checkout"]["metadata"] = {"user_id": "../users/admin"}
    assert parse(doc).user_id is None


def test_customer_id_falls_back_to_body_customer_id() -> None:
    doc = payloads.event("ON_SUBSCRIPTION_ACTIVATED")
    del doc["body"]["customer"]
    doc["body"]["customer_id"] = "cust-9"
    assert parse(doc).customer_id == "cust-9"


def test_no_customer_gives_no_customer_id_and_event_id_ordering_key() -> None:
    doc = payloads.event("ON_REFUND")
    del doc["body"]["customer"]
    event = parse(doc)
    assert event.customer_id is None
    assert event.ordering_key == event.event_id


# --- PII ---------------------------------------------------------------------


@pytest.mark.parametrize("name", payloads.EVENT_TYPES)
def test_no_pii_survives_normalization(name: str) -> None:
    doc = payloads.event(name)
    raw = payloads.encode(doc)
    present = [p for p in PII if p.encode() in raw]
    assert present  # every canonical body carries personal data (a name at least)
    event = parse(doc)
    kept = json.dumps(event.record_data()) + QueueMessage.for_event(event).data().decode()
    kept += repr(event)
    for value in present:
        assert value not in kept


# --- event_mismatch ------------------------------------------------------------


def _order_with(**changes: Any) -> dict[str, Any]:
    doc = payloads.event("ON_ORDER_COMPLETED")
    doc["body"].update(changes)
    return doc


def _order_line(**changes: Any) -> dict[str, Any]:
    doc = payloads.event("ON_ORDER_COMPLETED")
    doc["body"]["lines"][0].update(changes)
    return doc


def _refund_with(**changes: Any) -> dict[str, Any]:
    doc = payloads.event("ON_REFUND")
    doc["body"].update(changes)
    return doc


def _without(name: str, field: str) -> dict[str, Any]:
    doc = payloads.event(name)
    del doc["body"][field]
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(_order_with(lines=[]), id="order-no-lines"),
        pytest.param(_order_with(lines=None), id="order-lines-null"),
        pytest.param(_order_with(lines={"a": 1}), id="order-lines-object"),
        pytest.param(_order_with(lines=["gems-100"]), id="order-line-not-object"),
        pytest.param(_order_line(quantity=0), id="quantity-0"),
        pytest.param(_order_line(quantity=-1), id="quantity-negative"),
        pytest.param(_order_line(quantity=True), id="quantity-bool"),
        pytest.param(_order_line(quantity=1.0), id="quantity-float"),
        pytest.param(_order_line(quantity="2"), id="quantity-string"),
        pytest.param(_order_line(quantity=1_000_001), id="quantity-huge"),
        pytest.param(_order_line(product_id=None), id="line-no-product"),
        pytest.param(_order_line(product_id="a/b"), id="line-bad-product"),
        pytest.param(_order_with(total_amount="1397"), id="order-string-amount"),
        pytest.param(_order_with(total_amount=-1), id="order-negative-amount"),
        pytest.param(_order_with(total_amount=13.97), id="order-float-amount"),
        pytest.param(_order_with(total_amount=False), id="order-bool-amount"),
        pytest.param(_order_with(total_amount=2**53), id="order-amount-too-big"),
        pytest.param(_order_with(currency="dollars"), id="order-bad-currency"),
        pytest.param(_order_with(currency=None), id="order-no-currency"),
        pytest.param(_without("ON_ORDER_COMPLETED", "id"), id="order-no-id"),
        pytest.param(_without("ON_REFUND", "order_id"), id="refund-no-order-id"),
        pytest.param(_refund_with(order_id=411486491630371000), id="refund-int-order-id"),
        pytest.param(_refund_with(store_refund_amount="398"), id="refund-string-amount"),
        pytest.param(_refund_with(store_refund_amount=None), id="refund-no-amount"),
        pytest.param(_refund_with(store_refund_amount=-1), id="refund-negative-amount"),
        pytest.param(_refund_with(status=7), id="refund-int-status"),
        pytest.param(_refund_with(status=""), id="refund-empty-status"),
        pytest.param(_without("ON_CHARGEBACK", "id"), id="chargeback-no-id"),
        pytest.param(_without("ON_SUBSCRIPTION_ACTIVATED", "product_id"), id="sub-no-product"),
        pytest.param(_without("ON_SUBSCRIPTION_RENEWED", "id"), id="sub-no-id"),
    ],
)
def test_payload_that_does_not_match_its_type_is_event_mismatch(doc: dict[str, Any]) -> None:
    envelope = ev.parse_envelope(payloads.encode(doc))
    with pytest.raises(EventMismatch) as info:
        ev.normalize(envelope, "user_id")
    assert info.value.code == "event_mismatch"


@pytest.mark.parametrize("body", [None, [], "text", 3])
@pytest.mark.parametrize("event_type", [t.value for t in ev.EventType])
def test_handled_type_needs_an_object_body(event_type: str, body: object) -> None:
    envelope = ev.Envelope("e1", event_type, body)
    with pytest.raises(EventMismatch):
        ev.normalize(envelope, "user_id")


@pytest.mark.parametrize("body", [None, [], {"anything": 1}, {"customer": {"id": "c1"}}])
def test_unknown_type_is_not_handled_and_keeps_no_data(body: object) -> None:
    event = ev.normalize(ev.Envelope("e1", "ON_SOMETHING_NEW", body), "user_id")
    assert not event.handled
    assert event.details is None
    assert event.record_data() == {}


def test_unknown_type_keeps_its_customer_for_ordering() -> None:
    event = ev.normalize(ev.Envelope("e1", "ON_X", {"customer": {"id": "c1"}}), "user_id")
    assert event.ordering_key == "c1"


def test_event_type_is_case_sensitive() -> None:
    doc = payloads.event("ON_ORDER_COMPLETED")
    doc["event_type"] = "on_order_completed"
    assert not parse(doc).handled


# --- from_record -----------------------------------------------------------------


@pytest.mark.parametrize("name", [*payloads.EVENT_TYPES, "unknown"])
def test_from_record_round_trips_record_data(name: str) -> None:
    if name == "unknown":
        doc: dict[str, Any] = {"event_id": "e9", "event_type": "ON_X", "body": {}}
    else:
        doc = payloads.event(name)
    event = parse(doc)
    stored = json.loads(json.dumps(event.record_data()))  # as a document store would keep it
    rebuilt = ev.from_record(
        event.event_id, event.event_type, event.customer_id, event.user_id, stored
    )
    assert rebuilt == event


def test_from_record_with_missing_period_end() -> None:
    data = {"subscriptionId": "s1", "productId": "p1", "status": "active"}
    event = ev.from_record("e1", "ON_SUBSCRIPTION_RENEWED", None, None, data)
    assert event.details == ev.SubscriptionChange("s1", "p1", "active", None)


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("ON_ORDER_COMPLETED", {}),
        ("ON_ORDER_COMPLETED", {"orderId": "o", "lines": None, "totalAmount": 1, "currency": "x"}),
        (
            "ON_ORDER_COMPLETED",
            {"orderId": "o", "lines": [{"productId": "p", "quantity": "many"}], "currency": "x"},
        ),
        ("ON_REFUND", {"orderId": "o", "amount": 1, "currency": "usd"}),
        ("ON_CHARGEBACK", {"reversalId": "r", "amount": 1, "currency": "usd"}),
        ("ON_CHARGEBACK_CLOSED", {"reversalId": "r", "orderId": "o"}),
        ("ON_SUBSCRIPTION_CANCELED", {"productId": "p", "status": "canceled"}),
    ],
)
def test_from_record_with_incomplete_data_is_event_mismatch(
    event_type: str, data: dict[str, Any]
) -> None:
    with pytest.raises(EventMismatch):
        ev.from_record("e1", event_type, None, None, data)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("411486491630371002", True),
        ("cust-7", True),
        ("a:b.c@d+e=f_g", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a b", False),
        ("é", False),
        (7, False),
        (None, False),
    ],
)
def test_is_valid_id(value: object, valid: bool) -> None:
    assert ev.is_valid_id(value) is valid


@pytest.mark.parametrize(
    "event_type", ["jane.doe@example.com", "ON REFUND", "ON-REFUND", "A" * 65, "_ON_X"]
)
def test_event_type_that_is_not_a_paynow_constant_is_an_invalid_payload(event_type: str) -> None:
    doc = payloads.event("ON_REFUND")
    doc["event_type"] = event_type
    with pytest.raises(InvalidPayload):
        ev.parse_envelope(payloads.encode(doc))
