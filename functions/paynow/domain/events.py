"""PayNow payloads parsed into normalized events that carry no personal data.

Parsing is two steps because they fail differently: ``parse_envelope`` finds
the event id and type (a body without them is ``invalid_payload``, answered
400), and ``normalize`` reads the fields the event type needs (a body without
them is ``event_mismatch``, dead-lettered under its event id). Only ids,
product ids, quantities, amounts, currency, status and period end survive:
emails, names, IPs and the raw body never leave this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeGuard

from paynow.domain.errors import EventMismatch, InvalidPayload

MAX_ID_LENGTH = 128
MAX_QUANTITY = 1_000_000
# Firestore document ids: no "/", not "." or "..", not "__x__"; we also keep them printable.
_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-:.@+=]{1,128}")
# Event types look like PayNow's constants (ON_ORDER_COMPLETED, ...); free text is not echoed.
_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")


class EventType(StrEnum):
    """The event types the points rules handle; every other type is recorded ``ignored``."""

    ORDER_COMPLETED = "ON_ORDER_COMPLETED"
    REFUND = "ON_REFUND"
    CHARGEBACK = "ON_CHARGEBACK"
    CHARGEBACK_CLOSED = "ON_CHARGEBACK_CLOSED"
    SUBSCRIPTION_ACTIVATED = "ON_SUBSCRIPTION_ACTIVATED"
    SUBSCRIPTION_RENEWED = "ON_SUBSCRIPTION_RENEWED"
    SUBSCRIPTION_CANCELED = "ON_SUBSCRIPTION_CANCELED"


REFUND_COMPLETED = "completed"  # the only refund status that moves points
CHARGEBACK_WON = "won"  # the only chargeback outcome that gives points back


SUBSCRIPTION_TYPES = frozenset(
    {
        EventType.SUBSCRIPTION_ACTIVATED,
        EventType.SUBSCRIPTION_RENEWED,
        EventType.SUBSCRIPTION_CANCELED,
    }
)


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class OrderCompleted:
    order_id: str
    lines: tuple[OrderLine, ...]
    total_amount: int
    currency: str


@dataclass(frozen=True)
class Refund:
    """``ON_REFUND``: ``amount`` is what this refund gives back (PayNow's
    ``store_refund_amount``; its ``amount`` is the original payment's)."""

    refund_id: str
    order_id: str
    amount: int
    currency: str
    status: str


@dataclass(frozen=True)
class Chargeback:
    """``ON_CHARGEBACK``: a payment of the order is disputed; its points are taken back."""

    payment_id: str
    order_id: str


@dataclass(frozen=True)
class ChargebackClosed:
    """``ON_CHARGEBACK_CLOSED``: the dispute of ``payment_id`` ended with ``outcome``."""

    payment_id: str
    order_id: str
    outcome: str


@dataclass(frozen=True)
class SubscriptionChange:
    subscription_id: str
    product_id: str
    status: str
    current_period_end: str | None


Reversal = Refund | Chargeback | ChargebackClosed
"""An event about an order already credited: it finds its user through the order."""

Details = OrderCompleted | Reversal | SubscriptionChange | None


@dataclass(frozen=True)
class Envelope:
    """The parts of a signed body every later step needs, before type-specific parsing."""

    event_id: str
    event_type: str
    body: Any


@dataclass(frozen=True)
class PayNowEvent:
    event_id: str
    event_type: str
    customer_id: str | None
    user_id: str | None
    details: Details

    @property
    def handled(self) -> bool:
        """False for event types the points rules ignore."""
        return self.event_type in EventType.__members__.values()

    @property
    def ordering_key(self) -> str:
        """One customer's events are processed one at a time, in order."""
        return self.customer_id or self.event_id

    def record_data(self) -> dict[str, Any]:
        """The ``data`` map stored on ``webhookEvents/{id}``: what processing needs, no PII."""
        d = self.details
        if isinstance(d, OrderCompleted):
            return {
                "orderId": d.order_id,
                "lines": [{"productId": x.product_id, "quantity": x.quantity} for x in d.lines],
                "totalAmount": d.total_amount,
                "currency": d.currency,
            }
        if isinstance(d, Refund):
            return {
                "reversalId": d.refund_id,
                "orderId": d.order_id,
                "amount": d.amount,
                "currency": d.currency,
                "status": d.status,
            }
        if isinstance(d, Chargeback):
            return {"reversalId": d.payment_id, "orderId": d.order_id}
        if isinstance(d, ChargebackClosed):
            return {"reversalId": d.payment_id, "orderId": d.order_id, "outcome": d.outcome}
        if isinstance(d, SubscriptionChange):
            return {
                "subscriptionId": d.subscription_id,
                "productId": d.product_id,
                "status": d.status,
                "currentPeriodEnd": d.current_period_end,
            }
        return {}


def is_valid_id(value: object) -> TypeGuard[str]:
    """True for an id that is safe as a Firestore document id and a log field."""
    return (
        isinstance(value, str)
        and bool(_ID_PATTERN.fullmatch(value))
        and value not in {".", ".."}
        and not (value.startswith("__") and value.endswith("__"))  # reserved by Firestore
    )


def parse_envelope(raw: bytes) -> Envelope:
    """Decode a signed body; raise ``InvalidPayload`` when it is not a PayNow event."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidPayload("body is not UTF-8 JSON") from exc
    if not isinstance(doc, dict):
        raise InvalidPayload("body is not a JSON object")
    event_id, event_type = doc.get("event_id"), doc.get("event_type")
    if not is_valid_id(event_id):
        raise InvalidPayload("event_id is missing or not an id string")
    if not isinstance(event_type, str) or not _TYPE_PATTERN.fullmatch(event_type):
        raise InvalidPayload("event_type is missing or not shaped like a PayNow event type")
    return Envelope(event_id=event_id, event_type=event_type, body=doc.get("body"))


def normalize(envelope: Envelope, user_id_key: str) -> PayNowEvent:
    """Read what the event type needs; raise ``EventMismatch`` when a field is missing."""
    body = envelope.body
    handled = envelope.event_type in EventType.__members__.values()
    if not isinstance(body, dict):
        if handled:
            raise EventMismatch(f"{envelope.event_type} needs an object in body")
        body = {}
    details: Details = None
    if envelope.event_type == EventType.ORDER_COMPLETED:
        details = _order(body)
    elif envelope.event_type == EventType.REFUND:
        details = _refund(body)
    elif envelope.event_type == EventType.CHARGEBACK:
        details = Chargeback(_text(body, "id", "body"), _text(body, "order_id", "body"))
    elif envelope.event_type == EventType.CHARGEBACK_CLOSED:
        details = ChargebackClosed(
            payment_id=_text(body, "id", "body"),
            order_id=_text(body, "order_id", "body"),
            outcome=_word(body, "chargeback_status"),
        )
    elif envelope.event_type in SUBSCRIPTION_TYPES:
        details = _subscription(body)
    return PayNowEvent(
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        customer_id=_customer_id(body),
        user_id=_user_id(body, user_id_key),
        details=details,
    )


def from_record(
    event_id: str,
    event_type: str,
    customer_id: str | None,
    user_id: str | None,
    data: dict[str, Any],
) -> PayNowEvent:
    """Rebuild the event the worker processes from its stored record."""
    try:
        details: Details = None
        if event_type == EventType.ORDER_COMPLETED:
            details = OrderCompleted(
                order_id=data["orderId"],
                lines=tuple(OrderLine(x["productId"], int(x["quantity"])) for x in data["lines"]),
                total_amount=int(data["totalAmount"]),
                currency=data["currency"],
            )
        elif event_type == EventType.REFUND:
            details = Refund(
                refund_id=data["reversalId"],
                order_id=data["orderId"],
                amount=int(data["amount"]),
                currency=data["currency"],
                # Recorded before refund statuses were read: every refund then moved points.
                status=data.get("status", REFUND_COMPLETED),
            )
        elif event_type == EventType.CHARGEBACK:
            details = Chargeback(payment_id=data["reversalId"], order_id=data["orderId"])
        elif event_type == EventType.CHARGEBACK_CLOSED:
            details = ChargebackClosed(
                payment_id=data["reversalId"], order_id=data["orderId"], outcome=data["outcome"]
            )
        elif event_type in SUBSCRIPTION_TYPES:
            details = SubscriptionChange(
                subscription_id=data["subscriptionId"],
                product_id=data["productId"],
                status=data["status"],
                current_period_end=data.get("currentPeriodEnd"),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise EventMismatch(f"stored data of {event_type} is incomplete") from exc
    return PayNowEvent(event_id, event_type, customer_id, user_id, details)


# --- field readers ---------------------------------------------------------


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not is_valid_id(value):
        raise EventMismatch(f"{where}.{key} must be an id string")
    return value


def _amount(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise EventMismatch(f"{where}.{key} must be a non-negative integer amount in cents")
    return value


def _currency(obj: dict[str, Any]) -> str:
    value = obj.get("currency")
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value):
        raise EventMismatch("body.currency must be a 3-letter currency code")
    return value.lower()


def _order(body: dict[str, Any]) -> OrderCompleted:
    lines = body.get("lines")
    if not isinstance(lines, list) or not lines:
        raise EventMismatch("body.lines must be a non-empty list")
    parsed = []
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise EventMismatch(f"body.lines[{i}] must be an object")
        quantity = line.get("quantity")
        if (
            isinstance(quantity, bool)
            or not isinstance(quantity, int)
            or not 1 <= quantity <= MAX_QUANTITY
        ):
            raise EventMismatch(f"body.lines[{i}].quantity must be an integer from 1")
        parsed.append(OrderLine(_text(line, "product_id", f"body.lines[{i}]"), quantity))
    return OrderCompleted(
        order_id=_text(body, "id", "body"),
        lines=tuple(parsed),
        total_amount=_amount(body, "total_amount", "body"),
        currency=_currency(body),
    )


def _refund(body: dict[str, Any]) -> Refund:
    return Refund(
        refund_id=_text(body, "id", "body"),
        order_id=_text(body, "order_id", "body"),
        amount=_amount(body, "store_refund_amount", "body"),
        currency=_currency(body),
        status=_word(body, "status"),
    )


def _word(body: dict[str, Any], key: str) -> str:
    """A status-like value (``completed``, ``won``, ...), compared without regard to case."""
    value = body.get(key)
    if not _short_text(value, 32) or not value.strip():
        raise EventMismatch(f"body.{key} must be a non-empty status string")
    return value.strip().lower()


def _subscription(body: dict[str, Any]) -> SubscriptionChange:
    status = body.get("status")
    period_end = body.get("current_period_end")
    return SubscriptionChange(
        subscription_id=_text(body, "id", "body"),
        product_id=_text(body, "product_id", "body"),
        status=status if _short_text(status, 32) else "",
        current_period_end=period_end if _short_text(period_end, 40) else None,
    )


def _short_text(value: object, limit: int) -> TypeGuard[str]:
    """A string Firestore can store (valid UTF-8: no lone surrogates) within ``limit``."""
    if not isinstance(value, str) or len(value) > limit:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _customer_id(body: dict[str, Any]) -> str | None:
    customer = body.get("customer")
    candidate = customer.get("id") if isinstance(customer, dict) else body.get("customer_id")
    return candidate if is_valid_id(candidate) else None


def _user_id(body: dict[str, Any], key: str) -> str | None:
    checkout = body.get("checkout")
    metadata = checkout.get("metadata") if isinstance(checkout, dict) else None
    candidate = metadata.get(key) if isinstance(metadata, dict) else None
    return candidate if is_valid_id(candidate) else None
