"""``reconcile``: events still ``received`` long after they were accepted are published again.

A record can be left ``received`` with no message on its way: the webhook
stored it but its publish failed (the 503 PayNow may never retry), or a
message was lost to an operator's mistake. Publishing again is safe: the
worker's transaction makes a second delivery a duplicate. Each run handles
at most one bounded batch, oldest first, so a backlog drains over runs
instead of overrunning one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from paynow.config import Settings
from paynow.domain.errors import TransientError
from paynow.domain.messages import QueueMessage
from paynow.observability import RECONCILE_REPUBLISHED, elapsed_ms, log
from paynow.service.ports import EventStore, PendingPublish, Publisher


@dataclass(frozen=True)
class ReconcileReport:
    found: int
    republished: int
    failed: int
    older_than_seconds: int
    event_ids: list[str] = field(default_factory=list)


class ReconcileService:
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

    def run(self) -> ReconcileReport:
        started = time.perf_counter()
        after = self._settings.reconcile_after_seconds
        cutoff = datetime.fromtimestamp(self._clock(), UTC) - timedelta(seconds=after)
        stuck = self._store.stuck_events(cutoff, self._settings.reconcile_batch_size)
        pending: list[tuple[QueueMessage, PendingPublish]] = []
        failed = 0
        for message in stuck:  # all started before any is awaited
            try:
                pending.append((message, self._publisher.publish(message)))
            except TransientError:
                failed += 1
        republished: list[str] = []
        for message, publish in pending:
            try:
                publish.wait()
                republished.append(message.event_id)
            except TransientError:
                failed += 1
        report = ReconcileReport(
            found=len(stuck),
            republished=len(republished),
            failed=failed,
            older_than_seconds=after,
            event_ids=republished,
        )
        log(
            "WARNING" if stuck else "INFO",
            "reconcile run",
            metric=RECONCILE_REPUBLISHED,
            found=report.found,
            republished=report.republished,
            failed=report.failed,
            latencyMs=elapsed_ms(started),
        )
        return report
