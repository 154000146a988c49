r"""The chaos run: thousands of PayNow events through the local stack while it is being broken.

    .venv/bin/python scripts/proof/chaos.py --seed 4242 --events 2000 --customers 200  # full run
    .venv/bin/python scripts/proof/chaos.py --seed 7 --events 300 --customers 40 \
        --kills 2 --firestore-cuts 1 --pubsub-cuts 1                             # CI's small seed

docs/chaos.md describes the run, its invariants and the last full run's figures.

It starts its own emulators and functions on free ports (``scripts.local.localstack``), runs in
queue mode, and meanwhile:

- delivers a share of the webhooks twice, some copies at the same moment as the original,
  some after the original's 2xx; every delivery is retried with backoff until it gets a 2xx,
  as PayNow does with any answer above 299;
- kills the worker (a functions-framework process of its own) with SIGKILL and restarts it
  on the same port, which the push subscription points at;
- cuts the functions' Firestore and Pub/Sub connections for a few seconds through TCP
  proxies (``scripts/local/tcp_proxy.py``): the production code has no fault hooks;
- switches from queue to sync mode halfway with messages still in flight: a sync-mode
  webhook is started, the second half goes to it, with PayNow-style retries of some
  first-half events; the queue-mode webhook is stopped once its last request is answered.

Then it runs ``paynow_reconcile`` once, waits for quiescence and checks the invariants
against its own model of the points rules (written here from ARCHITECTURE.md, not imported
from ``paynow.domain.points``, so the check is independent of the code it checks). The seed
fixes the events, the duplicates and the fault plan (faults fire at event counts, not at
clock times), so ``--seed N`` replays a failure's scenario; the interleavings a loaded
machine produces vary from run to run.

It prints the faults injected, the events by outcome, one PASS/FAIL line per invariant and a
summary line last; it exits 1 when an invariant fails (2 when the stack itself could not run)
and writes every webhook answer and fault to a JSON report (``--report``) as evidence.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import heapq
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from paynow.domain import payloads

from scripts.local import localstack
from scripts.local.tcp_proxy import TcpProxy

SECRET = localstack.DEMO_SECRET
CATALOG = dict(localstack.DEMO_CATALOG)  # seeded into pointsCatalog and read by the model
PACKS = ("gems-100", "gems-550", "gems-1200")
SUBSCRIPTION_PRODUCT = "vip-monthly"
UNKNOWN_PRODUCT = "gems-retired-9000"  # never in the catalog
IGNORED_TYPES = (
    "ON_DELIVERY_ITEM_ADDED",
    "ON_DELIVERY_ITEM_ACTIVATED",
    "ON_DELIVERY_ITEM_USED",
    "ON_TRIAL_ACTIVATED",
)
UNIT_PRICES = (99, 199, 249, 499, 999, 1999)
PROCESSED, IGNORED, DEAD_LETTERED, RECEIVED = "processed", "ignored", "dead_lettered", "received"
FINAL = frozenset({PROCESSED, IGNORED, DEAD_LETTERED})
OUTAGE_CODES = frozenset({"unavailable", "deadline_exceeded"})

REQUEST_TIMEOUT = 60.0  # one webhook request; the functions bound their own calls to ~10-20 s
DELIVERY_DEADLINE = 300.0  # a delivery still without a 2xx after this is reported as lost
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 4.0
RECONCILE_AFTER_SECONDS = 5
SENDER_THREADS, COPY_THREADS = 64, 16  # mostly asleep in backoff: one lane each
RESTART_TRIES = 5


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the model: the points rules of ARCHITECTURE.md, written independently ----------------


@dataclass(frozen=True)
class Expect:
    """How an event must end: its status, its error code, and whether it leaves a ledger entry."""

    status: str
    code: str | None = None
    user: str | None = None
    ledger: bool = False


@dataclass
class OrderModel:
    user: str
    customer: str
    total: int
    credited: int
    refunded: int = 0
    reversed: int = 0
    refund_ids: set[str] = field(default_factory=set)
    disputes: dict[str, list[Any]] = field(default_factory=dict)  # payment: [taken, open?]


@dataclass
class SubscriptionModel:
    user: str
    status: str


class Model:
    """Expected balances, orders and subscriptions after the events, applied in sent order.

    Per customer, events are sent in order (the next one after the previous got its 2xx), and
    the final state the rules reach does not depend on how refunds and chargebacks of one order
    interleave (reversed = floor of the cumulative refund, or everything after a chargeback).
    """

    def __init__(self, catalog: dict[str, int]) -> None:
        self.catalog = catalog
        self.balances: dict[str, int] = defaultdict(int)
        self.orders: dict[str, OrderModel] = {}
        self.subscriptions: dict[str, SubscriptionModel] = {}

    def order(
        self, order_id: str, customer: str, user: str | None, lines: list[tuple[str, int, int]]
    ) -> Expect:
        if not user:
            return Expect(DEAD_LETTERED, "no_user_id")
        if any(product not in self.catalog for product, _, _ in lines):
            return Expect(DEAD_LETTERED, "unknown_product", user)
        credit = 0
        for product, quantity, _ in lines:
            credit += self.catalog[product] * quantity
        total = sum(cents for _, _, cents in lines)
        self.orders[order_id] = OrderModel(user, customer, total, credit)
        self.balances[user] += credit
        return Expect(PROCESSED, None, user, ledger=True)

    def refund(self, order_id: str, refund_id: str, amount: int, status: str) -> Expect:
        if status != "completed":  # only a completed refund moves points
            return Expect(IGNORED)
        order = self.orders.get(order_id)
        if order is None:
            return Expect(DEAD_LETTERED, "order_not_found")
        if refund_id in order.refund_ids:  # one refund id moves points once
            return Expect(IGNORED)
        order.refund_ids.add(refund_id)
        order.refunded += amount
        # floor(credited × min(refunded, total) / total), never less than already reversed
        share = order.credited * min(order.refunded, order.total) // order.total
        target = max(share, order.reversed)
        self.balances[order.user] -= target - order.reversed
        order.reversed = target
        return Expect(PROCESSED, None, order.user, ledger=True)

    def chargeback(self, order_id: str, payment_id: str) -> Expect:
        order = self.orders.get(order_id)
        if order is None:
            return Expect(DEAD_LETTERED, "order_not_found")
        taken = order.credited - order.reversed
        order.disputes[payment_id] = [taken, True]
        self.balances[order.user] -= taken
        order.reversed = order.credited
        return Expect(PROCESSED, None, order.user, ledger=True)

    def close(self, order_id: str, payment_id: str, outcome: str) -> Expect:
        """A won close gives back what its payment's chargeback took, less what refunds took."""
        if outcome != "won":
            return Expect(IGNORED)
        order = self.orders.get(order_id)
        if order is None:
            return Expect(DEAD_LETTERED, "order_not_found")
        dispute = order.disputes.get(payment_id)
        if dispute is None:
            return Expect(DEAD_LETTERED, "chargeback_not_found")
        if not dispute[1]:
            return Expect(IGNORED)
        refunds = order.credited * min(order.refunded, order.total) // order.total
        given = max(0, min(dispute[0], order.reversed - (refunds if order.refund_ids else 0)))
        dispute[1] = False
        order.reversed -= given
        self.balances[order.user] += given
        return Expect(PROCESSED, None, order.user, ledger=True)

    def subscription(self, kind: str, sub_id: str, user: str | None, product: str) -> Expect:
        known = self.subscriptions.get(sub_id)
        owner = user or (known.user if known else None)
        if kind == "canceled":
            if known is not None:
                known.status = "canceled"
            return Expect(PROCESSED, None, owner, ledger=False)
        if not owner:
            return Expect(DEAD_LETTERED, "no_user_id")
        if product not in self.catalog:
            return Expect(DEAD_LETTERED, "unknown_product", owner)
        self.subscriptions[sub_id] = SubscriptionModel(owner, "active")
        self.balances[owner] += self.catalog[product]
        return Expect(PROCESSED, None, owner, ledger=True)


# --- the events ---------------------------------------------------------------------------


@dataclass
class Planned:
    """One PayNow event of the run, with how it must end and how it is delivered."""

    index: int
    event_id: str
    customer: str
    user: str
    kind: str
    doc: dict[str, Any]
    expect: Expect
    copy: str = "none"  # none | concurrent | later
    copy_delay: float = 0.0
    switch_retry: bool = False


@dataclass
class CustomerStory:
    customer: str
    user: str
    open_orders: list[str] = field(default_factory=list)  # credited, not charged back
    dead_orders: list[str] = field(default_factory=list)  # dead-lettered orders
    disputed: dict[str, str] = field(default_factory=dict)  # order: payment of its open dispute
    refunds: dict[str, list[str]] = field(default_factory=dict)  # order: refunds sent with it
    unfinished: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # not completed
    subscription: str | None = None


REFUND_STATUSES_THAT_WAIT = ("created", "approved", "processing", "canceled", "failed")
CUSTOMERLESS = 0.3  # share of refunds, chargebacks and closes sent with ``customer: null``


def _lines(rng: random.Random, unknown: bool) -> list[tuple[str, int, int]]:
    lines = []
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
        quantity = rng.randint(1, 5)
        lines.append((rng.choice(PACKS), quantity, quantity * rng.choice(UNIT_PRICES)))
    if unknown:
        lines.insert(rng.randrange(len(lines) + 1), (UNKNOWN_PRODUCT, 1, 499))
    return lines


def _pick(rng: random.Random, story: CustomerStory, model: Model) -> str:
    refundable = [o for o in story.open_orders if model.orders[o].refunded < model.orders[o].total]
    weights = {
        "order": 30.0,
        "order_unknown_product": 1.5,
        "order_no_user": 1.5,
        "refund": 16.0 if refundable else 0.0,
        "chargeback": 3.0 if story.open_orders else 0.0,
        "close": 3.0 if story.disputed else 0.0,
        "close_no_chargeback": 0.5 if story.open_orders else 0.0,
        "refund_again": 1.0 if any(story.refunds.values()) else 0.0,
        "refund_uncredited": 1.0,
        "sub_activated": 5.0 if story.subscription is None else 0.0,
        "sub_renewed": 8.0 if story.subscription else 0.0,
        "sub_canceled": 3.0 if story.subscription else 0.0,
        "ignored": 5.0,
    }
    kinds = [k for k, w in weights.items() if w > 0]
    return rng.choices(kinds, weights=[weights[k] for k in kinds])[0]


def _reversal_doc(
    rng: random.Random,
    kind: str,
    event_id: str,
    reversal_id: str,
    order_id: str,
    customer: str,
    amount: int,
) -> dict[str, Any]:
    """A refund or chargeback body; PayNow may send these with ``customer: null``."""
    customerless = rng.random() < CUSTOMERLESS
    build = payloads.refund if kind == "refund" else payloads.chargeback
    return build(event_id, reversal_id, order_id, None if customerless else customer, amount)


def generate(
    seed: int, n_events: int, n_customers: int, duplicates: float
) -> tuple[list[Planned], Model]:
    """The run's events in sending order, from the seed alone, and the model they leave."""
    rng = random.Random(seed)  # noqa: S311 - replayable by seed, no security role
    model = Model(CATALOG)
    stories = [
        CustomerStory(f"cust-{seed}-{i:04d}", f"user-{seed}-{i:04d}") for i in range(n_customers)
    ]
    first_turns = rng.sample(range(n_customers), n_customers)  # every customer appears
    events: list[Planned] = []
    for i in range(n_events):
        story = stories[first_turns[i]] if i < n_customers else rng.choice(stories)
        kind = _pick(rng, story, model)
        event_id, cust, user = f"evt-{seed}-{i:05d}", story.customer, story.user
        doc: dict[str, Any]
        if kind.startswith("order"):
            order_id = f"ord-{seed}-{i:05d}"
            lines = _lines(rng, unknown=kind == "order_unknown_product")
            meta_user = None if kind == "order_no_user" else user
            doc = payloads.order_completed(event_id, order_id, cust, meta_user, lines)
            expect = model.order(order_id, cust, meta_user, lines)
            (story.open_orders if expect.status == PROCESSED else story.dead_orders).append(
                order_id
            )
        elif kind == "refund":
            order_id = rng.choice(
                [o for o in story.open_orders if model.orders[o].refunded < model.orders[o].total]
            )
            order = model.orders[order_id]
            left = order.total - order.refunded
            roll = rng.random()
            if roll < 0.35 or left == 1:
                amount = left  # closes the order: partial refunds add up to a full one
            elif roll < 0.95:
                amount = rng.randint(1, left - 1)
            else:
                amount = left + rng.randint(1, 500)  # more than was paid: capped at the total
            refund_id, status = f"rfd-{seed}-{i:05d}", "completed"
            waiting = story.unfinished.setdefault(order_id, [])
            if waiting and rng.random() < 0.5:  # a refund PayNow sent unfinished completes now
                refund_id, amount = waiting.pop(0)
            elif rng.random() < 0.12:
                status = rng.choice(REFUND_STATUSES_THAT_WAIT)
                waiting.append((refund_id, amount))
            doc = _reversal_doc(rng, "refund", event_id, refund_id, order_id, cust, amount)
            doc["body"]["status"] = status
            doc["body"]["amount"] = order.total  # the original payment's, never the refund
            expect = model.refund(order_id, refund_id, amount, status)
            if status == "completed" and doc["body"]["customer"] is not None:
                story.refunds.setdefault(order_id, []).append(refund_id)
        elif kind == "refund_again":
            # one refund delivered again under another event id (with its customer, so in
            # order behind the first): moves nothing
            order_id = rng.choice([o for o, r in story.refunds.items() if r])
            refund_id = rng.choice(story.refunds[order_id])
            doc = payloads.refund(event_id, refund_id, order_id, cust, 1)
            expect = model.refund(order_id, refund_id, 1, "completed")
        elif kind == "chargeback":
            order_id = rng.choice(story.open_orders)
            story.open_orders.remove(order_id)
            payment_id = f"pay-{seed}-{i:05d}"
            story.disputed[order_id] = payment_id
            amount = model.orders[order_id].total
            doc = _reversal_doc(rng, "chargeback", event_id, payment_id, order_id, cust, amount)
            expect = model.chargeback(order_id, payment_id)
        elif kind in ("close", "close_no_chargeback"):
            if kind == "close":
                order_id = rng.choice(sorted(story.disputed))
                payment_id = story.disputed.pop(order_id)
                outcome = "won" if rng.random() < 0.6 else "lost"
                if outcome == "won":
                    story.open_orders.append(order_id)
            else:  # a close naming a payment that was never disputed
                order_id, payment_id, outcome = rng.choice(story.open_orders), "pay-none", "won"
            doc = _reversal_doc(rng, "chargeback", event_id, payment_id, order_id, cust, 0)
            doc["event_type"] = "ON_CHARGEBACK_CLOSED"
            doc["body"]["chargeback_status"] = outcome
            expect = model.close(order_id, payment_id, outcome)
        elif kind == "refund_uncredited":
            order_id = (
                rng.choice(story.dead_orders) if story.dead_orders else f"ord-{seed}-ghost-{i:05d}"
            )
            amount = rng.randint(1, 2000)
            refund_id = f"rfd-{seed}-{i:05d}"
            doc = _reversal_doc(rng, "refund", event_id, refund_id, order_id, cust, amount)
            expect = model.refund(order_id, refund_id, amount, "completed")
        elif kind.startswith("sub_"):
            state = kind.removeprefix("sub_")
            if state == "activated":
                story.subscription = f"sub-{seed}-{i:05d}"
            sub_id = story.subscription
            assert sub_id is not None
            # Renewals and cancels carry the user half the time: else it comes from the record.
            meta_user = user if state == "activated" or rng.random() < 0.5 else None
            doc = payloads.subscription(
                state, event_id, sub_id, cust, meta_user, SUBSCRIPTION_PRODUCT
            )
            expect = model.subscription(state, sub_id, meta_user, SUBSCRIPTION_PRODUCT)
            if state == "canceled":
                story.subscription = None
        else:
            doc = {
                "event_type": rng.choice(IGNORED_TYPES),
                "event_id": event_id,
                "body": {"id": f"misc-{seed}-{i:05d}", "customer": {"id": cust}},
            }
            expect = Expect(IGNORED)
        planned = Planned(i, event_id, cust, user, kind, doc, expect)
        roll = rng.random()
        if roll < duplicates * 0.4:
            planned.copy = "concurrent"
        elif roll < duplicates:
            planned.copy, planned.copy_delay = "later", round(rng.uniform(0.2, 12.0), 2)
        events.append(planned)
    # PayNow-style retries after the switch: first-half events, mostly recent (still queued).
    half = n_events // 2
    window = range(max(0, half - max(30, n_events // 8)), half)
    for i in rng.sample(list(window), min(len(window), max(6, round(n_events * 0.03)))):
        events[i].switch_retry = True
    return events, model


# --- the fault plan -----------------------------------------------------------------------


@dataclass
class Fault:
    """A fault fired once ``trigger`` events were released, ``delay`` seconds later."""

    kind: str  # kill | firestore | pubsub
    trigger: int
    delay: float
    duration: float  # cuts: how long the connections stay cut; kills: time before restart
    fired_at: float | None = None
    restored_at: float | None = None
    note: str = ""


def fault_plan(
    seed: int,
    n_events: int,
    kills: int,
    firestore_cuts: int,
    pubsub_cuts: int,
    cut_seconds: tuple[float, float],
) -> list[Fault]:
    rng = random.Random(seed * 7919 + 17)  # noqa: S311 - replayable by seed
    plan: list[Fault] = []
    for k in range(kills):
        # One kill just before the switch, so messages are still in flight when it happens.
        # Most while the worker carries the whole load, the rest while it drains after the switch.
        at = 0.46 if k == 0 else rng.uniform(0.03, 0.5) if k % 4 else rng.uniform(0.5, 0.7)
        plan.append(Fault("kill", int(at * n_events), rng.uniform(0, 1.0), rng.uniform(0, 1.5)))
    for kind, count in (("firestore", firestore_cuts), ("pubsub", pubsub_cuts)):
        for _ in range(count):
            seconds = rng.uniform(*cut_seconds)
            plan.append(Fault(kind, int(rng.uniform(0.08, 0.92) * n_events), 0.0, seconds))
    return sorted(plan, key=lambda f: (f.trigger, f.kind))


# --- the stack ----------------------------------------------------------------------------


def serve(name: str, target: str, port: int, env: dict[str, str]) -> localstack.Process:
    """``localstack.start_function``, with each log line stamped with the run's clock.

    The functions' JSON logs carry no time; the stamp (``time.monotonic()``, the clock of the
    report's answers and faults) is what lets a failure's log lines be set beside them.
    """
    localstack.LOGS.mkdir(parents=True, exist_ok=True)
    log = localstack.LOGS / f"{name}.log"
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            target,
            "--source",
            str(localstack.FUNCTIONS / "main.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=localstack.FUNCTIONS,
        env={**env, "PYTHONPATH": str(localstack.FUNCTIONS)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def copy_stamped() -> None:
        assert popen.stdout is not None
        with log.open("w", encoding="utf-8") as out:
            for line in popen.stdout:
                out.write(f"{time.monotonic():.3f} {line.decode(errors='replace')}")
                out.flush()

    threading.Thread(target=copy_stamped, name=f"log-{name}", daemon=True).start()
    proc = localstack.Process(name, popen, log)
    try:
        localstack.wait_http(f"http://127.0.0.1:{port}/", proc, ok=(405,))
    except BaseException:
        proc.stop(signal.SIGKILL)
        raise
    proc.address = f"http://127.0.0.1:{port}/"
    return proc


class ChaosStack:
    """Emulators, proxies in front of them and the functions: free ports, logs of their own."""

    def __init__(self, tag: str, max_attempts: int) -> None:
        self.tag = tag
        self.max_attempts = max_attempts
        self.processes: list[localstack.Process] = []
        self.proxies: list[TcpProxy] = []
        self.worker: localstack.Process | None = None
        self.workers: list[localstack.Process] = []  # every worker started, for the report
        self.worker_port = localstack.free_port()
        self.worker_url = f"http://127.0.0.1:{self.worker_port}/"
        self.worker_starts = 0
        self.pubsub_host = self.firestore_host = ""
        self.firestore_proxy: TcpProxy | None = None
        self.pubsub_proxy: TcpProxy | None = None

    def start(self) -> None:
        with cf.ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(localstack.start_pubsub_emulator, localstack.free_port()),
                pool.submit(localstack.start_firestore_emulator, localstack.free_port()),
            ]
            started, failure = [], None
            for future in futures:
                try:
                    started.append(future.result())
                except Exception as exc:
                    failure = failure or exc
            self.processes.extend(started)
            if failure is not None:
                raise failure
        pubsub, firestore = started
        self.pubsub_host, self.firestore_host = pubsub.address, firestore.address
        fs_host, fs_port = self.firestore_host.split(":")
        ps_host, ps_port = self.pubsub_host.split(":")
        self.firestore_proxy = TcpProxy(fs_host, int(fs_port))
        self.pubsub_proxy = TcpProxy(ps_host, int(ps_port))
        self.proxies = [self.firestore_proxy, self.pubsub_proxy]
        os.environ.update(
            GOOGLE_CLOUD_PROJECT=localstack.PROJECT,
            PUBSUB_EMULATOR_HOST=self.pubsub_host,
            FIRESTORE_EMULATOR_HOST=self.firestore_host,
        )
        localstack.provision_pubsub(self.worker_url)
        localstack.seed_catalog(CATALOG)

    def env(self, mode: str, **extra: str) -> dict[str, str]:
        """A function's environment: both emulators reached through the cuttable proxies."""
        assert self.firestore_proxy is not None and self.pubsub_proxy is not None
        return localstack.function_env(
            pubsub_host=self.pubsub_proxy.address,
            firestore_host=self.firestore_proxy.address,
            mode=mode,
            extra={"MAX_DELIVERY_ATTEMPTS": str(self.max_attempts), **extra},
        )

    def function(self, role: str, target: str, mode: str, **extra: str) -> localstack.Process:
        port = localstack.free_port()
        proc = serve(f"chaos-{self.tag}-{role}", target, port, self.env(mode, **extra))
        self.processes.append(proc)
        return proc

    def start_worker(self) -> float:
        """(Re)start the worker on its fixed port; returns how long it took to answer."""
        started = time.monotonic()
        last: Exception | None = None
        for _ in range(RESTART_TRIES):
            self.worker_starts += 1
            try:
                self.worker = serve(
                    f"chaos-{self.tag}-worker-{self.worker_starts}",
                    "paynow_worker",
                    self.worker_port,
                    self.env("queue"),
                )
                self.workers.append(self.worker)
                return time.monotonic() - started
            except RuntimeError as exc:  # e.g. the port not yet released: try again
                last = exc
                time.sleep(1.0)
        raise RuntimeError(f"the worker could not be restarted on :{self.worker_port}: {last}")

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.stop(signal.SIGKILL)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        for proc in reversed(self.processes):
            proc.stop()
        for proxy in self.proxies:
            proxy.close()


# --- delivering webhooks as PayNow does ---------------------------------------------------


@dataclass
class Answer:
    """One webhook delivery attempt and what it got back (status 0: no HTTP answer)."""

    event_id: str
    copy: str  # original | concurrent | later | switch
    attempt: int
    mode: str  # the webhook it went to: queue | sync
    started: float
    ended: float
    status: int
    outcome: str  # the JSON status, or the error code


@dataclass
class Target:
    url: str
    mode: str
    inflight: int = 0


class Later:
    """Runs callables at given times on a pool, without a sleeping thread per callable."""

    def __init__(self, pool: cf.ThreadPoolExecutor) -> None:
        self._pool = pool
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._futures: list[cf.Future[None]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="chaos-later", daemon=True)
        self._thread.start()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    if self._closed and not self._heap:
                        return
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                _, _, fn = heapq.heappop(self._heap)
                self._futures.append(self._pool.submit(fn))

    def close_and_wait(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        for future in self._futures:
            future.result()


class Driver:
    """Sends the events: one customer's in order, customers concurrently, copies on the side."""

    def __init__(self, events: list[Planned], queue_url: str, rate: float, seed: int) -> None:
        self.events = events
        self.rate = rate
        self.jitter = random.Random(seed ^ 0x5EED)  # noqa: S311 - backoff jitter
        self.lock = threading.Lock()
        self.answers: list[Answer] = []
        self.first_2xx: dict[str, float] = {}
        self.lost: list[str] = []
        self.target = Target(queue_url, "queue")
        self.targets = {"queue": self.target}
        self.progress = threading.Condition()
        self.released = 0
        self.sending_done = False
        self.lanes_busy: set[str] = set()
        self.lanes: dict[str, deque[Planned]] = defaultdict(deque)
        self.originals_left = len(events)
        self.sender_pool = cf.ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="paynow")
        self.copy_pool = cf.ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="paynow-copy")
        self.later = Later(self.copy_pool)
        self.copies: Counter[str] = Counter()
        self.on_release: Callable[[int], None] = lambda _n: None
        self.before_close: Callable[[], None] = lambda: None  # e.g. the switch's own copies
        self._local = threading.local()

    # one HTTP delivery, retried until 2xx

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def switch_to(self, url: str, mode: str) -> None:
        with self.lock:
            self.target = Target(url, mode)
            self.targets[mode] = self.target

    def inflight(self, mode: str) -> int:
        with self.lock:
            return self.targets[mode].inflight

    def deliver(self, event: Planned, copy: str) -> bool:
        begun = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            with self.lock:
                target = self.target
                target.inflight += 1
            body, headers = payloads.signed(event.doc, SECRET)  # signed anew for each attempt
            started = time.monotonic()
            try:
                answer = self._session().post(
                    target.url, data=body, headers=headers, timeout=REQUEST_TIMEOUT
                )
                status = answer.status_code
                try:
                    doc = answer.json()
                    outcome = str(doc.get("status") or doc.get("error") or "")
                except ValueError:
                    outcome = answer.text[:40]
            except requests.RequestException as exc:
                status, outcome = 0, type(exc).__name__
            finally:
                with self.lock:
                    target.inflight -= 1
            ended = time.monotonic()
            ok = 200 <= status < 300
            with self.lock:
                self.answers.append(
                    Answer(
                        event.event_id, copy, attempt, target.mode, started, ended, status, outcome
                    )
                )
                if ok:
                    self.first_2xx.setdefault(event.event_id, ended)
            if ok:
                return True
            if ended - begun > DELIVERY_DEADLINE:
                with self.lock:
                    self.lost.append(f"{event.event_id} ({copy}): no 2xx in {DELIVERY_DEADLINE}s")
                return False
            backoff = min(BACKOFF_FIRST * 2 ** (attempt - 1), BACKOFF_MAX)
            time.sleep(backoff * self.jitter.uniform(0.5, 1.0))

    # lanes: one customer's events one after the other

    def _lane_start(self, event: Planned) -> None:
        self.sender_pool.submit(self._lane_run, event)

    def _lane_run(self, event: Planned) -> None:
        try:
            if event.copy == "concurrent":  # the same event twice at once, in its turn
                self.send_copy(event, "concurrent")
            ok = self.deliver(event, "original")
            if ok and event.copy == "later":
                self.send_copy(event, "later", time.monotonic() + event.copy_delay)
        finally:
            with self.lock:
                queue = self.lanes[event.customer]
                following = queue.popleft() if queue else None
                if following is None:
                    self.lanes_busy.discard(event.customer)
            with self.progress:
                self.originals_left -= 1
                self.progress.notify_all()
            if following is not None:
                self._lane_start(following)

    def send_copy(
        self, event: Planned, copy: str, when: float | None = None, after_2xx: bool = False
    ) -> None:
        """Deliver ``event`` once more, now or at ``when`` (monotonic), or once it got a 2xx."""
        with self.lock:
            self.copies[copy] += 1

        def copy_delivery() -> None:
            give_up = time.monotonic() + DELIVERY_DEADLINE + 60
            while after_2xx and not self.accepted(event.event_id):
                if time.monotonic() > give_up:
                    return  # the original is reported lost; a retry of nothing is not sent
                time.sleep(0.1)
            self.deliver(event, copy)

        if when is None:
            self.copy_pool.submit(copy_delivery)
        else:
            self.later.at(when, copy_delivery)

    def accepted(self, event_id: str) -> bool:
        with self.lock:
            return event_id in self.first_2xx

    def release(self, event: Planned) -> None:
        with self.lock:
            busy = event.customer in self.lanes_busy
            if busy:
                self.lanes[event.customer].append(event)
            else:
                self.lanes_busy.add(event.customer)
        if not busy:
            self._lane_start(event)

    def run(self) -> None:
        """Release the events at ``rate`` per second, in order."""
        started = time.monotonic()
        for n, event in enumerate(self.events, 1):
            pause = started + n / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self.release(event)
            with self.progress:
                self.released = n
                self.progress.notify_all()
            self.on_release(n)
        with self.progress:
            self.progress.wait_for(lambda: self.originals_left == 0)
        self.before_close()
        self.later.close_and_wait()
        self.copy_pool.shutdown(wait=True)
        self.sender_pool.shutdown(wait=True)
        with self.progress:
            self.sending_done = True
            self.progress.notify_all()

    def wait_released(self, n: int) -> None:
        with self.progress:
            self.progress.wait_for(lambda: self.released >= n or self.sending_done)


# --- faults -------------------------------------------------------------------------------


class Faults:
    """Fires the plan's faults at their event counts: kills in one thread, cuts in another."""

    def __init__(self, plan: list[Fault], stack: ChaosStack, driver: Driver, db: Any) -> None:
        self.plan = plan
        self.stack = stack
        self.driver = driver
        self.db = db
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(kinds,), name=f"chaos-{kinds[0]}", daemon=True)
            for kinds in (("kill",), ("firestore", "pubsub"))
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def _run(self, kinds: tuple[str, ...]) -> None:
        for fault in (f for f in self.plan if f.kind in kinds):
            self.driver.wait_released(fault.trigger)
            time.sleep(fault.delay)
            try:
                self._fire(fault)
            except Exception as exc:  # reported: a fault that did not happen is a harness failure
                self.errors.append(f"{fault.kind} at event {fault.trigger}: {exc}")

    def _fire(self, fault: Fault) -> None:
        if fault.kind == "kill":
            backlog = count_received(self.db, limit=1000)
            fault.fired_at = time.monotonic()
            self.stack.kill_worker()
            time.sleep(fault.duration)
            took = self.stack.start_worker()
            fault.restored_at = time.monotonic()
            fault.note = f"backlog {backlog}, restart {took:.1f}s"
            say(f"worker SIGKILLed at event {fault.trigger} ({fault.note})")
            return
        proxy = self.stack.firestore_proxy if fault.kind == "firestore" else self.stack.pubsub_proxy
        assert proxy is not None
        fault.fired_at = time.monotonic()
        proxy.cut()
        time.sleep(fault.duration)
        proxy.restore()
        fault.restored_at = time.monotonic()
        say(f"{fault.kind} cut for {fault.duration:.1f}s at event {fault.trigger}")


# --- the mode switch ----------------------------------------------------------------------


@dataclass
class Switch:
    at_event: int = 0
    started: float = 0.0
    flipped: float = 0.0
    in_flight: int = 0  # events still `received` when the traffic moved to sync
    retried: int = 0
    queue_webhook_stopped: float = 0.0
    error: str = ""


def run_switch(
    stack: ChaosStack,
    driver: Driver,
    queue_webhook: localstack.Process,
    db: Any,
    switch: Switch,
) -> None:
    """Start a sync-mode webhook, move PayNow's traffic to it, retry some first-half events."""
    try:
        _switch(stack, driver, queue_webhook, db, switch)
    except Exception as exc:  # reported as a harness failure: the run did not switch
        switch.error = f"{type(exc).__name__}: {exc}"


def _switch(
    stack: ChaosStack,
    driver: Driver,
    queue_webhook: localstack.Process,
    db: Any,
    switch: Switch,
) -> None:
    switch.started = time.monotonic()
    sync = stack.function("webhook-sync", "paynow_webhook", "sync")
    switch.in_flight = count_received(db, limit=5000)
    driver.switch_to(sync.address, "sync")
    switch.flipped = time.monotonic()
    switch.at_event = driver.released
    say(f"switched to sync mode at event {switch.at_event}: {switch.in_flight} still received")
    retries = [e for e in driver.events[: switch.at_event] if e.switch_retry]
    switch.retried = len(retries)
    for k, event in enumerate(retries):
        # A retry of what PayNow already delivered: never ahead of the original's 2xx.
        driver.send_copy(event, "switch", time.monotonic() + 0.05 * k, after_2xx=True)
    while driver.inflight("queue"):
        time.sleep(0.05)
    queue_webhook.stop()
    switch.queue_webhook_stopped = time.monotonic()


# --- reading the outcome ------------------------------------------------------------------


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
    customers: dict[str, dict[str, Any]]


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
        customers=docs("paynowCustomers"),
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


# --- invariants ---------------------------------------------------------------------------


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str
    failures: list[str] = field(default_factory=list)


def _verdict(name: str, failures: list[str], checked: int, what: str) -> Verdict:
    detail = f"{checked} {what}" if not failures else f"{len(failures)} of {checked} {what} fail"
    return Verdict(name, not failures, detail, failures)


def _during_cut(answer: Answer, plan: list[Fault]) -> str:
    """Which cut a request overlapped (clients reconnect within seconds after a restore)."""
    for f in plan:
        if (
            f.kind != "kill"
            and f.fired_at is not None
            and f.restored_at is not None
            and answer.started < f.restored_at + 5
            and answer.ended > f.fired_at
        ):
            return f"; during/just after the {f.kind} cut at event {f.trigger}"
    return ""


def check(
    events: list[Planned],
    model: Model,
    world: World,
    driver: Driver,
    dead_letters: dict[str, set[str]],
    plan: list[Fault],
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    ids = [e.event_id for e in events]

    lost = [e for e in ids if e not in driver.first_2xx]
    verdicts.append(_verdict("every event got a 2xx from the webhook", lost, len(ids), "events"))

    not_final = [
        f"{e}: {world.events.get(e, {}).get('status', 'no record')}"
        for e in ids
        if e in driver.first_2xx and world.events.get(e, {}).get("status") not in FINAL
    ]
    verdicts.append(
        _verdict(
            "every accepted event is processed, ignored or dead_lettered",
            not_final,
            len(driver.first_2xx),
            "accepted events",
        )
    )

    wrong_end = []
    for e in events:
        record = world.events.get(e.event_id, {})
        status = record.get("status")
        code = (record.get("lastError") or {}).get("code") if status == DEAD_LETTERED else None
        if (status, code) != (e.expect.status, e.expect.code):
            wrong_end.append(
                f"{e.event_id} {e.kind}: {status}/{code}, model {e.expect.status}/{e.expect.code}"
                f" (attempts {record.get('attempts')}, lastError {record.get('lastError')})"
            )
    verdicts.append(
        _verdict("every event ended as the model says", wrong_end, len(events), "events")
    )

    users = sorted(set(model.balances) | {e.user for e in events} | set(world.balances))
    off_model = [
        f"{u}: balance {world.balances.get(u, 0)}, model {model.balances.get(u, 0)}"
        for u in users
        if world.balances.get(u, 0) != model.balances.get(u, 0)
    ]
    verdicts.append(
        _verdict("every user's balance equals the model's", off_model, len(users), "users")
    )

    sums: dict[str, int] = defaultdict(int)
    for entries in world.ledger.values():
        for user, delta in entries:
            sums[user] += delta
    off_ledger = [
        f"{u}: balance {world.balances.get(u, 0)}, ledger sum {sums.get(u, 0)}"
        for u in sorted(set(users) | set(sums))
        if world.balances.get(u, 0) != sums.get(u, 0)
    ]
    verdicts.append(
        _verdict(
            "every user's balance equals their ledger sum",
            off_ledger,
            len(set(users) | set(sums)),
            "users",
        )
    )

    doubled = [f"{e}: {entries}" for e, entries in world.ledger.items() if len(entries) > 1]
    verdicts.append(
        _verdict(
            "no event has more than one ledger entry", doubled, len(world.ledger), "ledger entries"
        )
    )

    expected_entries = {e.event_id: e.expect.user for e in events if e.expect.ledger}
    ledger_diff = [
        f"{e}: missing (model: one under {u})"
        for e, u in expected_entries.items()
        if e not in world.ledger
    ]
    ledger_diff += [
        f"{e}: entry under {entries[0][0]}, model: {expected_entries.get(e, 'none')}"
        for e, entries in world.ledger.items()
        if expected_entries.get(e) != entries[0][0]
    ]
    verdicts.append(
        _verdict(
            "ledger entries are exactly the model's crediting events",
            ledger_diff,
            len(expected_entries),
            "crediting events",
        )
    )

    dead = [e for e, r in world.events.items() if r.get("status") == DEAD_LETTERED]
    missing_dlq = [
        f"{e} ({(world.events[e].get('lastError') or {}).get('code')})"
        for e in dead
        if e not in dead_letters
    ]
    verdicts.append(
        _verdict(
            "every dead-lettered event is in the DLQ topic",
            missing_dlq,
            len(dead),
            "dead-lettered events",
        )
    )

    late: dict[str, list[Answer]] = defaultdict(list)
    for a in driver.answers:
        first = driver.first_2xx.get(a.event_id)
        if a.status >= 500 and first is not None and a.started > first:
            late[a.event_id].append(a)
    late_5xx = []
    for event_id, answers in late.items():
        first = driver.first_2xx[event_id]
        kinds = Counter(f"{a.status} {a.outcome}" for a in answers)
        cuts = {_during_cut(a, plan) for a in answers if a.outcome in OUTAGE_CODES} - {""}
        late_5xx.append(
            f"{event_id}: {', '.join(f'{n}x {k}' for k, n in kinds.items())} from the "
            f"{'/'.join(sorted({a.mode for a in answers}))} webhook to its "
            f"{'/'.join(sorted({a.copy for a in answers}))} copy, "
            f"{min(a.started for a in answers) - first:.1f}-"
            f"{max(a.started for a in answers) - first:.1f}s after its first 2xx"
            + "".join(sorted(cuts))
        )
    received: Counter[str] = Counter(
        str(r.get("customerId")) for r in world.events.values() if r.get("status") == RECEIVED
    )
    miscounted = [
        f"{c}: queued {world.customers.get(c, {}).get('queued', 0)}, received {received[c]}"
        for c in sorted(set(received) | set(world.customers))
        if world.customers.get(c, {}).get("queued", 0) != received[c]
    ]
    verdicts.append(
        _verdict(
            "every customer's queued count equals their received events",
            miscounted,
            len(world.customers),
            "customers",
        )
    )

    answers_5xx = sum(len(v) for v in late.values())
    verdicts.append(
        Verdict(
            "no 5xx to an event already answered 2xx",
            not late_5xx,
            f"{len(driver.answers)} webhook answers"
            if not late_5xx
            else f"{answers_5xx} answers to {len(late_5xx)} events fail",
            late_5xx,
        )
    )

    state_diff = []
    for order_id, order in model.orders.items():
        doc = world.orders.get(order_id)
        want = (order.user, order.credited, order.refunded, order.reversed)
        got = (
            (
                doc.get("userId"),
                doc.get("pointsCredited"),
                doc.get("refundedAmount"),
                doc.get("pointsReversed"),
            )
            if doc
            else None
        )
        if got != want:
            state_diff.append(
                f"order {order_id}: {got}, model (user, credited, refunded, reversed) {want}"
            )
    for sub_id, sub in model.subscriptions.items():
        doc = world.subscriptions.get(sub_id)
        got_sub = (doc.get("userId"), doc.get("status")) if doc else None
        if got_sub != (sub.user, sub.status):
            state_diff.append(f"subscription {sub_id}: {got_sub}, model {(sub.user, sub.status)}")
    verdicts.append(
        _verdict(
            "orders and subscriptions match the model",
            state_diff,
            len(model.orders) + len(model.subscriptions),
            "records",
        )
    )
    return verdicts


# --- the report ---------------------------------------------------------------------------


def _row(label: str, *cells: object) -> str:
    return f"  {label:<52}" + "".join(f"{c!s:>12}" for c in cells)


def table(
    args: argparse.Namespace,
    events: list[Planned],
    driver: Driver,
    plan: list[Fault],
    switch: Switch,
    reconcile: dict[str, Any],
    world: World,
    verdicts: list[Verdict],
    elapsed: float,
) -> list[str]:
    out = [
        f"chaos run: seed {args.seed}, {len(events)} events, {args.customers} customers, "
        f"queue mode, switch to sync at event {switch.at_event}",
        "",
        "faults injected",
    ]
    deliveries = Counter(a.event_id for a in driver.answers if 200 <= a.status < 300)
    firsts = [a for a in driver.answers if a.attempt == 1]
    copies = Counter(a.copy for a in firsts)
    per_event = Counter(a.event_id for a in firsts)
    twice = sum(1 for e in events if per_event[e.event_id] >= 2)
    retries = sum(1 for a in driver.answers if a.attempt > 1)
    kills = [f for f in plan if f.kind == "kill" and f.fired_at is not None]
    out += [
        _row("webhook copy sent with the original (concurrent)", copies["concurrent"]),
        _row("webhook copy sent after the original's 2xx", copies["later"]),
        _row("first-half events retried to the sync webhook", copies["switch"]),
        _row(
            "events delivered twice or more",
            f"{twice} ({100 * twice / max(1, len(events)):.1f}%)",
        ),
        _row("sender retries after an answer >= 300 / no answer", retries),
        _row("worker SIGKILL + restart on the same port", len(kills)),
        *(_row(f"  kill at event {f.trigger}", f.note) for f in kills),
    ]
    for kind, label in (("firestore", "Firestore"), ("pubsub", "Pub/Sub")):
        cuts = [f for f in plan if f.kind == kind and f.fired_at is not None]
        seconds = sum((f.restored_at or 0) - (f.fired_at or 0) for f in cuts)
        out.append(
            _row(f"{label} connections cut (all functions)", f"{len(cuts)} ({seconds:.1f}s)")
        )
    out += [
        _row("switch queue -> sync, events still in flight", f"1 ({switch.in_flight})"),
        _row(
            "reconcile run once: found / republished",
            f"{reconcile.get('found')}/{reconcile.get('republished')}",
        ),
        "",
        "events by outcome" + " " * 37 + f"{'model':>12}{'actual':>12}",
    ]

    def key(status: str | None, code: str | None) -> str:
        return f"{status}" + (f": {code}" if code else "")

    want = Counter(key(e.expect.status, e.expect.code) for e in events)
    got = Counter(
        key(
            world.events.get(e.event_id, {}).get("status", "no record"),
            (world.events.get(e.event_id, {}).get("lastError") or {}).get("code")
            if world.events.get(e.event_id, {}).get("status") == DEAD_LETTERED
            else None,
        )
        for e in events
    )
    for k in sorted(set(want) | set(got)):
        out.append(_row(k, want[k], got[k]))
    out += ["", "PayNow's reversals as its spec sends them"]
    bodies = [e.doc.get("body") or {} for e in events]
    reversals = [(e, b) for e, b in zip(events, bodies, strict=True) if "order_id" in b]
    statuses = Counter(b.get("status") for e, b in reversals if e.doc["event_type"] == "ON_REFUND")
    closes = Counter(
        b.get("chargeback_status")
        for e, b in reversals
        if e.doc["event_type"] == "ON_CHARGEBACK_CLOSED"
    )
    out += [
        _row("refunds by status", ", ".join(f"{k} {n}" for k, n in sorted(statuses.items()))),
        _row(
            "chargeback closes by outcome", ", ".join(f"{k} {n}" for k, n in sorted(closes.items()))
        ),
        _row(
            "refunds, chargebacks, closes with customer null",
            sum(1 for _, b in reversals if b.get("customer") is None),
        ),
        _row(
            "one refund id under another event id",
            sum(1 for e in events if e.kind == "refund_again"),
        ),
    ]
    out += ["", "webhook answers"]
    answers = Counter((a.mode, a.status, a.outcome) for a in driver.answers)
    for (mode, status, outcome), n in sorted(answers.items()):
        out.append(_row(f"{mode:<6}{status or 'none'} {outcome}", n))
    out += ["", f"invariants ({len(deliveries)} events accepted)"]
    for v in verdicts:
        out.append(f"  {'PASS' if v.ok else 'FAIL'}  {v.name} ({v.detail})")
        out.extend(f"          {line}" for line in v.failures[:10])
        if len(v.failures) > 10:
            out.append(f"          ... {len(v.failures) - 10} more in the report")
    failed = [v for v in verdicts if not v.ok]
    replay = (
        f"scripts/proof/chaos.py --seed {args.seed} --events {args.events}"
        f" --customers {args.customers}"
    )
    out += [
        "",
        f"CHAOS {'FAIL' if failed else 'PASS'}: {len(verdicts) - len(failed)}/{len(verdicts)} "
        f"invariants held; seed {args.seed}, {len(events)} events, {len(kills)} kills, "
        f"{sum(1 for f in plan if f.kind != 'kill' and f.fired_at)} cuts, {twice} events "
        f"delivered twice, {elapsed:.0f}s (replay: {replay})",
    ]
    return out


# --- the run ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    tag = f"{args.seed}-{os.getpid()}"
    events, model = generate(args.seed, args.events, args.customers, args.duplicates)
    plan = fault_plan(
        args.seed,
        args.events,
        args.kills,
        args.firestore_cuts,
        args.pubsub_cuts,
        args.cut_seconds,
    )
    say(
        f"seed {args.seed}: {len(events)} events over {args.customers} customers; "
        f"{len(plan)} faults planned; starting the stack"
    )
    stack = ChaosStack(tag, args.max_delivery_attempts)
    dlq: DeadLetters | None = None
    try:
        stack.start()
        from google.cloud import firestore

        db = firestore.Client(project=localstack.PROJECT)
        dlq = DeadLetters(tag)
        with cf.ThreadPoolExecutor(3) as pool:
            worker = pool.submit(stack.start_worker)
            webhook = pool.submit(stack.function, "webhook-queue", "paynow_webhook", "queue")
            reconcile_fn = pool.submit(
                stack.function,
                "reconcile",
                "paynow_reconcile",
                "sync",
                RECONCILE_AFTER_SECONDS=str(RECONCILE_AFTER_SECONDS),
                RECONCILE_BATCH_SIZE="5000",
            )
            worker.result()
            queue_webhook, reconciler = webhook.result(), reconcile_fn.result()
        say(f"stack up in {time.monotonic() - began:.0f}s; sending at {args.rate}/s")

        driver = Driver(events, queue_webhook.address, args.rate, args.seed)
        faults = Faults(plan, stack, driver, db)
        switch = Switch()
        switch_thread = threading.Thread(
            target=run_switch, args=(stack, driver, queue_webhook, db, switch), daemon=True
        )

        def on_release(n: int) -> None:
            if n == len(events) // 2:
                switch_thread.start()
            if n % 250 == 0:
                say(f"released {n}/{len(events)}, accepted {len(driver.first_2xx)}")

        driver.on_release = on_release
        driver.before_close = switch_thread.join
        faults.start()
        sending = time.monotonic()
        driver.run()
        faults.join()
        say(f"all deliveries answered in {time.monotonic() - sending:.0f}s; running reconcile")
        reconcile = requests.post(reconciler.address, json={}, timeout=120).json()
        say(f"reconcile: {reconcile}; waiting for quiescence")
        quiet, waited = wait_quiescent(db, timeout=120 + len(events) * 0.1)
        say(f"{'quiescent' if quiet else 'NOT quiescent'} after {waited:.0f}s; checking")
        for _ in range(3):  # the DLQ thread's last pulls
            if not dlq.pull_once():
                break
        world = read_world(db)
        verdicts = check(events, model, world, driver, dlq.event_ids(), plan)
        if not quiet:
            verdicts.append(Verdict("the pipeline went quiet", False, f"after {waited:.0f}s"))
        harness = faults.errors + driver.lost + ([switch.error] if switch.error else [])
        if harness:
            verdicts.append(
                Verdict("every planned fault and delivery happened", False, "", harness)
            )
        elapsed = time.monotonic() - began
        lines = table(args, events, driver, plan, switch, reconcile, world, verdicts, elapsed)
        report = {
            "seed": args.seed,
            "args": vars(args),
            "elapsedSeconds": round(elapsed, 1),
            "switch": asdict(switch),
            "reconcile": reconcile,
            "faults": [asdict(f) for f in plan],
            "verdicts": [asdict(v) for v in verdicts],
            "answers": [asdict(a) for a in driver.answers],
            "logs": [str(p.log) for p in (*stack.processes, *stack.workers)],
        }
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=1, default=str))
        lines.insert(-1, f"report: {args.report}")
        lines.insert(-1, "")
        print("\n".join(lines), flush=True)
        return 1 if any(not v.ok for v in verdicts) else 0
    finally:
        if dlq is not None:
            dlq.close()
        stack.stop()


def _seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX seconds, got {text!r}") from None
    if not 0 < bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return bounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Chaos run of the PayNow pipeline on the local emulators."
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="events released per second")
    parser.add_argument("--duplicates", type=float, default=0.25, help="share delivered twice")
    parser.add_argument("--kills", type=int, default=None, help="default: events / 160, >= 2")
    parser.add_argument("--firestore-cuts", type=int, default=None)
    parser.add_argument("--pubsub-cuts", type=int, default=None)
    parser.add_argument(
        "--cut-seconds",
        type=_seconds_range,
        default=None,
        help="how long a cut lasts, MIN-MAX (default 2-5, 1.5-2.5 under 1000 events)",
    )
    parser.add_argument("--max-delivery-attempts", type=int, default=10)
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    if args.customers < 1 or args.events < args.customers:
        parser.error("need at least one customer and as many events as customers")
    args.kills = max(2, round(args.events / 160)) if args.kills is None else args.kills
    cuts = max(1, min(4, args.events // 600))
    args.firestore_cuts = cuts if args.firestore_cuts is None else args.firestore_cuts
    args.pubsub_cuts = cuts if args.pubsub_cuts is None else args.pubsub_cuts
    if args.cut_seconds is None:
        args.cut_seconds = (1.5, 2.5) if args.events < 1000 else (2.0, 5.0)
    if args.report is None:
        args.report = localstack.ROOT / ".local" / "chaos" / f"chaos-{args.seed}.json"
    try:
        return run(args)
    except Exception as exc:  # the harness, not the pipeline: 2, never the verdicts' 1
        say(f"the chaos run could not complete: {type(exc).__name__}: {exc}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
