"""The spec-driven builder: canonical events of all 19 types, the builders, ``minimal``.

Each body is held to the one description (``payloads.BODIES``) by ``spec_bodies.violations``,
and the seven types processing handles are parsed by ``domain.events`` as the webhook parses
them, the minimal variants (nothing beyond ``USED_FIELDS``) to the same result.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paynow.domain import events as ev
from paynow.domain import payloads as p
from paynow.domain import signature
from paynow.domain.errors import EventMismatch

from tests.support import spec_bodies as sb

HANDLED = tuple(t.value for t in ev.EventType)
PRODUCT, PRODUCT2, PLAN = p.IDS["product"], p.IDS["product2"], p.IDS["plan"]
LINES = [(PRODUCT, 2, 398), (PRODUCT2, 1, 999)]
POOL = sb.pools(4242)


def parse(doc: dict[str, Any], key: str = "user_id") -> ev.PayNowEvent:
    return ev.normalize(ev.parse_envelope(p.encode(doc)), key)


def spec_problems(doc: dict[str, Any]) -> list[str]:
    return sb.violations(p.BODIES[doc["event_type"]], doc["body"])


# --- the 19 types ----------------------------------------------------------------------------


SPEC_ORDER = (  # webhook-definitions.json, `webhooks`, in its order
    "ON_CHARGEBACK",
    "ON_CHARGEBACK_CLOSED",
    "ON_DISCORD_ACCOUNT_LINKED_TO_CHECKOUT",
    "ON_DELIVERY_ITEM_ADDED",
    "ON_DELIVERY_ITEM_ACTIVATED",
    "ON_DELIVERY_ITEM_USED",
    "ON_DELIVERY_ITEM_RENEWED",
    "ON_DELIVERY_ITEM_EXPIRED",
    "ON_DELIVERY_ITEM_REVOKED",
    "ON_ORDER_COMPLETED",
    "ON_PAYMENT_COMPLETED",
    "ON_PAYMENT_FAILED",
    "ON_REFUND",
    "ON_SUBSCRIPTION_ACTIVATED",
    "ON_SUBSCRIPTION_CANCELED",
    "ON_SUBSCRIPTION_RENEWED",
    "ON_TRIAL_ACTIVATED",
    "ON_TRIAL_COMPLETED",
    "ON_TRIAL_CANCELED",
)


def test_the_19_types_of_the_spec_each_with_its_description() -> None:
    assert p.EVENT_TYPES == SPEC_ORDER
    assert set(HANDLED) < set(p.EVENT_TYPES)
    assert tuple(p.USED_FIELDS) == p.EVENT_TYPES == tuple(p.EVENT_IDS)
    assert len(set(p.EVENT_IDS.values())) == 19


@pytest.mark.parametrize("event_type", p.EVENT_TYPES)
def test_the_canonical_event_has_every_field_of_the_spec(event_type: str) -> None:
    doc = p.event(event_type)
    assert set(doc) == {"event_type", "event_id", "body"}
    assert doc["event_type"] == event_type and doc["event_id"] == p.EVENT_IDS[event_type]
    assert spec_problems(doc) == []
    # Every field the description has is there (optional ones too), none it lacks.
    assert set(doc["body"]) == {f.name for f in p.BODIES[event_type].fields}


@pytest.mark.parametrize("event_type", p.EVENT_TYPES)
def test_each_call_builds_a_fresh_event(event_type: str) -> None:
    first = p.event(event_type)
    pristine = copy.deepcopy(first)
    for value in first["body"].values():
        if isinstance(value, dict):
            value["changed"] = True
        elif isinstance(value, list) and value:
            value.append("changed")
    first["body"]["id"] = "changed"
    assert p.event(event_type) == pristine


def test_the_event_id_and_ids_of_roles_can_be_chosen() -> None:
    ids = {"order": "1001", "customer": "1002", "user": "u-7", "product": "1003"}
    doc = p.event("ON_ORDER_COMPLETED", "1000", ids=ids, user_id_key="uid")
    body = doc["body"]
    assert doc["event_id"] == "1000" and body["id"] == "1001"
    assert body["customer"]["id"] == "1002" and body["checkout"]["metadata"]["uid"] == "u-7"
    assert [x["product_id"] for x in body["lines"]] == ["1003", PRODUCT2]
    assert spec_problems(doc) == []


def test_an_unknown_type_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="ON_NOPE"):
        p.event("ON_NOPE")


def test_canonical_ids_are_realistic_flake_ids_and_amounts_integer_cents() -> None:
    order = p.event("ON_ORDER_COMPLETED")["body"]
    assert all(v.isdigit() and len(v) == 18 for k, v in p.IDS.items() if k != "user")
    assert order["total_amount"] == sum(x["total_amount"] for x in order["lines"]) == 1397
    assert order["currency"] == "USD"
    assert order["product_names"] == "100 Gems, 550 Gems"  # a comma-separated string


# --- the builders --------------------------------------------------------------------------


def test_order_completed_is_consistent_and_carries_the_user_in_checkout_metadata() -> None:
    doc = p.order_completed("e1", "o1", "c1", "u1", [*LINES, ("gems-100", 3, 30)])
    body = doc["body"]
    assert (doc["event_type"], doc["event_id"], body["id"]) == ("ON_ORDER_COMPLETED", "e1", "o1")
    assert body["customer"]["id"] == "c1"
    assert body["checkout"]["metadata"]["user_id"] == "u1"
    assert body["total_amount"] == body["subtotal_amount"] == 398 + 999 + 30
    lines, checkout_lines = body["lines"], body["checkout"]["lines"]
    assert [(x["product_id"], x["quantity"], x["total_amount"]) for x in lines] == [
        *LINES,
        ("gems-100", 3, 30),
    ]
    assert [x["product"]["id"] for x in lines] == [PRODUCT, PRODUCT2, "gems-100"]
    assert [x["product_id"] for x in checkout_lines] == [PRODUCT, PRODUCT2, "gems-100"]
    assert [x["checkout_line_id"] for x in lines] == [x["id"] for x in checkout_lines]
    assert len({x["id"] for x in lines}) == 3
    assert [x["price"] for x in lines] == [199, 999, 10]
    # Only the ids break the spec here: "gems-100" and "o1" are not flake ids.
    assert {v.split(":")[0] for v in spec_problems(doc)} == {
        "body.id",
        "body.customer.id",
        "body.lines[2].product_id",
        "body.lines[2].product.id",
        "body.checkout.lines[2].product_id",
    }


def test_order_completed_parses_to_its_lines_user_and_total() -> None:
    event = parse(p.order_completed("e1", "o1", "c1", "u1", LINES))
    assert (event.customer_id, event.user_id) == ("c1", "u1")
    assert event.details == ev.OrderCompleted(
        "o1", (ev.OrderLine(PRODUCT, 2), ev.OrderLine(PRODUCT2, 1)), 1397, "usd"
    )


def test_order_completed_without_a_user_or_under_another_key() -> None:
    none = p.order_completed("e1", "o1", "c1", None, LINES)
    assert none["body"]["checkout"]["metadata"] == {"source": "storefront"}
    assert parse(none).user_id is None
    keyed = p.order_completed("e1", "o1", "c1", "u1", LINES, user_id_key="player")
    assert parse(keyed, "player").user_id == "u1" and parse(keyed).user_id is None


def test_refund_amounts_follow_the_spec() -> None:
    body = p.refund("e1", "r1", "o1", "c1", 333, payment_amount=999)["body"]
    assert (body["store_refund_amount"], body["amount"]) == (333, 999)
    assert (
        body["store_net_amount"] == 999 - body["gateway_fee_amount"] - body["platform_fee_amount"]
    )
    assert body["status"] == "completed" and body["customer"]["id"] == "c1"
    full = p.refund("e1", "r1", "o1", "c1", 500)["body"]
    assert full["store_refund_amount"] == full["amount"] == 500
    failed = p.refund("e1", "r1", "o1", "c1", 500, status="failed")["body"]
    assert failed["status"] == "failed"


def test_refund_chargeback_and_close_without_a_customer_carry_null() -> None:
    for doc in (
        p.refund("e1", "r1", "o1", None, 100),
        p.chargeback("e2", "pay1", "o1", None),
        p.chargeback_closed("e3", "pay1", "o1", None, "lost"),
    ):
        assert doc["body"]["customer"] is None
        assert spec_problems(doc) == [
            "body.id: 'r1' is not a flake id (a digit string)"
            if doc["event_type"] == "ON_REFUND"
            else "body.id: 'pay1' is not a flake id (a digit string)",
            "body.order_id: 'o1' is not a flake id (a digit string)",
        ]
        if doc["event_type"] in HANDLED:
            assert parse(doc).customer_id is None


def test_chargeback_and_its_close_name_the_payment_and_the_outcome() -> None:
    opened = p.chargeback("e1", "pay1", "o1", "c1", 700)["body"]
    assert (opened["id"], opened["order_id"], opened["amount"]) == ("pay1", "o1", 700)
    assert opened["chargeback_status"] == "pending"
    won = p.chargeback_closed("e2", "pay1", "o1", "c1")
    assert won["event_type"] == "ON_CHARGEBACK_CLOSED"
    assert (won["body"]["chargeback_status"], won["body"]["status"]) == ("won", "completed")
    lost = p.chargeback_closed("e3", "pay1", "o1", "c1", "lost")["body"]
    assert (lost["chargeback_status"], lost["status"]) == ("lost", "chargeback")


@pytest.mark.parametrize("kind", ["activated", "renewed", "canceled"])
def test_subscription_events(kind: Any) -> None:
    doc = p.subscription(kind, "e1", "s1", "c1", "u1", user_id_key="player")
    body = doc["body"]
    assert doc["event_type"] == f"ON_SUBSCRIPTION_{kind.upper()}"
    assert body["product_id"] == body["product"]["id"] == body["lines"][0]["product_id"]
    assert body["product_id"] == "vip-monthly"
    assert body["customer_id"] == body["customer"]["id"] == "c1"
    assert (body["status"] == "canceled") == (kind == "canceled")
    assert ("canceled_at" in body) == (kind == "canceled")
    event = parse(doc, "player")
    assert (event.customer_id, event.user_id) == ("c1", "u1")
    assert event.details == ev.SubscriptionChange("s1", "vip-monthly", body["status"], p.PERIOD_END)


def test_subscription_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="paused"):
        p.subscription("paused", "e1", "s1", "c1", "u1")


# --- minimal -------------------------------------------------------------------------------


def used(event_type: str, key: str = "user_id") -> set[str]:
    return {x.replace(p.USER_ID_KEY_SLOT, key) for x in p.USED_FIELDS[event_type]}


@pytest.mark.parametrize("event_type", p.EVENT_TYPES)
def test_minimal_keeps_exactly_the_used_fields(event_type: str) -> None:
    doc = p.event(event_type)
    before = copy.deepcopy(doc)
    small = p.minimal(doc)
    assert doc == before
    assert (small["event_type"], small["event_id"]) == (event_type, doc["event_id"])
    kept = sb.paths(small["body"]) - {""}
    present = used(event_type) & sb.paths(doc["body"])
    assert kept == present
    if event_type in ("ON_ORDER_COMPLETED", "ON_REFUND") or event_type.startswith("ON_SUB"):
        assert kept == used(event_type)  # the canonical event has every used field
    if not p.USED_FIELDS[event_type]:
        assert small["body"] == {}


def test_minimal_follows_the_user_id_key_and_keeps_a_null_customer() -> None:
    doc = p.order_completed("e1", "o1", "c1", "u1", LINES, user_id_key="player")
    assert p.minimal(doc, "player")["body"]["checkout"] == {"metadata": {"player": "u1"}}
    assert p.minimal(doc)["body"]["checkout"] == {"metadata": {}}
    assert p.minimal(doc)["body"]["lines"] == [
        {"product_id": PRODUCT, "quantity": 2},
        {"product_id": PRODUCT2, "quantity": 1},
    ]
    assert p.minimal(p.refund("e1", "r1", "o1", None, 5))["body"]["customer"] is None


def test_minimal_drops_every_personal_value() -> None:
    for event_type in p.EVENT_TYPES:
        text = json.dumps(p.minimal(p.event(event_type)))
        assert not [v for v in p.PII if v in text], event_type


# --- the parser on every canonical and minimal body --------------------------------------


def test_the_canonical_examples_carry_pii_for_the_tests_to_see_dropped() -> None:
    order = p.event("ON_ORDER_COMPLETED")["body"]
    assert {order["billing_email"], order["billing_name"], order["customer_ip"]} <= set(p.PII)
    assert p.event("ON_REFUND")["body"]["billing_email"] == p.EMAIL


@pytest.mark.parametrize("event_type", p.EVENT_TYPES)
def test_the_parser_reads_every_canonical_event_and_keeps_no_pii(event_type: str) -> None:
    event = parse(p.event(event_type))
    assert event.event_id == p.EVENT_IDS[event_type]
    assert event.handled == (event_type in HANDLED)
    stored = json.dumps([event.record_data(), event.customer_id, event.user_id])
    assert not [v for v in p.PII if v in stored]
    if event.handled:
        assert event.customer_id == p.IDS["customer"]
        assert event.details is not None
    else:
        assert event.details is None


@pytest.mark.parametrize("event_type", HANDLED)
def test_the_parser_reads_every_minimal_event_it_handles(event_type: str) -> None:
    """Processing needs nothing beyond USED_FIELDS: the minimal body parses to the same."""
    small = p.minimal(p.event(event_type))
    event = parse(small)
    assert event.customer_id == p.IDS["customer"]
    assert event.record_data() == parse(p.event(event_type)).record_data()
    if event_type != "ON_ORDER_COMPLETED":
        return
    assert event.user_id == p.IDS["user"]


def test_the_parser_reads_a_minimal_subscription_without_customer_by_customer_id() -> None:
    small = p.minimal(p.subscription("renewed", "e1", "s1", "c1", "u1"))
    del small["body"]["customer"]
    assert parse(small).customer_id == "c1"


def test_a_refund_is_its_store_refund_amount_not_the_payment_amount() -> None:
    details = parse(p.refund("e1", "r1", "o1", "c1", 333, payment_amount=999)).details
    assert details == ev.Refund("r1", "o1", 333, "usd", "completed")


def test_a_chargeback_close_is_handled_with_its_outcome() -> None:
    event = parse(p.chargeback_closed("e1", "pay1", "o1", None, "lost"))
    assert event.handled and event.customer_id is None
    assert event.details == ev.ChargebackClosed("pay1", "o1", "lost")


@settings()  # the profile: 100 cases in CI, 3,000 in the full run
@given(
    doc=st.one_of(sb.any_event(POOL), sb.linked_event(POOL)),
    key=st.sampled_from(["user_id", "player"]),
)
def test_every_drawn_body_is_spec_valid_and_parsed_or_refused_as_event_mismatch(doc, key):
    assert spec_problems(doc) == []
    envelope = ev.parse_envelope(p.encode(doc))  # a flake-id event id is always an id
    try:
        event = ev.normalize(envelope, key)
    except EventMismatch:
        assert doc["event_type"] in HANDLED
        return
    stored = json.dumps([event.record_data(), event.customer_id, event.user_id])
    assert not [v for v in p.PII if v in stored]
    # What minimal keeps lies on a used path (an emptied object or a null stops short of it).
    wanted = used(doc["event_type"], key)
    for kept in sb.paths(p.minimal(doc, key)["body"]) - {""}:
        assert any(u == kept or u.startswith((f"{kept}.", f"{kept}[]")) for u in wanted), kept


# --- on the wire ---------------------------------------------------------------------------


def test_encode_is_compact_json_and_signed_verifies() -> None:
    doc = p.event("ON_REFUND")
    raw = p.encode(doc)
    assert json.loads(raw) == doc and b": " not in raw and b", " not in raw
    body, headers = p.signed(doc, "s3cret", timestamp_ms=1_800_000_000_000)
    assert body == raw and headers["Content-Type"] == "application/json"
    signature.verify(
        body,
        headers[signature.SIGNATURE_HEADER],
        headers[signature.TIMESTAMP_HEADER],
        ["other", "s3cret"],
        now=1_800_000_000.0,
    )
    same, again = p.signed(raw, "s3cret", timestamp_ms=1_800_000_000_000)
    assert (same, again) == (body, headers)
