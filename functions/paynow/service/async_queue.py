"""Queue mode's recording on an event loop: ``WebhookService.enqueue_steps`` carried out
with the async adapters (the webhook's ASGI shell), as ``run_steps`` does with the blocking
ones. The publish runs as a task of its own from the moment it is asked for, so the record
is created while the message is in flight."""

from __future__ import annotations

import asyncio
from typing import Any

from paynow.service.ports import AsyncPublisher, AsyncRecords
from paynow.service.webhook import Accepted, Publish, Record, Steps, advance


class AsyncQueue:
    def __init__(self, records: AsyncRecords, publisher: AsyncPublisher) -> None:
        self._records = records
        self._publisher = publisher
        # The publishes in flight: the loop holds tasks weakly, and a duplicate's publish
        # is never awaited, so this keeps it until it is done.
        self._in_flight: set[asyncio.Task[str]] = set()

    async def run(self, steps: Steps) -> Accepted:
        """Carry out ``steps``; the answer they end with."""
        answer: Any = None
        while not isinstance(step := advance(steps, answer), Accepted):
            if isinstance(step, Publish):
                task = asyncio.ensure_future(self._publisher.publish(step.message))
                self._in_flight.add(task)
                # A duplicate's publish is never awaited: its outcome is looked at here, so a
                # failure of it is not reported as an exception nobody retrieved.
                task.add_done_callback(self._done)
                answer = task
            elif isinstance(step, Record):
                answer = await self._records.record_received(step.event, step.mode)
            else:
                answer = await step.pending
        return step

    def _done(self, task: asyncio.Task[str]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()
