"""``process``: one pushed message becomes points, exactly once, or a dead letter.

Exactly once rests on the event record: the transaction that moves points
also moves the record out of ``received``, so a second delivery finds it
final and is acknowledged as a duplicate. Transient failures are answered
5xx (Pub/Sub redelivers with backoff) and counted on the record; after
``MAX_DELIVERY_ATTEMPTS`` the worker dead-letters the event itself, because
Pub/Sub's own dead-lettering is not available everywhere (the emulator).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from paynow.config import Settings
from paynow.domain.errors import (
    AttemptsExhausted,
    AwaitingEarlierEvent,
    EventNotFound,
    EventNotVisible,
    InvalidMessage,
    PipelineError,
    TerminalError,
    TransientError,
    UnexpectedError,
)
from paynow.domain.events import is_valid_id
from paynow.domain.messages import PushDelivery, QueueMessage, read_push
from paynow.observability import (
    WORKER_FAILURES,
    WORKER_LATENCY,
    WORKER_PROCESSED,
    elapsed_ms,
    log,
)
from paynow.service.dead_letter import dead_letter
from paynow.service.ordering import process_in_order
from paynow.service.ports import EventStore, Publisher

# A message whose event record is still missing this long after publishing is
# dead-lettered as event_not_found: the webhook answered 503 and the record
# was never created (a later PayNow retry then creates and publishes it anew).
EVENT_VISIBILITY_GRACE_SECONDS = 600.0


@dataclass(frozen=True)
class Handled:
    """A delivery the worker is done with (answered 2xx, so Pub/Sub acknowledges it)."""

    status: str  # processed | ignored | duplicate | dead_lettered
    event_id: str | None
    error: str | None = None


class WorkerService:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        publisher: Publisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._publisher = publisher
        self._clock = clock

    def handle(self, body: bytes, headers: Mapping[str, str] | None = None) -> Handled:
        """Process one push delivery, wrapped or not (``read_push``: an unwrapped one's
        metadata is in ``headers``); raise ``TransientError`` to have it redelivered."""
        started = time.perf_counter()
        try:
            delivery = read_push(body, headers)
        except InvalidMessage as exc:
            self._dead_letter(exc, data=body, event_id=None, attempts=1)
            return Handled("dead_lettered", None, exc.code)
        try:
            message = QueueMessage.decode(delivery.data)
        except InvalidMessage as exc:
            # The envelope is fine but its data is not ours: keep the original data.
            candidate = delivery.attributes.get("eventId")
            event_id = candidate if is_valid_id(candidate) else None
            attempts = delivery.delivery_attempt or 1
            self._dead_letter(exc, data=delivery.data, event_id=event_id, attempts=attempts)
            return Handled("dead_lettered", event_id, exc.code)
        try:
            result = self._process(message, delivery)
        except TransientError as exc:
            return self._after_transient(exc, message, delivery)
        except TerminalError as exc:
            attempts = delivery.delivery_attempt or 1
            self._dead_letter(exc, data=delivery.data, event_id=message.event_id, attempts=attempts)
            return Handled("dead_lettered", message.event_id, exc.code)
        except PipelineError:
            raise
        except Exception as exc:  # a bug: counted like a transient failure
            # The exception's text may quote stored data: keep its type only.
            unexpected = UnexpectedError(f"unexpected {type(exc).__name__}")
            return self._after_transient(unexpected, message, delivery)
        log(
            "INFO",
            "event handled",
            metric=WORKER_PROCESSED,
            latencyMetric=WORKER_LATENCY,
            eventId=message.event_id,
            eventType=message.event_type,
            outcome=result.status,
            mode="queue",
            latencyMs=elapsed_ms(started),
            ageMs=self._age_ms(delivery),
        )
        return result

    def _process(self, message: QueueMessage, delivery: PushDelivery) -> Handled:
        try:
            processed = process_in_order(
                self._store,
                None,
                message.event_id,
                message.event_type,
                message.customer_id,
                "queue",
            )
        except EventNotVisible as exc:
            age = self._age_ms(delivery)
            if age is not None and age > EVENT_VISIBILITY_GRACE_SECONDS * 1000:
                raise EventNotFound(f"event {message.event_id} was never recorded") from exc
            raise
        return Handled(processed.status, message.event_id)

    def _after_transient(
        self, error: TransientError, message: QueueMessage, delivery: PushDelivery
    ) -> Handled:
        # Waiting for an earlier event is not a failure of this one: it is not counted, so an
        # event never runs out of attempts behind a slow predecessor (which ends by itself).
        waiting = isinstance(error, AwaitingEarlierEvent)
        stored = self._store_attempts(error, message.event_id, counted=not waiting)
        attempts = stored if waiting else max(stored, delivery.delivery_attempt or 0)
        log(
            "WARNING",
            "transient failure; delivery will be retried",
            metric=WORKER_FAILURES,
            eventId=message.event_id,
            errorCode=error.code,
            attempts=attempts,
            mode="queue",
        )
        if waiting or attempts < self._settings.max_delivery_attempts:
            raise error
        exhausted = AttemptsExhausted(
            f"gave up after {attempts} attempts; last error {error.code}: {error.message}"
        )
        self._dead_letter(
            exhausted, data=delivery.data, event_id=message.event_id, attempts=attempts
        )
        return Handled("dead_lettered", message.event_id, exhausted.code)

    def _store_attempts(self, error: TransientError, event_id: str, *, counted: bool) -> int:
        """Note the failure on the record (and count it); 0 when the store itself failed."""
        try:
            return self._store.record_failure(event_id, error.code, error.message, counted=counted)
        except TransientError:
            return 0

    def _dead_letter(
        self, error: TerminalError, *, data: bytes, event_id: str | None, attempts: int
    ) -> None:
        dead_letter(
            self._store,
            self._publisher,
            error,
            data=data,
            event_id=event_id,
            event=None,
            mode="queue",
            attempts=attempts,
            source="worker",
        )

    def _age_ms(self, delivery: PushDelivery) -> float | None:
        if delivery.publish_time is None:
            return None
        published = delivery.publish_time.astimezone(UTC)
        return round(
            (datetime.fromtimestamp(self._clock(), UTC) - published).total_seconds() * 1000, 1
        )
