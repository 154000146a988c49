"""Dead-lettering, the one way both the webhook and the worker do it.

The DLQ message is published first and the record marked ``dead_lettered``
only after: if marking fails the event is retried and may be dead-lettered
twice, but an event is never ``dead_lettered`` without its DLQ message.
"""

from __future__ import annotations

from paynow.domain.errors import TerminalError
from paynow.domain.events import PayNowEvent
from paynow.domain.messages import DeadLetter
from paynow.observability import DEAD_LETTERED, log
from paynow.service.ports import EventStore, Publisher


def dead_letter(
    store: EventStore,
    publisher: Publisher,
    error: TerminalError,
    *,
    data: bytes,
    event_id: str | None,
    event: PayNowEvent | None,
    mode: str,
    attempts: int,
    source: str,
) -> None:
    publisher.dead_letter(
        DeadLetter(
            data=data,
            event_id=event_id,
            error_code=error.code,
            error_message=error.message,
            attempts=attempts,
            source=source,
        )
    )
    if event_id is not None:
        store.mark_dead_lettered(event, event_id, mode, error.code, error.message)
    log(
        "WARNING",
        "event dead-lettered",
        metric=DEAD_LETTERED,
        eventId=event_id,
        errorCode=error.code,
        source=source,
        attempts=attempts,
        mode=mode,
    )
