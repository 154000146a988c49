"""The event store on Firestore: records, the points transaction, indexes, ledger.

Collections and fields are the contract (docs/contract.md). The transaction
reads everything an event's rule needs in one ``get_all`` round trip (event
record, catalog entries, order, subscription), then writes the balance (as
an increment, so the user document is never read and never contended), the
ledger entry, the order/subscription index and the event status, all or
nothing. Sync mode's question "is an earlier event of this customer still
queued?" is a query (equalities only, served by single-field indexes) asked
beside that read, not after it, so it costs no round trip of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import AsyncRetry, Retry, if_exception_type, if_transient_error
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from paynow.adapters import documents
from paynow.adapters.documents import (
    CATALOG,
    EVENTS,
    LEDGER,
    ORDERS,
    REJECTIONS,
    SUBSCRIPTIONS,
    USERS,
    Add,
    Write,
)
from paynow.adapters.google_errors import calling
from paynow.domain import events as ev
from paynow.domain import points, records
from paynow.domain.records import RECEIVED, Processed, Reopened, Step, Stuck

__all__ = ["CATALOG", "EVENTS", "LEDGER", "ORDERS", "REJECTIONS", "SUBSCRIPTIONS"]
__all__ += ["COMPOSITE_INDEXES", "USERS", "AsyncEventRecords", "FirestoreEventStore", "client"]
CALL_TIMEOUT_SECONDS = 10.0
# How long the worker's open transaction waits for the record read beside its begin (a
# hint, started with the begin and as fast): past it, the transaction reads the record
# itself, one read more, instead of idling up to a call's timeout while Firestore is slow.
HINT_WAIT_SECONDS = 1.0
# Bounded retries: a webhook answers 503 within seconds instead of the client's default minute.


def _backoff(kind: type[Retry] | type[AsyncRetry], predicate: Any = if_transient_error) -> Any:
    """The calls' retry, for the blocking client (``Retry``) or the async one (``AsyncRetry``);
    ``predicate``: the errors retried (the client's own transient ones unless told)."""
    return kind(predicate, initial=0.1, maximum=1.0, multiplier=2.0, timeout=CALL_TIMEOUT_SECONDS)


_RETRY: Retry = _backoff(Retry)
_CALL: dict[str, Any] = {"retry": _RETRY, "timeout": CALL_TIMEOUT_SECONDS}
# A create is not retried on Aborted by the client: record_received reads the record instead.
_CREATE_RETRIED = if_exception_type(
    gexc.ServiceUnavailable, gexc.InternalServerError, gexc.TooManyRequests
)
_CREATE: dict[str, Any] = {
    "retry": _backoff(Retry, _CREATE_RETRIED),
    "timeout": CALL_TIMEOUT_SECONDS,
}
_ASYNC_CREATE: dict[str, Any] = {
    "retry": _backoff(AsyncRetry, _CREATE_RETRIED),
    "timeout": CALL_TIMEOUT_SECONDS,
}

# Every composite index a query on webhookEvents needs, as infra/steps/firestore.sh creates
# them (tests/infra checks its plan against this). Equality filters on several of the
# events-list fields are served by merging their indexes, which share receivedAt DESC.
COMPOSITE_INDEXES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("status", "ASCENDING"), ("receivedAt", "ASCENDING")),  # health: the oldest received
    (("status", "ASCENDING"), ("republishedAt", "ASCENDING")),  # stuck_events (reconcile)
    (("status", "ASCENDING"), ("receivedAt", "DESCENDING")),  # events list --status
    (("eventType", "ASCENDING"), ("receivedAt", "DESCENDING")),  # events list --type
    (("userId", "ASCENDING"), ("receivedAt", "DESCENDING")),  # events list --user
    (("customerId", "ASCENDING"), ("receivedAt", "DESCENDING")),  # events list --customer
)

_PENDING_SAMPLE = 50  # a customer rarely has more than a few events in flight
_BATCH_WRITES = 500  # Firestore's limit on the writes of one commit
_BESIDE_THREADS = 32  # reads beside a transaction in flight at once (one per request served)
T = TypeVar("T")

_clients: dict[str, firestore.Client] = {}
_clients_lock = threading.Lock()


def client(project: str) -> firestore.Client:
    """One Firestore client per process, created on first use (never per request)."""
    with _clients_lock:
        if project not in _clients:
            _clients[project] = firestore.Client(project=project)
        return _clients[project]


class FirestoreEventStore:
    """``source`` is written on every record this store creates: ``webhook`` for the
    functions, ``backfill`` for the recovery tooling's store."""

    def __init__(self, db: firestore.Client, ttl_days: int, source: str = "webhook") -> None:
        if source not in documents.SOURCES:
            raise ValueError(f"source must be one of {documents.SOURCES}, got {source!r}")
        self._db = db
        self._ttl = timedelta(days=ttl_days)
        self._source = source

    # --- records ---------------------------------------------------------

    def _event_ref(self, event_id: str) -> Any:
        return self._db.collection(EVENTS).document(event_id)

    def _new_record(self, event: ev.PayNowEvent, mode: str) -> documents.NewRecord:
        expire_at = datetime.now(UTC) + self._ttl
        return lambda: documents.event_record(
            event, mode, firestore.SERVER_TIMESTAMP, expire_at, self._source
        )

    def _ref(self, path: tuple[str, ...]) -> Any:
        """The document at ``path`` (collection, id, subcollection, id, ...)."""
        ref: Any = self._db
        for collection, doc_id in zip(path[::2], path[1::2], strict=True):
            ref = ref.collection(collection).document(doc_id)
        return ref

    def _commit(self, writer: Any, writes: list[Write]) -> None:
        """Put ``writes`` on a batch or transaction."""
        for w in writes:
            ref = self._ref(w.path)
            fields = {
                k: firestore.Increment(v.amount) if isinstance(v, Add) else v
                for k, v in w.fields.items()
            }
            if w.kind == "update":
                writer.update(ref, fields)
            else:
                writer.set(ref, fields, merge=w.kind == "merge")

    def record_received(self, event: ev.PayNowEvent, mode: str) -> str | None:
        ref = self._event_ref(event.event_id)
        deadline = time.monotonic() + CALL_TIMEOUT_SECONDS
        with calling("Firestore"):
            while True:
                try:
                    ref.create(self.received_fields(event, mode), **_CREATE)
                    return None
                except gexc.AlreadyExists:
                    snap = ref.get(**_CALL)
                    return str(snap.get("status")) if snap.exists else RECEIVED
                except gexc.Aborted:
                    # A transaction holds the record's lock: a concurrent duplicate creating
                    # it, or one processing it (maybe of a worker that died: its lock lasts
                    # until the transaction expires). A plain read is not blocked by it.
                    snap = ref.get(**_CALL)
                    if snap.exists:
                        return str(snap.get("status"))
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def received_fields(self, event: ev.PayNowEvent, mode: str) -> dict[str, Any]:
        """The fields of the record ``record_received`` creates."""
        (write,) = documents.received_writes(event, self._new_record(event, mode))
        return write.fields

    def event_status(self, event_id: str) -> dict[str, Any] | None:
        with calling("Firestore"):
            snap = self._event_ref(event_id).get(**_CALL)
        return snap.to_dict() if snap.exists else None

    def stuck_events(self, due_before: datetime, limit: int) -> list[Stuck]:
        """Needs the composite index (status ASC, republishedAt ASC) in Firestore."""
        query = (
            self._db.collection(EVENTS)
            .where(filter=FieldFilter("status", "==", RECEIVED))
            .where(filter=FieldFilter(documents.REPUBLISHED_AT, "<", due_before))
            .order_by(documents.REPUBLISHED_AT)
            .limit(limit)
        )
        with calling("Firestore"):
            snaps = list(query.stream(**_CALL))
        return [documents.stuck(snap.id, snap.to_dict() or {}) for snap in snaps]

    def mark_republished(self, event_ids: list[str], at: datetime) -> None:
        """One batch per 500 stamps; a record deleted since the query (TTL) is skipped."""
        writes = documents.republished_writes(event_ids, at)
        with calling("Firestore"):
            for start in range(0, len(writes), _BATCH_WRITES):
                chunk = writes[start : start + _BATCH_WRITES]
                batch = self._db.batch()
                self._commit(batch, chunk)
                try:
                    batch.commit(**_CALL)
                except gexc.NotFound:  # one is gone, and a batch is all or nothing
                    for w in chunk:
                        with contextlib.suppress(gexc.NotFound):
                            single = self._db.batch()
                            self._commit(single, [w])
                            single.commit(**_CALL)

    def stamp_unstamped(self, page: int = _BATCH_WRITES) -> int:
        """Give every ``received`` record without ``republishedAt`` its stamp (an upgrade's
        one-off: records written before the field existed); return how many were stamped.

        Pages through the received records oldest first (the index status, receivedAt)."""
        stamped = 0
        last: Any = None
        with calling("Firestore"):
            while True:
                query = (
                    self._db.collection(EVENTS)
                    .where(filter=FieldFilter("status", "==", RECEIVED))
                    .where(filter=FieldFilter("receivedAt", "<", datetime.now(UTC)))
                    .order_by("receivedAt")
                    .limit(page)
                )
                if last is not None:
                    query = query.start_after(last)
                snaps = list(query.stream(**_CALL))
                writes = [w for s in snaps for w in documents.stamp_writes(s.id, s.to_dict() or {})]
                if writes:
                    batch = self._db.batch()
                    self._commit(batch, writes)
                    batch.commit(**_CALL)
                    stamped += len(writes)
                if len(snaps) < page:
                    return stamped
                last = snaps[-1]

    # --- the points transaction -------------------------------------------

    def process(
        self,
        event: ev.PayNowEvent | None,
        event_id: str,
        mode: str,
        *,
        behind_pending: bool = False,
    ) -> Processed:
        # Asked beside the transaction, on a pool thread, started before it begins so they
        # overlap its begin and its first read: in sync mode whether an earlier event of the
        # customer is still queued (a query cannot be part of the batch read); for the
        # worker the record, whose data says what else the transaction must read.
        customer = event.customer_id if event is not None and behind_pending else None
        pending = (
            _Beside(functools.partial(self._pending_of, customer), again=True) if customer else None
        )
        hint = (
            _Beside(functools.partial(self._event_ref(event_id).get, **_CALL), again=False)
            if event is None
            else None
        )
        with calling("Firestore"):
            for beside in (pending, hint):
                if beside is not None:
                    beside.start()
            transaction = self._db.transaction(max_attempts=8)
            result: Processed = firestore.transactional(self._apply)(
                transaction, event, event_id, mode, pending, hint
            )
            return result

    def _apply(
        self,
        txn: Any,
        given: ev.PayNowEvent | None,
        event_id: str,
        mode: str,
        pending: _Beside[list[tuple[str, object]]] | None,
        hint: _Beside[Any] | None,
    ) -> Processed:
        """All reads, then all writes (the function may run again on contention).

        One batch read takes the record and the state its rule needs: known from the
        event itself in sync mode, from the ``hint`` (the record read beside the
        transaction's begin) for the worker. Only the transaction's own reads decide;
        a hint that cannot tell (no record yet, unreadable) costs a second read. The
        ``pending`` answer is waited for only when the record is not final.
        """
        event_ref = self._event_ref(event_id)
        for beside in (pending, hint):
            if beside is not None:
                beside.attempt()
        refs = self._state_refs(points.needs(given)) if given is not None else self._hinted(hint)
        docs = _read(txn, [event_ref, *(refs.all if refs is not None else [])])
        record = docs[event_ref.path]
        wait = pending.answer if pending is not None else None
        step = documents.step(event_id, record, event_in_hand=given is not None, pending=wait)
        if step is not Step.APPLY:
            return records.without_applying(step, event_id)
        if given is None:
            assert record is not None  # decide: no record without the event is NOT_VISIBLE
            event = documents.event_from_record(event_id, record)
            needed = self._state_refs(points.needs(event))
            if refs is None or refs.paths != needed.paths:
                docs.update(_read(txn, needed.all))
            refs = needed
        else:
            event = given
        assert refs is not None
        catalog = {
            r.id: value
            for r in refs.catalog
            if (value := documents.catalog_points(docs[r.path])) is not None
        }
        order = documents.order_state(docs[refs.order.path]) if refs.order else None
        sub = documents.subscription_state(docs[refs.sub.path]) if refs.sub else None
        outcome = points.apply(event, catalog, order, sub)
        writes = documents.outcome_writes(
            event, outcome, record, self._new_record(event, mode), firestore.SERVER_TIMESTAMP
        )
        self._commit(txn, writes)
        return Processed(status=outcome.status, outcome=outcome)

    def _hinted(self, hint: _Beside[Any] | None) -> _StateRefs | None:
        """The documents the hinted record's rule reads, or None when the hint cannot tell."""
        try:
            snap = hint.answer(HINT_WAIT_SECONDS) if hint is not None else None
            record = snap.to_dict() if snap is not None and snap.exists else None
            if snap is None or record is None:
                return None
            return self._state_refs(points.needs(documents.event_from_record(snap.id, record)))
        except Exception:  # late or failed: a hint only; the transaction reads again
            return None

    def _state_refs(self, need: points.Needs) -> _StateRefs:
        return _StateRefs(
            catalog=[self._db.collection(CATALOG).document(p) for p in need.product_ids],
            order=self._db.collection(ORDERS).document(need.order_id) if need.order_id else None,
            sub=self._db.collection(SUBSCRIPTIONS).document(need.subscription_id)
            if need.subscription_id
            else None,
        )

    # --- failures ---------------------------------------------------------

    def mark_dead_lettered(
        self, event: ev.PayNowEvent | None, event_id: str, mode: str, code: str, message: str
    ) -> None:
        ref = self._event_ref(event_id)

        def mark(txn: Any) -> None:
            record = _read(txn, [ref])[ref.path]
            new_record = self._new_record(event, mode) if event is not None else None
            at = firestore.SERVER_TIMESTAMP
            self._commit(
                txn, documents.dead_letter_writes(event_id, record, new_record, code, message, at)
            )

        with calling("Firestore"):
            firestore.transactional(mark)(self._db.transaction())

    def reopen(self, event_id: str) -> Reopened | None:
        """Ready an event for a replay; its status after, and the message that publishes it.

        A ``dead_lettered`` event goes back to ``received``; one still ``received``
        (its message dead-lettered by Pub/Sub itself) stays so. Both start their
        attempts again (and the received one its last error), so the replay's first
        transient failure does not dead-letter it at once. Processed or ignored
        events stay as they are (a replay must never credit twice); the caller
        publishes only what comes back ``received``. None: no record.
        """
        ref = self._event_ref(event_id)

        def reopen(txn: Any) -> Reopened | None:
            record = _read(txn, [ref])[ref.path]
            if record is None:
                return None
            writes = documents.reopen_writes(event_id, record, firestore.SERVER_TIMESTAMP)
            self._commit(txn, writes)
            return documents.reopened(event_id, record, writes)

        with calling("Firestore"):
            result: Reopened | None = firestore.transactional(reopen)(self._db.transaction())
            return result

    def record_failure(
        self, event_id: str, code: str, message: str, *, counted: bool = True
    ) -> int:
        ref = self._event_ref(event_id)
        change: dict[str, Any] = {"lastError": {"code": code, "message": message}}
        if counted:
            change["attempts"] = firestore.Increment(1)
        with calling("Firestore"):
            try:
                ref.update(change, **_CALL)
            except gexc.NotFound:
                return 0
            snap = ref.get(field_paths=["attempts"], **_CALL)
        value = snap.get("attempts") if snap.exists else 0
        return int(value) if documents.is_int(value) else 0

    def has_pending_predecessor(
        self, event_id: str, customer_id: str | None, order_id: str | None = None
    ) -> bool:
        # Asked fresh, after the transaction found the predecessor missing: the rare path (a
        # refund or a close before its order or chargeback), by customer and by order.
        with calling("Firestore"):
            pending = [
                p
                for field, value in (("customerId", customer_id), ("data.orderId", order_id))
                if value
                for p in self._pending_with(field, value)
                if p[0] != event_id
            ]
            if not pending:
                return False
            mine = self._event_ref(event_id).get(field_paths=["receivedAt"], **_CALL)
        received_at = mine.get("receivedAt") if mine.exists else None
        return records.has_earlier(event_id, received_at, pending)

    def _pending_of(self, customer_id: str) -> list[tuple[str, object]]:
        return self._pending_with("customerId", customer_id)

    def _pending_with(self, field: str, value: str) -> list[tuple[str, object]]:
        """(id, receivedAt) of the ``received`` events whose ``field`` is ``value`` (a bounded
        sample): a customer's, or an order's (``data.orderId``).

        Equalities only: Firestore serves it from single-field indexes, no composite one.
        """
        query = (
            self._db.collection(EVENTS)
            .where(filter=FieldFilter(field, "==", value))
            .where(filter=FieldFilter("status", "==", RECEIVED))
            .select(["receivedAt"])
            .limit(_PENDING_SAMPLE)
        )
        with calling("Firestore"):
            return [(snap.id, snap.get("receivedAt")) for snap in query.stream(**_CALL)]

    def rejection_seen(self, digest: str) -> bool:
        with calling("Firestore"):
            snap = (
                self._db.collection(REJECTIONS)
                .document(digest)
                .get(field_paths=["errorCode"], **_CALL)
            )
        return bool(snap.exists)

    def remember_rejection(self, digest: str, code: str) -> None:
        with calling("Firestore"):
            self._db.collection(REJECTIONS).document(digest).set(
                {
                    "errorCode": code,
                    "receivedAt": firestore.SERVER_TIMESTAMP,
                    "expireAt": datetime.now(UTC) + self._ttl,
                },
                **_CALL,
            )


# --- snapshot readers ------------------------------------------------------


def _read(txn: Any, refs: list[Any]) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {r.path: None for r in refs}
    if refs:
        for snap in txn.get_all(refs, **_CALL):
            out[snap.reference.path] = snap.to_dict() if snap.exists else None
    return out


@functools.cache
def _beside_pool() -> cf.ThreadPoolExecutor:
    return cf.ThreadPoolExecutor(_BESIDE_THREADS, thread_name_prefix="firestore-beside")


class _Beside(Generic[T]):
    """One read run on a pool thread beside a transaction: started before its first
    attempt and, when ``again``, once more for each retry (an answer that must be as fresh
    as the attempt's own reads; the worker's hint reads data that never changes).

    A read that misses an ``answer``'s timeout is not waited for again: later calls raise
    at once, until a retry starts it anew, so an open transaction idles on it once."""

    def __init__(self, read: Callable[[], T], *, again: bool) -> None:
        self._read = read
        self._again = again
        self._future: cf.Future[T] | None = None
        self._attempts = 0
        self._late = False

    def start(self) -> None:
        self._future = _beside_pool().submit(self._read)
        self._late = False

    def attempt(self) -> None:
        self._attempts += 1
        if self._future is None or (self._again and self._attempts > 1):
            self.start()

    def answer(self, timeout: float = CALL_TIMEOUT_SECONDS) -> T:
        assert self._future is not None  # started by attempt() at the latest
        if self._late:
            raise TimeoutError("this read missed an earlier wait; not waited for again")
        try:
            return self._future.result(timeout=timeout)
        except TimeoutError:
            self._late = True
            self._future.cancel()  # only if it has not started: a running read runs out
            raise


@dataclass(frozen=True)
class _StateRefs:
    """The documents an event's rule reads besides its own record."""

    catalog: list[Any]
    order: Any | None
    sub: Any | None

    @property
    def all(self) -> list[Any]:
        return [*self.catalog, *(r for r in (self.order, self.sub) if r is not None)]

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.all]


class AsyncEventRecords:
    """``record_received`` from an event loop, on Firestore's async client (made in the loop
    that uses it). Only the create is asynchronous: a record already there, or locked by a
    transaction, is rare, and the store's own ``record_received`` says what it means, on a
    thread, so that rule has one home."""

    def __init__(
        self, db: firestore.AsyncClient, store: FirestoreEventStore, threads: cf.Executor
    ) -> None:
        self._db = db
        self._store = store
        self._threads = threads

    async def record_received(self, event: ev.PayNowEvent, mode: str) -> str | None:
        """As the store's; a record already there goes to the store's own rule on
        ``threads`` (the webhook's, so a burst of PayNow's retries waits for no other pool)."""
        ref = self._db.collection(EVENTS).document(event.event_id)
        with calling("Firestore"):
            try:
                await ref.create(self._store.received_fields(event, mode), **_ASYNC_CREATE)
                return None
            except (gexc.AlreadyExists, gexc.Aborted):
                pass
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._store.record_received, event, mode)
