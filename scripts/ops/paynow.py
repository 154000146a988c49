"""``paynow webhooks | failed | backfill | resend``: what PayNow could not deliver.

PayNow keeps every delivery it queued, with its original payload and each attempt,
in its Management API (``paynow.adapters.paynow_api``). ``failed`` lists the ones it
could not complete; ``backfill`` puts their payloads through the webhook's own path
after the signature (``WebhookService.ingest``: record, dedupe, ordering, then queue
or process in ``WEBHOOK_MODE``), so a second run, or PayNow's own later retry, is a
duplicate. Everything is read from PayNow before anything is written: a refusal or
a page that is not JSON stops the command with nothing applied.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from paynow.adapters.firestore_store import EVENTS, FirestoreEventStore
from paynow.adapters.paynow_api import (
    JSON_WEBHOOK,
    ApiSettings,
    Delivery,
    PayNowApi,
    PayNowApiError,
)
from paynow.adapters.secrets import StaticSecrets
from paynow.domain.errors import InvalidPayload, TransientError
from paynow.domain.events import parse_envelope
from paynow.service.webhook import WebhookService

from scripts.ops.clients import Ops, UsageError, problem
from scripts.ops.output import track

NOT_DONE = ("failed", "pending")  # the states backfill takes (and failed shows by default)
OUTCOMES = ("accepted", "processed", "duplicate", "ignored", "dead_lettered")


class PayNowUnavailable(UsageError):
    """PayNow's API refused or failed (a bad key, an unknown store, a broken page): exit 2."""


def connect(env: dict[str, str] | None = None) -> PayNowApi:
    """The Management API client of this environment's settings (validated here, once)."""
    settings = ApiSettings.load(os.environ if env is None else env)
    return PayNowApi.from_settings(settings)


@dataclass(frozen=True)
class Found:
    """A delivery and what its payload says (``event_id`` None: not a PayNow event)."""

    delivery: Delivery
    event_id: str | None
    event_type: str | None
    problem: str | None


def read(delivery: Delivery) -> Found:
    """The event id and type of a delivery's payload, or why it has none."""
    if delivery.payload is None:
        return Found(delivery, None, None, "payload is neither a JSON object nor a JSON string")
    try:
        envelope = parse_envelope(delivery.payload)
    except InvalidPayload as exc:
        return Found(delivery, None, None, f"invalid_payload: {exc.message}")
    return Found(delivery, envelope.event_id, envelope.event_type, None)


def undelivered(
    api: PayNowApi, states: Iterable[str], since: datetime, webhook: str | None = None
) -> list[Found]:
    """Every delivery in ``states`` created since ``since``, of the store's JSON
    subscriptions (``webhook``: only that one), oldest first."""
    try:
        subscriptions = [
            s
            for s in api.subscriptions()
            if s.type == JSON_WEBHOOK and (webhook is None or s.id == webhook)
        ]
        if webhook is not None and not subscriptions:
            raise PayNowUnavailable(f"no JSON webhook subscription {webhook} in this store")
        seen: dict[str, Delivery] = {}
        for sub in subscriptions:
            for state in states:
                for delivery in api.history(sub.id, state):
                    if delivery.created_at >= since:
                        seen.setdefault(delivery.id, delivery)
    except PayNowApiError as exc:
        raise PayNowUnavailable(str(exc)) from None
    return [read(d) for d in sorted(seen.values(), key=lambda d: (d.created_at, d.id))]


def _states(choice: str | None) -> tuple[str, ...]:
    """``--state``: one of PayNow's states, or (not given) failed and pending."""
    return NOT_DONE if choice is None else (choice,)


def _recorded(ops: Ops, event_ids: Iterable[str]) -> dict[str, str]:
    """The status of each event that has a record (one batched read)."""
    refs = [ops.db.collection(EVENTS).document(e) for e in dict.fromkeys(event_ids)]
    if not refs:
        return {}
    return {
        snap.id: str(snap.get("status"))
        for snap in ops.db.get_all(refs, field_paths=["status"])
        if snap.exists
    }


# --- the commands ------------------------------------------------------------------------


def webhooks(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The store's webhook subscriptions: id, event type, url (never the signing secret)."""
    try:
        subs = connect().subscriptions()
    except PayNowApiError as exc:
        raise PayNowUnavailable(str(exc)) from None
    rows = [{"id": s.id, "event": s.event, "type": s.type, "url": s.url} for s in subs]
    return {"subscriptions": len(rows), "webhooks": rows}, True


def failed(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Deliveries PayNow could not complete (failed and pending by default), oldest first,
    with the status of their event here, if it has a record."""
    found = undelivered(connect(), _states(args.state), args.since, args.webhook)
    recorded = _recorded(ops, (f.event_id for f in found if f.event_id))
    rows = [
        {
            "deliveryId": f.delivery.id,
            "eventId": f.event_id,
            "eventType": f.event_type or f.delivery.event,
            "state": f.delivery.state,
            "created": f.delivery.created_at.isoformat(),
            "attempts": f.delivery.attempts,
            "lastStatus": f.delivery.last_status,
            "recorded": recorded.get(f.event_id or "", "no") if f.event_id else f.problem,
        }
        for f in found
    ]
    return {
        "since": args.since.isoformat(),
        "states": list(_states(args.state)),
        "count": len(rows),
        "byState": dict(Counter(r["state"] for r in rows)),
        "notRecorded": sum(1 for r in rows if r["recorded"] == "no"),
        "deliveries": rows,
    }, True


def resend(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Ask PayNow to deliver one queued webhook again (to its subscription's URL)."""
    try:
        connect().resend(args.delivery_id)
    except ValueError as exc:
        raise UsageError(f"{args.delivery_id!r}: {exc}") from None
    except PayNowApiError as exc:
        raise PayNowUnavailable(str(exc)) from None
    return {"deliveryId": args.delivery_id, "resent": True}, True


def backfill(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Each failed or pending delivery's payload through the webhook's path, oldest first.

    Per event: accepted, processed, duplicate, ignored or dead_lettered (the webhook's
    answers), or failed. A transient failure (Firestore or Pub/Sub unavailable) stops
    the run there, so a customer's later event never overtakes one that could not be
    recorded; run it again. Exit 1 when one failed.
    """
    api = connect()
    found = undelivered(api, NOT_DONE, args.since, args.webhook)
    store = FirestoreEventStore(ops.db, ops.settings.event_ttl_days, source="backfill")
    # ingest never verifies a signature: PayNow's API is the authority here
    service = WebhookService(ops.settings, store, ops.publisher, StaticSecrets(""))
    rows = _run(ops, service, found, dry_run=args.dry_run, quiet=args.json)
    counts = Counter(r["outcome"] for r in rows)
    shown = (*OUTCOMES, "failed", *(k for k in ("not_reached", "would_backfill") if counts[k]))
    return {
        "since": args.since.isoformat(),
        "mode": ops.settings.webhook_mode,
        "dryRun": args.dry_run,
        "deliveries": len(found),
        **{k: counts[k] for k in shown},
        "events": rows,
    }, counts["failed"] + counts["not_reached"] == 0


def _run(
    ops: Ops, service: WebhookService, found: list[Found], *, dry_run: bool, quiet: bool
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    first: dict[str, str] = {}  # event id -> the delivery that brought it first in this run
    recorded = _recorded(ops, (f.event_id for f in found if f.event_id)) if dry_run else {}
    stopped: str | None = None
    for f in found if quiet else track(found, "paynow backfill", len(found)):
        row = {
            "deliveryId": f.delivery.id,
            "eventId": f.event_id,
            "eventType": f.event_type or f.delivery.event,
            "created": f.delivery.created_at.isoformat(),
        }
        if stopped is not None:
            rows.append({**row, "outcome": "not_reached", "detail": stopped})
            continue
        if f.event_id is not None and f.event_id in first:
            detail = f"another delivery of this event ({first[f.event_id]}) came first"
            rows.append({**row, "outcome": "duplicate", "detail": detail})
            continue
        if f.event_id is not None:
            first[f.event_id] = f.delivery.id
        if dry_run:
            rows.append({**row, **_would(f, recorded)})
            continue
        outcome = _ingest(service, f)
        rows.append({**row, **outcome})
        if outcome.get("transient"):
            stopped = "an earlier delivery failed transiently: run backfill again"
    for row in rows:
        row.pop("transient", None)
    return rows


def _would(f: Found, recorded: dict[str, str]) -> dict[str, Any]:
    if f.event_id is None:
        return {"outcome": "failed", "detail": f.problem}
    status = recorded.get(f.event_id)
    if status is not None and status != "received":
        return {"outcome": "duplicate", "detail": f"event already {status}"}
    return {"outcome": "would_backfill", "detail": f"event {status or 'not recorded'}"}


def _ingest(service: WebhookService, f: Found) -> dict[str, Any]:
    if f.delivery.payload is None:
        return {"outcome": "failed", "detail": f.problem}
    try:
        answer = service.ingest(f.delivery.payload)
    except InvalidPayload as exc:
        return {"outcome": "failed", "detail": f"invalid_payload: {exc.message}"}
    except TransientError as exc:
        return {"outcome": "failed", "detail": f"{exc.code}: {exc.message}", "transient": True}
    except Exception as exc:
        return {"outcome": "failed", "detail": problem(exc), "transient": True}
    detail = answer.error or ""
    return {"outcome": answer.status, "detail": detail}
