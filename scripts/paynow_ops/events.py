"""``event show`` and ``reconcile``: one event's state, and the reconcile pass on demand."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from paynow.service.reconcile import ReconcileService

from scripts.paynow_ops.clients import Ops
from scripts.paynow_ops.dead_letters import event_id_of


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
    in_dlq = any(event_id_of(m.message) == args.event_id for m in ops.dead_letters().peek())
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
    """One reconcile pass; ``--stamp-legacy`` first stamps records written before
    ``republishedAt`` existed (once, after upgrading), which its query cannot see."""
    stamped = ops.store.stamp_unstamped() if getattr(args, "stamp_legacy", False) else None
    report = ReconcileService(ops.settings, ops.store, ops.publisher).run()
    out = asdict(report)
    if stamped is not None:
        out = {"stamped": stamped, **out}
    return out, report.failed == 0
