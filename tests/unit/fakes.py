"""In-memory fakes of the service ports: an ``EventStore`` and a ``Publisher``.

``FakeStore`` mirrors ``FirestoreEventStore`` field for field (the contract's
collections and names) and runs the real ``points.needs`` / ``points.apply``,
so service tests exercise the real rules. Everything a rule raises leaves the
store untouched, like the Firestore transaction. Both fakes append to a shared
``journal`` so tests can check the order of side effects across them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from paynow.adapters import documents
from paynow.domain import events as ev
from paynow.domain import points
from paynow.domain.errors import EventNotVisible, TransientError
from paynow.domain.messages import DeadLetter, QueueMessage
from paynow.service.ports import BEHIND, FINAL_STATES, RECEIVED, Processed


class FakeStore:
    """``ports.EventStore`` in memory, with the contract's documents as plain dicts.

    Server timestamps come from ``now`` (settable by tests), made strictly
    increasing so that ``receivedAt`` orders events like Firestore would.
    """

    def __init__(
        self,
        catalog: dict[str, int] | None = None,
        journal: list[str] | None = None,
        now: datetime | None = None,
    ) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.ledger: dict[str, dict[str, dict[str, Any]]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.catalog: dict[str, dict[str, Any]] = {
            product: {"points": value} for product, value in (catalog or {}).items()
        }
        self.rejections: dict[str, str] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.journal = journal if journal is not None else []
        self.now = now or datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
        self._last = datetime.min.replace(tzinfo=UTC)

    def _stamp(self) -> datetime:
        """``SERVER_TIMESTAMP``: the fake's ``now``, strictly increasing."""
        self._last = max(self.now, self._last + timedelta(microseconds=1))
        return self._last

    # --- helpers for tests ---------------------------------------------------

    def balance(self, user_id: str) -> int:
        return int(self.users.get(user_id, {}).get("points", 0))

    def ledger_sum(self, user_id: str) -> int:
        return sum(int(e["delta"]) for e in self.ledger.get(user_id, {}).values())

    def status(self, event_id: str) -> str | None:
        record = self.events.get(event_id)
        return None if record is None else str(record["status"])

    # --- records -----------------------------------------------------------

    def queued(self, customer_id: str) -> int:
        return documents.queued_count(self.customers.get(customer_id))

    def _count_queued(self, customer_id: object, delta: int) -> None:
        if isinstance(customer_id, str) and customer_id:
            doc = self.customers.setdefault(customer_id, {"queued": 0})
            doc.update(documents.queued_change(int(doc["queued"]) + delta, self._stamp()))

    def _new_record(self, event: ev.PayNowEvent, mode: str) -> dict[str, Any]:
        return documents.event_record(event, mode, self._stamp(), expire_at=None)

    def record_received(self, event: ev.PayNowEvent, mode: str) -> str | None:
        self.journal.append(f"store.record_received:{event.event_id}")
        existing = self.events.get(event.event_id)
        if existing is not None:
            return str(existing["status"])
        self.events[event.event_id] = self._new_record(event, mode)
        self._count_queued(event.customer_id, +1)
        return None

    def event_status(self, event_id: str) -> dict[str, Any] | None:
        record = self.events.get(event_id)
        return None if record is None else dict(record)

    def stuck_events(self, received_before: datetime, limit: int) -> list[QueueMessage]:
        stuck = sorted(
            (
                (record["receivedAt"], event_id, record)
                for event_id, record in self.events.items()
                if record.get("status") == RECEIVED and record["receivedAt"] < received_before
            ),
            key=lambda row: row[0],
        )
        return [documents.queue_message(event_id, record) for _, event_id, record in stuck[:limit]]

    # --- the points transaction ------------------------------------------------

    def process(
        self,
        event: ev.PayNowEvent | None,
        event_id: str,
        mode: str,
        *,
        behind_pending: bool = False,
    ) -> Processed:
        self.journal.append(f"store.process:{event_id}")
        record = self.events.get(event_id)
        if record is not None and record.get("status") in FINAL_STATES:
            return Processed(status="duplicate")
        customer_id = event.customer_id if event is not None else None
        if behind_pending and customer_id and self.queued(customer_id) > 0:
            received_at = record.get("receivedAt") if record is not None else None
            if documents.has_earlier(event_id, received_at, self._pending_of(customer_id)):
                return Processed(status=BEHIND)
        if event is None:
            if record is None:
                raise EventNotVisible(f"event {event_id} has no record yet")
            event = documents.event_from_record(event_id, record)
        need = points.needs(event)
        catalog = {
            p: value
            for p in need.product_ids
            if (value := documents.catalog_points(self.catalog.get(p))) is not None
        }
        order = documents.order_state(self.orders.get(need.order_id)) if need.order_id else None
        sub = (
            documents.subscription_state(self.subscriptions.get(need.subscription_id))
            if need.subscription_id
            else None
        )
        outcome = points.apply(event, catalog, order, sub)  # raises before any write
        self._write(event, record, mode, outcome)
        return Processed(status=outcome.status, outcome=outcome)

    def _write(
        self,
        event: ev.PayNowEvent,
        record: dict[str, Any] | None,
        mode: str,
        outcome: points.Outcome,
    ) -> None:
        now = self._stamp()
        if outcome.ledger and outcome.user_id:
            user = self.users.setdefault(outcome.user_id, {"points": 0})
            user["points"] = int(user.get("points", 0)) + outcome.delta
            user["updatedAt"] = now
            self.ledger.setdefault(outcome.user_id, {})[event.event_id] = documents.ledger_entry(
                event, outcome, now
            )
        if outcome.order is not None and outcome.order_id:
            self.orders[outcome.order_id] = documents.order_document(outcome.order, now)
        if outcome.subscription is not None:
            sub_id, state = outcome.subscription
            self.subscriptions[sub_id] = documents.subscription_document(state, now)
        final = documents.processed_fields(event, outcome, now)
        if record is None:
            self.events[event.event_id] = {**self._new_record(event, mode), **final}
        else:
            if documents.counted_as_queued(record):
                self._count_queued(record.get("customerId"), -1)
            record.update(final)

    # --- failures --------------------------------------------------------------

    def mark_dead_lettered(
        self, event: ev.PayNowEvent | None, event_id: str, mode: str, code: str, message: str
    ) -> None:
        self.journal.append(f"store.mark_dead_lettered:{event_id}")
        record = self.events.get(event_id)
        fields = documents.dead_lettered_fields(code, message, self._stamp())
        if record is None:
            if event is None:
                return
            self.events[event_id] = {**self._new_record(event, mode), **fields}
        elif record.get("status") not in FINAL_STATES:
            if documents.counted_as_queued(record):
                self._count_queued(record.get("customerId"), -1)
            record.update(fields)

    def record_failure(self, event_id: str, code: str, message: str) -> int:
        self.journal.append(f"store.record_failure:{event_id}")
        record = self.events.get(event_id)
        if record is None:
            return 0
        record["attempts"] = int(record.get("attempts", 0)) + 1
        record["lastError"] = {"code": code, "message": message}
        return int(record["attempts"])

    def has_pending_predecessor(self, event_id: str, customer_id: str) -> bool:
        mine = self.events.get(event_id)
        received_at = mine.get("receivedAt") if mine is not None else None
        return documents.has_earlier(event_id, received_at, self._pending_of(customer_id))

    def _pending_of(self, customer_id: str) -> list[tuple[str, object]]:
        return [
            (event_id, record.get("receivedAt"))
            for event_id, record in self.events.items()
            if record.get("customerId") == customer_id and record.get("status") == RECEIVED
        ]

    def rejection_seen(self, digest: str) -> bool:
        return digest in self.rejections

    def remember_rejection(self, digest: str, code: str) -> None:
        self.rejections[digest] = code


@dataclass
class FakePending:
    message_id: str
    error: TransientError | None = None
    waited: bool = False

    def wait(self) -> str:
        self.waited = True
        if self.error is not None:
            raise self.error
        return self.message_id


@dataclass
class FakePublisher:
    """``ports.Publisher`` that keeps what was published; ``publish_error`` fails ``wait``."""

    journal: list[str] = field(default_factory=list)
    published: list[QueueMessage] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    pendings: list[FakePending] = field(default_factory=list)
    publish_error: TransientError | None = None

    def publish(self, message: QueueMessage) -> FakePending:
        self.journal.append(f"publisher.publish:{message.event_id}")
        self.published.append(message)
        pending = FakePending(f"m{len(self.published)}", self.publish_error)
        self.pendings.append(pending)
        return pending

    def dead_letter(self, letter: DeadLetter) -> None:
        self.journal.append(f"publisher.dead_letter:{letter.event_id}")
        self.letters.append(letter)
