"""``event show`` and ``reconcile``: one event's state, and the reconcile pass on demand."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from paynow.domain.messages import DeadLetter, QueueMessage
from paynow.service.ports import PendingPublish, Publisher
from paynow.service.reconcile import ReconcileService

from scripts.ops.clients import Ops
from scripts.ops.dead_letters import event_id_of
from scripts.ops.output import progress


def event_show(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    record = ops.store.event_status(args.event_id)
    if record is None:
        return {"eventId": args.event_id, "found": False}, False
    entry = None
    if record.get("userId"):
        snap = (
            ops.db.collection("users")
            .document(record["userId"])
            .collection("pointsLedger")
            .document(args.event_id)
            .get()
        )
        entry = snap.to_dict() if snap.exists else None
    found = ops.dead_letters().find(lambda message: event_id_of(message) == args.event_id)
    in_dlq = found is not None
    out = {
        "eventId": args.event_id,
        "found": True,
        "status": record.get("status"),
        "eventType": record.get("eventType"),
        "mode": record.get("mode"),
        "attempts": record.get("attempts"),
        "lastError": record.get("lastError"),
        "userId": record.get("userId"),
        "receivedAt": record.get("receivedAt"),
        "processedAt": record.get("processedAt"),
        "ledgerDelta": entry.get("delta") if entry else None,
        "inDeadLetterQueue": in_dlq,
    }
    return out, True


def reconcile(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """One pass of the scheduled job, here and now; a bar counts what it republishes.

    ``--stamp-legacy`` first stamps records written before ``republishedAt`` existed (once,
    after upgrading), which reconcile's query cannot see.
    """
    stamped = ops.store.stamp_unstamped() if getattr(args, "stamp_legacy", False) else None
    with progress("reconcile: republished") as advance:
        publisher = _Counted(ops.publisher, advance)
        report = ReconcileService(ops.settings, ops.store, publisher).run()
    out = asdict(report)
    if stamped is not None:
        out = {"stamped": stamped, **out}
    return out, report.failed == 0


@dataclass
class _Counted:
    """The publisher, counting each message once it is durable."""

    publisher: Publisher
    advance: Callable[[int], None]

    def publish(self, message: QueueMessage) -> PendingPublish:
        return _CountedPublish(self.publisher.publish(message), self.advance)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.publisher.dead_letter(letter)


@dataclass
class _CountedPublish:
    pending: PendingPublish
    advance: Callable[[int], None]

    def wait(self) -> str:
        message_id = self.pending.wait()
        self.advance(1)
        return message_id
