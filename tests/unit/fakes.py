"""In-memory fakes of the service ports: an ``EventStore`` and a ``Publisher``.

``FakeStore`` is storage only: the record-state decision (``records.decide``),
the points rules (``points.needs`` / ``points.apply``) and the documents each
outcome writes (``documents.*_writes``) are the very functions the Firestore
store calls, so service tests exercise the real rules. Everything a rule raises
leaves the store untouched, like the Firestore transaction. Both fakes append
to a shared ``journal`` so tests can check the order of side effects across them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from paynow.adapters import documents
from paynow.adapters.documents import Add, Write
from paynow.domain import events as ev
from paynow.domain import points, records
from paynow.domain.errors import TransientError
from paynow.domain.messages import DeadLetter, QueueMessage
from paynow.domain.records import RECEIVED, Processed, Step


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
        source: str = "webhook",
    ) -> None:
        self.source = source
        self.events: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.ledger: dict[str, dict[str, dict[str, Any]]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.catalog: dict[str, dict[str, Any]] = {
            product: {"points": value} for product, value in (catalog or {}).items()
        }
        self.rejections: dict[str, str] = {}
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

    def _collection(self, path: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """The dict holding the document at ``path``, by the contract's collection names."""
        if len(path) == 4 and path[0] == documents.USERS and path[2] == documents.LEDGER:
            return self.ledger.setdefault(path[1], {})
        tables = {
            documents.EVENTS: self.events,
            documents.USERS: self.users,
            documents.ORDERS: self.orders,
            documents.SUBSCRIPTIONS: self.subscriptions,
            documents.CATALOG: self.catalog,
        }
        assert len(path) == 2, path
        return tables[path[0]]

    def _commit(self, writes: list[Write]) -> None:
        for w in writes:
            table, doc_id = self._collection(w.path), w.path[-1]
            doc = {} if w.kind == "set" else table.setdefault(doc_id, {})
            for key, value in w.fields.items():
                doc[key] = (
                    int(doc.get(key) or 0) + value.amount if isinstance(value, Add) else value
                )
            table[doc_id] = doc

    def _new_record(self, event: ev.PayNowEvent, mode: str) -> documents.NewRecord:
        return lambda: documents.event_record(
            event, mode, self._stamp(), expire_at=None, source=self.source
        )

    def record_received(self, event: ev.PayNowEvent, mode: str) -> str | None:
        self.journal.append(f"store.record_received:{event.event_id}")
        existing = self.events.get(event.event_id)
        if existing is not None:
            return str(existing["status"])
        self._commit(documents.received_writes(event, self._new_record(event, mode)))
        return None

    def event_status(self, event_id: str) -> dict[str, Any] | None:
        record = self.events.get(event_id)
        return None if record is None else dict(record)

    def stuck_events(self, due_before: datetime, limit: int) -> list[records.Stuck]:
        """As Firestore answers it: a record without ``republishedAt`` is never matched."""
        due = sorted(
            (
                (record[documents.REPUBLISHED_AT], event_id, record)
                for event_id, record in self.events.items()
                if record.get("status") == RECEIVED
                and isinstance(record.get(documents.REPUBLISHED_AT), datetime)
                and record[documents.REPUBLISHED_AT] < due_before
            ),
            key=lambda row: (row[0], row[1]),
        )
        return [documents.stuck(event_id, record) for _, event_id, record in due[:limit]]

    def mark_republished(self, event_ids: list[str], at: datetime) -> None:
        self.journal.append(f"store.mark_republished:{','.join(event_ids)}")
        present = [e for e in event_ids if e in self.events]  # the store skips deleted ones
        self._commit(documents.republished_writes(present, at))

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
        customer_id = event.customer_id if event is not None and behind_pending else None
        pending = (lambda: self._pending_of(str(customer_id))) if customer_id else None
        step = documents.step(event_id, record, event_in_hand=event is not None, pending=pending)
        if step is not Step.APPLY:
            return records.without_applying(step, event_id)
        if event is None:
            assert record is not None
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
        self._commit(
            documents.outcome_writes(
                event, outcome, record, self._new_record(event, mode), self._stamp()
            )
        )
        return Processed(status=outcome.status, outcome=outcome)

    # --- failures --------------------------------------------------------------

    def mark_dead_lettered(
        self, event: ev.PayNowEvent | None, event_id: str, mode: str, code: str, message: str
    ) -> None:
        self.journal.append(f"store.mark_dead_lettered:{event_id}")
        new_record = self._new_record(event, mode) if event is not None else None
        record = self.events.get(event_id)
        self._commit(
            documents.dead_letter_writes(event_id, record, new_record, code, message, self._stamp())
        )

    def reopen(self, event_id: str) -> records.Reopened | None:
        self.journal.append(f"store.reopen:{event_id}")
        record = self.events.get(event_id)
        if record is None:
            return None
        writes = documents.reopen_writes(event_id, record, self._stamp())
        reopened = documents.reopened(event_id, record, writes)
        self._commit(writes)
        return reopened

    def record_failure(
        self, event_id: str, code: str, message: str, *, counted: bool = True
    ) -> int:
        self.journal.append(f"store.record_failure:{event_id}")
        record = self.events.get(event_id)
        if record is None:
            return 0
        record["attempts"] = int(record.get("attempts", 0)) + int(counted)
        record["lastError"] = {"code": code, "message": message}
        return int(record["attempts"])

    def has_pending_predecessor(
        self, event_id: str, customer_id: str | None, order_id: str | None = None
    ) -> bool:
        mine = self.events.get(event_id)
        received_at = mine.get("receivedAt") if mine is not None else None
        pending = [
            (other_id, record.get("receivedAt"))
            for other_id, record in self.events.items()
            if record.get("status") == RECEIVED
            and (
                (customer_id and record.get("customerId") == customer_id)
                or (order_id and (record.get("data") or {}).get("orderId") == order_id)
            )
        ]
        return records.has_earlier(event_id, received_at, pending)

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


@dataclass
class FakeAsyncRecords:
    """``ports.AsyncRecords`` over a ``FakeStore``: its records and journal. It yields to the
    loop first, as a call on the wire does, so a publish started before it goes out first."""

    store: FakeStore

    async def record_received(self, event: ev.PayNowEvent, mode: str) -> str | None:
        await asyncio.sleep(0)
        return self.store.record_received(event, mode)


@dataclass
class FakeAsyncPublisher:
    """``ports.AsyncPublisher`` over a ``FakePublisher``: what it publishes, and its errors."""

    publisher: FakePublisher

    async def publish(self, message: QueueMessage) -> str:
        pending = self.publisher.publish(message)
        await asyncio.sleep(0)
        return pending.wait()
