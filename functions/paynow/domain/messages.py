"""The queue's wire formats: the ids-only event message, push deliveries, dead letters.

Message data is UTF-8 JSON ``{"v": 1, "eventId", "eventType", "customerId"}``
plus ``userId`` when known: ids only, never amounts, emails or bodies.

A push subscription delivers a message in one of the two forms Pub/Sub
publishes: wrapped (the default; a JSON envelope whose ``message.data`` is the
base64 data) or unwrapped (``--push-no-wrapper``: the data itself is the body,
and with ``--push-no-wrapper-write-metadata`` the metadata and the attributes
come as headers). ``read_push`` tells them apart by the body alone.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from paynow.domain.errors import InvalidMessage
from paynow.domain.events import PayNowEvent, is_valid_id

MESSAGE_VERSION = 1
MAX_ERROR_MESSAGE = 500

# What an unwrapped push with write-metadata carries as headers: the message's metadata
# as x-goog-pubsub-<key> (Google documents x-goog-pubsub-subscription-name too, which the
# worker has no use for, and no delivery attempt), and each attribute under its own name
# (ours are eventId and eventType).
MESSAGE_ID_HEADER = "x-goog-pubsub-message-id"
PUBLISH_TIME_HEADER = "x-goog-pubsub-publish-time"
ORDERING_KEY_HEADER = "x-goog-pubsub-ordering-key"
ATTRIBUTE_HEADERS = ("eventId", "eventType")
_NOT_JSON = object()


@dataclass(frozen=True)
class QueueMessage:
    event_id: str
    event_type: str
    customer_id: str | None
    user_id: str | None = None

    @property
    def ordering_key(self) -> str:
        return self.customer_id or self.event_id

    def data(self) -> bytes:
        doc: dict[str, Any] = {
            "v": MESSAGE_VERSION,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "customerId": self.customer_id,
        }
        if self.user_id:
            doc["userId"] = self.user_id
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def attributes(self) -> dict[str, str]:
        return {"eventId": self.event_id, "eventType": self.event_type}

    @classmethod
    def for_event(cls, event: PayNowEvent) -> QueueMessage:
        return cls(event.event_id, event.event_type, event.customer_id, event.user_id)

    @classmethod
    def decode(cls, data: bytes) -> QueueMessage:
        """Read a message's data; raise ``InvalidMessage`` for anything else."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidMessage("message data is not UTF-8 JSON") from exc
        version = doc.get("v") if isinstance(doc, dict) else None
        if type(version) is not int or version != MESSAGE_VERSION:
            raise InvalidMessage(f"message is not a v{MESSAGE_VERSION} event message")
        event_id, event_type = doc.get("eventId"), doc.get("eventType")
        customer_id, user_id = doc.get("customerId"), doc.get("userId")
        if not is_valid_id(event_id) or not isinstance(event_type, str) or not event_type:
            raise InvalidMessage("message has no valid eventId and eventType")
        return cls(
            event_id=event_id,
            event_type=event_type,
            customer_id=customer_id if is_valid_id(customer_id) else None,
            user_id=user_id if is_valid_id(user_id) else None,
        )


@dataclass(frozen=True)
class PushDelivery:
    """One message as a push subscription delivers it (metadata absent: empty or None)."""

    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: datetime | None
    delivery_attempt: int | None
    ordering_key: str | None = None


def read_push(body: bytes, headers: Mapping[str, str] | None = None) -> PushDelivery:
    """One push delivery in either form; raise ``InvalidMessage`` for a malformed envelope.

    The body decides, never the headers (a wrapped push may carry headers of its
    own): Pub/Sub's envelope is a JSON object with a ``message`` member, which an
    event message (``{"v": 1, ...}``) never has. Anything else is the message data
    itself, delivered unwrapped; ``QueueMessage.decode`` then judges it.
    """
    doc = _json(body)
    if is_push_envelope(doc):
        return _from_envelope(doc)
    lowered = {name.lower(): value for name, value in (headers or {}).items()}

    def header(name: str) -> str | None:
        value = lowered.get(name.lower(), "").strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return value or None

    attributes = {name: value for name in ATTRIBUTE_HEADERS if (value := header(name))}
    return PushDelivery(
        message_id=header(MESSAGE_ID_HEADER) or "",
        data=body,
        attributes=attributes,
        publish_time=_timestamp(header(PUBLISH_TIME_HEADER)),
        delivery_attempt=None,
        ordering_key=header(ORDERING_KEY_HEADER),
    )


def is_push_envelope(doc: object) -> bool:
    """True for Pub/Sub's push envelope, False for anything else (an event message included)."""
    return isinstance(doc, dict) and "message" in doc and "v" not in doc


def decode_push(body: bytes) -> PushDelivery:
    """Read a push envelope defensively; raise ``InvalidMessage`` when it is malformed."""
    doc = _json(body)
    if doc is _NOT_JSON:
        raise InvalidMessage("push body is not UTF-8 JSON")
    return _from_envelope(doc)


def _json(body: bytes) -> object:
    """The body's JSON value, or ``_NOT_JSON`` when it is not UTF-8 JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _NOT_JSON


def _from_envelope(doc: object) -> PushDelivery:
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(message, dict):
        raise InvalidMessage("push body has no message object")
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise InvalidMessage("message.data is not base64") from exc
    raw_attributes = message.get("attributes") or {}
    attributes = (
        {str(k): str(v) for k, v in raw_attributes.items()}
        if isinstance(raw_attributes, dict)
        else {}
    )
    attempt = doc.get("deliveryAttempt")
    ordering_key = message.get("orderingKey") or message.get("ordering_key")
    return PushDelivery(
        message_id=str(message.get("messageId") or message.get("message_id") or ""),
        data=data,
        attributes=attributes,
        publish_time=_timestamp(message.get("publishTime") or message.get("publish_time")),
        delivery_attempt=attempt
        if isinstance(attempt, int) and not isinstance(attempt, bool)
        else None,
        ordering_key=ordering_key if isinstance(ordering_key, str) else None,
    )


@dataclass(frozen=True)
class DeadLetter:
    """A message for ``paynow-events-dlq``: the original data plus why it failed."""

    data: bytes
    event_id: str | None
    error_code: str
    error_message: str
    attempts: int
    source: str  # "webhook" | "worker"
    extra: dict[str, str] = field(default_factory=dict)

    def attributes(self) -> dict[str, str]:
        attrs = {
            "errorCode": self.error_code,
            "errorMessage": self.error_message[:MAX_ERROR_MESSAGE],
            "attempts": str(self.attempts),
            "source": self.source,
            **self.extra,
        }
        if self.event_id:
            attrs["eventId"] = self.event_id
        return attrs


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        # In UTC here, so a time at the edge of datetime's range fails now, not in arithmetic.
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
