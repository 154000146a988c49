"""Every failure is a type named for what happened, carrying its contract error code.

Whether a failure is retried is decided by its type: ``TerminalError`` goes to
the dead-letter topic and is never retried automatically, ``TransientError``
is answered with a 5xx so the caller (PayNow or Pub/Sub) tries again, and
``Rejection`` refuses a request before anything is stored.
"""

from __future__ import annotations

from typing import ClassVar


class PipelineError(Exception):
    """Base of the pipeline's failures; ``code`` is the stable contract code."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- terminal: dead-lettered, never retried automatically ------------------


class TerminalError(PipelineError):
    """Retrying cannot help: the event goes to the dead-letter topic."""


class NoUserId(TerminalError):
    code = "no_user_id"


class UnknownProduct(TerminalError):
    code = "unknown_product"


class AwaitingOrderEvent(TerminalError):
    """Terminal unless an earlier event of the same order is still queued (then it waits).

    ``order_id`` says which order, so the caller can look for that earlier event.
    """

    def __init__(self, message: str, order_id: str) -> None:
        super().__init__(message)
        self.order_id = order_id


class OrderNotFound(AwaitingOrderEvent):
    """A refund, chargeback or close of an order that was never credited."""

    code = "order_not_found"


class ChargebackNotFound(AwaitingOrderEvent):
    """A won chargeback close whose order has no chargeback to give back."""

    code = "chargeback_not_found"


class EventMismatch(TerminalError):
    """The payload does not have the fields its event type requires."""

    code = "event_mismatch"


class InvalidPayload(TerminalError):
    """A correctly signed body that is not a PayNow event at all."""

    code = "invalid_payload"


class InvalidMessage(TerminalError):
    """A queue message (or push envelope) the worker cannot read."""

    code = "invalid_message"


class EventNotFound(TerminalError):
    """The message names an event whose record never appeared."""

    code = "event_not_found"


class AttemptsExhausted(TerminalError):
    code = "attempts_exhausted"


# --- transient: answered 5xx so the sender retries with backoff ------------


class TransientError(PipelineError):
    """A dependency is briefly unable to serve; the same request later will succeed."""

    code = "unavailable"


class DependencyUnavailable(TransientError):
    code = "unavailable"


class DeadlineExceeded(TransientError):
    code = "deadline_exceeded"


class Contention(TransientError):
    code = "contention"


class EventNotVisible(TransientError):
    """The message arrived before its event record became readable."""

    code = "event_not_visible"


class AwaitingEarlierEvent(TransientError):
    """An earlier event of the same customer, which this one depends on, is still queued."""

    code = "awaiting_earlier_event"


class UnexpectedError(TransientError):
    """A bug met while processing an event: retried and counted like any transient
    failure, so an event that always meets it ends dead-lettered ``attempts_exhausted``
    instead of circling between Pub/Sub's dead-lettering and reconcile."""

    code = "internal"


# --- rejections: the request is refused and nothing is stored --------------


class Rejection(PipelineError):
    """A request refused before anything is stored; ``status`` is the HTTP answer."""

    status: ClassVar[int] = 400


class InvalidSignature(Rejection):
    code = "invalid_signature"
    status = 401


class StaleTimestamp(Rejection):
    code = "stale_timestamp"
    status = 401


class BodyTooLarge(Rejection):
    code = "body_too_large"
    status = 413


class Unauthenticated(Rejection):
    """No push token, or one that fails signature, issuer, audience or expiry."""

    code = "unauthenticated"
    status = 401


class Forbidden(Rejection):
    """A valid token of an identity that may not push to the worker."""

    code = "forbidden"
    status = 403
