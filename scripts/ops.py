"""``scripts/paynow-ops``: the operator's CLI, against real GCP or the emulators.

It reads the project and emulator hosts from the same variables as the
functions (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST,
PUBSUB_TOPIC, PUBSUB_DLQ_TOPIC), uses application default credentials on
GCP, prints tables (``--json`` for scripts) and exits 1 when what it checks
does not hold.

    scripts/paynow-ops event show EVENT_ID
    scripts/paynow-ops user show USER_ID
    scripts/paynow-ops ledger verify [--user USER_ID]
    scripts/paynow-ops dlq list
    scripts/paynow-ops dlq replay (--event-id ID | --error-code CODE | --all) [--dry-run]
    scripts/paynow-ops reconcile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))

from paynow import config  # noqa: E402
from paynow.adapters import documents, firestore_store, pubsub_publisher  # noqa: E402
from paynow.domain.errors import InvalidMessage  # noqa: E402
from paynow.domain.messages import QueueMessage  # noqa: E402
from paynow.service.ports import RECEIVED  # noqa: E402
from paynow.service.reconcile import ReconcileService  # noqa: E402

DLQ_SUBSCRIPTION = os.environ.get("PUBSUB_DLQ_SUBSCRIPTION", "paynow-events-dlq-sub")
PEEK_BATCH = 100


class Ops:
    """The clients the commands share, created once."""

    def __init__(self) -> None:
        self.settings = config.load(target="ops")
        self.db = firestore_store.client(self.settings.project)
        self.store = firestore_store.FirestoreEventStore(self.db, self.settings.event_ttl_days)
        self.publisher = pubsub_publisher.PubSubPublisher(
            pubsub_publisher.publisher_client(),
            self.settings.topic_path,
            self.settings.dlq_topic_path,
        )
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.dlq_path = self.subscriber.subscription_path(self.settings.project, DLQ_SUBSCRIPTION)

    # --- DLQ -----------------------------------------------------------------

    def peek_dlq(self) -> list[Any]:
        """Every message in the DLQ subscription, released again at once (nothing consumed)."""
        seen: dict[str, Any] = {}
        while True:
            response = self.subscriber.pull(
                request={"subscription": self.dlq_path, "max_messages": PEEK_BATCH}, timeout=10
            )
            fresh = [m for m in response.received_messages if m.message.message_id not in seen]
            if response.received_messages:
                self.subscriber.modify_ack_deadline(
                    request={
                        "subscription": self.dlq_path,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                        "ack_deadline_seconds": 0,
                    }
                )
            if not fresh:
                return list(seen.values())
            seen.update((m.message.message_id, m) for m in fresh)

    def pull_for_replay(self) -> list[Any]:
        """Pull the DLQ holding the messages (60 s) so replay can ack each after republishing."""
        held: dict[str, Any] = {}
        while True:
            response = self.subscriber.pull(
                request={"subscription": self.dlq_path, "max_messages": PEEK_BATCH}, timeout=10
            )
            fresh = [m for m in response.received_messages if m.message.message_id not in held]
            if not fresh:
                return list(held.values())
            held.update((m.message.message_id, m) for m in fresh)


def _event_id_of(message: Any) -> str | None:
    """The event a DLQ message is about: the worker's attribute, or the original data."""
    event_id = message.attributes.get("eventId")
    if event_id:
        return str(event_id)
    try:
        return QueueMessage.decode(message.data).event_id
    except InvalidMessage:
        return None


def _error_code_of(message: Any) -> str:
    code = message.attributes.get("errorCode")
    if code:
        return str(code)
    if message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount"):
        return "pubsub_max_delivery_attempts"
    return "unknown"


# --- commands --------------------------------------------------------------


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
    in_dlq = any(_event_id_of(m.message) == args.event_id for m in ops.peek_dlq())
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


def user_show(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    user = ops.db.collection("users").document(args.user_id).get()
    entries = [d.to_dict() for d in user.reference.collection("pointsLedger").stream()]
    total = sum(int(e.get("delta", 0)) for e in entries)
    balance = user.get("points") if user.exists else None
    recent = sorted(entries, key=lambda e: str(e.get("createdAt")), reverse=True)[: args.limit]
    out = {
        "userId": args.user_id,
        "balance": balance,
        "ledgerSum": total,
        "ledgerEntries": len(entries),
        "consistent": (balance or 0) == total,
        "recent": [
            {
                k: e.get(k)
                for k in ("eventId", "eventType", "delta", "reason", "orderId", "createdAt")
            }
            for e in recent
        ],
    }
    return out, bool(out["consistent"])


def ledger_verify(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    sums: dict[str, int] = defaultdict(int)
    owners: dict[str, list[str]] = defaultdict(list)
    query = ops.db.collection_group("pointsLedger")
    for entry in query.stream():
        user_id = entry.reference.parent.parent.id
        if args.user and user_id != args.user:
            continue
        sums[user_id] += int(entry.get("delta") or 0)
        owners[entry.id].append(user_id)
    users = [args.user] if args.user else [u.id for u in ops.db.collection("users").stream()]
    mismatched = []
    for user_id in users:
        snap = ops.db.collection("users").document(user_id).get()
        balance = int(snap.get("points") or 0) if snap.exists else 0
        if balance != sums.get(user_id, 0):
            mismatched.append({"userId": user_id, "balance": balance, "ledgerSum": sums[user_id]})
    doubled = {e: u for e, u in owners.items() if len(u) > 1}
    ok = not mismatched and not doubled
    return {
        "usersChecked": len(users),
        "mismatched": mismatched,
        "eventsWithSeveralEntries": doubled,
        "ok": ok,
    }, ok


def dlq_list(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    messages = [m.message for m in ops.peek_dlq()]
    by_code = Counter(_error_code_of(m) for m in messages)
    return {
        "depth": len(messages),
        "byErrorCode": dict(by_code),
        "messages": [
            {
                "eventId": _event_id_of(m),
                "errorCode": _error_code_of(m),
                "source": m.attributes.get("source", "pubsub"),
                "attempts": m.attributes.get("attempts")
                or m.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount"),
                "publishTime": m.publish_time.isoformat() if m.publish_time else None,
            }
            for m in messages
        ],
    }, True


def dlq_replay(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Reset, republish with the ordering key, and only then acknowledge the DLQ message."""
    from tqdm import tqdm

    held = ops.pull_for_replay()
    chosen = [
        m
        for m in held
        if args.all
        or (args.event_id and _event_id_of(m.message) == args.event_id)
        or (args.error_code and _error_code_of(m.message) == args.error_code)
    ]
    others = [m.ack_id for m in held if m not in chosen]
    if others:  # release what this replay does not touch
        ops.subscriber.modify_ack_deadline(
            request={"subscription": ops.dlq_path, "ack_ids": others, "ack_deadline_seconds": 0}
        )
    results: Counter[str] = Counter()
    for received in tqdm(chosen, disable=len(chosen) < 20 or args.json, desc="replay"):
        event_id = _event_id_of(received.message)
        if event_id is None:
            results["not_replayable"] += 1
            continue
        if args.dry_run:
            results["would_replay"] += 1
            continue
        status = ops.store.reopen(event_id)
        if status == RECEIVED:
            record = ops.store.event_status(event_id) or {}
            ops.publisher.publish(documents.queue_message(event_id, record)).wait()
            results["republished"] += 1
        elif status is None:
            results["not_found"] += 1
            continue
        else:
            results["already_final"] += 1
        ops.subscriber.acknowledge(
            request={"subscription": ops.dlq_path, "ack_ids": [received.ack_id]}
        )
    if args.dry_run and chosen:
        ops.subscriber.modify_ack_deadline(
            request={
                "subscription": ops.dlq_path,
                "ack_ids": [m.ack_id for m in chosen],
                "ack_deadline_seconds": 0,
            }
        )
    return {"selected": len(chosen), "dryRun": args.dry_run, **results}, True


def reconcile(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    report = ReconcileService(ops.settings, ops.store, ops.publisher).run()
    return asdict(report), report.failed == 0


# --- output ------------------------------------------------------------------


def _print_table(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{key}:")
            columns = list(value[0])
            widths = [max(len(c), *(len(str(row.get(c))) for row in value)) for c in columns]
            print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
            for row in value:
                cells = (str(row.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True))
                print("  " + "  ".join(cells))
        else:
            print(f"{key:<26} {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paynow-ops", description="Operate the PayNow pipeline.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    area = parser.add_subparsers(dest="area", required=True)
    commands: dict[tuple[str, str | None], Callable[[Ops, argparse.Namespace], Any]] = {}

    event = area.add_parser("event").add_subparsers(dest="verb", required=True)
    p = event.add_parser("show")
    p.add_argument("event_id")
    commands["event", "show"] = event_show

    user = area.add_parser("user").add_subparsers(dest="verb", required=True)
    p = user.add_parser("show")
    p.add_argument("user_id")
    p.add_argument("--limit", type=int, default=20)
    commands["user", "show"] = user_show

    ledger = area.add_parser("ledger").add_subparsers(dest="verb", required=True)
    p = ledger.add_parser("verify")
    p.add_argument("--user")
    commands["ledger", "verify"] = ledger_verify

    dlq = area.add_parser("dlq").add_subparsers(dest="verb", required=True)
    dlq.add_parser("list")
    commands["dlq", "list"] = dlq_list
    p = dlq.add_parser("replay")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--event-id")
    which.add_argument("--error-code")
    which.add_argument("--all", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    commands["dlq", "replay"] = dlq_replay

    area.add_parser("reconcile")
    commands["reconcile", None] = reconcile

    args = parser.parse_args(argv)
    command = commands[args.area, getattr(args, "verb", None)]
    try:
        ops = Ops()
    except config.ConfigError as exc:
        print(f"paynow-ops: {exc}", file=sys.stderr)
        return 2
    with contextlib.redirect_stdout(sys.stderr):  # the library's JSON logs stay off stdout
        result, ok = command(ops, args)
    if args.json:
        print(json.dumps(result, default=str, indent=2))
    else:
        _print_table(result)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
