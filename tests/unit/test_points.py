"""The points rules of docs/architecture.md, as a pure function over events and state."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paynow.domain import points
from paynow.domain.errors import EventMismatch, NoUserId, OrderNotFound, UnknownProduct
from paynow.domain.events import (
    EventType,
    OrderCompleted,
    OrderLine,
    PayNowEvent,
    Reversal,
    SubscriptionChange,
)

CATALOG = {"gems-100": 100, "gems-550": 550, "vip-monthly": 300}


def order_event(
    lines: tuple[tuple[str, int], ...] = (("gems-100", 2), ("gems-550", 1)),
    user_id: str | None = "user-42",
    total: int = 1397,
    currency: str = "usd",
    order_id: str = "o1",
) -> PayNowEvent:
    details = OrderCompleted(
        order_id=order_id,
        lines=tuple(OrderLine(p, q) for p, q in lines),
        total_amount=total,
        currency=currency,
    )
    return PayNowEvent("e-order", EventType.ORDER_COMPLETED, "cust-7", user_id, details)


def reversal_event(
    amount: int,
    kind: str = EventType.REFUND,
    event_id: str = "e-refund",
    currency: str = "usd",
    order_id: str = "o1",
) -> PayNowEvent:
    details = Reversal(f"r-{event_id}", order_id, amount, currency)
    return PayNowEvent(event_id, kind, "cust-7", None, details)


def subscription_event(
    kind: str, user_id: str | None = "user-42", product_id: str = "vip-monthly"
) -> PayNowEvent:
    details = SubscriptionChange("sub-1", product_id, "active", "2026-12-22T12:00:00.000Z")
    return PayNowEvent(f"e-{kind}", kind, "cust-7", user_id, details)


def credited(points_credited: int = 750, total: int = 1397) -> points.OrderState:
    return points.OrderState(
        user_id="user-42",
        customer_id="cust-7",
        total_amount=total,
        currency="usd",
        points_credited=points_credited,
    )


def apply_refunds(order: points.OrderState, amounts: list[int]) -> list[int]:
    """Apply refunds one after the other, carrying the order state; return the deltas."""
    deltas = []
    for i, amount in enumerate(amounts):
        outcome = points.apply(reversal_event(amount, event_id=f"r{i}"), {}, order, None)
        assert outcome.order is not None
        order = outcome.order
        deltas.append(outcome.delta)
    return deltas


# --- orders --------------------------------------------------------------------


def test_order_credits_catalog_times_quantity() -> None:
    outcome = points.apply(order_event(), CATALOG, None, None)
    assert outcome.status == "processed"
    assert outcome.delta == 100 * 2 + 550 * 1
    assert outcome.user_id == "user-42"
    assert outcome.ledger
    assert outcome.order_id == "o1"
    assert outcome.order == points.OrderState(
        user_id="user-42",
        customer_id="cust-7",
        total_amount=1397,
        currency="usd",
        points_credited=750,
        refunded_amount=0,
        points_reversed=0,
    )


def test_order_with_repeated_product_lines_sums_them() -> None:
    event = order_event(lines=(("gems-100", 3), ("gems-100", 4)))
    assert points.apply(event, CATALOG, None, None).delta == 700
    assert points.needs(event).product_ids == ("gems-100",)


def test_order_needs_its_products_and_order() -> None:
    need = points.needs(order_event())
    assert need == points.Needs(product_ids=("gems-100", "gems-550"), order_id="o1")


def test_order_with_unknown_product_is_unknown_product() -> None:
    event = order_event(lines=(("gems-100", 1), ("mystery", 1), ("ghost", 2)))
    with pytest.raises(UnknownProduct, match="ghost, mystery") as info:
        points.apply(event, CATALOG, None, None)
    assert info.value.code == "unknown_product"


def test_order_without_user_is_no_user_id() -> None:
    with pytest.raises(NoUserId) as info:
        points.apply(order_event(user_id=None), CATALOG, None, None)
    assert info.value.code == "no_user_id"


def test_order_already_credited_moves_nothing() -> None:
    outcome = points.apply(order_event(), CATALOG, credited(), None)
    assert outcome.status == "processed"
    assert outcome.delta == 0
    assert outcome.ledger  # the ledger shows why nothing moved
    assert outcome.order is None  # the existing order record is left as it is


def test_order_already_credited_does_not_need_the_catalog() -> None:
    outcome = points.apply(order_event(lines=(("gone", 1),)), {}, credited(), None)
    assert outcome.delta == 0


def test_zero_point_product_credits_zero_but_records_the_order() -> None:
    outcome = points.apply(order_event(lines=(("free", 5),)), {"free": 0}, None, None)
    assert outcome.delta == 0
    assert outcome.order is not None
    assert outcome.order.points_credited == 0


# --- refunds ---------------------------------------------------------------------


def test_refund_needs_only_its_order() -> None:
    assert points.needs(reversal_event(1)) == points.Needs(order_id="o1")


def test_full_refund_reverses_everything() -> None:
    outcome = points.apply(reversal_event(1397), {}, credited(), None)
    assert outcome.delta == -750
    assert outcome.user_id == "user-42"
    assert outcome.order_id == "o1"
    assert outcome.ledger
    assert outcome.order == replace(credited(), refunded_amount=1397, points_reversed=750)


def test_partial_refund_reverses_floor_of_the_share() -> None:
    outcome = points.apply(reversal_event(398), {}, credited(), None)
    assert outcome.delta == -(750 * 398 // 1397)  # -213
    assert outcome.delta == -213
    assert outcome.order is not None
    assert outcome.order.refunded_amount == 398
    assert outcome.order.points_reversed == 213


@pytest.mark.parametrize("amounts", [[398, 999], [999, 398], [1, 1396], [1396, 1], [1] * 1397])
def test_partial_refunds_add_up_to_a_full_one(amounts: list[int]) -> None:
    deltas = apply_refunds(credited(750, 1397), amounts)
    assert sum(deltas) == -750
    assert all(d <= 0 for d in deltas)


def test_partial_refunds_over_random_splits() -> None:
    rng = random.Random(20261122)
    for _ in range(300):
        total = rng.randint(1, 100_000)
        credit = rng.randint(0, 100_000)
        cuts = sorted(rng.sample(range(1, total), min(total - 1, rng.randint(0, 12))))
        amounts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        deltas = apply_refunds(credited(credit, total), amounts)
        assert sum(deltas) == -credit, (total, credit, amounts)
        assert all(d <= 0 for d in deltas)


@st.composite
def refund_splits(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    total = draw(st.integers(min_value=1, max_value=10**9))
    credit = draw(st.integers(min_value=0, max_value=10**9))
    cuts = draw(st.lists(st.integers(min_value=0, max_value=total), max_size=15))
    bounds = sorted([0, *cuts, total])
    amounts = [b - a for a, b in itertools.pairwise(bounds)]
    return total, credit, draw(st.permutations(amounts))


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(refund_splits())
def test_any_sequence_of_refunds_summing_to_the_total_reverses_the_credit(
    split: tuple[int, int, list[int]],
) -> None:
    total, credit, amounts = split
    deltas = apply_refunds(credited(credit, total), amounts)
    assert sum(deltas) == -credit
    assert all(d <= 0 for d in deltas)


@settings(max_examples=200, deadline=None, database=None)
@given(
    total=st.integers(min_value=1, max_value=10**6),
    credit=st.integers(min_value=0, max_value=10**6),
    amounts=st.lists(st.integers(min_value=0, max_value=2 * 10**6), max_size=10),
)
def test_refunds_never_reverse_more_than_the_credit(
    total: int, credit: int, amounts: list[int]
) -> None:
    deltas = apply_refunds(credited(credit, total), amounts)
    assert all(d <= 0 for d in deltas)
    assert -sum(deltas) <= credit
    expected = credit * min(sum(amounts), total) // total
    assert -sum(deltas) == expected


def test_refund_over_the_total_caps_at_the_credit() -> None:
    outcome = points.apply(reversal_event(5000), {}, credited(), None)
    assert outcome.delta == -750
    again = points.apply(reversal_event(10, event_id="r2"), {}, outcome.order, None)
    assert again.delta == 0
    assert again.reason == "refund: nothing left to reverse"
    assert again.ledger


def test_refund_of_a_free_order_reverses_it_whole() -> None:
    outcome = points.apply(reversal_event(0), {}, credited(40, total=0), None)
    assert outcome.delta == -40


def test_refund_of_unknown_order_is_order_not_found() -> None:
    with pytest.raises(OrderNotFound) as info:
        points.apply(reversal_event(100), {}, None, None)
    assert info.value.code == "order_not_found"


@pytest.mark.parametrize("kind", [EventType.REFUND, EventType.CHARGEBACK])
def test_reversal_in_another_currency_is_event_mismatch(kind: str) -> None:
    with pytest.raises(EventMismatch):
        points.apply(reversal_event(100, kind=kind, currency="eur"), {}, credited(), None)


# --- chargebacks -------------------------------------------------------------------


def test_chargeback_reverses_the_whole_credit() -> None:
    outcome = points.apply(reversal_event(1, kind=EventType.CHARGEBACK), {}, credited(), None)
    assert outcome.delta == -750
    assert outcome.reason == "chargeback"
    assert outcome.order is not None
    assert outcome.order.points_reversed == 750


def test_chargeback_after_partial_refund_reverses_the_rest() -> None:
    refund = points.apply(reversal_event(398), {}, credited(), None)
    chargeback = points.apply(
        reversal_event(999, kind=EventType.CHARGEBACK, event_id="cb"), {}, refund.order, None
    )
    assert refund.delta + chargeback.delta == -750
    assert chargeback.delta == -(750 - 213)


def test_refund_after_chargeback_moves_nothing() -> None:
    chargeback = points.apply(reversal_event(1397, kind=EventType.CHARGEBACK), {}, credited(), None)
    refund = points.apply(reversal_event(398, event_id="r-late"), {}, chargeback.order, None)
    assert refund.delta == 0
    assert refund.ledger
    assert refund.order is not None
    assert refund.order.points_reversed == 750


def test_second_chargeback_moves_nothing() -> None:
    first = points.apply(reversal_event(1397, kind=EventType.CHARGEBACK), {}, credited(), None)
    second = points.apply(
        reversal_event(1397, kind=EventType.CHARGEBACK, event_id="cb2"), {}, first.order, None
    )
    assert second.delta == 0
    assert second.reason == "chargeback: nothing left to reverse"


# --- subscriptions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (EventType.SUBSCRIPTION_ACTIVATED, "subscription activated"),
        (EventType.SUBSCRIPTION_RENEWED, "subscription renewed"),
    ],
)
def test_subscription_period_credits_the_catalog_once(kind: str, reason: str) -> None:
    event = subscription_event(kind)
    assert points.needs(event) == points.Needs(
        product_ids=("vip-monthly",), subscription_id="sub-1"
    )
    outcome = points.apply(event, CATALOG, None, None)
    assert outcome.delta == 300
    assert outcome.ledger
    assert outcome.reason == reason
    assert outcome.subscription == (
        "sub-1",
        points.SubscriptionState(
            user_id="user-42",
            customer_id="cust-7",
            product_id="vip-monthly",
            status="active",
            current_period_end="2026-12-22T12:00:00.000Z",
        ),
    )


def test_renewal_without_metadata_takes_the_user_from_the_record() -> None:
    record = points.SubscriptionState("user-7", "cust-7", "vip-monthly", "active", None)
    outcome = points.apply(
        subscription_event(EventType.SUBSCRIPTION_RENEWED, user_id=None), CATALOG, None, record
    )
    assert outcome.user_id == "user-7"
    assert outcome.delta == 300
    assert outcome.subscription is not None
    assert outcome.subscription[1].user_id == "user-7"


def test_renewal_without_user_anywhere_is_no_user_id() -> None:
    with pytest.raises(NoUserId):
        points.apply(
            subscription_event(EventType.SUBSCRIPTION_RENEWED, user_id=None), CATALOG, None, None
        )


def test_subscription_of_unknown_product_is_unknown_product() -> None:
    event = subscription_event(EventType.SUBSCRIPTION_ACTIVATED, product_id="vip-yearly")
    with pytest.raises(UnknownProduct):
        points.apply(event, CATALOG, None, None)


def test_cancel_moves_no_points_and_marks_canceled() -> None:
    record = points.SubscriptionState("user-7", "cust-7", "vip-monthly", "active", None)
    event = subscription_event(EventType.SUBSCRIPTION_CANCELED, user_id=None)
    assert points.needs(event) == points.Needs(product_ids=(), subscription_id="sub-1")
    outcome = points.apply(event, {}, None, record)
    assert outcome.status == "processed"
    assert outcome.delta == 0
    assert not outcome.ledger
    assert outcome.user_id == "user-7"
    assert outcome.subscription is not None
    assert outcome.subscription[1].status == "canceled"


def test_cancel_of_unknown_subscription_without_user_is_still_processed() -> None:
    event = subscription_event(EventType.SUBSCRIPTION_CANCELED, user_id=None)
    outcome = points.apply(event, {}, None, None)
    assert outcome.status == "processed"
    assert not outcome.ledger


# --- other types ---------------------------------------------------------------------


def test_ignored_type_is_ignored() -> None:
    event = PayNowEvent("e1", "ON_DELIVERY_ITEM_ADDED", "cust-7", "user-42", None)
    assert points.needs(event) == points.Needs()
    outcome = points.apply(event, CATALOG, None, None)
    assert outcome.status == "ignored"
    assert not outcome.ledger
    assert outcome.delta == 0


def test_handled_type_without_details_is_event_mismatch() -> None:
    event = PayNowEvent("e1", EventType.ORDER_COMPLETED, "cust-7", "user-42", None)
    with pytest.raises(EventMismatch):
        points.apply(event, CATALOG, None, None)
