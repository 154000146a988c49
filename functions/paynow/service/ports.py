"""What the use cases need from the outside world, as interfaces.

The Firestore and Pub/Sub adapters implement these; unit tests use fakes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from paynow.domain.events import PayNowEvent
from paynow.domain.messages import DeadLetter, QueueMessage
from paynow.domain.records import Processed, Reopened, Stuck


class SecretSource(Protocol):
    """The webhook signing secrets in force (see ``adapters.secrets``)."""

    def current(self) -> tuple[str, ...]:
        """Every secret a signature may match now."""

    def ready(self) -> tuple[str, ...] | None:
        """``current`` when it needs no read and no wait (a cache fresh and free), else None."""

    def refresh(self) -> bool:
        """Re-read after a signature matched none; True when something new was found."""


class EventStore(Protocol):
    def record_received(self, event: PayNowEvent, mode: str) -> str | None:
        """Create ``webhookEvents/{id}`` as received; return None, or the status already stored."""

    def process(
        self,
        event: PayNowEvent | None,
        event_id: str,
        mode: str,
        *,
        behind_pending: bool = False,
    ) -> Processed:
        """Apply the points rule in one transaction, exactly once per event id.

        With ``event`` (sync mode) the record is created in the same
        transaction when absent; without it (worker) the stored record is
        loaded, and a missing one raises ``EventNotVisible``. With
        ``behind_pending`` and an earlier event of the same customer still
        ``received`` (see ``has_pending_predecessor``), nothing is written and
        the status is ``BEHIND``.
        """

    def mark_dead_lettered(
        self, event: PayNowEvent | None, event_id: str, mode: str, code: str, message: str
    ) -> None:
        """Move a not-yet-final event to ``dead_lettered`` with its last error."""

    def reopen(self, event_id: str) -> Reopened | None:
        """Ready an event for a replay (in one read of its record): its status after
        (``received``: publish the message it carries), or None when there is no record."""

    def record_failure(
        self, event_id: str, code: str, message: str, *, counted: bool = True
    ) -> int:
        """Note a failed attempt's error on the record and, when ``counted``, count it;
        return the attempts so far."""

    def has_pending_predecessor(
        self, event_id: str, customer_id: str | None, order_id: str | None = None
    ) -> bool:
        """True when an earlier event of this customer, or of this order, is still ``received``."""

    def rejection_seen(self, digest: str) -> bool:
        """True when a rejected body with this SHA-256 was already kept in the DLQ."""

    def remember_rejection(self, digest: str, code: str) -> None:
        """Note that a rejected body was kept in the DLQ, so a retry does not keep it again."""

    def event_status(self, event_id: str) -> dict[str, Any] | None:
        """The stored record, or None."""

    def stuck_events(self, due_before: datetime, limit: int) -> list[Stuck]:
        """Events still ``received`` whose last publish (``republishedAt``: receipt, then each
        republish) is before ``due_before``; least recently published first."""

    def mark_republished(self, event_ids: list[str], at: datetime) -> None:
        """Stamp each event reconcile published again: ``republishedAt``, ``republishCount``."""


class PendingPublish(Protocol):
    def wait(self) -> str:
        """Block until the message is durable; return its id or raise ``TransientError``."""


class Publisher(Protocol):
    def publish(self, message: QueueMessage) -> PendingPublish:
        """Start publishing to the main topic with the message's ordering key."""

    def dead_letter(self, letter: DeadLetter) -> None:
        """Publish to the dead-letter topic and wait until it is durable."""


class AsyncRecords(Protocol):
    """``EventStore.record_received`` for an event loop."""

    async def record_received(self, event: PayNowEvent, mode: str) -> str | None:
        """As ``EventStore.record_received``."""


class AsyncPublisher(Protocol):
    """``Publisher.publish`` for an event loop: the coroutine ends once the message is durable."""

    async def publish(self, message: QueueMessage) -> str:
        """The message's id once durable, or a ``TransientError``."""
