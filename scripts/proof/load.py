"""Sustained webhooks at a fixed concurrency against a local stack: errors, latency, memory.

    .venv/bin/python scripts/proof/load.py --seconds 180 --concurrency 16

Starts its own emulators and functions on free ports (``scripts.local.localstack``, the webhook in
queue mode, the worker behind the push subscription), sends signed ON_ORDER_COMPLETED events
from ``--concurrency`` threads for ``--seconds``, and samples every second the RSS of each
function's gunicorn worker process (functions-framework's process is gunicorn's arbiter; the
requests are served by its one worker child, read from /proc). Then it waits for the push
worker to drain the queue and checks that every accepted event became points exactly once.

Prints a table and exits 1 on any request error, on an accepted event not processed, on a
points total that is not exactly 100 per event, or when a worker process's RSS grew more than
``--max-growth`` (default 20%) from the end of the warm-up to the end of the run. Traffic goes
to 127.0.0.1 only, and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from paynow.domain import payloads

from scripts.local import localstack
from scripts.proof.bench.measurement import periodically, request

PRODUCT, POINTS = "gems-100", localstack.DEMO_CATALOG["gems-100"]
USERS = 1000
MIB = 1024 * 1024
# The Pub/Sub emulator keeps a thread per ordering key it has pushed: with a new customer per
# event it reached 13,000 threads in three minutes and saturated the machine. Customers are
# drawn from a pool (--customers), and the load stops early if the emulator still runs away.
MAX_EMULATOR_THREADS = 3000


@dataclass(frozen=True)
class Request:
    started: float  # seconds since the load began
    latency_ms: float
    ok: bool
    detail: str


@dataclass
class Phase:
    name: str
    seconds: float
    requests: list[Request] = field(default_factory=list)

    def row(self) -> list[str]:
        lat = sorted(r.latency_ms for r in self.requests)
        errors = sum(not r.ok for r in self.requests)

        def p(q: float) -> str:
            return f"{lat[min(len(lat) - 1, int(q * len(lat)))]:.1f}" if lat else "-"

        rate = len(self.requests) / self.seconds if self.seconds else 0.0
        return [
            self.name,
            f"{self.seconds:.0f}",
            str(len(self.requests)),
            f"{rate:.1f}",
            p(0.50),
            p(0.95),
            p(0.99),
            f"{lat[-1]:.1f}" if lat else "-",
            str(errors),
        ]


@dataclass
class Memory:
    """RSS samples of one gunicorn worker process, in bytes."""

    name: str
    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)

    def at(self, t: float) -> int:
        """The last sample taken at or before ``t`` (the first one if none)."""
        best = self.samples[0][1]
        for when, rss in self.samples:
            if when <= t:
                best = rss
        return best


def threads_under(root: int) -> int:
    """Threads of ``root`` and all its descendants (the emulator runs as gcloud -> java)."""
    parents = localstack.parent_pids()
    family, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        frontier = [pid for pid in children if pid not in family]
        family.update(frontier)
    total = 0
    for pid in family:
        with contextlib.suppress(OSError, RuntimeError):
            total += localstack.proc_status(pid, "Threads")
    return total


@contextlib.contextmanager
def sampling(
    memories: list[Memory], emulator: int, clock: Callable[[], float], runaway: threading.Event
) -> Iterator[list[int]]:
    """Sample every second; set ``runaway`` if the Pub/Sub emulator's threads pass the bound."""
    emulator_threads: list[int] = []

    def sample() -> None:
        for m in memories:
            m.samples.append((clock(), localstack.rss_bytes(m.pid)))
        emulator_threads.append(threads_under(emulator))
        if emulator_threads[-1] > MAX_EMULATOR_THREADS:
            runaway.set()

    with periodically(sample, 1.0):
        yield emulator_threads


def send_load(
    url: str, concurrency: int, seconds: float, run: str, customers: int, stop: threading.Event
) -> list[Request]:
    """``concurrency`` threads, each sending one signed event after the other until time is up."""
    counter = itertools.count()
    began = time.monotonic()
    deadline = began + seconds
    results: list[list[Request]] = [[] for _ in range(concurrency)]

    def client(slot: int) -> None:
        mine = results[slot]
        while time.monotonic() < deadline and not stop.is_set():
            i = next(counter)
            doc = payloads.order_completed(
                f"load-{run}-{i}",
                f"order-{run}-{i}",
                f"cust-{run}-{i % customers}",
                f"user-{run}-{i % USERS}",
                [(PRODUCT, 1, 199)],
            )
            body, headers = payloads.signed(doc, localstack.DEMO_SECRET)
            started = time.monotonic()
            try:
                answer = request("POST", url, body, headers)
                ok = answer.status == 200 and answer.json().get("status") == "accepted"
                detail = f"{answer.status} {answer.body[:120]!r}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"[:160]
            mine.append(Request(started - began, (time.monotonic() - started) * 1000, ok, detail))

    threads = [
        threading.Thread(target=client, args=(slot,), name=f"load-{slot}")
        for slot in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return [r for mine in results for r in mine]


def drain(
    stack: localstack.Stack, accepted: int, timeout: float, stop: threading.Event
) -> tuple[int, int, float]:
    """Wait until no event is left ``received``; return (processed, received, seconds waited)."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    with localstack.emulator_env(stack.pubsub_host, stack.firestore_host):
        db = firestore.Client(project=localstack.PROJECT)

        def count(status: str) -> int:
            where = FieldFilter("status", "==", status)
            query: Any = db.collection("webhookEvents").where(filter=where)
            return int(query.count().get()[0][0].value)

        started = time.monotonic()
        while True:
            processed, received = count("processed"), count("received")
            waited = time.monotonic() - started
            if (received == 0 and processed >= accepted) or waited > timeout or stop.is_set():
                return processed, received, waited
            time.sleep(1.0)


def points_total(stack: localstack.Stack) -> int:
    from google.cloud import firestore

    with localstack.emulator_env(stack.pubsub_host, stack.firestore_host):
        db = firestore.Client(project=localstack.PROJECT)
        return sum(int(d.get("points") or 0) for d in db.collection("users").stream())


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join([line, rule, *body])


def main() -> int:
    parser = argparse.ArgumentParser(description="Sustained webhooks against a local stack.")
    parser.add_argument("--seconds", type=float, default=180.0, help="load duration")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds excluded from the RSS baseline"
    )
    parser.add_argument(
        "--customers", type=int, default=200, help="customer pool (Pub/Sub ordering keys)"
    )
    parser.add_argument("--max-growth", type=float, default=0.20, help="RSS growth bound")
    # The webhook accepts faster than the emulator's push drains (2 in flight): 180 s at 16
    # clients leaves about 70,000 events, which take 5-6 minutes to finish.
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    args = parser.parse_args()
    if not 1 <= args.concurrency <= 256 or not 1 <= args.seconds <= 3600:
        parser.error("--concurrency must be 1..256 and --seconds 1..3600")
    if not 1 <= args.customers <= 1000:
        parser.error("--customers must be 1..1000")
    warmup = args.warmup if args.warmup is not None else min(30.0, args.seconds / 4)
    pubsub, firestore, webhook, worker = (localstack.free_port() for _ in range(4))
    print("starting the stack (queue mode) ...", flush=True)
    # Logs of its own: a developer's scripts/stack writes .local/logs/{worker,webhook}.log.
    logs = localstack.LOGS / "load"
    stack = localstack.up(pubsub, firestore, webhook, worker, mode="queue", logs=logs)
    try:
        return measure(stack, args.seconds, args.concurrency, warmup, args)
    finally:
        stack.stop()


def measure(
    stack: localstack.Stack,
    seconds: float,
    concurrency: int,
    warmup: float,
    args: argparse.Namespace,
) -> int:
    by_name = {p.name: p for p in stack.processes}
    memories = [
        Memory(name, localstack.gunicorn_worker_pid(by_name[name]))
        for name in ("webhook", "worker")
    ]
    run = uuid.uuid4().hex[:8]
    began = time.monotonic()
    print(
        f"load: {concurrency} clients for {seconds:.0f} s (warm-up {warmup:.0f} s) "
        f"-> {stack.webhook_url}",
        flush=True,
    )
    runaway = threading.Event()
    emulator = by_name[next(n for n in by_name if n.startswith("pubsub-emulator"))].popen.pid

    def clock() -> float:
        return time.monotonic() - began

    with sampling(memories, emulator, clock, runaway) as emulator_threads:
        requests_done = send_load(
            stack.webhook_url, concurrency, seconds, run, args.customers, runaway
        )
        load_end = time.monotonic() - began
        accepted = sum(r.ok for r in requests_done)
        processed, left, waited = drain(stack, accepted, args.drain_timeout, runaway)
    total_points = points_total(stack)

    warm = Phase("warm-up", warmup, [r for r in requests_done if r.started < warmup])
    steady = Phase("measured", seconds - warmup, [r for r in requests_done if r.started >= warmup])
    everything = Phase("all", seconds, requests_done)
    print()
    print(
        table(
            ["phase", "s", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"],
            [warm.row(), steady.row(), everything.row()],
        )
    )
    failures: list[str] = []
    rows = []
    for m in memories:
        start, base, end = m.at(0.0), m.at(warmup), m.at(load_end)
        peak = max(rss for _, rss in m.samples)
        growth = (end - base) / base
        rows.append(
            [
                f"{m.name} (gunicorn worker)",
                str(m.pid),
                f"{start / MIB:.1f}",
                f"{base / MIB:.1f}",
                f"{end / MIB:.1f}",
                f"{peak / MIB:.1f}",
                f"{growth:+.1%}",
            ]
        )
        if growth > args.max_growth:
            failures.append(f"{m.name}: RSS grew {growth:+.1%} after warm-up")
    print()
    print(
        table(
            [
                "process",
                "pid",
                "RSS start MiB",
                "after warm-up",
                "end of load",
                "peak",
                "growth",
            ],
            rows,
        )
    )
    errors = [r for r in requests_done if not r.ok]
    print()
    print(
        f"pipeline: {accepted} accepted, {processed} processed, {left} still received "
        f"after a {waited:.0f} s drain; points {total_points} (expected {accepted * POINTS})"
    )
    print(f"Pub/Sub emulator threads: max {max(emulator_threads, default=0)}")
    if runaway.is_set():
        failures.append(
            f"stopped early: the Pub/Sub emulator passed {MAX_EMULATOR_THREADS} threads"
        )
    if errors:
        failures.append(f"{len(errors)} request errors, e.g. {errors[0].detail}")
    if processed != accepted or left:
        failures.append(f"{accepted - processed} accepted events not processed")
    if total_points != accepted * POINTS:
        failures.append(f"points {total_points} != {accepted} x {POINTS}")
    print("RESULT: " + ("FAIL\n  " + "\n  ".join(failures) if failures else "OK"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
