"""The points rules: given an event and the state it touches, what changes.

``needs`` says which documents an event reads (so the store fetches them in
one round trip); ``apply`` is a pure function of the event and that state,
returning an ``Outcome`` the store writes atomically, or raising a
``TerminalError`` for an event that can never be credited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from paynow.domain.errors import (
    AwaitingOrderEvent,
    ChargebackNotFound,
    EventMismatch,
    NoUserId,
    OrderNotFound,
    UnknownProduct,
)
from paynow.domain.events import (
    CHARGEBACK_WON,
    REFUND_COMPLETED,
    SUBSCRIPTION_TYPES,
    Chargeback,
    ChargebackClosed,
    EventType,
    OrderCompleted,
    PayNowEvent,
    Refund,
    Reversal,
    SubscriptionChange,
)

CHARGEBACK_OPEN = "open"


@dataclass(frozen=True)
class ChargebackState:
    """One disputed payment of an order: the points it took, and whether the dispute is over."""

    payment_id: str
    points: int
    outcome: str = CHARGEBACK_OPEN  # open | won


@dataclass(frozen=True)
class OrderState:
    """``paynowOrders/{orderId}``: who was credited for an order, and how much is reversed.

    ``refund_ids`` are the refunds applied (each moves points once, whatever event
    carries it); ``chargebacks`` the disputes, so a won one gives back what it took.
    """

    user_id: str
    customer_id: str | None
    total_amount: int
    currency: str
    points_credited: int
    refunded_amount: int = 0
    points_reversed: int = 0
    refund_ids: tuple[str, ...] = ()
    chargebacks: tuple[ChargebackState, ...] = ()


@dataclass(frozen=True)
class SubscriptionState:
    """``paynowSubscriptions/{subscriptionId}``."""

    user_id: str | None
    customer_id: str | None
    product_id: str
    status: str
    current_period_end: str | None


@dataclass(frozen=True)
class Needs:
    """The documents an event's rule reads."""

    product_ids: tuple[str, ...] = ()
    order_id: str | None = None
    subscription_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What processing an event changes; the store writes all of it or nothing.

    ``ledger`` is False for events that move no points (cancellations,
    ignored types); every other outcome leaves a ledger entry, even a zero one,
    so the ledger shows why a balance did or did not move.
    """

    status: str  # "processed" | "ignored"
    user_id: str | None = None
    delta: int = 0
    reason: str = ""
    order_id: str | None = None
    ledger: bool = False
    order: OrderState | None = None
    subscription: tuple[str, SubscriptionState] | None = None


IGNORED = Outcome(status="ignored", reason="event type moves no points")


def may_await_earlier_event(error: Exception, event_type: str) -> bool:
    """True when a terminal error may only mean an earlier event is still queued.

    A refund, chargeback or close finds its order only once the order is credited
    (and a won close its chargeback once that is applied), and a renewal or cancel
    may take its user from the activation; an order without a user id, or with an
    unknown product, will never get better.
    """
    if isinstance(error, AwaitingOrderEvent):
        return True
    return isinstance(error, NoUserId) and event_type in SUBSCRIPTION_TYPES


def needs(event: PayNowEvent) -> Needs:
    d = event.details
    if isinstance(d, OrderCompleted):
        return Needs(
            product_ids=tuple(dict.fromkeys(x.product_id for x in d.lines)), order_id=d.order_id
        )
    if isinstance(d, Reversal):
        # A refund that is not completed, or a close the store lost, changes nothing.
        return Needs(order_id=d.order_id) if _moves_points(d) else Needs()
    if isinstance(d, SubscriptionChange):
        products = () if event.event_type == EventType.SUBSCRIPTION_CANCELED else (d.product_id,)
        return Needs(product_ids=products, subscription_id=d.subscription_id)
    return Needs()


def apply(
    event: PayNowEvent,
    catalog: Mapping[str, int],
    order: OrderState | None,
    subscription: SubscriptionState | None,
) -> Outcome:
    """The rule for ``event``'s type over the current state (docs/contract.md, "Points")."""
    d = event.details
    if not event.handled:
        return IGNORED
    if isinstance(d, OrderCompleted):
        return _order_completed(event, d, catalog, order)
    if isinstance(d, Reversal):
        if not _moves_points(d):
            return _ignored_reversal(d)
        if order is None:
            raise OrderNotFound(f"order {d.order_id} was never credited", d.order_id)
        if isinstance(d, Refund):
            if d.currency != order.currency:
                raise EventMismatch(f"{event.event_type} currency differs from the order's")
            return _refund(d, order)
        if isinstance(d, Chargeback):
            return _chargeback(d, order)
        return _chargeback_won(d, order)
    if isinstance(d, SubscriptionChange):
        return _subscription(event, d, catalog, subscription)
    raise EventMismatch(f"{event.event_type} carries no details")


def _require_catalog(catalog: Mapping[str, int], product_ids: list[str]) -> None:
    missing = sorted({p for p in product_ids if p not in catalog})
    if missing:
        raise UnknownProduct(f"product(s) not in pointsCatalog: {', '.join(missing)}")


def _order_completed(
    event: PayNowEvent, d: OrderCompleted, catalog: Mapping[str, int], order: OrderState | None
) -> Outcome:
    if not event.user_id:
        raise NoUserId("order has no user id in its checkout metadata")
    if order is not None:
        # Another event already credited this order: never twice.
        return Outcome(
            status="processed",
            user_id=event.user_id,
            reason="order already credited by an earlier event",
            order_id=d.order_id,
            ledger=True,
        )
    _require_catalog(catalog, [x.product_id for x in d.lines])
    credit = sum(catalog[x.product_id] * x.quantity for x in d.lines)
    return Outcome(
        status="processed",
        user_id=event.user_id,
        delta=credit,
        reason="order completed",
        order_id=d.order_id,
        ledger=True,
        order=OrderState(
            user_id=event.user_id,
            customer_id=event.customer_id,
            total_amount=d.total_amount,
            currency=d.currency,
            points_credited=credit,
        ),
    )


def reversed_after_refund(order: OrderState, refunded_amount: int) -> int:
    """Points reversed once ``refunded_amount`` of the order is refunded.

    floor(credited × min(refunded, total) / total): partial refunds add up
    exactly to a full one. A free order (total 0) is reversed whole.
    """
    if order.total_amount <= 0:
        return order.points_credited
    return order.points_credited * min(refunded_amount, order.total_amount) // order.total_amount


def _moves_points(d: Reversal) -> bool:
    """Only a completed refund, any chargeback, and only a chargeback the store won."""
    if isinstance(d, Refund):
        return d.status == REFUND_COMPLETED
    if isinstance(d, ChargebackClosed):
        return d.outcome == CHARGEBACK_WON
    return True


def _ignored_reversal(d: Reversal) -> Outcome:
    if isinstance(d, ChargebackClosed):
        reason = f"chargeback closed {d.outcome}: no points given back"
    elif isinstance(d, Refund):
        reason = f"refund {d.status}: only a completed refund moves points"
    else:
        reason = "moves no points"
    return Outcome(status="ignored", reason=reason, order_id=d.order_id)


def _refund(d: Refund, order: OrderState) -> Outcome:
    if d.refund_id in order.refund_ids:
        return _nothing_to_do(order, f"refund {d.refund_id} was already applied", d.order_id)
    refunded = order.refunded_amount + d.amount
    target = max(reversed_after_refund(order, refunded), order.points_reversed)
    delta = -(target - order.points_reversed)
    return Outcome(
        status="processed",
        user_id=order.user_id,
        delta=delta,
        reason="refund" if delta else "refund: nothing left to reverse",
        order_id=d.order_id,
        ledger=True,
        order=replace(
            order,
            refunded_amount=refunded,
            points_reversed=target,
            refund_ids=(*order.refund_ids, d.refund_id),
        ),
    )


def _chargeback(d: Chargeback, order: OrderState) -> Outcome:
    known = _dispute(order, d.payment_id)
    if known is not None and known.outcome == CHARGEBACK_OPEN:
        return _nothing_to_do(
            order, f"chargeback of payment {d.payment_id} was already applied", d.order_id
        )
    taken = order.points_credited - order.points_reversed
    others = tuple(c for c in order.chargebacks if c.payment_id != d.payment_id)
    return Outcome(
        status="processed",
        user_id=order.user_id,
        delta=-taken,
        reason="chargeback" if taken else "chargeback: nothing left to reverse",
        order_id=d.order_id,
        ledger=True,
        order=replace(
            order,
            points_reversed=order.points_credited,
            chargebacks=(*others, ChargebackState(d.payment_id, taken)),
        ),
    )


def _chargeback_won(d: ChargebackClosed, order: OrderState) -> Outcome:
    """Give back what the chargeback of the same payment took, once; never what a refund has
    reversed since. A close names its payment (``id``) as the chargeback did."""
    dispute = _dispute(order, d.payment_id)
    if dispute is None:
        # Not yet applied (it may still be queued: the caller waits for it), or none at all.
        raise ChargebackNotFound(
            f"order {d.order_id} has no chargeback of payment {d.payment_id}", d.order_id
        )
    if dispute.outcome != CHARGEBACK_OPEN:
        return _nothing_to_do(
            order, f"chargeback of payment {dispute.payment_id} was already closed", d.order_id
        )
    refunded = bool(order.refund_ids) or order.refunded_amount > 0
    still_refunded = reversed_after_refund(order, order.refunded_amount) if refunded else 0
    given = max(0, min(dispute.points, order.points_reversed - still_refunded))
    won = replace(dispute, outcome=CHARGEBACK_WON)
    return Outcome(
        status="processed",
        user_id=order.user_id,
        delta=given,
        reason="chargeback won: points given back",
        order_id=d.order_id,
        ledger=True,
        order=replace(
            order,
            points_reversed=order.points_reversed - given,
            chargebacks=tuple(won if c is dispute else c for c in order.chargebacks),
        ),
    )


def _nothing_to_do(order: OrderState, reason: str, order_id: str) -> Outcome:
    """An event about an order that has already had its effect: recorded ``ignored``."""
    return Outcome(status="ignored", user_id=order.user_id, reason=reason, order_id=order_id)


def _dispute(order: OrderState, payment_id: str) -> ChargebackState | None:
    return next((c for c in order.chargebacks if c.payment_id == payment_id), None)


def _subscription(
    event: PayNowEvent,
    d: SubscriptionChange,
    catalog: Mapping[str, int],
    current: SubscriptionState | None,
) -> Outcome:
    user_id = event.user_id or (current.user_id if current else None)
    canceled = event.event_type == EventType.SUBSCRIPTION_CANCELED
    state = SubscriptionState(
        user_id=user_id,
        customer_id=event.customer_id or (current.customer_id if current else None),
        product_id=d.product_id,
        status="canceled" if canceled else (d.status or "active"),
        current_period_end=d.current_period_end,
    )
    if canceled:
        return Outcome(
            status="processed",
            user_id=user_id,
            reason="subscription canceled",
            subscription=(d.subscription_id, state),
        )
    if not user_id:
        raise NoUserId("subscription has no user id in its metadata nor on record")
    _require_catalog(catalog, [d.product_id])
    kind = "activated" if event.event_type == EventType.SUBSCRIPTION_ACTIVATED else "renewed"
    return Outcome(
        status="processed",
        user_id=user_id,
        delta=catalog[d.product_id],
        reason=f"subscription {kind}",
        ledger=True,
        subscription=(d.subscription_id, state),
    )
