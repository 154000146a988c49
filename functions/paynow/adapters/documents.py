"""The Firestore documents of the contract, as plain dicts: built and read in one place.

Pure (no client import), so the Firestore store and the tests' in-memory
fake write exactly the same fields. Timestamps are passed in: the store
passes ``SERVER_TIMESTAMP``, the fake a clock value.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from paynow.domain import events as ev
from paynow.domain import points
from paynow.domain.errors import EventMismatch
from paynow.domain.messages import QueueMessage
from paynow.service.ports import DEAD_LETTERED, RECEIVED

QUEUED_COUNTED = "queuedCounted"


def event_record(
    event: ev.PayNowEvent, mode: str, received_at: object, expire_at: datetime | None
) -> dict[str, Any]:
    """A new ``webhookEvents/{id}``: state ``received``, the normalized data, no PII."""
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
        # In its customer's queued count while received (see queued_change).
        QUEUED_COUNTED: bool(event.customer_id),
    }
    if expire_at is not None:
        record["expireAt"] = expire_at
    return record


def processed_fields(event: ev.PayNowEvent, outcome: points.Outcome, at: object) -> dict[str, Any]:
    """What a successful processing transaction sets on the event record."""
    return {"status": outcome.status, "processedAt": at, "userId": outcome.user_id or event.user_id}


def dead_lettered_fields(code: str, message: str, at: object) -> dict[str, Any]:
    return {
        "status": DEAD_LETTERED,
        "processedAt": at,
        "lastError": {"code": code, "message": message},
    }


def has_earlier(event_id: str, received_at: object, pending: Iterable[tuple[str, object]]) -> bool:
    """True when one of ``pending`` (id, ``receivedAt`` of a ``received`` record) may come first.

    Another event is earlier when it was received before this one; when either time is
    unknown (this event has no record yet, or a stored value is not a timestamp) waiting
    behind it is the safe side.
    """
    for other_id, theirs in pending:
        if other_id == event_id:
            continue
        if not (isinstance(theirs, datetime) and isinstance(received_at, datetime)):
            return True
        if theirs < received_at:
            return True
    return False


def counted_as_queued(record: dict[str, Any]) -> bool:
    """A record whose leaving ``received`` must take its customer's queued count down.

    Only records that went into the count carry the mark, so one the count never saw
    (written before it existed, or by hand) cannot drive it below the truth.
    """
    return record.get("status") == RECEIVED and record.get(QUEUED_COUNTED) is True


def queued_change(delta: object, at: object) -> dict[str, Any]:
    """The merge into ``paynowCustomers/{customerId}`` when a record enters or leaves ``received``.

    ``queued`` counts the customer's records in ``received``, so sync mode learns from one
    document read in its transaction whether any queued event could have to go first.
    """
    return {"queued": delta, "updatedAt": at}


def is_int(value: object) -> bool:
    """A stored integer (Firestore hands a bool back as a bool, which Python calls an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def queued_count(doc: dict[str, Any] | None) -> int:
    """``paynowCustomers/{c}.queued``; absent is 0, and a value that is not an int counts as 1."""
    value = doc.get("queued", 0) if doc is not None else 0
    return value if is_int(value) else 1


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
        "updatedAt": at,
    }


def order_state(doc: dict[str, Any] | None) -> points.OrderState | None:
    if doc is None:
        return None
    return points.OrderState(
        user_id=str(doc["userId"]),
        customer_id=doc.get("customerId"),
        total_amount=int(doc.get("totalAmount", 0)),
        currency=str(doc.get("currency", "")),
        points_credited=int(doc.get("pointsCredited", 0)),
        refunded_amount=int(doc.get("refundedAmount", 0)),
        points_reversed=int(doc.get("pointsReversed", 0)),
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
