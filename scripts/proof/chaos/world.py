"""What the run reads back: the received backlog, the DLQ topic, Firestore at the end.

The checks read the emulators directly (not through the proxies the faults cut).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from scripts.local import localstack
from scripts.proof.chaos.model import FINAL, RECEIVED


def count_received(db: Any, limit: int) -> int:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = (
        db.collection("webhookEvents")
        .where(filter=FieldFilter("status", "==", RECEIVED))
        .select([])
        .limit(limit)
    )
    return sum(1 for _ in query.stream(timeout=60))


class DeadLetters:
    """A pull subscription on the DLQ topic made at the start: it collects every dead letter."""

    def __init__(self, tag: str) -> None:
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        topic = f"projects/{localstack.PROJECT}/topics/{localstack.DLQ_TOPIC}"
        self.path = self.subscriber.subscription_path(localstack.PROJECT, f"chaos-dlq-{tag}")
        self.subscriber.create_subscription(
            request={"name": self.path, "topic": topic, "ack_deadline_seconds": 60}
        )
        self.messages: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-dlq", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.pull_once()

    def pull_once(self) -> int:
        try:
            response = self.subscriber.pull(
                request={"subscription": self.path, "max_messages": 100}, timeout=5
            )
        except Exception:  # a quiet pull times out; the emulator is never cut here
            return 0
        received = list(response.received_messages)
        if not received:
            self.stopping.wait(0.5)
        if received:
            with self.lock:
                self.messages.extend(dict(m.message.attributes) for m in received)
            self.subscriber.acknowledge(
                request={"subscription": self.path, "ack_ids": [m.ack_id for m in received]}
            )
        return len(received)

    def event_ids(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        with self.lock:
            for attributes in self.messages:
                if attributes.get("eventId"):
                    out[attributes["eventId"]].add(attributes.get("errorCode", "?"))
        return out

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=15)


@dataclass
class World:
    """What Firestore holds at the end."""

    events: dict[str, dict[str, Any]]
    balances: dict[str, int]
    ledger: dict[str, list[tuple[str, int]]]  # event id -> [(user, delta)]
    orders: dict[str, dict[str, Any]]
    subscriptions: dict[str, dict[str, Any]]


def read_world(db: Any) -> World:
    def docs(collection: str) -> dict[str, dict[str, Any]]:
        return {s.id: s.to_dict() or {} for s in db.collection(collection).stream(timeout=120)}

    ledger: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for entry in db.collection_group("pointsLedger").stream(timeout=120):
        ledger[entry.id].append((entry.reference.parent.parent.id, int(entry.get("delta") or 0)))
    return World(
        events=docs("webhookEvents"),
        balances={u: int(d.get("points") or 0) for u, d in docs("users").items()},
        ledger=dict(ledger),
        orders=docs("paynowOrders"),
        subscriptions=docs("paynowSubscriptions"),
    )


def wait_quiescent(db: Any, timeout: float) -> tuple[bool, float]:
    """Until no event is `received` and two reads a few seconds apart see the same totals."""
    started = time.monotonic()
    last: tuple[int, ...] | None = None
    while time.monotonic() - started < timeout:
        if count_received(db, limit=5000) == 0:
            snapshot = _totals(db)
            if snapshot == last:
                return True, time.monotonic() - started
            last = snapshot
            time.sleep(3.0)
            continue
        last = None
        time.sleep(1.0)
    return False, time.monotonic() - started


def _totals(db: Any) -> tuple[int, ...]:
    statuses = Counter(
        str(s.get("status")) for s in db.collection("webhookEvents").select(["status"]).stream()
    )
    points = sum(
        int(s.get("points") or 0) for s in db.collection("users").select(["points"]).stream()
    )
    ledger = sum(1 for _ in db.collection_group("pointsLedger").select([]).stream())
    return (*(statuses[k] for k in sorted(FINAL | {RECEIVED})), points, ledger)
