"""``accept``: a signed PayNow webhook becomes a durable event record.

Queue mode records the event and publishes its ids-only message
concurrently, answering once both are durable (the slower of the two, not
their sum). Sync mode runs the same transaction the worker runs, creating
the record inside it, so a failure leaves nothing half-applied.

Queue mode's recording is written once, as steps (``enqueue_steps``: publish, record,
await the publish) that a runner carries out: ``run_steps`` with the blocking adapters
here, and the webhook's asynchronous shell with the async ones (``service.async_queue``),
so the rule has one home whichever way the calls are made.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from paynow.config import Settings
from paynow.domain import signature
from paynow.domain.errors import (
    AwaitingEarlierEvent,
    EventMismatch,
    InvalidPayload,
    InvalidSignature,
    TerminalError,
    TransientError,
)
from paynow.domain.events import PayNowEvent, normalize, parse_envelope
from paynow.domain.messages import QueueMessage
from paynow.domain.records import BEHIND, FINAL_STATES, RECEIVED
from paynow.observability import QUEUE_PUBLISH_LATENCY, QUEUE_PUBLISHED, elapsed_ms, log
from paynow.service.dead_letter import dead_letter
from paynow.service.ordering import process_in_order
from paynow.service.ports import EventStore, Publisher, SecretSource


@dataclass(frozen=True)
class Accepted:
    """What the webhook answers (always 200): ``status`` as in the HTTP contract."""

    status: str  # accepted | processed | duplicate | ignored | dead_lettered
    event_id: str
    error: str | None = None


@dataclass(frozen=True)
class Publish:
    """Start publishing ``message``; the runner sends back what awaits it."""

    message: QueueMessage


@dataclass(frozen=True)
class Record:
    """Create the event's record as received; the runner sends back ``record_received``'s answer."""

    event: PayNowEvent
    mode: str


@dataclass(frozen=True)
class AwaitPublish:
    """Wait until the publish ``Publish`` started is durable (or raise ``TransientError``)."""

    pending: Any


Step = Publish | Record | AwaitPublish
Steps = Generator[Step, Any, Accepted]


def advance(steps: Steps, answer: Any) -> Step | Accepted:
    """The next step of ``steps``, given the last one's answer, or the answer they end with."""
    try:
        return steps.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def run_steps(steps: Steps, store: EventStore, publisher: Publisher) -> Accepted:
    """Carry out ``steps`` with blocking adapters; the answer they end with."""
    answer: Any = None
    while not isinstance(step := advance(steps, answer), Accepted):
        if isinstance(step, Publish):
            answer = publisher.publish(step.message)
        elif isinstance(step, Record):
            answer = store.record_received(step.event, step.mode)
        else:
            answer = step.pending.wait()
    return step


class WebhookService:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        publisher: Publisher,
        secrets: SecretSource,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._publisher = publisher
        self._secrets = secrets
        self._clock = clock

    def accept(self, raw: bytes, sig: str | None, timestamp: str | None) -> Accepted:
        """Verify, parse and record one webhook, or raise the error that says why not."""
        self._verify(raw, sig, timestamp)
        return self.ingest(raw)

    def ingest(self, raw: bytes) -> Accepted:
        """Parse and record a body already known to come from PayNow (signed, or read from
        its Management API), through the same dedupe and ordering as every webhook."""
        try:
            envelope = parse_envelope(raw)
        except InvalidPayload as exc:
            self._keep_rejected_body(raw, exc)
            raise
        try:
            event = normalize(envelope, self._settings.user_id_key)
        except EventMismatch as exc:
            bare = PayNowEvent(envelope.event_id, envelope.event_type, None, None, None)
            return self._dead_letter(bare, exc, data=raw)
        if self._queues(event):
            return self._enqueue(event)
        return self._process_inline(event)

    def queueable(self, raw: bytes, sig: str | None, timestamp: str | None) -> PayNowEvent | None:
        """The event, when this webhook takes queue mode's fast path (``enqueue_steps``):
        queue mode, signed with a secret in force (known without a read), readable, and of
        a handled type. None for anything else: ``accept`` then handles it whole, with every
        error, refresh and dead letter. No I/O, so an event loop may call it."""
        secrets = self._secrets.ready()
        if self._settings.webhook_mode != "queue" or secrets is None:
            return None
        try:
            self._check(raw, sig, timestamp, secrets)
            event = normalize(parse_envelope(raw), self._settings.user_id_key)
        except (InvalidSignature, InvalidPayload, EventMismatch):
            return None
        return event if self._queues(event) else None

    def enqueue_steps(self, event: PayNowEvent) -> Steps:
        """Queue mode's recording: the message's publish started, the record created while
        it is in flight, then the publish awaited; a record already final is a duplicate
        (the extra message in flight is harmless)."""
        started = time.perf_counter()
        pending = yield Publish(QueueMessage.for_event(event))
        existing = yield Record(event, "queue")
        if existing in FINAL_STATES:
            return Accepted("duplicate", event.event_id)
        yield AwaitPublish(pending)
        log(
            "INFO",
            "event published",
            metric=QUEUE_PUBLISHED,
            eventId=event.event_id,
            eventType=event.event_type,
            mode="queue",
            latencyMs=elapsed_ms(started),
            latencyMetric=QUEUE_PUBLISH_LATENCY,
        )
        return Accepted("accepted", event.event_id)

    # --- steps --------------------------------------------------------------

    def _queues(self, event: PayNowEvent) -> bool:
        """Queue mode hands a handled event to the worker; everything else is done inline."""
        return self._settings.webhook_mode == "queue" and event.handled

    def _verify(self, raw: bytes, sig: str | None, timestamp: str | None) -> None:
        try:
            self._check(raw, sig, timestamp, self._secrets.current())
        except InvalidSignature:
            # A secret rotated in Secret Manager shows up as a mismatch: re-read once.
            if not (sig and timestamp and self._secrets.refresh()):
                raise
            self._check(raw, sig, timestamp, self._secrets.current())

    def _check(
        self, raw: bytes, sig: str | None, timestamp: str | None, secrets: tuple[str, ...]
    ) -> None:
        """PayNow's signature against ``secrets``, within the tolerance, now."""
        tolerance = self._settings.signature_tolerance_seconds
        signature.verify(raw, sig, timestamp, secrets, tolerance, self._clock())

    def _keep_rejected_body(self, raw: bytes, error: InvalidPayload) -> None:
        """Keep a signed-but-unreadable body once in the DLQ; PayNow retries 400s."""
        digest = hashlib.sha256(raw).hexdigest()
        if self._store.rejection_seen(digest):
            return
        dead_letter(
            self._store,
            self._publisher,
            error,
            data=raw,
            event_id=None,
            event=None,
            mode=self._settings.webhook_mode,
            attempts=1,
            source="webhook",
        )
        self._store.remember_rejection(digest, error.code)

    def _enqueue(self, event: PayNowEvent) -> Accepted:
        return run_steps(self.enqueue_steps(event), self._store, self._publisher)

    def _process_inline(self, event: PayNowEvent) -> Accepted:
        try:
            return self._process_now(event)
        except TransientError:
            # Already accepted by queue mode (its message, or reconcile, will finish it):
            # a PayNow retry of it gets 2xx again, never a 5xx after its first 2xx.
            try:
                record = self._store.event_status(event.event_id)
            except TransientError:
                record = None
            if record is not None and record.get("status") == RECEIVED:
                return Accepted("accepted", event.event_id)
            if record is not None and record.get("status") in FINAL_STATES:
                return Accepted("duplicate", event.event_id)
            raise

    def _process_now(self, event: PayNowEvent) -> Accepted:
        try:
            # An earlier event of this customer may still be queued (accepted before a
            # switch to sync mode): processing this one now would overtake it.
            result = process_in_order(
                self._store,
                event,
                event.event_id,
                event.event_type,
                event.customer_id,
                self._settings.webhook_mode,
                behind_pending=event.handled,
            )
        except AwaitingEarlierEvent:
            # Its customer's or order's earlier event is queued: queue it too, and the
            # worker takes it once that one is done (never dead-lettered for being early).
            return self._enqueue(event)
        except TerminalError as exc:
            return self._dead_letter(event, exc, data=QueueMessage.for_event(event).data())
        if result.status == BEHIND:
            return self._enqueue(event)
        return Accepted(result.status, event.event_id)

    def _dead_letter(self, event: PayNowEvent, error: TerminalError, data: bytes) -> Accepted:
        record = self._store.event_status(event.event_id)
        if record is not None and record.get("status") in FINAL_STATES:
            return Accepted("duplicate", event.event_id)
        dead_letter(
            self._store,
            self._publisher,
            error,
            data=data,
            event_id=event.event_id,
            event=event,
            mode=self._settings.webhook_mode,
            attempts=1,
            source="webhook",
        )
        return Accepted("dead_lettered", event.event_id, error=error.code)
