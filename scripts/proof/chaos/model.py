"""The model: the points rules of the contract, written here on their own.

It is the check of ``paynow.domain.points``, so it imports nothing of the pipeline's rules
(nor its record states): each rule is written again from docs/contract.md#points and
docs/architecture.md, and the run compares what Firestore holds with what this says. The
outage drill (``scripts/proof/drill.py``) checks its balances with it too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

PROCESSED, IGNORED, DEAD_LETTERED, RECEIVED = "processed", "ignored", "dead_lettered", "received"
FINAL = frozenset({PROCESSED, IGNORED, DEAD_LETTERED})


@dataclass(frozen=True)
class Expect:
    """How an event must end: its status, its error code, and whether it leaves a ledger entry."""

    status: str
    code: str | None = None
    user: str | None = None
    ledger: bool = False


@dataclass
class OrderModel:
    user: str
    customer: str
    total: int
    credited: int
    refunded: int = 0
    reversed: int = 0
    refund_ids: set[str] = field(default_factory=set)
    disputes: dict[str, list[Any]] = field(default_factory=dict)  # payment: [taken, open?]


@dataclass
class SubscriptionModel:
    user: str
    status: str


class Model:
    """Expected balances, orders and subscriptions after the events, applied in sent order.

    Per customer, events are sent in order (the next one after the previous got its 2xx), and
    the final state the rules reach does not depend on how refunds and chargebacks of one order
    interleave (reversed = floor of the cumulative refund, or everything after a chargeback).
    """

    def __init__(self, catalog: dict[str, int]) -> None:
        self.catalog = catalog
        self.balances: dict[str, int] = defaultdict(int)
        self.orders: dict[str, OrderModel] = {}
        self.subscriptions: dict[str, SubscriptionModel] = {}

    def order(
        self, order_id: str, customer: str, user: str | None, lines: list[tuple[str, int, int]]
    ) -> Expect:
        if not user:
            return Expect(DEAD_LETTERED, "no_user_id")
        if any(product not in self.catalog for product, _, _ in lines):
            return Expect(DEAD_LETTERED, "unknown_product", user)
        credit = 0
        for product, quantity, _ in lines:
            credit += self.catalog[product] * quantity
        total = sum(cents for _, _, cents in lines)
        self.orders[order_id] = OrderModel(user, customer, total, credit)
        self.balances[user] += credit
        return Expect(PROCESSED, None, user, ledger=True)

    def refund(self, order_id: str, refund_id: str, amount: int, status: str) -> Expect:
        if status != "completed":  # only a completed refund moves points
            return Expect(IGNORED)
        order = self.orders.get(order_id)
        if order is None:
            return Expect(DEAD_LETTERED, "order_not_found")
        if refund_id in order.refund_ids:  # one refund id moves points once
            return Expect(IGNORED)
        order.refund_ids.add(refund_id)
        order.refunded += amount
        # floor(credited × min(refunded, total) / total), never less than already reversed
        share = order.credited * min(order.refunded, order.total) // order.total
        target = max(share, order.reversed)
        self.balances[order.user] -= target - order.reversed
        order.reversed = target
        return Expect(PROCESSED, None, order.user, ledger=True)

    def chargeback(self, order_id: str, payment_id: str) -> Expect:
        order = self.orders.get(order_id)
        if order is None:
            return Expect(DEAD_LETTERED, "order_not_found")
        taken = order.credited - order.reversed
        order.disputes[payment_id] = [taken, True]
        self.balances[order.user] -= taken
        order.reversed = order.credited
        return Expect(PROCESSED, None, order.user, ledger=True)

    def close(self, order_id: str, payment_id: str, outcome: str) -> Expect:
        """A won close gives back what its payment's chargeback took, less what refunds took."""
        if outcome != "won":
            return Expect(IGNORED)
        order = self.orders.get(order_id)
        if order is None:
            return Expect(DEAD_LETTERED, "order_not_found")
        dispute = order.disputes.get(payment_id)
        if dispute is None:
            return Expect(DEAD_LETTERED, "chargeback_not_found")
        if not dispute[1]:
            return Expect(IGNORED)
        refunds = order.credited * min(order.refunded, order.total) // order.total
        given = max(0, min(dispute[0], order.reversed - (refunds if order.refund_ids else 0)))
        dispute[1] = False
        order.reversed -= given
        self.balances[order.user] += given
        return Expect(PROCESSED, None, order.user, ledger=True)

    def subscription(self, kind: str, sub_id: str, user: str | None, product: str) -> Expect:
        known = self.subscriptions.get(sub_id)
        owner = user or (known.user if known else None)
        if kind == "canceled":
            if known is not None:
                known.status = "canceled"
            return Expect(PROCESSED, None, owner, ledger=False)
        if not owner:
            return Expect(DEAD_LETTERED, "no_user_id")
        if product not in self.catalog:
            return Expect(DEAD_LETTERED, "unknown_product", owner)
        self.subscriptions[sub_id] = SubscriptionModel(owner, "active")
        self.balances[owner] += self.catalog[product]
        return Expect(PROCESSED, None, owner, ledger=True)
