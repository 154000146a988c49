"""One benchmark run: the stack up, every series in interleaved rounds, the stack down."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scripts.local import localstack
from scripts.proof.bench import cold
from scripts.proof.bench.measurement import (
    Flow,
    Memory,
    Rounds,
    Series,
    interleaved,
    measure,
    sampling_rss,
    say,
)
from scripts.proof.bench.stack import bench_stack
from scripts.proof.bench.workload import Workload

# The sequential series, in the order each round takes them.
SERVE, QUEUE_FLOOR, SYNC_FLOOR, PEER = "serve floor", "queue floor", "sync floor", "peer"
QUEUE, SYNC = "webhook queue", "webhook sync"
RAW_QUEUE, RAW_SYNC = "raw queue work", "raw sync work"
SERVICE_QUEUE, SERVICE_SYNC = "service in-process: queue", "service in-process: sync"
PENDING = "pending query (sync's wait)"
# Under load: the code over HTTP beside the raw floor from a pool of the same size.
RAW_QUEUE_POOL, RAW_SYNC_POOL = "raw floor: create ∥ publish", "raw floor: credit transaction"
STEADY_RATE = 50.0
STEADY_CUSTOMERS = 200


@dataclass(frozen=True)
class Size:
    sequential: int  # samples per sequential series, over all rounds
    rounds: int  # rounds of the sequential series
    per_level: int  # requests per series and round under load
    load_rounds: int
    levels: tuple[int, ...]
    worker_events: int  # events per worker round (as many customers)
    worker_rounds: int
    steady_seconds: float  # end to end at STEADY_RATE events/s
    burst: int  # end to end: one customer's events at once
    cold_runs: int
    served_cold_runs: int


SIZES = {
    "tiny": Size(24, 2, 48, 1, (16, 64), 16, 1, 1.0, 10, 2, 0),
    "small": Size(250, 5, 320, 2, (16, 64), 200, 3, 10.0, 100, 5, 2),
    "full": Size(1000, 5, 800, 5, (16, 64), 400, 5, 30.0, 100, 9, 5),
}


@dataclass
class Results:
    size_name: str
    size: Size
    started: dt.datetime
    load_before: tuple[float, float, float]
    sequential: dict[str, Rounds] = field(default_factory=dict)
    load: dict[tuple[str, int], Rounds] = field(default_factory=dict)
    memory: dict[tuple[str, int], list[Memory]] = field(default_factory=dict)
    worker: list[Flow] = field(default_factory=list)
    worker_floors: list[Flow] = field(default_factory=list)  # the served worker floor
    raw_loops: list[Series] = field(default_factory=list)
    steady: Flow | None = None
    burst: Flow | None = None
    cold: dict[str, list[float]] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)
    stored_before: int = 0  # webhookEvents records when the sequential series began
    stored_after: int = 0  # and when they ended
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    elapsed_s: float = 0.0


def run(size_name: str) -> Results:
    size = SIZES[size_name]
    res = Results(size_name, size, dt.datetime.now(dt.UTC), os.getloadavg())
    started = time.perf_counter()
    say(f"size {size_name}: starting emulators and functions")
    # The in-process service logs to stdout as the functions do: to a file, as theirs.
    service_log = localstack.LOGS / f"bench-service-{os.getpid()}.log"
    service_log.parent.mkdir(parents=True, exist_ok=True)
    with service_log.open("w") as log, contextlib.redirect_stdout(log), bench_stack() as stack:
        res.threads = dict(stack.threads)
        work = Workload(stack)
        work.detach_worker()
        sequential: list[tuple[str, Callable[[], float]]] = [
            (SERVE, work.serve_floor),
            (QUEUE_FLOOR, work.queue_floor),
            (QUEUE, work.queue_webhook),
            (PEER, work.peer),
            (SYNC_FLOOR, work.sync_floor),
            (SYNC, work.sync_webhook),
            (RAW_QUEUE, work.raw_queue_work),
            (SERVICE_QUEUE, work.queue_service),
            (RAW_SYNC, work.raw_sync_work),
            (SERVICE_SYNC, work.sync_service),
            (PENDING, work.pending_query),
        ]
        say("warming up clients and servers")
        for _ in range(20):
            for _, op in sequential:
                op()

        say(f"sequential: {size.sequential} each, interleaved in {size.rounds} rounds")
        res.stored_before = work.stored_events()
        res.sequential = interleaved(sequential, size.sequential, size.rounds)
        res.stored_after = work.stored_events()

        say(f"load {size.levels}: {size.per_level} requests a series, {size.load_rounds} rounds")
        webhook_pid = localstack.gunicorn_worker_pid(stack.processes[QUEUE])
        sync_pid = localstack.gunicorn_worker_pid(stack.processes[SYNC])
        queue_floor_pid = localstack.gunicorn_worker_pid(stack.processes[QUEUE_FLOOR])
        sync_floor_pid = localstack.gunicorn_worker_pid(stack.processes[SYNC_FLOOR])
        # The served floors too: what the same server costs under load, apart from the code.
        under_load = [
            (QUEUE, work.queue_webhook, webhook_pid),
            (RAW_QUEUE_POOL, work.raw_queue_work, None),
            (QUEUE_FLOOR, work.queue_floor, queue_floor_pid),
            (SYNC, work.sync_webhook, sync_pid),
            (RAW_SYNC_POOL, work.raw_sync_work, None),
            (SYNC_FLOOR, work.sync_floor, sync_floor_pid),
        ]
        for _ in range(size.load_rounds):
            for level in size.levels:
                for name, op, pid in under_load:
                    key = (name, level)
                    with sampling_rss(pid) if pid else contextlib.nullcontext() as memory:
                        series = measure(name, op, size.per_level, level)
                    res.load.setdefault(key, Rounds(name)).rounds.append(series)
                    if memory is not None:
                        res.memory.setdefault(key, []).append(memory)

        say(f"cold start: {size.cold_runs} fresh processes, {size.served_cold_runs} served")
        res.cold = cold.cold_start(work, size.cold_runs, size.served_cold_runs)

        say("worker: push attached")
        work.attach_worker()
        customers = [f"bench-{os.getpid()}-many-c{i}" for i in range(size.worker_events)]
        # A round not counted: the worker's clients, the emulators' push and transaction
        # paths warm up (the first round ran at about two thirds of the next ones).
        work.backlog("warm-up", [work.ids("warm", c) for c in customers], 8)
        work.backlog("warm-up", [work.ids("warmf", c) for c in customers], 8, "worker floor")
        for r in range(size.worker_rounds):
            backlog = [work.ids("many", c) for c in customers]
            res.worker.append(work.backlog(f"many customers, round {r + 1}", backlog, 8))
            served = [work.ids("floormany", c) for c in customers]
            res.worker_floors.append(
                work.backlog(f"served floor, round {r + 1}", served, 8, "worker floor")
            )
            raw = [work.ids("rawmany", c) for c in customers]
            res.raw_loops.append(work.raw_loop("raw transaction loop", raw))

        say(f"end to end: {STEADY_RATE:g} events/s for {size.steady_seconds:g} s, a burst")
        res.steady = work.steady(STEADY_RATE, size.steady_seconds, STEADY_CUSTOMERS)
        res.burst = work.burst(size.burst, 8)
        say("stopping the stack")
    res.load_after = os.getloadavg()
    res.elapsed_s = time.perf_counter() - started
    return res
