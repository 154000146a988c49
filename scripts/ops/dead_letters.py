"""The DLQ subscription, read page by page, and what its messages say (ids and codes only).

A pull holds what it returns until its ack deadline. Releasing each page at once
(deadline 0) makes the next pull return the same messages again, so a reader
that pages must hold everything it pulled until it is done: ``DeadLetters``
keeps every pulled message held (extending the deadline before it runs out)
until it is acknowledged or, at the end, released. A message never comes back
to the same reader, so a peek counts each once and a replay meets each once,
acknowledging page by page with ack ids that are still valid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from google.api_core import exceptions as gexc
from paynow.domain.errors import InvalidMessage
from paynow.domain.messages import QueueMessage

PAGE_SIZE = 100
HOLD_SECONDS = 60  # renewed when half of it has gone by; what a crashed run holds comes back soon
PULL_TIMEOUT_SECONDS = 10.0
ACK_IDS_PER_CALL = 1000  # well under Pub/Sub's 512 KiB request limit
PUBSUB_DEAD_LETTERED = "pubsub_max_delivery_attempts"


class DeadLetters:
    """Pull, hold, acknowledge and release the DLQ subscription's messages.

    ``immediate`` (the emulator): pull with ``return_immediately``. The emulator
    answers it exactly, and would otherwise hold the last, empty pull until its
    deadline (~10 s a command). Real Pub/Sub may answer it with nothing while
    messages wait, so there a pull waits.
    """

    def __init__(
        self,
        subscriber: Any,
        path: str,
        page_size: int = PAGE_SIZE,
        *,
        immediate: bool = False,
        hold_seconds: int = HOLD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscriber = subscriber
        self._path = path
        self._request = {"subscription": path, "max_messages": page_size}
        if immediate:
            self._request["return_immediately"] = True
        self._hold_seconds = hold_seconds
        self._clock = clock
        self._held: dict[str, str] = {}  # message id -> its latest ack id
        self._seen: set[str] = set()
        self._renewed_at = clock()

    def __enter__(self) -> DeadLetters:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def pages(self) -> Iterator[list[Any]]:
        """The messages not met before, page by page, until a pull brings nothing new."""
        while True:
            received = self._pull()
            fresh = []
            for m in received:
                self._held[m.message.message_id] = m.ack_id
                if m.message.message_id not in self._seen:
                    self._seen.add(m.message.message_id)
                    fresh.append(m)
            self._modify([m.ack_id for m in received], self._hold_seconds)
            self.keep_alive()
            if not fresh:
                return
            yield fresh

    def peek(self, limit: int | None = None) -> list[Any]:
        """Every message in the subscription (the first ``limit``, pulling no page beyond
        them), all released at the end: nothing consumed."""
        seen: list[Any] = []
        with self:
            for page in self.pages():
                seen += page
                if limit is not None and len(seen) >= limit:
                    return seen[:limit]
        return seen

    def find(self, matches: Callable[[Any], bool]) -> Any | None:
        """The first message ``matches`` takes (pulling no page after its own), or None;
        everything pulled is released at the end: nothing consumed."""
        with self:
            for page in self.pages():
                for received in page:
                    if matches(received.message):
                        return received.message
        return None

    def keep_alive(self) -> None:
        """Extend every held message's deadline once half of it has gone by."""
        if self._clock() - self._renewed_at >= self._hold_seconds / 2:
            self._renewed_at = self._clock()
            self._modify(list(self._held.values()), self._hold_seconds)

    def ack(self, message_id: str) -> None:
        """Acknowledge one held message (by its latest ack id): it leaves the DLQ."""
        self._subscriber.acknowledge(
            request={"subscription": self._path, "ack_ids": [self._held[message_id]]}
        )
        del self._held[message_id]

    def release(self) -> None:
        """Give back every message still held (ack deadline 0)."""
        ack_ids, self._held = list(self._held.values()), {}
        self._modify(ack_ids, 0)

    def _pull(self) -> list[Any]:
        """One page. Real Pub/Sub may answer a pull of an empty subscription with
        DeadlineExceeded instead of an empty response (python-pubsub #9, #343): nothing more."""
        try:
            response = self._subscriber.pull(request=self._request, timeout=PULL_TIMEOUT_SECONDS)
        except gexc.DeadlineExceeded:
            return []
        return list(response.received_messages)

    def _modify(self, ack_ids: list[str], seconds: int) -> None:
        for start in range(0, len(ack_ids), ACK_IDS_PER_CALL):
            self._subscriber.modify_ack_deadline(
                request={
                    "subscription": self._path,
                    "ack_ids": ack_ids[start : start + ACK_IDS_PER_CALL],
                    "ack_deadline_seconds": seconds,
                }
            )


# --- what a message says ----------------------------------------------------------


def event_id_of(message: Any) -> str | None:
    """The event a DLQ message is about: the worker's attribute, or the original data."""
    event_id = message.attributes.get("eventId")
    if event_id:
        return str(event_id)
    try:
        return QueueMessage.decode(message.data).event_id
    except InvalidMessage:
        return None


def error_code_of(message: Any) -> str:
    """``errorCode``, or what a message Pub/Sub dead-lettered itself (no errorCode) stands for."""
    code = message.attributes.get("errorCode")
    if code:
        return str(code)
    if message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount"):
        return PUBSUB_DEAD_LETTERED
    return "unknown"


def describe(message: Any) -> dict[str, Any]:
    """A message as the CLI shows it: ids, codes and counts, never its data (maybe a raw body)."""
    published = message.publish_time
    return {
        "messageId": message.message_id,
        "eventId": event_id_of(message),
        "errorCode": error_code_of(message),
        "source": message.attributes.get("source", "pubsub"),
        "attempts": message.attributes.get("attempts")
        or message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount"),
        "publishTime": published.isoformat() if isinstance(published, datetime) else None,
    }


@dataclass(frozen=True)
class Selection:
    """Which messages a replay or discard works on: one event's, one error code's, or all
    of those already waiting when it started (its own new dead letters are not chased)."""

    event_id: str | None
    error_code: str | None
    everything: bool
    started: datetime

    def matches(self, message: Any) -> bool:
        return (
            self.everything
            or (self.event_id is not None and event_id_of(message) == self.event_id)
            or (self.error_code is not None and error_code_of(message) == self.error_code)
        )

    def arrived_during_run(self, message: Any) -> bool:
        published = message.publish_time
        return isinstance(published, datetime) and published > self.started
