"""``health``: Firestore, the contract's topics and subscriptions, DLQ depth, stuck events."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from paynow.adapters import firestore_store, pubsub_publisher
from paynow.domain.records import RECEIVED

from scripts.ops.clients import (
    CALL_TIMEOUT_SECONDS,
    Ops,
    problem,
)
from scripts.ops.dead_letters import PAGE_SIZE
from scripts.ops.push_subscription import Deployed, PushSettings, differences

# health asks whether dead letters wait, not how many: it counts one page of them at most
# (dlq list counts them all), and dlqDepth is that count.
DLQ_COUNTED = PAGE_SIZE
STUCK_AFTER_SECONDS = 900  # three reconcile periods: by then reconcile should have republished it
OK, WARN, FAIL = "ok", "warn", "fail"


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
            self.add("firestore", FAIL, f"unreachable: {problem(exc)}")
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
        path = self.ops.subscription_path(name)
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
        return problem(exc)

    def push(self, sub: Any) -> None:
        settings, name = self.ops.settings, self.ops.push_subscription
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
        name, settings = self.ops.dlq_subscription, self.ops.settings
        problems = []
        if sub.topic != settings.dlq_topic_path:
            problems.append(f"attached to {sub.topic}, not {settings.dlq_topic_path}")
        if sub.push_config.push_endpoint:
            problems.append("it pushes; the DLQ subscription must be pulled")
        self.add(f"subscription {name}", FAIL if problems else OK, "; ".join(problems) or "pull")
        try:
            depth = len(self.ops.dead_letters().peek(limit=DLQ_COUNTED))
        except Exception as exc:
            self.add("dead letters waiting", FAIL, problem(exc))
            return None
        counted = f"{depth}{' or more' if depth >= DLQ_COUNTED else ''}"
        self.add(
            "dead letters waiting",
            OK if depth == 0 else WARN,
            "none"
            if depth == 0
            else f"{counted}: scripts/paynow-ops dlq list, fix the cause, dlq replay (or discard)",
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
            self.add("oldest received event", FAIL, problem(exc) + hint)
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
    push = check.subscription(ops.push_subscription)
    if push is not None:
        check.push(push)
        drift = differences(PushSettings.of(push), Deployed.for_settings(ops.settings, check.local))
        status = check.cloud_only if any(d.breaks for d in drift) else WARN if drift else OK
        detail = "; ".join(d.text for d in drift) or "as infra/steps/pubsub.sh sets it"
        check.add("push subscription as deployed", status, detail)
    dlq_sub = check.subscription(ops.dlq_subscription)
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
