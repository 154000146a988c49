"""``scripts/paynow-ops``: the operator's CLI, against real GCP or the emulators.

It reads the project and emulator hosts from the same variables as the
functions (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST,
PUBSUB_TOPIC, PUBSUB_DLQ_TOPIC), uses application default credentials on
GCP, prints tables (``--json`` for scripts) and exits 1 when what it checks
does not hold (2 for a configuration it cannot run with).

    scripts/paynow-ops health [--strict] [--stuck-after SECONDS]
    scripts/paynow-ops mode [--env-file infra/env/ENV.env]
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
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
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
PUSH_SUBSCRIPTION = os.environ.get("PUBSUB_PUSH_SUBSCRIPTION", "paynow-events-push")
PEEK_BATCH = 100
CALL_TIMEOUT_SECONDS = 10.0
STUCK_AFTER_SECONDS = 900  # three reconcile periods: by then reconcile should have republished it
MODES = ("sync", "queue")
OK, WARN, FAIL = "ok", "warn", "fail"


class UsageError(Exception):
    """A command line or settings file the CLI cannot run with (exit 2)."""


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


# --- health --------------------------------------------------------------------


def _problem(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


class _Health:
    """The checks of one ``health`` run, each ok / warn / fail with what to do."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops
        self.local = bool(ops.settings.pubsub_emulator_host)
        # What only the cloud deploy sets up is a warning on the emulators.
        self.cloud_only = WARN if self.local else FAIL
        self.checks: list[dict[str, str]] = []

    def add(self, check: str, status: str, detail: str) -> None:
        self.checks.append({"check": check, "status": status, "detail": detail})

    def firestore(self) -> bool:
        try:
            self.ops.db.collection(firestore_store.EVENTS).limit(1).get(
                timeout=CALL_TIMEOUT_SECONDS
            )
        except Exception as exc:
            self.add("firestore", FAIL, f"unreachable: {_problem(exc)}")
            return False
        self.add("firestore", OK, f"reachable (project {self.ops.settings.project})")
        return True

    def topic(self, path: str) -> None:
        name = path.rsplit("/", 1)[-1]
        try:
            pubsub_publisher.publisher_client().get_topic(
                request={"topic": path}, timeout=CALL_TIMEOUT_SECONDS
            )
        except Exception as exc:
            self.add(f"topic {name}", FAIL, self._missing(exc))
            return
        self.add(f"topic {name}", OK, "exists")

    def subscription(self, name: str) -> Any:
        path = self.ops.subscriber.subscription_path(self.ops.settings.project, name)
        try:
            return self.ops.subscriber.get_subscription(
                request={"subscription": path}, timeout=CALL_TIMEOUT_SECONDS
            )
        except Exception as exc:
            self.add(f"subscription {name}", FAIL, self._missing(exc))
            return None

    @staticmethod
    def _missing(exc: BaseException) -> str:
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.NotFound):
            return "missing: infra/steps/pubsub.sh creates it (locally: scripts/stack)"
        return _problem(exc)

    def push(self, sub: Any) -> None:
        settings, name = self.ops.settings, PUSH_SUBSCRIPTION
        endpoint = sub.push_config.push_endpoint
        problems = []
        if sub.topic != settings.topic_path:
            problems.append(f"attached to {sub.topic}, not {settings.topic_path}")
        if not sub.enable_message_ordering:
            problems.append("message ordering is off (recreate it: infra/steps/pubsub.sh)")
        if not endpoint:
            problems.append("no push endpoint: it is a pull subscription")
        if "retry_policy" not in sub:
            problems.append("no retry policy (exponential backoff)")
        if problems:
            self.add(f"subscription {name}", FAIL, "; ".join(problems))
        else:
            backoff = sub.retry_policy
            self.add(
                f"subscription {name}",
                OK,
                f"ordered push to {endpoint}, backoff "
                f"{backoff.minimum_backoff.total_seconds():.0f}-"
                f"{backoff.maximum_backoff.total_seconds():.0f} s",
            )
        token = sub.push_config.oidc_token
        if token.service_account_email and token.audience:
            same = token.audience == endpoint
            self.add(
                "push auth",
                OK if same else WARN,
                f"OIDC token of {token.service_account_email}, audience {token.audience}"
                + ("" if same else " (not the endpoint: the worker expects its own URL)"),
            )
        elif self.local:
            self.add("push auth", WARN, "no OIDC token (local: the worker runs PUSH_AUTH=none)")
        else:
            self.add("push auth", FAIL, "no OIDC token: the worker refuses every push")
        policy = sub.dead_letter_policy
        if not policy.dead_letter_topic:
            self.add(
                "dead-letter policy",
                self.cloud_only,
                "absent; expected locally (the Pub/Sub emulator stops delivering an ordered "
                "subscription once a message reaches its maximum attempts), the worker "
                "dead-letters by itself"
                if self.local
                else "absent: Pub/Sub never dead-letters what the worker cannot answer; "
                "infra/steps/pubsub.sh sets it",
            )
        elif policy.dead_letter_topic != settings.dlq_topic_path:
            self.add("dead-letter policy", FAIL, f"to {policy.dead_letter_topic}, not the DLQ")
        elif policy.max_delivery_attempts <= settings.max_delivery_attempts:
            self.add(
                "dead-letter policy",
                WARN,
                f"after {policy.max_delivery_attempts} deliveries, not after the worker's "
                f"MAX_DELIVERY_ATTEMPTS={settings.max_delivery_attempts}: dead letters lose "
                "their errorCode",
            )
        else:
            self.add(
                "dead-letter policy",
                OK,
                f"to {policy.dead_letter_topic.rsplit('/', 1)[-1]} after "
                f"{policy.max_delivery_attempts} deliveries",
            )

    def dlq(self, sub: Any) -> int | None:
        name, settings = DLQ_SUBSCRIPTION, self.ops.settings
        problems = []
        if sub.topic != settings.dlq_topic_path:
            problems.append(f"attached to {sub.topic}, not {settings.dlq_topic_path}")
        if sub.push_config.push_endpoint:
            problems.append("it pushes; the DLQ subscription must be pulled")
        self.add(f"subscription {name}", FAIL if problems else OK, "; ".join(problems) or "pull")
        try:
            depth = len(self.ops.peek_dlq())
        except Exception as exc:
            self.add("dead letters waiting", FAIL, _problem(exc))
            return None
        self.add(
            "dead letters waiting",
            OK if depth == 0 else WARN,
            "none"
            if depth == 0
            else f"{depth}: scripts/paynow-ops dlq list, fix the cause, dlq replay",
        )
        return depth

    def oldest_received(self, stuck_after: int) -> dict[str, Any] | None:
        """The oldest event still ``received`` (the reconcile query: status, receivedAt)."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        now = datetime.now(UTC)
        query = (
            self.ops.db.collection(firestore_store.EVENTS)
            .where(filter=FieldFilter("status", "==", RECEIVED))
            .where(filter=FieldFilter("receivedAt", "<", now))  # timestamps only
            .order_by("receivedAt")
            .limit(1)
        )
        try:
            snaps = query.get(timeout=CALL_TIMEOUT_SECONDS)
        except Exception as exc:
            hint = " (needs the index webhookEvents (status, receivedAt): infra/steps/firestore.sh)"
            self.add("oldest received event", FAIL, _problem(exc) + hint)
            return None
        if not snaps:
            self.add("oldest received event", OK, "none waiting")
            return None
        snap = snaps[0]
        age = (now - snap.get("receivedAt")).total_seconds()
        oldest = {"eventId": snap.id, "ageSeconds": round(age), "mode": snap.get("mode")}
        if age <= stuck_after:
            self.add("oldest received event", OK, f"{snap.id}, {age:.0f} s old")
        else:
            self.add(
                "oldest received event",
                WARN if self.local else FAIL,
                f"{snap.id}, {age:.0f} s old (over {stuck_after} s): reconcile has not "
                "republished it; scripts/paynow-ops reconcile"
                + (" (no scheduler runs it locally)" if self.local else ""),
            )
        return oldest


def health(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Firestore, the contract's topics and subscriptions, DLQ depth, the oldest stuck event.

    Exit 1 on any ``fail`` (with ``--strict``, on any ``warn`` too). On the emulators
    (PUBSUB_EMULATOR_HOST set) what only the cloud deploy sets up is a ``warn``: the push
    subscription's dead-letter policy and OIDC token, and a stuck event nothing schedules
    reconcile for. DLQ messages are a ``warn``: work for a person, not a broken pipeline.
    """
    check = _Health(ops)
    firestore_ok = check.firestore()
    check.topic(ops.settings.topic_path)
    check.topic(ops.settings.dlq_topic_path)
    push = check.subscription(PUSH_SUBSCRIPTION)
    if push is not None:
        check.push(push)
    dlq_sub = check.subscription(DLQ_SUBSCRIPTION)
    depth = check.dlq(dlq_sub) if dlq_sub is not None else None
    oldest = check.oldest_received(args.stuck_after) if firestore_ok else None
    statuses = {c["status"] for c in check.checks}
    ok = FAIL not in statuses and not (args.strict and WARN in statuses)
    return {
        "ok": ok,
        "environment": "emulator" if check.local else "gcp",
        "project": ops.settings.project,
        "strict": args.strict,
        "dlqDepth": depth,
        "oldestReceived": oldest,
        "checks": check.checks,
    }, ok


# --- mode ------------------------------------------------------------------------


def read_settings_file(path: Path) -> dict[str, str]:
    """An infra settings file (infra/env/*.env) read as infra/lib.sh reads it: KEY=value
    lines, optional quotes, comments; nothing is run."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the settings file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if not match:
            raise UsageError(f"{path}:{n}: expected KEY=value")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def _other(mode: str) -> str:
    return "queue" if mode == "sync" else "sync"


def _deployed_mode(env_file: Path) -> tuple[dict[str, Any], bool]:
    values = read_settings_file(env_file)
    project, region = values.get("PROJECT"), values.get("REGION")
    if not project or not region:
        raise UsageError(f"{env_file} must set PROJECT and REGION")
    service = values.get("WEBHOOK_FUNCTION") or "paynow-webhook"  # gen2: the service's name
    file_mode = values.get("WEBHOOK_MODE") or "sync"
    out: dict[str, Any] = {
        "source": "deployed",
        "project": project,
        "region": region,
        "service": service,
        "settingsFile": str(env_file),
        "settingsFileMode": file_mode,
    }
    argv = [
        "gcloud",
        "run",
        "services",
        "describe",
        service,
        f"--region={region}",
        f"--project={project}",
        "--format=json",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {**out, "mode": None, "error": _problem(exc)}, False
    if done.returncode != 0:
        error = " ".join(done.stderr.split())[-300:]
        return {**out, "mode": None, "error": f"{' '.join(argv)}: {error}"}, False
    doc = json.loads(done.stdout)
    containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
    env = {e.get("name"): e.get("value") for e in containers[0].get("env", [])}
    mode = str(env.get("WEBHOOK_MODE") or "sync").strip().lower()  # unset: the code's default
    status = doc.get("status", {})
    traffic = (status.get("traffic") or [{}])[0]
    out.update(
        mode=mode,
        revision=status.get("latestReadyRevisionName"),
        serving=f"{traffic.get('revisionName')} at {traffic.get('percent')}%",
        matchesSettingsFile=mode == file_mode,
    )
    if mode not in MODES:
        out["error"] = f"WEBHOOK_MODE={mode!r} on the service: the webhook refuses to start"
        mode = "sync"
    out["switchCommand"] = f"infra/set-mode.sh {env_file} {_other(mode)}"
    out["rollbackCommand"] = f"infra/set-mode.sh {env_file} sync"
    if out["matchesSettingsFile"]:
        out["note"] = f"{env_file} says {file_mode} too; after switching, set it there as well"
    else:
        out["note"] = (
            f"{env_file} says WEBHOOK_MODE={file_mode}: the next infra/deploy.sh that changes "
            f"the webhook switches it back; set WEBHOOK_MODE={mode} there to keep it"
        )
    return out, "error" not in out and bool(out["matchesSettingsFile"])


def _local_mode() -> tuple[dict[str, Any], bool]:
    mode = (os.environ.get("WEBHOOK_MODE") or "").strip().lower() or "sync"
    valid = mode in MODES
    other = _other(mode if valid else "queue")
    out: dict[str, Any] = {
        "source": "local environment (WEBHOOK_MODE of this shell)",
        "mode": mode,
        "valid": valid,
        "switchCommand": f"infra/set-mode.sh infra/env/ENV.env {other}",
        "localSwitch": f"restart the local stack: ./scripts/stack --mode {other}",
        "note": "for the deployed webhook: scripts/paynow-ops mode --env-file infra/env/ENV.env",
    }
    if not valid:
        out["error"] = "WEBHOOK_MODE must be sync or queue: a function started with it refuses to"
    return out, valid


def webhook_mode(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """WEBHOOK_MODE of the deployed webhook (``--env-file``: its Cloud Run service, read with
    gcloud) or of this shell, and the command that switches it. Exit 1 when the deployed
    mode differs from the settings file's (the next deploy would switch it back)."""
    if args.env_file:
        return _deployed_mode(Path(args.env_file))
    return _local_mode()


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

    p = area.add_parser("health", help="check Firestore, topics, subscriptions, DLQ, stuck events")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument(
        "--stuck-after",
        type=int,
        default=STUCK_AFTER_SECONDS,
        metavar="SECONDS",
        help=f"a received event older than this is stuck (default {STUCK_AFTER_SECONDS})",
    )
    commands["health", None] = health

    p = area.add_parser("mode", help="the webhook's WEBHOOK_MODE and how to switch it")
    p.add_argument("--env-file", help="infra settings file: read the deployed webhook's mode")

    args = parser.parse_args(argv)
    try:
        if args.area == "mode":  # no Firestore or Pub/Sub client needed
            result, ok = webhook_mode(args)
        else:
            command = commands[args.area, getattr(args, "verb", None)]
            ops = Ops()
            with contextlib.redirect_stdout(sys.stderr):  # the library's JSON logs stay off stdout
                result, ok = command(ops, args)
    except (config.ConfigError, UsageError) as exc:
        print(f"paynow-ops: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=str, indent=2))
    else:
        _print_table(result)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
