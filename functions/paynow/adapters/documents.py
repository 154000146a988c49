"""The Firestore documents of the contract, as plain dicts: built and read in one place.

Pure (no client import), so the Firestore store and the tests' in-memory
fake write exactly the same fields. Timestamps are passed in: the store
passes ``SERVER_TIMESTAMP``, the fake a clock value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from paynow.domain import events as ev
from paynow.domain import points, records
from paynow.domain.errors import EventMismatch
from paynow.domain.messages import QueueMessage
from paynow.domain.records import DEAD_LETTERED, RECEIVED, is_final

EVENTS = "webhookEvents"
USERS = "users"
LEDGER = "pointsLedger"
ORDERS = "paynowOrders"
SUBSCRIPTIONS = "paynowSubscriptions"
CATALOG = "pointsCatalog"
REJECTIONS = "rejectedPayloads"
COLLECTIONS = (EVENTS, USERS, LEDGER, ORDERS, SUBSCRIPTIONS, CATALOG, REJECTIONS)
REPUBLISHED_AT = "republishedAt"
REPUBLISH_COUNT = "republishCount"
SOURCES = ("webhook", "backfill")  # how an event reached the pipeline: the record's ``source``


@dataclass(frozen=True)
class Add:
    """A stored integer moved by ``amount`` where it lies (Firestore's ``Increment``)."""

    amount: int


@dataclass(frozen=True)
class Write:
    """One document write of a commit: ``set`` replaces, ``merge`` merges, ``update`` changes
    the named fields of a document that exists. ``path`` alternates collection and id."""

    path: tuple[str, ...]
    fields: dict[str, Any] = field(default_factory=dict)
    kind: Literal["set", "merge", "update"] = "set"


NewRecord = Callable[[], dict[str, Any]]
"""Builds the full ``webhookEvents/{id}`` for an event that has no record yet."""


def event_record(
    event: ev.PayNowEvent,
    mode: str,
    received_at: object,
    expire_at: datetime | None,
    source: str = "webhook",
) -> dict[str, Any]:
    """A new ``webhookEvents/{id}``: state ``received``, the normalized data, no PII.

    ``republishedAt`` starts equal to ``receivedAt`` (its first publish) rather than
    missing, because Firestore's range filter never matches a missing field: reconcile's
    one query (``republishedAt`` older than its window) then finds records never
    republished too. ``republishCount`` tells them apart (0).
    """
    record: dict[str, Any] = {
        "eventType": event.event_type,
        "userId": event.user_id,
        "customerId": event.customer_id,
        "status": RECEIVED,
        "mode": mode,
        "receivedAt": received_at,
        "processedAt": None,
        "attempts": 0,
        "lastError": None,
        "data": event.record_data(),
        "source": source,
        REPUBLISHED_AT: received_at,
        REPUBLISH_COUNT: 0,
    }
    if expire_at is not None:
        record["expireAt"] = expire_at
    return record


def processed_fields(event: ev.PayNowEvent, outcome: points.Outcome, at: object) -> dict[str, Any]:
    """What a successful processing transaction sets on the event record."""
    return {
        "status": outcome.status,
        "processedAt": at,
        "userId": outcome.user_id or event.user_id,
        "reason": outcome.reason,
    }


def dead_lettered_fields(code: str, message: str, at: object) -> dict[str, Any]:
    return {
        "status": DEAD_LETTERED,
        "processedAt": at,
        "lastError": {"code": code, "message": message},
    }


def step(
    event_id: str,
    record: dict[str, Any] | None,
    *,
    event_in_hand: bool,
    pending: Callable[[], records.Pending] | None,
) -> records.Step:
    """``records.decide`` over a stored record (None: the event has none yet)."""
    return records.decide(
        event_id,
        record.get("status") if record is not None else None,
        record.get("receivedAt") if record is not None else None,
        event_in_hand=event_in_hand,
        pending=pending,
    )


def received_writes(event: ev.PayNowEvent, new_record: NewRecord) -> list[Write]:
    """A queued event's record, created (``create``) as ``received``."""
    return [Write((EVENTS, event.event_id), new_record())]


def outcome_writes(
    event: ev.PayNowEvent,
    outcome: points.Outcome,
    record: dict[str, Any] | None,
    new_record: NewRecord,
    at: object,
) -> list[Write]:
    """Everything one processed event writes, in one commit: balance, ledger entry, order or
    subscription, and its record's final state (created with it in sync mode)."""
    writes: list[Write] = []
    if outcome.ledger and outcome.user_id:
        writes.append(
            Write(
                (USERS, outcome.user_id), {"points": Add(outcome.delta), "updatedAt": at}, "merge"
            )
        )
        writes.append(
            Write(
                (USERS, outcome.user_id, LEDGER, event.event_id), ledger_entry(event, outcome, at)
            )
        )
    if outcome.order is not None and outcome.order_id:
        writes.append(Write((ORDERS, outcome.order_id), order_document(outcome.order, at)))
    if outcome.subscription is not None:
        sub_id, state = outcome.subscription
        writes.append(Write((SUBSCRIPTIONS, sub_id), subscription_document(state, at)))
    return writes + _finish(
        event.event_id, record, new_record, processed_fields(event, outcome, at)
    )


def dead_letter_writes(
    event_id: str,
    record: dict[str, Any] | None,
    new_record: NewRecord | None,
    code: str,
    message: str,
    at: object,
) -> list[Write]:
    """Marking an event ``dead_lettered``; nothing for one already final, or with no record
    and no event to record (its DLQ message is then the only trace)."""
    if is_final(record.get("status") if record is not None else None):
        return []
    if record is None and new_record is None:
        return []
    fields = dead_lettered_fields(code, message, at)
    return _finish(event_id, record, new_record or dict, fields)


def _finish(
    event_id: str,
    record: dict[str, Any] | None,
    new_record: NewRecord,
    final: dict[str, Any],
) -> list[Write]:
    """The record leaves ``received`` (or is created final)."""
    if record is None:
        return [Write((EVENTS, event_id), {**new_record(), **final})]
    return [Write((EVENTS, event_id), final, "update")]


def reopen_writes(event_id: str, record: dict[str, Any], at: object) -> list[Write]:
    """A replay's reset: a dead letter goes back to ``received``, one still ``received``
    starts its attempts again; final ones stay as they are.

    Both start reconcile's count again too: the replay publishes them now, and one that
    reconcile had given up on must not be dead-lettered again by its next run."""
    status = record.get("status")
    fresh = {REPUBLISH_COUNT: 0, REPUBLISHED_AT: at}
    if status == DEAD_LETTERED:
        fields = {"status": RECEIVED, "attempts": 0, "processedAt": None}
        return [Write((EVENTS, event_id), {**fields, **fresh}, "update")]
    if status == RECEIVED:
        return [Write((EVENTS, event_id), {"attempts": 0, "lastError": None, **fresh}, "update")]
    return []


def reopened(event_id: str, record: dict[str, Any], writes: list[Write]) -> records.Reopened:
    """What ``reopen`` answers for a record and its ``reopen_writes``: the status after them
    and the message to publish, read from the same record (a replay reads it once)."""
    status = RECEIVED if writes else str(record.get("status"))
    return records.Reopened(status, queue_message(event_id, record))


def republished_writes(event_ids: list[str], at: object) -> list[Write]:
    """Reconcile's stamp on each event it published again: when, and one more time."""
    fields = {REPUBLISHED_AT: at, REPUBLISH_COUNT: Add(1)}
    return [Write((EVENTS, event_id), dict(fields), "update") for event_id in event_ids]


def stamp_writes(event_id: str, record: dict[str, Any]) -> list[Write]:
    """The stamp a record written before ``republishedAt`` existed lacks (reconcile's query
    cannot see it without): its receipt as its last publish. Nothing for a stamped one."""
    if REPUBLISHED_AT in record or not isinstance(record.get("receivedAt"), datetime):
        return []
    fields = {REPUBLISHED_AT: record["receivedAt"], REPUBLISH_COUNT: 0}
    return [Write((EVENTS, event_id), fields, "update")]


def republish_count(record: dict[str, Any]) -> int:
    """``republishCount``; a value that is not an int (a record written by hand) counts as 0."""
    value = record.get(REPUBLISH_COUNT, 0)
    return value if is_int(value) else 0


def is_int(value: object) -> bool:
    """A stored integer (Firestore hands a bool back as a bool, which Python calls an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def event_from_record(event_id: str, record: dict[str, Any]) -> ev.PayNowEvent:
    """Rebuild the event the worker processes from its stored record."""
    data = record.get("data")
    if not isinstance(data, dict):
        raise EventMismatch(f"stored event {event_id} has no data")
    return ev.from_record(
        event_id,
        str(record.get("eventType", "")),
        record.get("customerId"),
        record.get("userId"),
        data,
    )


def queue_message(event_id: str, record: dict[str, Any]) -> QueueMessage:
    """The ids-only message that (re)publishes a stored event with its ordering key."""
    return QueueMessage(
        event_id=event_id,
        event_type=str(record.get("eventType", "")),
        customer_id=_text_or_none(record.get("customerId")),
        user_id=_text_or_none(record.get("userId")),
    )


def stuck(event_id: str, record: dict[str, Any]) -> records.Stuck:
    """A record reconcile found due, as the service needs it."""
    return records.Stuck(
        queue_message(event_id, record), republish_count(record), str(record.get("mode", ""))
    )


def ledger_entry(event: ev.PayNowEvent, outcome: points.Outcome, at: object) -> dict[str, Any]:
    """``users/{u}/pointsLedger/{eventId}``."""
    return {
        "delta": outcome.delta,
        "eventId": event.event_id,
        "eventType": event.event_type,
        "orderId": outcome.order_id,
        "reason": outcome.reason,
        "createdAt": at,
    }


def catalog_points(doc: dict[str, Any] | None) -> int | None:
    """``pointsCatalog/{productId}.points``, or None when absent or not an integer."""
    value = doc.get("points") if doc is not None else None
    return value if is_int(value) else None


def order_document(o: points.OrderState, at: object) -> dict[str, Any]:
    return {
        "userId": o.user_id,
        "customerId": o.customer_id,
        "totalAmount": o.total_amount,
        "currency": o.currency,
        "pointsCredited": o.points_credited,
        "refundedAmount": o.refunded_amount,
        "pointsReversed": o.points_reversed,
        "refundIds": list(o.refund_ids),
        "chargebacks": {
            c.payment_id: {"points": c.points, "outcome": c.outcome} for c in o.chargebacks
        },
        "updatedAt": at,
    }


def order_state(doc: dict[str, Any] | None) -> points.OrderState | None:
    """The order as the rules see it; fields absent from older documents read as empty."""
    if doc is None:
        return None
    disputes = doc.get("chargebacks")
    return points.OrderState(
        user_id=str(doc["userId"]),
        customer_id=doc.get("customerId"),
        total_amount=int(doc.get("totalAmount", 0)),
        currency=str(doc.get("currency", "")),
        points_credited=int(doc.get("pointsCredited", 0)),
        refunded_amount=int(doc.get("refundedAmount", 0)),
        points_reversed=int(doc.get("pointsReversed", 0)),
        refund_ids=tuple(str(r) for r in doc.get("refundIds") or ()),
        chargebacks=tuple(
            points.ChargebackState(str(pid), int(c.get("points", 0)), str(c.get("outcome", "open")))
            for pid, c in (disputes.items() if isinstance(disputes, dict) else ())
            if isinstance(c, dict)
        ),
    )


def subscription_document(s: points.SubscriptionState, at: object) -> dict[str, Any]:
    return {
        "userId": s.user_id,
        "customerId": s.customer_id,
        "productId": s.product_id,
        "status": s.status,
        "currentPeriodEnd": s.current_period_end,
        "updatedAt": at,
    }


def subscription_state(doc: dict[str, Any] | None) -> points.SubscriptionState | None:
    if doc is None:
        return None
    return points.SubscriptionState(
        user_id=doc.get("userId"),
        customer_id=doc.get("customerId"),
        product_id=str(doc.get("productId", "")),
        status=str(doc.get("status", "")),
        current_period_end=doc.get("currentPeriodEnd"),
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
