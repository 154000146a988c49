"""``reconcile``: events still ``received`` long after they were last published go out again.

A record can be left ``received`` with no message on its way: the webhook
stored it but its publish failed (the 503 PayNow may never retry), Pub/Sub
dead-lettered its message (a worker down for longer than the subscription's
attempts), or a message was lost to an operator's mistake. Publishing again is
safe: the worker's transaction makes a second delivery a duplicate.

Each republish is stamped on the record (``republishedAt``, ``republishCount``),
and the query asks for records whose last publish is older than the window,
least recently published first. So one run handles at most one bounded batch,
the next run takes the next batch instead of the same one again, and a backlog
larger than a batch drains across runs, oldest first. A record republished
``RECONCILE_MAX_REPUBLISHES`` times that is still ``received`` is dead-lettered
``attempts_exhausted``: republishing has not helped, a person has to look.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from paynow.config import Settings
from paynow.domain.errors import AttemptsExhausted, TransientError
from paynow.domain.records import Stuck
from paynow.observability import RECONCILE_REPUBLISHED, elapsed_ms, log
from paynow.service.dead_letter import dead_letter
from paynow.service.ports import EventStore, PendingPublish, Publisher


@dataclass(frozen=True)
class ReconcileReport:
    found: int
    republished: int
    failed: int
    older_than_seconds: int
    event_ids: list[str] = field(default_factory=list)
    dead_lettered: int = 0
    dead_lettered_ids: list[str] = field(default_factory=list)


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
        now = datetime.fromtimestamp(self._clock(), UTC)
        batch = self._settings.reconcile_batch_size
        due = self._store.stuck_events(now - timedelta(seconds=after), batch)
        limit = self._settings.reconcile_max_republishes
        exhausted = [s for s in due if s.republish_count >= limit]
        again = [s for s in due if s.republish_count < limit]
        dead_lettered, failed = self._give_up(exhausted)
        republished, failed_publishes = self._republish(again)
        if republished:
            self._store.mark_republished(republished, now)
        report = ReconcileReport(
            found=len(due),
            republished=len(republished),
            failed=failed + failed_publishes,
            older_than_seconds=after,
            event_ids=republished,
            dead_lettered=len(dead_lettered),
            dead_lettered_ids=dead_lettered,
        )
        log(
            "WARNING" if due else "INFO",
            "reconcile run",
            metric=RECONCILE_REPUBLISHED,
            found=report.found,
            republished=report.republished,
            deadLettered=report.dead_lettered,
            failed=report.failed,
            latencyMs=elapsed_ms(started),
        )
        return report

    def _republish(self, due: list[Stuck]) -> tuple[list[str], int]:
        """Publish every message (all started before any is awaited); the ids that went out."""
        pending: list[tuple[str, PendingPublish]] = []
        failed = 0
        for stuck in due:
            try:
                pending.append((stuck.message.event_id, self._publisher.publish(stuck.message)))
            except TransientError:
                failed += 1
        republished: list[str] = []
        for event_id, publish in pending:
            try:
                publish.wait()
                republished.append(event_id)
            except TransientError:
                failed += 1
        return republished, failed

    def _give_up(self, exhausted: list[Stuck]) -> tuple[list[str], int]:
        """Dead-letter each record republished the maximum number of times."""
        done: list[str] = []
        failed = 0
        for stuck in exhausted:
            count = stuck.republish_count
            error = AttemptsExhausted(
                f"still received after reconcile republished it {count} times"
            )
            try:
                dead_letter(
                    self._store,
                    self._publisher,
                    error,
                    data=stuck.message.data(),
                    event_id=stuck.message.event_id,
                    event=None,
                    mode=stuck.mode or "queue",
                    attempts=count,
                    source="reconcile",
                )
            except TransientError:
                failed += 1
                continue
            done.append(stuck.message.event_id)
        return done, failed
