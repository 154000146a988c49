"""How samples are taken: latency series, rounds, the HTTP client, worker runs, memory.

Everything here is independent of what is measured: ``floors`` and ``workload`` supply
the operations (each returns the milliseconds it took, or raises), ``run`` puts them
in interleaved rounds, ``report`` reads the samples.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import http.client
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from scripts.local import localstack
from scripts.ops.output import progress

HTTP_TIMEOUT = 60.0

Op = Callable[[], float]
"""One measured operation: runs once and returns the milliseconds it took."""


@dataclass
class Series:
    """Latencies of one operation (ms) with the wall time they took and the failures."""

    name: str
    ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def p(self, q: float) -> float:
        return float(np.percentile(self.ms, q)) if self.ms else float("nan")

    @property
    def rate(self) -> float:
        """Answers per second of wall time (for a concurrent series: its throughput)."""
        return len(self.ms) / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Rounds:
    """One operation measured in several rounds, each a ``Series``; pooled on demand."""

    name: str
    rounds: list[Series] = field(default_factory=list)

    def pooled(self) -> Series:
        out = Series(self.name)
        for r in self.rounds:
            out.ms += r.ms
            out.seconds += r.seconds
            out.errors += r.errors
        return out

    def p50s(self) -> list[float]:
        return [r.p(50) for r in self.rounds]

    def rates(self) -> list[float]:
        return [r.rate for r in self.rounds]


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of ``a / b``, each pair measured in the same round."""
    ratios = [x / y for x, y in zip(a, b, strict=True) if y]
    return statistics.median(ratios) if ratios else float("nan")


def measure(name: str, op: Op, n: int, threads: int = 1) -> Series:
    """Run ``op`` ``n`` times on ``threads`` threads; a raised exception counts as an error."""
    series = Series(name)
    lock = threading.Lock()

    def one(advance: Callable[[int], None]) -> None:
        try:
            ms = op()
        except Exception as exc:
            with lock:
                series.errors += 1
                first = series.errors <= 3
            if first:
                print(f"  {name}: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        else:
            with lock:
                series.ms.append(ms)
        advance(1)

    with progress(f"{name} x{threads}", n) as advance:
        started = time.perf_counter()
        if threads == 1:
            for _ in range(n):
                one(advance)
        else:
            with cf.ThreadPoolExecutor(threads, thread_name_prefix="bench") as pool:
                for future in [pool.submit(one, advance) for _ in range(n)]:
                    future.result()
        series.seconds = time.perf_counter() - started
    return series


def interleaved(
    ops: list[tuple[str, Op]], n: int, rounds: int, threads: int = 1
) -> dict[str, Rounds]:
    """Each op ``n`` times in all, split over ``rounds`` rounds that take every op in turn,
    so noise from elsewhere on the machine falls on floors and code alike."""
    out = {name: Rounds(name) for name, _ in ops}
    chunk = max(1, n // rounds)
    for _ in range(rounds):
        for name, op in ops:
            out[name].rounds.append(measure(name, op, chunk, threads))
    return out


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the client --------------------------------------------------------------------


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
    per call here (a GET answered 405 took 3.2 ms through it, 1.2 ms through
    http.client), which would be counted as the server's answer time.
    """
    parts = urlsplit(url)
    key = (parts.hostname, parts.port)
    conns: dict[Any, http.client.HTTPConnection] = _local.__dict__.setdefault("conns", {})
    for attempt in (1, 2):
        conn = conns.get(key)
        if conn is None:
            conn = conns[key] = http.client.HTTPConnection(
                str(parts.hostname), parts.port, timeout=HTTP_TIMEOUT
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


def post_json(url: str, body: bytes, headers: dict[str, str], expect: str) -> float:
    """POST and time it; the answer must be 200 with ``status`` ``expect``."""
    started = time.perf_counter()
    answer = request("POST", url, body, {"Content-Type": "application/json", **headers})
    ms = (time.perf_counter() - started) * 1000
    status = answer.json().get("status") if answer.status == 200 else None
    if status != expect:
        raise RuntimeError(f"{url} answered {answer.status} {answer.body[:200]!r}")
    return ms


# --- the worker and memory -------------------------------------------------------------


@dataclass
class Flow:
    """Events that went through the queue: each one's seconds from a start to processed."""

    name: str
    events: int
    seconds: list[float]
    failed: int

    @property
    def rate(self) -> float:
        """Steady state: events after the first / time from the first processed to the last."""
        done = sorted(self.seconds)
        span = done[-1] - done[0] if len(done) > 1 else 0.0
        return (len(done) - 1) / span if span > 0 else float("nan")

    def p(self, q: float) -> float:
        return float(np.percentile(self.seconds, q)) if self.seconds else float("nan")


@dataclass
class Memory:
    """RSS of one process, sampled while a block runs: the peak and the last value (bytes);
    and the CPU it spent meanwhile (user + system), for the CPU a request costs."""

    pid: int
    samples: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    @property
    def last(self) -> int:
        return self.samples[-1] if self.samples else 0


@contextlib.contextmanager
def periodically(sample: Callable[[], None], every: float) -> Iterator[None]:
    """``sample()`` at once and then every ``every`` seconds, on a thread of its own, until
    the block ends (the sampler of memory and threads while a load runs)."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            sample()
            if stop.wait(every):
                return

    thread = threading.Thread(target=loop, name="sampler", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextlib.contextmanager
def sampling_rss(pid: int, every: float = 0.25) -> Iterator[Memory]:
    """Sample ``pid``'s RSS every ``every`` seconds while the block runs, and its CPU."""
    memory = Memory(pid)

    def sample() -> None:
        with contextlib.suppress(OSError, RuntimeError):
            memory.samples.append(localstack.rss_bytes(pid))

    cpu_before = localstack.cpu_seconds(pid)
    try:
        with periodically(sample, every):
            yield memory
    finally:
        sample()
        memory.cpu_seconds = localstack.cpu_seconds(pid) - cpu_before
