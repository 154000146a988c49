"""Benchmark the pipeline on the local emulator stack, each number beside a same-run floor.

    .venv/bin/python scripts/proof/bench.py                    # --size small --out docs/benchmarks
    .venv/bin/python scripts/proof/bench.py --size tiny --out /tmp/bench   # < 60 s, what CI runs
    .venv/bin/python scripts/proof/bench.py --size full --check  # exit 1: a ratio misses

It starts its own emulators and functions on free ports (``scripts.local.localstack``),
stops them at the end, and writes ``results.md``, ``latency.png`` and
``throughput.png`` to ``--out``. Shared machines are noisy, so the targets are
ratios against floors measured in the same run, with the clients the code
itself uses (``publisher_client()`` and the Firestore client, same settings):

- floors: awaited publish, record create, both at once (what queue mode does), and a raw
  credit transaction (``get_all`` of event + catalog + order, then user increment, ledger,
  order and event status);
- the webhook over HTTP through functions-framework (queue and sync mode), sequentially
  (interleaved with the floors, round by round) and at concurrency 8 and 32;
- the worker through push: an idle event's time from record to processed, then a backlog of
  many customers' events and a burst of one customer's events released at once, beside a raw
  transaction loop doing the same writes;
- cold start: a fresh process importing ``main`` and answering its first webhook, beside a bare
  import of the Google client libraries.

docs/benchmarks/README.md explains the method and how to read the results.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime as dt
import http.client
import importlib.metadata
import itertools
import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from google.cloud import firestore, pubsub_v1
from paynow import config
from paynow.adapters import documents, firestore_store, pubsub_publisher
from paynow.adapters.secrets import StaticSecrets
from paynow.domain import payloads
from paynow.domain.events import PayNowEvent, normalize, parse_envelope
from paynow.domain.messages import QueueMessage
from paynow.domain.records import FINAL_STATES
from paynow.domain.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from paynow.service.webhook import WebhookService

from scripts.local import localstack

DEFAULT_OUT = localstack.ROOT / "docs" / "benchmarks"
PRODUCT, QUANTITY, LINE_CENTS = "gems-100", 2, 998
CALL_TIMEOUT = firestore_store.CALL_TIMEOUT_SECONDS
WEBHOOK_PATH_TIMEOUT = 60.0
CLIENT_LIBRARIES = "google.cloud.firestore, google.cloud.pubsub_v1, flask, functions_framework"
CLAIMED_SYNC_OVER_QUEUE = (5.0, 10.0)
POLL_WINDOW, POLL_SECONDS = 25, 0.05
HTTP_NOOP = "HTTP hop alone (GET -> 405)"
QUEUE_FLOOR = "floor: publish ∥ create"
SYNC_FLOOR = "floor: credit transaction"


@dataclass(frozen=True)
class Size:
    sequential: int  # samples per sequential series (floors and both webhooks)
    rounds: int  # the sequential series run interleaved, in this many rounds
    per_level: int  # requests per concurrency level
    levels: tuple[int, ...]
    idle_events: int  # worker: events sent one at a time, each awaited
    many: int  # worker: events over as many customers, released at once
    burst: int  # worker: events of one customer, released at once
    cold_runs: int  # fresh processes: bare import and import + first answer
    served_cold_runs: int  # functions-framework started and asked until it answers


SIZES = {
    "tiny": Size(24, 2, 64, (8, 32), 2, 16, 8, 2, 0),
    "small": Size(200, 5, 320, (8, 32), 10, 200, 100, 5, 3),
    "full": Size(1000, 10, 1600, (8, 32), 30, 1000, 300, 9, 5),
}


# --- samples -----------------------------------------------------------------


@dataclass
class Series:
    """Latencies of one measured operation (ms), with the wall time they took and failures."""

    name: str
    ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def p(self, q: float) -> float:
        return float(np.percentile(self.ms, q)) if self.ms else float("nan")

    @property
    def rate(self) -> float:
        return len(self.ms) / self.seconds if self.seconds > 0 else float("nan")

    def extend(self, other: Series) -> None:
        self.ms += other.ms
        self.seconds += other.seconds
        self.errors += other.errors


@dataclass
class WorkerRun:
    """Events pushed to the worker: when each was processed, relative to ``start`` (s)."""

    name: str
    events: int
    after_start_s: list[float]
    failed: int

    @property
    def lag_s(self) -> float:
        return min(self.after_start_s) if self.after_start_s else float("nan")

    @property
    def rate(self) -> float:
        """Steady state: events after the first / time from the first processed to the last."""
        done = sorted(self.after_start_s)
        span = done[-1] - done[0] if len(done) > 1 else 0.0
        return (len(done) - 1) / span if span > 0 else float("nan")

    def p(self, q: float) -> float:
        return float(np.percentile(self.after_start_s, q)) if self.after_start_s else float("nan")


@dataclass
class Results:
    size_name: str
    size: Size
    started: dt.datetime
    load_before: tuple[float, float, float]
    sequential: dict[str, Series] = field(default_factory=dict)
    concurrent: dict[tuple[str, int], Series] = field(default_factory=dict)
    worker_idle: Series = field(default_factory=lambda: Series("worker idle"))
    worker: dict[str, WorkerRun] = field(default_factory=dict)
    raw_loops: dict[str, Series] = field(default_factory=dict)
    cold: dict[str, list[float]] = field(default_factory=dict)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    elapsed_s: float = 0.0


def measure(name: str, op: Callable[[], float], n: int, threads: int = 1) -> Series:
    """Run ``op`` ``n`` times on ``threads`` threads; a raised exception counts as an error."""
    series = Series(name)
    lock = threading.Lock()
    bar = tqdm(total=n, desc=f"{name} x{threads}", leave=False, disable=None)

    def one() -> None:
        try:
            ms = op()
        except Exception as exc:
            with lock:
                series.errors += 1
            if series.errors <= 3:
                print(f"  {name}: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        else:
            with lock:
                series.ms.append(ms)
        bar.update(1)

    started = time.perf_counter()
    if threads == 1:
        for _ in range(n):
            one()
    else:
        with cf.ThreadPoolExecutor(threads, thread_name_prefix="bench") as pool:
            for future in [pool.submit(one) for _ in range(n)]:
                future.result()
    series.seconds = time.perf_counter() - started
    bar.close()
    return series


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the stack -------------------------------------------------------------


@dataclass
class BenchStack:
    pubsub_host: str
    firestore_host: str
    worker_url: str
    queue_url: str
    sync_url: str
    processes: list[localstack.Process]

    def env(self, mode: str) -> dict[str, str]:
        return localstack.function_env(
            pubsub_host=self.pubsub_host, firestore_host=self.firestore_host, mode=mode
        )


@contextlib.contextmanager
def bench_stack() -> Iterator[BenchStack]:
    """``localstack``'s pieces, started side by side, under log names of their own.

    Not ``localstack.up``: it serves one webhook (the bench needs both modes) and writes
    ``worker.log``/``webhook.log``, which a developer's running stack is using.
    """
    procs: list[localstack.Process] = []

    def started(futures: list[cf.Future[localstack.Process]]) -> list[localstack.Process]:
        """Wait for all, track every one that started, then raise the first failure."""
        out, failure = [], None
        for future in futures:
            try:
                out.append(future.result())
            except Exception as exc:
                failure = failure or exc
        procs.extend(out)
        if failure is not None:
            raise failure
        return out

    try:
        with cf.ThreadPoolExecutor(3) as pool:
            pubsub, fs = started(
                [
                    pool.submit(localstack.start_pubsub_emulator, localstack.free_port()),
                    pool.submit(localstack.start_firestore_emulator, localstack.free_port()),
                ]
            )
            ports = [localstack.free_port() for _ in range(3)]
            worker_url, queue_url, sync_url = (f"http://127.0.0.1:{port}/" for port in ports)
            stack = BenchStack(pubsub.address, fs.address, worker_url, queue_url, sync_url, procs)
            with localstack.emulator_env(pubsub.address, fs.address):
                localstack.provision_pubsub(stack.worker_url)
                localstack.seed_catalog()
            targets = [("worker", "sync"), ("webhook", "queue"), ("webhook", "sync")]
            started(
                [
                    pool.submit(
                        localstack.start_function,
                        f"bench-{kind}-{mode}-{port}",
                        f"paynow_{kind}",
                        port,
                        stack.env(mode),
                    )
                    for (kind, mode), port in zip(targets, ports, strict=True)
                ]
            )
        with localstack.emulator_env(pubsub.address, fs.address):
            yield stack
    finally:
        for proc in reversed(procs):
            proc.stop()


# --- what is measured ----------------------------------------------------------


_local = threading.local()


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    """One request on this thread's kept-alive connection to ``url``'s server.

    ``http.client`` rather than ``requests``: requests spends about 1.5 ms of its own
    per call here (measured: a GET answered 405 took 3.2 ms through it, 1.2 ms through
    http.client), which would be counted as the webhook's answer time.
    """
    parts = urlsplit(url)
    key = (parts.hostname, parts.port)
    conns: dict[Any, http.client.HTTPConnection] = _local.__dict__.setdefault("conns", {})
    for attempt in (1, 2):
        conn = conns.get(key)
        if conn is None:
            conn = conns[key] = http.client.HTTPConnection(
                str(parts.hostname), parts.port, timeout=WEBHOOK_PATH_TIMEOUT
            )
        try:
            conn.request(method, parts.path or "/", body=body, headers=headers or {})
            answer = conn.getresponse()
            return Answer(answer.status, answer.read())
        except (http.client.HTTPException, ConnectionError):
            conn.close()  # the server closed a kept-alive connection: open a new one once
            del conns[key]
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Ids:
    event: str
    order: str
    customer: str
    user: str


class Bench:
    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        self.db = firestore_store.client(localstack.PROJECT)
        self.publisher = pubsub_publisher.publisher_client()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.topic = self.publisher.topic_path(localstack.PROJECT, localstack.TOPIC)
        self.push = self.subscriber.subscription_path(
            localstack.PROJECT, localstack.PUSH_SUBSCRIPTION
        )
        self.store = firestore_store.FirestoreEventStore(self.db, ttl_days=30)
        self.services = {mode: self._service(mode) for mode in ("queue", "sync")}
        self._run = uuid.uuid4().hex[:8]
        self._counter = itertools.count()

    def _service(self, mode: str) -> WebhookService:
        """The webhook's service on these same clients: the code without the HTTP hop."""
        settings = config.load(self.stack.env(mode))
        publisher = pubsub_publisher.PubSubPublisher(
            self.publisher, settings.topic_path, settings.dlq_topic_path
        )
        return WebhookService(
            settings, self.store, publisher, StaticSecrets(localstack.DEMO_SECRET)
        )

    # ids and payloads

    def ids(self, kind: str, customer: str | None = None) -> Ids:
        n = f"bench-{self._run}-{kind}-{next(self._counter)}"
        cust = customer or f"{n}-c"
        return Ids(n, f"{n}-o", cust, f"{cust}-u")

    @staticmethod
    def doc(ids: Ids) -> dict[str, Any]:
        return payloads.order_completed(
            ids.event, ids.order, ids.customer, ids.user, [(PRODUCT, QUANTITY, LINE_CENTS)]
        )

    def event(self, ids: Ids) -> PayNowEvent:
        return normalize(parse_envelope(payloads.encode(self.doc(ids))), "user_id")

    def record(self, event: PayNowEvent, mode: str) -> dict[str, Any]:
        # The very document the webhook creates, so the floor writes what the code writes.
        record: dict[str, Any] = self.store._new_record(event, mode)()
        return record

    # floors: the code's clients, called directly

    def _publish(self, event: PayNowEvent) -> Any:
        message = QueueMessage.for_event(event)
        return self.publisher.publish(
            self.topic, message.data(), ordering_key=message.ordering_key, **message.attributes()
        )

    def _queued_change(self, event: PayNowEvent, delta: int) -> tuple[Any, dict[str, Any]]:
        """The customer's queued count, moved in the same commit as the record (as the code)."""
        ref = self.db.collection(firestore_store.CUSTOMERS).document(str(event.customer_id))
        change = documents.queued_change(delta, firestore.SERVER_TIMESTAMP)
        return ref, {**change, "queued": firestore.Increment(delta)}

    def _create(self, event: PayNowEvent) -> None:
        batch = self.db.batch()
        batch.create(
            self.db.collection(firestore_store.EVENTS).document(event.event_id),
            self.record(event, "queue"),
        )
        batch.set(*self._queued_change(event, +1), merge=True)
        batch.commit(timeout=CALL_TIMEOUT)

    def floor_publish(self) -> float:
        event = self.event(self.ids("pub"))
        return timed(lambda: self._publish(event).result(timeout=WEBHOOK_PATH_TIMEOUT))

    def floor_create(self) -> float:
        event = self.event(self.ids("create"))
        return timed(lambda: self._create(event))

    def floor_publish_and_create(self) -> float:
        event = self.event(self.ids("both"))

        def both() -> None:
            pending = self._publish(event)
            self._create(event)
            pending.result(timeout=WEBHOOK_PATH_TIMEOUT)

        return timed(both)

    def credit(self, event: PayNowEvent, ids: Ids, create_record: bool) -> None:
        """The raw credit transaction: one ``get_all``, then the writes the code makes.

        Inline (``create_record``) it reads the customer's queued count too, as sync mode
        does; on a queued record it moves that count, as the worker does.
        """
        col = self.db.collection
        event_ref = col(firestore_store.EVENTS).document(ids.event)
        catalog_ref = col(firestore_store.CATALOG).document(PRODUCT)
        order_ref = col(firestore_store.ORDERS).document(ids.order)
        user_ref = col(firestore_store.USERS).document(ids.user)
        counter_ref, counter_change = self._queued_change(event, -1)
        record = self.record(event, "sync") if create_record else None
        reads = [event_ref, catalog_ref, order_ref] + ([counter_ref] if create_record else [])

        def apply(txn: Any) -> None:
            snaps = {s.reference.path: s for s in txn.get_all(reads, timeout=CALL_TIMEOUT)}
            delta = int(snaps[catalog_ref.path].get("points")) * QUANTITY
            now = firestore.SERVER_TIMESTAMP
            txn.set(user_ref, {"points": firestore.Increment(delta), "updatedAt": now}, merge=True)
            txn.set(
                user_ref.collection(firestore_store.LEDGER).document(ids.event),
                {
                    "delta": delta,
                    "eventId": ids.event,
                    "eventType": event.event_type,
                    "orderId": ids.order,
                    "reason": "order_completed",
                    "createdAt": now,
                },
            )
            txn.set(
                order_ref,
                {
                    "userId": ids.user,
                    "customerId": ids.customer,
                    "totalAmount": LINE_CENTS,
                    "currency": "USD",
                    "pointsCredited": delta,
                    "refundedAmount": 0,
                    "pointsReversed": 0,
                    "updatedAt": now,
                },
            )
            final = {"status": "processed", "processedAt": now, "userId": ids.user}
            if record is None:
                txn.update(event_ref, final)
                txn.set(counter_ref, counter_change, merge=True)
            else:
                txn.set(event_ref, {**record, **final})

        firestore.transactional(apply)(self.db.transaction(max_attempts=8))

    def floor_credit(self) -> float:
        ids = self.ids("txn")
        event = self.event(ids)
        return timed(lambda: self.credit(event, ids, create_record=True))

    # the webhook over HTTP

    def webhook(self, url: str, expect: str, ids: Ids | None = None) -> float:
        body, headers = payloads.signed(self.doc(ids or self.ids(expect)), localstack.DEMO_SECRET)
        started = time.perf_counter()
        answer = request("POST", url, body, headers)
        ms = (time.perf_counter() - started) * 1000
        status = answer.json().get("status") if answer.status == 200 else None
        if status != expect:
            raise RuntimeError(f"webhook answered {answer.status} {answer.body[:200]!r}")
        return ms

    def queue_webhook(self) -> float:
        return self.webhook(self.stack.queue_url, "accepted")

    def sync_webhook(self) -> float:
        return self.webhook(self.stack.sync_url, "processed")

    def http_noop(self) -> float:
        """The HTTP hop alone: the queue webhook's server answering a GET with 405."""
        started = time.perf_counter()
        answer = request("GET", self.stack.queue_url)
        ms = (time.perf_counter() - started) * 1000
        if answer.status != 405:
            raise RuntimeError(f"GET answered {answer.status}")
        return ms

    def service(self, mode: str, expect: str) -> float:
        body, headers = payloads.signed(self.doc(self.ids(f"svc{mode}")), localstack.DEMO_SECRET)
        sig, stamp = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
        started = time.perf_counter()
        result = self.services[mode].accept(body, sig, stamp)
        ms = (time.perf_counter() - started) * 1000
        if result.status != expect:
            raise RuntimeError(f"service answered {result.status}")
        return ms

    def queue_service(self) -> float:
        return self.service("queue", "accepted")

    def sync_service(self) -> float:
        return self.service("sync", "processed")

    # the worker, through push

    def detach_worker(self) -> None:
        """No push subscription: published messages go nowhere, the worker stays idle."""
        with contextlib.suppress(Exception):
            self.subscriber.delete_subscription(request={"subscription": self.push})

    def attach_worker(self) -> None:
        localstack.provision_pubsub(self.stack.worker_url)

    def hold(self) -> None:
        """Make the push subscription a pull one: messages wait there."""
        self.subscriber.modify_push_config(subscription=self.push, push_config={})

    def release(self) -> float:
        """Push again; returns the wall-clock time the backlog was let go."""
        self.subscriber.modify_push_config(
            subscription=self.push, push_config={"push_endpoint": self.stack.worker_url}
        )
        return time.time()

    def wait_final(self, all_ids: list[Ids], timeout: float) -> dict[str, dict[str, Any]]:
        """Poll until every event has left ``received``; returns the records.

        Light on purpose, or waiting would slow what it measures: only the first
        ``POLL_WINDOW`` pending records are read at a time (the worker goes roughly in
        order, so the window follows it). A Firestore listener cut the worker's rate about
        fourfold (the emulator re-runs the query on each write); reading every pending
        record is thousands of reads a second at 1000 events. The times come from the
        records' server timestamps, not from when the poll saw them.
        """
        col = self.db.collection(firestore_store.EVENTS)
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

    def worker_idle(self, n: int) -> Series:
        """One event at a time: webhook record (receivedAt) to points (processedAt)."""
        series = Series("worker idle")
        for _ in range(n):
            ids = self.ids("idle")
            self.webhook(self.stack.queue_url, "accepted", ids)
            record = self.wait_final([ids], timeout=60)[ids.event]
            if record.get("status") != "processed":
                series.errors += 1
                continue
            gap = record["processedAt"].timestamp() - record["receivedAt"].timestamp()
            series.ms.append(gap * 1000)
        return series

    def worker_backlog(self, name: str, all_ids: list[Ids], threads: int) -> WorkerRun:
        """Accept ``all_ids`` while the subscription holds them, then release them at once."""
        self.hold()
        pending = iter(all_ids)
        lock = threading.Lock()

        def send() -> float:
            with lock:
                ids = next(pending)
            return self.webhook(self.stack.queue_url, "accepted", ids)

        sent = measure(f"{name}: accept", send, len(all_ids), threads)
        if sent.errors:
            raise RuntimeError(f"{name}: {sent.errors} events were not accepted")
        start = self.release()
        records = self.wait_final(all_ids, timeout=120 + len(all_ids))
        processed = [r for r in records.values() if r.get("status") == "processed"]
        return WorkerRun(
            name,
            len(all_ids),
            sorted(r["processedAt"].timestamp() - start for r in processed),
            len(records) - len(processed),
        )

    def raw_loop(self, name: str, all_ids: list[Ids]) -> Series:
        """The worker's floor: records as the webhook leaves them, then one transaction each."""
        events = [self.event(i) for i in all_ids]
        for start in range(0, len(events), 200):
            batch = self.db.batch()
            for event in events[start : start + 200]:
                ref = self.db.collection(firestore_store.EVENTS).document(event.event_id)
                batch.create(ref, self.record(event, "queue"))
                batch.set(*self._queued_change(event, +1), merge=True)
            batch.commit()
        pending = iter(zip(events, all_ids, strict=True))
        return measure(name, lambda: timed(lambda: self.credit(*next(pending), False)), len(events))


# --- cold start ----------------------------------------------------------------

_COLD_CHILD = """
import json, os, sys, time
import main
imported = time.monotonic()
import flask
body, headers = sys.argv[1].encode(), json.loads(sys.argv[2])
with flask.Flask("cold").test_request_context("/", method="POST", data=body, headers=headers):
    answer = main.paynow_webhook(flask.request)
answered = time.monotonic()
print("BENCH " + json.dumps({"imported": imported, "answered": answered,
                             "status": answer.status_code}), flush=True)
os._exit(0)
"""

_BARE_CHILD = f"""
import time
import {CLIENT_LIBRARIES}
print("BENCH " + str(time.monotonic()), flush=True)
"""


def _child(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run a fresh interpreter; returns when it was started (monotonic) and its BENCH line."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", *argv],
        cwd=localstack.FUNCTIONS,
        env={**env, "PYTHONPATH": str(localstack.FUNCTIONS)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    return started, lines[-1].removeprefix("BENCH ")


def cold_start(bench: Bench, runs: int, served_runs: int) -> dict[str, list[float]]:
    """Fresh processes, bare import and cold start alternating, in turn first (same noise)."""
    env = bench.stack.env("queue")
    out: dict[str, list[float]] = {
        "bare import": [],
        "import main": [],
        "import main + first answer": [],
    }
    for run in tqdm(range(runs), desc="cold start", leave=False, disable=None):
        for which in ("bare", "cold") if run % 2 == 0 else ("cold", "bare"):
            if which == "bare":
                started, line = _child([_BARE_CHILD], env)
                out["bare import"].append((float(line) - started) * 1000)
                continue
            body, headers = payloads.signed(bench.doc(bench.ids("cold")), localstack.DEMO_SECRET)
            started, line = _child([_COLD_CHILD, body.decode(), json.dumps(headers)], env)
            child = json.loads(line)
            if child["status"] != 200:
                raise RuntimeError(f"cold webhook answered {child['status']}")
            out["import main"].append((child["imported"] - started) * 1000)
            out["import main + first answer"].append((child["answered"] - started) * 1000)
    if served_runs:
        out["functions-framework: first 405"] = []
        out["functions-framework: first 200"] = []
    for _ in range(served_runs):
        port = localstack.free_port()
        started = time.monotonic()
        proc = localstack.start_function(f"bench-cold-{port}", "paynow_webhook", port, env)
        try:
            listening = time.monotonic()
            bench.webhook(proc.address, "accepted")
            answered = time.monotonic()
        finally:
            proc.stop()
        out["functions-framework: first 405"].append((listening - started) * 1000)
        out["functions-framework: first 200"].append((answered - started) * 1000)
    return out


# --- the run -----------------------------------------------------------------


def run(size_name: str) -> Results:
    size = SIZES[size_name]
    res = Results(size_name, size, dt.datetime.now(dt.UTC), os.getloadavg())
    started = time.perf_counter()
    say(f"size {size_name}: starting emulators and functions")
    # The in-process service logs to stdout as the functions do: to a file, as theirs.
    service_log = localstack.LOGS / f"bench-service-{os.getpid()}.log"
    service_log.parent.mkdir(parents=True, exist_ok=True)
    with service_log.open("w") as log, contextlib.redirect_stdout(log), bench_stack() as stack:
        bench = Bench(stack)
        bench.detach_worker()

        say("warming up clients and servers")
        warm = (bench.floor_publish_and_create, bench.floor_credit, bench.queue_service)
        for op in (*warm, bench.sync_service, bench.queue_webhook, bench.sync_webhook) * 5:
            op()

        sequential: list[tuple[str, Callable[[], float]]] = [
            (HTTP_NOOP, bench.http_noop),
            ("floor: publish", bench.floor_publish),
            ("floor: create", bench.floor_create),
            (QUEUE_FLOOR, bench.floor_publish_and_create),
            ("service in-process: queue", bench.queue_service),
            ("webhook queue", bench.queue_webhook),
            (SYNC_FLOOR, bench.floor_credit),
            ("service in-process: sync", bench.sync_service),
            ("webhook sync", bench.sync_webhook),
        ]
        say(f"sequential: {size.sequential} each, interleaved in {size.rounds} rounds")
        res.sequential = {name: Series(name) for name, _ in sequential}
        chunk = max(1, size.sequential // size.rounds)
        for _ in range(size.rounds):
            for name, op in sequential:
                res.sequential[name].extend(measure(name, op, chunk))

        say(f"concurrency {size.levels}: {size.per_level} requests each")
        concurrent = [
            ("webhook queue", bench.queue_webhook),
            (QUEUE_FLOOR, bench.floor_publish_and_create),
            ("webhook sync", bench.sync_webhook),
            (SYNC_FLOOR, bench.floor_credit),
        ]
        for level in size.levels:
            for name, op in concurrent:
                res.concurrent[name, level] = measure(name, op, size.per_level, level)

        say(f"cold start: {size.cold_runs} fresh processes, {size.served_cold_runs} served")
        res.cold = cold_start(bench, size.cold_runs, size.served_cold_runs)

        say("worker: push attached")
        bench.attach_worker()
        bench.worker_idle(1)  # the worker's first request creates its clients
        res.worker_idle = bench.worker_idle(size.idle_events)
        many = [bench.ids("many") for _ in range(size.many)]
        res.worker["many customers"] = bench.worker_backlog("many customers", many, 8)
        res.raw_loops["many customers"] = bench.raw_loop(
            "raw loop: many customers", [bench.ids("rawmany") for _ in range(size.many)]
        )
        customer = f"bench-{uuid.uuid4().hex[:8]}-burst-c"
        burst = [bench.ids("burst", customer) for _ in range(size.burst)]
        res.worker["one customer"] = bench.worker_backlog("one customer", burst, 1)
        raw_customer = f"bench-{uuid.uuid4().hex[:8]}-rawburst-c"
        res.raw_loops["one customer"] = bench.raw_loop(
            "raw loop: one customer", [bench.ids("rawburst", raw_customer) for _ in burst]
        )
        say("stopping the stack")
    res.load_after = os.getloadavg()
    res.elapsed_s = time.perf_counter() - started
    return res


# --- report --------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    what: str
    value: float
    detail: str
    target: str
    ok: bool | None  # None: reported, not judged


def checks(res: Results) -> list[Check]:
    seq = res.sequential
    queue, both = seq["webhook queue"], seq[QUEUE_FLOOR]
    sync, credit = seq["webhook sync"], seq[SYNC_FLOOR]
    worker, raw = res.worker["many customers"], res.raw_loops["many customers"]
    cold = float(np.median(res.cold["import main + first answer"]))
    bare = float(np.median(res.cold["bare import"]))

    def ratio(what: str, a: float, b: float, unit: str, target: str, limit: float) -> Check:
        value = a / b if b else float("nan")
        ok = value >= limit if target.startswith("≥") else value <= limit
        return Check(what, value, f"{a:.1f} / {b:.1f} {unit}", target, bool(ok))

    low, high = CLAIMED_SYNC_OVER_QUEUE
    return [
        ratio(
            "queue answer p50 / publish ∥ create floor p50",
            queue.p(50),
            both.p(50),
            "ms",
            "≤ 1.5x",
            1.5,
        ),
        ratio(
            "queue answer p99 / publish ∥ create floor p99",
            queue.p(99),
            both.p(99),
            "ms",
            "≤ 2x",
            2.0,
        ),
        ratio(
            "sync answer p50 / credit transaction floor p50",
            sync.p(50),
            credit.p(50),
            "ms",
            "≤ 1.5x",
            1.5,
        ),
        Check(
            "sync answer p50 / queue answer p50",
            sync.p(50) / queue.p(50),
            f"{sync.p(50):.1f} / {queue.p(50):.1f} ms",
            f"seed claimed {low:g}-{high:g}x",
            None,
        ),
        ratio(
            "worker events/s (many customers) / raw transaction loop",
            worker.rate,
            raw.rate,
            "events/s",
            "≥ 0.5x",
            0.5,
        ),
        ratio(
            "cold start (import main + first answer) / bare import",
            cold,
            bare,
            "ms (medians)",
            "≤ 1.3x",
            1.3,
        ),
    ]


def _verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("PASS" if ok else "**FAIL**")


def _machine() -> list[str]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{pkg} {importlib.metadata.version(pkg)}"
        for pkg in ("functions-framework", "google-cloud-firestore", "google-cloud-pubsub")
    )
    return [
        f"{os.cpu_count()} cores ({model}), {platform.platform()}",
        f"Python {platform.python_version()}; {versions}",
    ]


def markdown(res: Results, all_checks: list[Check]) -> str:
    s = res.size
    lb, la = res.load_before, res.load_after
    lines = [
        "# Benchmark results",
        "",
        f"Written by `scripts/proof/bench.py --size {res.size_name}` on "
        f"{res.started:%Y-%m-%d %H:%M} UTC in {res.elapsed_s:.0f} s. "
        "Method and caveats: [README.md](README.md).",
        "",
        *(f"- {line}" for line in _machine()),
        f"- load average (1/5/15 min) before {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}, "
        f"after {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}",
        f"- sizes: {s.sequential} sequential samples per series in {s.rounds} interleaved rounds; "
        f"{s.per_level} requests per concurrency level {', '.join(map(str, s.levels))}; "
        f"worker: {s.idle_events} idle events, {s.many} events over {s.many} customers, "
        f"a burst of {s.burst} from one customer; {s.cold_runs} cold starts"
        + (f" (+{s.served_cold_runs} served)" if s.served_cold_runs else ""),
        "- local emulators: push delivers at most 2 messages in flight per subscription "
        "and one at a time per ordering key, which bounds the worker's throughput here",
        "",
        "## Targets",
        "",
        "| ratio | measured | target | verdict |",
        "|---|---|---|---|",
        *(
            f"| {c.what} | {c.value:.2f}x ({c.detail}) | {c.target} | {_verdict(c.ok)} |"
            for c in all_checks
        ),
        "",
        "## Answer times, sequential (ms)",
        "",
        "| series | n | p50 | p95 | p99 | errors |",
        "|---|---|---|---|---|---|",
        *(
            f"| {x.name} | {len(x.ms)} | {x.p(50):.1f} | {x.p(95):.1f} | {x.p(99):.1f} "
            f"| {x.errors} |"
            for x in res.sequential.values()
        ),
        "",
        "## Where the time goes (p50, ms)",
        "",
        "Each step adds one layer: the raw client calls, then the code's service on the same "
        "clients in the bench's process, then the webhook over HTTP through functions-framework.",
        "",
        "| mode | floor | service in-process | webhook over HTTP | code over floor "
        "| HTTP over service | HTTP hop alone |",
        "|---|---|---|---|---|---|---|",
        *_breakdown(res),
        "",
        "## By concurrency",
        "",
        "Sequential rows are the interleaved series above (requests/s = n / time spent in them).",
        "",
        "| series | concurrency | requests/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, level, x in _by_concurrency(res):
        lines.append(
            f"| {name} | {level} | {x.rate:.1f} | {x.p(50):.1f} | {x.p(95):.1f} "
            f"| {x.p(99):.1f} | {x.errors} |"
        )
    idle = res.worker_idle
    lines += [
        "",
        "## Worker (through push)",
        "",
        f"Idle: {len(idle.ms)} events one at a time, webhook record to processed: "
        f"p50 {idle.p(50):.0f} ms, p99 {idle.p(99):.0f} ms"
        + (f", {idle.errors} not processed" if idle.errors else "")
        + ".",
        "",
        "Backlogs: accepted while the subscription held them, then released at once. "
        "Events/s is steady state (first processed to last); times are from the release.",
        "",
        "| scenario | events | events/s | first after | p50 to processed | p99 to processed "
        "| not processed |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in res.worker.values():
        lines.append(
            f"| worker: {w.name} | {w.events} | {w.rate:.1f} | {w.lag_s:.2f} s "
            f"| {w.p(50):.2f} s | {w.p(99):.2f} s | {w.failed} |"
        )
    for name, x in res.raw_loops.items():
        lines.append(
            f"| raw transaction loop: {name} | {len(x.ms)} | {x.rate:.1f} | - "
            f"| {x.p(50):.1f} ms each | {x.p(99):.1f} ms each | {x.errors} |"
        )
    lines += [
        "",
        "## Cold start (ms, fresh process from spawn)",
        "",
        "| measurement | runs | median | min | max |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {len(v)} | {np.median(v):.0f} | {min(v):.0f} | {max(v):.0f} |"
            for name, v in res.cold.items()
            if v
        ),
        "",
        f"Bare import: `import {CLIENT_LIBRARIES}`. Cold start: import `main`, then answer one "
        "signed webhook (queue mode) through a Flask test request, clients created on the way.",
        "",
        "![latency](latency.png)",
        "",
        "![throughput](throughput.png)",
        "",
    ]
    return "\n".join(lines)


def _breakdown(res: Results) -> list[str]:
    seq, hop = res.sequential, res.sequential[HTTP_NOOP].p(50)
    rows = []
    for mode, floor in (("queue", QUEUE_FLOOR), ("sync", SYNC_FLOOR)):
        f = seq[floor].p(50)
        svc = seq[f"service in-process: {mode}"].p(50)
        web = seq[f"webhook {mode}"].p(50)
        rows.append(
            f"| {mode} | {f:.1f} | {svc:.1f} | {web:.1f} | {svc - f:+.1f} | {web - svc:+.1f} "
            f"| {hop:.1f} |"
        )
    return rows


def _by_concurrency(res: Results) -> list[tuple[str, int, Series]]:
    names = list(dict.fromkeys(name for name, _ in res.concurrent))
    rows = []
    for name in names:
        rows.append((name, 1, res.sequential[name]))
        rows += [(name, level, res.concurrent[name, level]) for level in res.size.levels]
    return rows


def charts(res: Results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    def log_ms(axis: Any) -> None:
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(ticker.NullFormatter())

    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    paths = {
        "queue": [HTTP_NOOP, "floor: publish", "floor: create", QUEUE_FLOOR],
        "sync": [HTTP_NOOP, SYNC_FLOOR],
    }
    for ax, (mode, names) in zip(axes, paths.items(), strict=False):
        for name in [*names, f"service in-process: {mode}", f"webhook {mode}"]:
            x = res.sequential[name]
            if x.ms:
                data = np.sort(x.ms)
                style = "-" if name.startswith("webhook") else "--"
                ax.plot(data, np.arange(1, len(data) + 1) / len(data), style, label=name)
        ax.set(
            xscale="log",
            xlabel="ms (log)",
            ylabel="fraction answered",
            title=f"{mode} mode, sequential: answer time distribution",
        )
        log_ms(ax.xaxis)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    right = axes[2]
    rows = [(n, lvl, x) for n, lvl, x in _by_concurrency(res) if n.startswith("webhook")]
    right.boxplot(
        [x.ms or [float("nan")] for _, _, x in rows],
        tick_labels=[f"{n.removeprefix('webhook ')}\nx{lvl}" for n, lvl, _ in rows],
        whis=(1, 99),
        showfliers=False,
    )
    right.set(yscale="log", ylabel="ms (log)", title="Webhook answer time by concurrency (p1-p99)")
    log_ms(right.yaxis)
    right.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    by_name: dict[str, list[tuple[int, float]]] = {}
    for name, level, x in _by_concurrency(res):
        by_name.setdefault(name, []).append((level, x.rate))
    for name, points in by_name.items():
        levels, rates = zip(*points, strict=True)
        style = "--" if name.startswith("floor") else "-"
        label = name if name.startswith("webhook") else f"{name} (in-process)"
        left.plot(levels, rates, style, marker="o", label=label)
    left.set(
        xscale="log",
        xticks=[1, *res.size.levels],
        xticklabels=["1", *map(str, res.size.levels)],
        xlabel="concurrent clients",
        ylabel="requests/s",
        title="Throughput by concurrency",
    )
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    labels, values, colors = [], [], []
    for name, w in res.worker.items():
        labels += [f"worker\n{name}", f"raw loop\n{name}"]
        values += [w.rate, res.raw_loops[name].rate]
        colors += ["tab:blue", "tab:gray"]
    right.bar_label(right.bar(labels, values, color=colors), fmt="%.0f")
    right.set(ylabel="events/s", title="Worker through push vs raw transaction loop")
    right.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a ratio misses its target"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.size)
    all_checks = checks(res)
    (args.out / "results.md").write_text(markdown(res, all_checks))
    charts(res, args.out)
    for c in all_checks:
        print(f"{_verdict(c.ok).strip('*'):5} {c.value:6.2f}x  {c.what} ({c.detail}; {c.target})")
    print(f"results: {args.out / 'results.md'} ({res.elapsed_s:.0f} s)")
    failed = [c for c in all_checks if c.ok is False]
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
