"""The points rules of docs/architecture.md, as a pure function over events and state."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paynow.domain import points
from paynow.domain.errors import (
    ChargebackNotFound,
    EventMismatch,
    NoUserId,
    OrderNotFound,
    UnknownProduct,
)
from paynow.domain.events import (
    Chargeback,
    ChargebackClosed,
    EventType,
    OrderCompleted,
    OrderLine,
    PayNowEvent,
    Refund,
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
    details: Refund | Chargeback
    if kind == EventType.CHARGEBACK:
        details = Chargeback(f"r-{event_id}", order_id)
    else:
        details = Refund(f"r-{event_id}", order_id, amount, currency, "completed")
    return PayNowEvent(event_id, kind, "cust-7", None, details)


def refund_event(
    amount: int, event_id: str = "e-refund", refund_id: str | None = None, status: str = "completed"
) -> PayNowEvent:
    details = Refund(refund_id or f"r-{event_id}", "o1", amount, "usd", status)
    return PayNowEvent(event_id, EventType.REFUND, None, None, details)


def chargeback_event(event_id: str = "e-cb", payment_id: str = "pay-1") -> PayNowEvent:
    return PayNowEvent(event_id, EventType.CHARGEBACK, None, None, Chargeback(payment_id, "o1"))


def close_event(
    outcome: str = "won", event_id: str = "e-close", payment_id: str = "pay-1"
) -> PayNowEvent:
    details = ChargebackClosed(payment_id, "o1", outcome)
    return PayNowEvent(event_id, EventType.CHARGEBACK_CLOSED, None, None, details)


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
    assert outcome.order == replace(
        credited(), refunded_amount=1397, points_reversed=750, refund_ids=("r-e-refund",)
    )


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


def test_refund_in_another_currency_is_event_mismatch() -> None:
    with pytest.raises(EventMismatch):
        points.apply(reversal_event(100, currency="eur"), {}, credited(), None)


@pytest.mark.parametrize("status", ["created", "approved", "processing", "canceled", "failed"])
def test_a_refund_that_is_not_completed_is_ignored_and_reads_nothing(status: str) -> None:
    event = refund_event(333, status=status)
    assert points.needs(event) == points.Needs()
    outcome = points.apply(event, {}, None, None)  # no order needed, none read
    assert outcome.status == "ignored"
    assert outcome.reason == f"refund {status}: only a completed refund moves points"
    assert outcome.delta == 0 and not outcome.ledger and outcome.order is None


def test_one_refund_id_moves_points_once_whatever_event_carries_it() -> None:
    first = points.apply(refund_event(333, event_id="e1", refund_id="rf-9"), {}, credited(), None)
    assert first.delta == -(750 * 333 // 1397)
    assert first.order is not None and first.order.refund_ids == ("rf-9",)
    again = points.apply(refund_event(333, event_id="e2", refund_id="rf-9"), {}, first.order, None)
    assert again.status == "ignored"
    assert again.reason == "refund rf-9 was already applied"
    assert again.delta == 0 and again.order is None and not again.ledger


def test_a_failed_refund_then_its_completed_delivery_moves_points_once() -> None:
    failed = points.apply(refund_event(1397, event_id="e1", status="failed"), {}, credited(), None)
    assert failed.order is None
    done = points.apply(refund_event(1397, event_id="e2", refund_id="r-e1"), {}, credited(), None)
    assert done.delta == -750


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


def test_the_same_chargeback_under_another_event_id_moves_nothing() -> None:
    first = points.apply(chargeback_event("e1"), {}, credited(), None)
    again = points.apply(chargeback_event("e2"), {}, first.order, None)
    assert again.status == "ignored"
    assert again.reason == "chargeback of payment pay-1 was already applied"
    assert again.delta == 0 and again.order is None


# --- chargebacks closed -------------------------------------------------------------


def test_a_won_close_gives_back_exactly_what_the_chargeback_took_once() -> None:
    refund = points.apply(refund_event(398), {}, credited(), None)  # -213
    chargeback = points.apply(chargeback_event(), {}, refund.order, None)
    assert chargeback.delta == -(750 - 213)
    won = points.apply(close_event("won"), {}, chargeback.order, None)
    assert won.status == "processed"
    assert won.delta == 750 - 213
    assert won.ledger and won.user_id == "user-42"
    assert won.reason == "chargeback won: points given back"
    assert won.order is not None
    assert won.order.points_reversed == 213  # the refund still stands
    again = points.apply(close_event("won", event_id="e-close-2"), {}, won.order, None)
    assert again.status == "ignored" and again.delta == 0
    assert again.reason == "chargeback of payment pay-1 was already closed"


@pytest.mark.parametrize("outcome", ["lost", "pending", "none", "weird"])
def test_a_close_the_store_did_not_win_is_ignored_and_reads_nothing(outcome: str) -> None:
    event = close_event(outcome)
    assert points.needs(event) == points.Needs()
    result = points.apply(event, {}, None, None)
    assert result.status == "ignored"
    assert result.reason == f"chargeback closed {outcome}: no points given back"


def test_a_won_close_before_its_order_or_its_chargeback_may_be_waiting() -> None:
    assert points.needs(close_event()) == points.Needs(order_id="o1")
    with pytest.raises(OrderNotFound) as no_order:
        points.apply(close_event(), {}, None, None)
    with pytest.raises(ChargebackNotFound) as no_chargeback:
        points.apply(close_event(), {}, credited(), None)
    assert no_chargeback.value.code == "chargeback_not_found"
    assert no_chargeback.value.order_id == no_order.value.order_id == "o1"
    for error in (no_order.value, no_chargeback.value):
        assert points.may_await_earlier_event(error, EventType.CHARGEBACK_CLOSED)


def test_a_won_close_gives_back_only_the_chargeback_of_its_own_payment() -> None:
    chargeback = points.apply(chargeback_event(payment_id="pay-1"), {}, credited(), None)
    with pytest.raises(ChargebackNotFound, match="payment pay-other"):
        points.apply(close_event(payment_id="pay-other"), {}, chargeback.order, None)


def test_a_close_before_the_second_chargeback_of_an_order_is_not_taken_for_a_repeat() -> None:
    first = points.apply(chargeback_event("e1", payment_id="pay-1"), {}, credited(), None)
    won = points.apply(close_event(event_id="c1", payment_id="pay-1"), {}, first.order, None)
    assert won.order is not None
    # pay-2's close may arrive before pay-2's chargeback: it waits (never "already closed")
    with pytest.raises(ChargebackNotFound):
        points.apply(close_event(event_id="c2", payment_id="pay-2"), {}, won.order, None)


def test_a_refund_during_the_dispute_is_not_given_back_by_the_won_close() -> None:
    chargeback = points.apply(chargeback_event(), {}, credited(), None)
    refund = points.apply(refund_event(1397), {}, chargeback.order, None)
    assert refund.delta == 0  # nothing left to reverse while disputed
    won = points.apply(close_event(), {}, refund.order, None)
    assert won.delta == 0  # the whole order is refunded now


@settings(max_examples=300, deadline=None, database=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("refund"), st.integers(min_value=0, max_value=2000)),
            st.tuples(st.just("chargeback"), st.sampled_from(["pay-1", "pay-2"])),
            st.tuples(st.just("close"), st.sampled_from(["pay-1", "pay-2"])),
        ),
        max_size=12,
    )
)
def test_reversals_in_any_order_keep_the_order_and_ledger_consistent(
    steps: list[tuple[str, object]],
) -> None:
    """Whatever arrives, 0 <= reversed <= credited and the deltas sum to -reversed."""
    order, total_delta = credited(750, 1397), 0
    for i, (kind, arg) in enumerate(steps):
        if kind == "refund":
            event = refund_event(int(str(arg)), event_id=f"e{i}")
        elif kind == "chargeback":
            event = chargeback_event(f"e{i}", payment_id=str(arg))
        else:
            event = close_event(event_id=f"e{i}", payment_id=str(arg))
        try:
            outcome = points.apply(event, {}, order, None)
        except ChargebackNotFound:
            continue
        total_delta += outcome.delta
        order = outcome.order or order
        assert 0 <= order.points_reversed <= order.points_credited
        assert total_delta == -order.points_reversed


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
