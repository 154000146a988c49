"""``events list``: webhookEvents by status, type, user, customer and time, newest first.

One Firestore query: an equality filter per option given, ``receivedAt >= --since``,
ordered by ``receivedAt`` descending. Each filter field has its composite index
(field, receivedAt DESC) in ``firestore_store.COMPOSITE_INDEXES``, created by
``infra/steps/firestore.sh``; Firestore merges them when several filters are given.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from paynow.adapters.firestore_store import EVENTS
from paynow.domain.events import is_valid_id
from paynow.domain.records import DEAD_LETTERED, IGNORED, PROCESSED, RECEIVED

from scripts.ops.clients import CALL_TIMEOUT_SECONDS, Ops, UsageError
from scripts.ops.output import track

STATUSES = (RECEIVED, PROCESSED, IGNORED, DEAD_LETTERED)
_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def event_type(text: str) -> str:
    """An argparse type: a PayNow event type (``on_refund`` is taken as ``ON_REFUND``)."""
    value = text.strip().upper()
    if not _TYPE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"not a PayNow event type: {text!r}")
    return value


def an_id(text: str) -> str:
    """An argparse type: a user or customer id as the records store it."""
    if not is_valid_id(text):
        raise argparse.ArgumentTypeError(f"not an id a record can hold: {text!r}")
    return text


def row(event_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """One event as listed: ids, state and times, never its data."""
    error = record.get("lastError")
    return {
        "eventId": event_id,
        "status": record.get("status"),
        "eventType": record.get("eventType"),
        "userId": record.get("userId"),
        "customerId": record.get("customerId"),
        "receivedAt": record.get("receivedAt"),
        "mode": record.get("mode"),
        "source": record.get("source", "webhook"),
        "attempts": record.get("attempts"),
        "error": error.get("code") if isinstance(error, dict) else None,
    }


def events_list(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The newest ``--limit`` events matching every filter given."""
    filters = {
        "status": args.status,
        "eventType": args.type,
        "userId": args.user,
        "customerId": args.customer,
    }
    query = ops.db.collection(EVENTS)
    for name, value in filters.items():
        if value is not None:
            query = query.where(filter=FieldFilter(name, "==", value))
    if args.since is not None:
        query = query.where(filter=FieldFilter("receivedAt", ">=", args.since))
    query = query.order_by("receivedAt", direction=firestore.Query.DESCENDING).limit(args.limit)
    try:
        # streamed, so the bar moves as the events come (the index error comes with the first)
        snaps = track(query.stream(timeout=CALL_TIMEOUT_SECONDS), "events list", args.limit)
        rows = [row(s.id, s.to_dict() or {}) for s in snaps]
    except gexc.FailedPrecondition as exc:
        raise UsageError(
            "Firestore has no index for this filter yet (infra/steps/firestore.sh creates "
            f"them; a new one builds in minutes): {' '.join(str(exc).split())[:300]}"
        ) from None
    given = {k: v for k, v in filters.items() if v is not None}
    if args.since is not None:
        given["since"] = args.since.isoformat()
    return {"filters": given, "count": len(rows), "limit": args.limit, "events": rows}, True
