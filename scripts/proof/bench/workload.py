"""What is measured against the floors: the code's webhook over HTTP and in-process, the
worker through push, and events end to end.

Every request is an ``ON_ORDER_COMPLETED`` with unique event, order, customer and user ids
(customers come from a pool where Pub/Sub's ordering keys would pile up), signed with the
stack's secret just before it is sent; the signing is not timed.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import threading
import time
import uuid
from typing import Any

from google.cloud import firestore, pubsub_v1
from paynow import config
from paynow.adapters import firestore_store, pubsub_publisher
from paynow.adapters.secrets import StaticSecrets
from paynow.domain import payloads
from paynow.domain.records import FINAL_STATES
from paynow.domain.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from paynow.service.webhook import WebhookService

from scripts.local import localstack
from scripts.proof.bench import floors
from scripts.proof.bench.floors import Ids
from scripts.proof.bench.measurement import Flow, Series, measure, post_json, timed
from scripts.proof.bench.stack import BenchStack

POLL_WINDOW, POLL_SECONDS = 10, 0.25


class Workload:
    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        self.db = firestore.Client(project=localstack.PROJECT)
        self.publisher = pubsub_v1.PublisherClient()
        self.floors = floors.Floors(self.db, self.publisher, localstack.PROJECT)
        self.subscriber = pubsub_v1.SubscriberClient()
        self.push = self.subscriber.subscription_path(
            localstack.PROJECT, localstack.PUSH_SUBSCRIPTION
        )
        self._services = {mode: self._service(mode) for mode in ("queue", "sync")}
        self._store = firestore_store.FirestoreEventStore(self.db, 30)
        self._run = uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def _service(self, mode: str) -> WebhookService:
        """The code's webhook service on clients of its own, in this process: the code
        without the server around it."""
        settings = config.load(self.stack.env(mode))
        store = firestore_store.FirestoreEventStore(
            firestore_store.client(settings.project), settings.event_ttl_days
        )
        publisher = pubsub_publisher.PubSubPublisher(
            pubsub_publisher.publisher_client(), settings.topic_path, settings.dlq_topic_path
        )
        return WebhookService(settings, store, publisher, StaticSecrets(localstack.DEMO_SECRET))

    # --- ids and bodies ---------------------------------------------------------------

    def ids(self, kind: str, customer: str | None = None) -> Ids:
        with self._lock:
            n = f"bench-{self._run}-{kind}-{next(self._counter)}"
        cust = customer or f"{n}-c"
        return Ids(n, floors.order_of(n), cust, f"{cust}-u")

    @staticmethod
    def signed(ids: Ids) -> tuple[bytes, dict[str, str]]:
        doc = payloads.order_completed(
            ids.event,
            ids.order,
            ids.customer,
            ids.user,
            [(floors.PRODUCT, floors.QUANTITY, floors.LINE_CENTS)],
        )
        return payloads.signed(doc, localstack.DEMO_SECRET)

    def post(self, name: str, expect: str, ids: Ids | None = None) -> float:
        body, headers = self.signed(ids or self.ids(name.replace(" ", "")))
        return post_json(self.stack.urls[name], body, headers, expect)

    # --- over HTTP: the code and the served floors ---------------------------------------

    def queue_webhook(self) -> float:
        return self.post("webhook queue", "accepted")

    def sync_webhook(self) -> float:
        return self.post("webhook sync", "processed")

    def serve_floor(self) -> float:
        return self.post("serve floor", "accepted")

    def queue_floor(self) -> float:
        return self.post("queue floor", "accepted")

    def sync_floor(self) -> float:
        return self.post("sync floor", "processed")

    def peer(self) -> float:
        return self.post("peer", "accepted")

    # --- in this process: the raw work and the code's service ---------------------------

    def raw_queue_work(self) -> float:
        ids = self.ids("rawq")
        return timed(lambda: self.floors.create_and_publish(ids))

    def raw_sync_work(self) -> float:
        ids = self.ids("raws")
        return timed(lambda: self.floors.credit(ids, recorded=False))

    def _in_process(self, mode: str, expect: str) -> float:
        body, headers = self.signed(self.ids(f"svc{mode}"))
        sig, stamp = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
        started = time.perf_counter()
        result = self._services[mode].accept(body, sig, stamp)
        ms = (time.perf_counter() - started) * 1000
        if result.status != expect:
            raise RuntimeError(f"service answered {result.status}")
        return ms

    def pending_query(self) -> float:
        """Sync mode's wait alone: the query for a customer's events still ``received``
        (the emulator answers it by scanning the collection; Firestore from an index)."""
        ids = self.ids("pq")
        return timed(lambda: self._store.has_pending_predecessor(ids.event, ids.customer))

    def stored_events(self) -> int:
        """How many ``webhookEvents`` records the emulator holds (what a query scans)."""
        events: Any = self.db.collection(floors.EVENTS)
        return int(events.count().get()[0][0].value)

    def queue_service(self) -> float:
        return self._in_process("queue", "accepted")

    def sync_service(self) -> float:
        return self._in_process("sync", "processed")

    # --- the worker, through push -------------------------------------------------------

    def detach_worker(self) -> None:
        """No push subscription: published messages go nowhere, the worker stays idle."""
        with contextlib.suppress(Exception):
            self.subscriber.delete_subscription(request={"subscription": self.push})

    def attach_worker(self) -> None:
        localstack.provision_pubsub(self.stack.urls["worker"])

    def hold(self) -> None:
        """Make the push subscription a pull one: messages wait there."""
        self.subscriber.modify_push_config(subscription=self.push, push_config={})

    def release(self, to: str = "worker") -> float:
        """Push again, to the function ``to``; returns the wall-clock time the backlog was
        let go."""
        self.subscriber.modify_push_config(
            subscription=self.push, push_config={"push_endpoint": self.stack.urls[to]}
        )
        return time.time()

    def wait_final(self, all_ids: list[Ids], timeout: float) -> dict[str, dict[str, Any]]:
        """Poll until every event has left ``received``; returns the records.

        Light on purpose, or waiting would slow what it measures: only the first
        ``POLL_WINDOW`` pending records are read, every ``POLL_SECONDS`` (the worker goes
        roughly in order, so the window follows it). The emulator spends its CPU on every
        read, CPU the worker needs on this machine: 25 records every 50 ms cost it about
        as much as the worker's own reads, and a Firestore listener cut the worker's rate
        about fourfold (the emulator re-runs the query on each write). The times come from
        the records' server timestamps, not from when the poll saw them.
        """
        col = self.db.collection(floors.EVENTS)
        pending = [i.event for i in all_ids]
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} events still unprocessed after {timeout}s")
            for snap in self.db.get_all([col.document(e) for e in pending[:POLL_WINDOW]]):
                record = snap.to_dict() if snap.exists else None
                if record and record.get("status") in FINAL_STATES:
                    done[snap.id] = record
            pending = [e for e in pending if e not in done]
            if pending:
                time.sleep(POLL_SECONDS)
        return done

    def send_all(self, name: str, all_ids: list[Ids], threads: int) -> Series:
        """Accept every one of ``all_ids`` through the queue webhook."""
        pending = iter(all_ids)
        lock = threading.Lock()

        def send() -> float:
            with lock:
                ids = next(pending)
            return self.post("webhook queue", "accepted", ids)

        sent = measure(f"{name}: accept", send, len(all_ids), threads)
        if sent.errors:
            raise RuntimeError(f"{name}: {sent.errors} events were not accepted")
        return sent

    def backlog(self, name: str, all_ids: list[Ids], threads: int, to: str = "worker") -> Flow:
        """Accept ``all_ids`` while the subscription holds them, then release them at once
        to the function ``to`` (the worker, or the served worker floor): its throughput,
        from the release."""
        self.held(name, all_ids, threads)
        return self.drain(name, all_ids, to)

    def held(self, name: str, all_ids: list[Ids], threads: int) -> None:
        """Accept ``all_ids`` while the subscription holds them (``backlog``'s first half)."""
        self.hold()
        self.send_all(name, all_ids, threads)

    def drain(self, name: str, all_ids: list[Ids], to: str = "worker") -> Flow:
        """Release the held ``all_ids`` to ``to`` and wait until each is final; push then
        goes to the worker again, whatever ``to`` was, for what is measured next."""
        start = self.release(to)
        records = self.wait_final(all_ids, timeout=120 + len(all_ids))
        if to != "worker":
            self.release()
        processed = [r for r in records.values() if r.get("status") == "processed"]
        return Flow(
            name,
            len(all_ids),
            sorted(r["processedAt"].timestamp() - start for r in processed),
            len(records) - len(processed),
        )

    def raw_loop(self, name: str, all_ids: list[Ids]) -> Series:
        """The worker's floor: records as the queue leaves them, then one credit
        transaction each, one after the other."""
        self.floors.create_received(all_ids)
        return self.credits(name, all_ids)

    def credits(self, name: str, all_ids: list[Ids]) -> Series:
        """``raw_loop``'s second half: one credit transaction on each recorded event."""
        pending = iter(all_ids)
        return measure(
            name,
            lambda: timed(lambda: self.floors.credit(next(pending), recorded=True)),
            len(all_ids),
        )

    # --- end to end -----------------------------------------------------------------------

    def _accepted_to_processed(self, name: str, all_ids: list[Ids]) -> Flow:
        records = self.wait_final(all_ids, timeout=120 + len(all_ids))
        processed = [r for r in records.values() if r.get("status") == "processed"]
        return Flow(
            name,
            len(all_ids),
            sorted(r["processedAt"].timestamp() - r["receivedAt"].timestamp() for r in processed),
            len(records) - len(processed),
        )

    def steady(self, rate: float, seconds: float, customers: int) -> Flow:
        """Events sent at ``rate`` a second for ``seconds`` (on a schedule, whatever the
        answers take), each event's record-created to processed (server timestamps)."""
        n = int(rate * seconds)
        pool_of = [f"bench-{self._run}-steady-c{i}" for i in range(customers)]
        all_ids = [self.ids("steady", pool_of[i % customers]) for i in range(n)]
        began = time.monotonic()
        with cf.ThreadPoolExecutor(16, thread_name_prefix="steady") as pool:
            futures = []
            for i, ids in enumerate(all_ids):
                time.sleep(max(0.0, began + i / rate - time.monotonic()))
                futures.append(pool.submit(self.post, "webhook queue", "accepted", ids))
            for future in futures:
                future.result()
        return self._accepted_to_processed(f"steady {rate:g}/s", all_ids)

    def burst(self, n: int, threads: int) -> Flow:
        """One customer's ``n`` events sent at once (``threads`` at a time)."""
        customer = f"bench-{self._run}-burst-{uuid.uuid4().hex[:6]}"
        all_ids = [self.ids("burst", customer) for _ in range(n)]
        self.send_all(f"burst of {n}", all_ids, threads)
        return self._accepted_to_processed(f"one customer's burst of {n}", all_ids)
