"""The scenario: every event of a run, generated from the seed alone, and how each must end.

Per customer (each one user id) a story: orders, partial and full refunds (some not
completed, some sent again under another event id), chargebacks and their closes,
refunds of orders never credited, subscription activations, renewals and cancels, and
event types the rules ignore. Bodies are PayNow's shapes (``paynow.domain.payloads``);
each event's expected end comes from the model (``model.Model``) as it is generated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from paynow.domain import payloads

from scripts.local import localstack
from scripts.proof.chaos.model import IGNORED, PROCESSED, Expect, Model

CATALOG = dict(localstack.DEMO_CATALOG)  # seeded into pointsCatalog and read by the model
PACKS = ("gems-100", "gems-550", "gems-1200")
SUBSCRIPTION_PRODUCT = "vip-monthly"
UNKNOWN_PRODUCT = "gems-retired-9000"  # never in the catalog
IGNORED_TYPES = (
    "ON_DELIVERY_ITEM_ADDED",
    "ON_DELIVERY_ITEM_ACTIVATED",
    "ON_DELIVERY_ITEM_USED",
    "ON_TRIAL_ACTIVATED",
)
UNIT_PRICES = (99, 199, 249, 499, 999, 1999)


@dataclass
class Planned:
    """One PayNow event of the run, with how it must end and how it is delivered."""

    index: int
    event_id: str
    customer: str
    user: str
    kind: str
    doc: dict[str, Any]
    expect: Expect
    copy: str = "none"  # none | concurrent | later
    copy_delay: float = 0.0
    switch_retry: bool = False


@dataclass
class CustomerStory:
    customer: str
    user: str
    open_orders: list[str] = field(default_factory=list)  # credited, not charged back
    dead_orders: list[str] = field(default_factory=list)  # dead-lettered orders
    disputed: dict[str, str] = field(default_factory=dict)  # order: payment of its open dispute
    refunds: dict[str, list[str]] = field(default_factory=dict)  # order: refunds sent with it
    unfinished: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # not completed
    subscription: str | None = None


REFUND_STATUSES_THAT_WAIT = ("created", "approved", "processing", "canceled", "failed")
CUSTOMERLESS = 0.3  # share of refunds, chargebacks and closes sent with ``customer: null``


def _lines(rng: random.Random, unknown: bool) -> list[tuple[str, int, int]]:
    lines = []
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
        quantity = rng.randint(1, 5)
        lines.append((rng.choice(PACKS), quantity, quantity * rng.choice(UNIT_PRICES)))
    if unknown:
        lines.insert(rng.randrange(len(lines) + 1), (UNKNOWN_PRODUCT, 1, 499))
    return lines


def _pick(rng: random.Random, story: CustomerStory, model: Model) -> str:
    refundable = [o for o in story.open_orders if model.orders[o].refunded < model.orders[o].total]
    weights = {
        "order": 30.0,
        "order_unknown_product": 1.5,
        "order_no_user": 1.5,
        "refund": 16.0 if refundable else 0.0,
        "chargeback": 3.0 if story.open_orders else 0.0,
        "close": 3.0 if story.disputed else 0.0,
        "close_no_chargeback": 0.5 if story.open_orders else 0.0,
        "refund_again": 1.0 if any(story.refunds.values()) else 0.0,
        "refund_uncredited": 1.0,
        "sub_activated": 5.0 if story.subscription is None else 0.0,
        "sub_renewed": 8.0 if story.subscription else 0.0,
        "sub_canceled": 3.0 if story.subscription else 0.0,
        "ignored": 5.0,
    }
    kinds = [k for k, w in weights.items() if w > 0]
    return rng.choices(kinds, weights=[weights[k] for k in kinds])[0]


def _reversal_doc(
    rng: random.Random,
    kind: str,
    event_id: str,
    reversal_id: str,
    order_id: str,
    customer: str,
    amount: int,
) -> dict[str, Any]:
    """A refund or chargeback body; PayNow may send these with ``customer: null``."""
    customerless = rng.random() < CUSTOMERLESS
    build = payloads.refund if kind == "refund" else payloads.chargeback
    return build(event_id, reversal_id, order_id, None if customerless else customer, amount)


def generate(
    seed: int, n_events: int, n_customers: int, duplicates: float
) -> tuple[list[Planned], Model]:
    """The run's events in sending order, from the seed alone, and the model they leave."""
    rng = random.Random(seed)  # noqa: S311 - replayable by seed, no security role
    model = Model(CATALOG)
    stories = [
        CustomerStory(f"cust-{seed}-{i:04d}", f"user-{seed}-{i:04d}") for i in range(n_customers)
    ]
    first_turns = rng.sample(range(n_customers), n_customers)  # every customer appears
    events: list[Planned] = []
    for i in range(n_events):
        story = stories[first_turns[i]] if i < n_customers else rng.choice(stories)
        kind = _pick(rng, story, model)
        event_id, cust, user = f"evt-{seed}-{i:05d}", story.customer, story.user
        doc: dict[str, Any]
        if kind.startswith("order"):
            order_id = f"ord-{seed}-{i:05d}"
            lines = _lines(rng, unknown=kind == "order_unknown_product")
            meta_user = None if kind == "order_no_user" else user
            doc = payloads.order_completed(event_id, order_id, cust, meta_user, lines)
            expect = model.order(order_id, cust, meta_user, lines)
            (story.open_orders if expect.status == PROCESSED else story.dead_orders).append(
                order_id
            )
        elif kind == "refund":
            order_id = rng.choice(
                [o for o in story.open_orders if model.orders[o].refunded < model.orders[o].total]
            )
            order = model.orders[order_id]
            left = order.total - order.refunded
            roll = rng.random()
            if roll < 0.35 or left == 1:
                amount = left  # closes the order: partial refunds add up to a full one
            elif roll < 0.95:
                amount = rng.randint(1, left - 1)
            else:
                amount = left + rng.randint(1, 500)  # more than was paid: capped at the total
            refund_id, status = f"rfd-{seed}-{i:05d}", "completed"
            waiting = story.unfinished.setdefault(order_id, [])
            if waiting and rng.random() < 0.5:  # a refund PayNow sent unfinished completes now
                refund_id, amount = waiting.pop(0)
            elif rng.random() < 0.12:
                status = rng.choice(REFUND_STATUSES_THAT_WAIT)
                waiting.append((refund_id, amount))
            doc = _reversal_doc(rng, "refund", event_id, refund_id, order_id, cust, amount)
            doc["body"]["status"] = status
            doc["body"]["amount"] = order.total  # the original payment's, never the refund
            expect = model.refund(order_id, refund_id, amount, status)
            if status == "completed" and doc["body"]["customer"] is not None:
                story.refunds.setdefault(order_id, []).append(refund_id)
        elif kind == "refund_again":
            # one refund delivered again under another event id (with its customer, so in
            # order behind the first): moves nothing
            order_id = rng.choice([o for o, r in story.refunds.items() if r])
            refund_id = rng.choice(story.refunds[order_id])
            doc = payloads.refund(event_id, refund_id, order_id, cust, 1)
            expect = model.refund(order_id, refund_id, 1, "completed")
        elif kind == "chargeback":
            order_id = rng.choice(story.open_orders)
            story.open_orders.remove(order_id)
            payment_id = f"pay-{seed}-{i:05d}"
            story.disputed[order_id] = payment_id
            amount = model.orders[order_id].total
            doc = _reversal_doc(rng, "chargeback", event_id, payment_id, order_id, cust, amount)
            expect = model.chargeback(order_id, payment_id)
        elif kind in ("close", "close_no_chargeback"):
            if kind == "close":
                order_id = rng.choice(sorted(story.disputed))
                payment_id = story.disputed.pop(order_id)
                outcome = "won" if rng.random() < 0.6 else "lost"
                if outcome == "won":
                    story.open_orders.append(order_id)
            else:  # a close naming a payment that was never disputed
                order_id, payment_id, outcome = rng.choice(story.open_orders), "pay-none", "won"
            doc = _reversal_doc(rng, "chargeback", event_id, payment_id, order_id, cust, 0)
            doc["event_type"] = "ON_CHARGEBACK_CLOSED"
            doc["body"]["chargeback_status"] = outcome
            expect = model.close(order_id, payment_id, outcome)
        elif kind == "refund_uncredited":
            order_id = (
                rng.choice(story.dead_orders) if story.dead_orders else f"ord-{seed}-ghost-{i:05d}"
            )
            amount = rng.randint(1, 2000)
            refund_id = f"rfd-{seed}-{i:05d}"
            doc = _reversal_doc(rng, "refund", event_id, refund_id, order_id, cust, amount)
            expect = model.refund(order_id, refund_id, amount, "completed")
        elif kind.startswith("sub_"):
            state = kind.removeprefix("sub_")
            if state == "activated":
                story.subscription = f"sub-{seed}-{i:05d}"
            sub_id = story.subscription
            assert sub_id is not None
            # Renewals and cancels carry the user half the time: else it comes from the record.
            meta_user = user if state == "activated" or rng.random() < 0.5 else None
            doc = payloads.subscription(
                state, event_id, sub_id, cust, meta_user, SUBSCRIPTION_PRODUCT
            )
            expect = model.subscription(state, sub_id, meta_user, SUBSCRIPTION_PRODUCT)
            if state == "canceled":
                story.subscription = None
        else:
            doc = {
                "event_type": rng.choice(IGNORED_TYPES),
                "event_id": event_id,
                "body": {"id": f"misc-{seed}-{i:05d}", "customer": {"id": cust}},
            }
            expect = Expect(IGNORED)
        planned = Planned(i, event_id, cust, user, kind, doc, expect)
        roll = rng.random()
        if roll < duplicates * 0.4:
            planned.copy = "concurrent"
        elif roll < duplicates:
            planned.copy, planned.copy_delay = "later", round(rng.uniform(0.2, 12.0), 2)
        events.append(planned)
    # PayNow-style retries after the switch: first-half events, mostly recent (still queued).
    half = n_events // 2
    window = range(max(0, half - max(30, n_events // 8)), half)
    for i in rng.sample(list(window), min(len(window), max(6, round(n_events * 0.03)))):
        events[i].switch_retry = True
    return events, model
