"""The targets, judged, and ``results.md``: every figure beside the floor it is read against."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts.proof.bench import cold
from scripts.proof.bench.measurement import Rounds, Series, median_ratio
from scripts.proof.bench.run import (
    PEER,
    QUEUE,
    QUEUE_FLOOR,
    RAW_QUEUE,
    RAW_QUEUE_POOL,
    RAW_SYNC,
    SERVE,
    SERVICE_QUEUE,
    SERVICE_SYNC,
    STEADY_RATE,
    SYNC,
    SYNC_FLOOR,
    Results,
)

MIB = 1024 * 1024


@dataclass(frozen=True)
class Check:
    what: str
    value: float
    detail: str
    target: str
    ok: bool | None  # None: reported, not judged


def _judge(what: str, value: float, detail: str, target: str, limit: float) -> Check:
    ok = value >= limit if target.startswith("≥") else value <= limit
    return Check(what, value, detail, target, bool(ok) and value == value)


def checks(res: Results) -> list[Check]:
    seq = res.sequential
    q, qf, s, sf, peer = seq[QUEUE], seq[QUEUE_FLOOR], seq[SYNC], seq[SYNC_FLOOR], seq[PEER]
    pq, pqf = q.pooled(), qf.pooled()
    out = [
        _ratio("queue answer p50 / queue floor p50", q.p50s(), qf.p50s(), "ms", "≤ 1.25x", 1.25),
        _judge(
            "queue answer p99 / queue floor p99 (all rounds pooled)",
            pq.p(99) / pqf.p(99),
            f"{pq.p(99):.1f} / {pqf.p(99):.1f} ms",
            "≤ 2x",
            2.0,
        ),
        _ratio("sync answer p50 / sync floor p50", s.p50s(), sf.p50s(), "ms", "≤ 1.25x", 1.25),
    ]
    if res.worker:
        out.append(
            _ratio(
                "worker events/s (many customers) / raw transaction loop",
                [f.rate for f in res.worker],
                [r.rate for r in res.raw_loops],
                "events/s",
                "≥ 0.7x",
                0.7,
            )
        )
        pushed = [f.rate for f in res.worker]
        pushed_floor = [f.rate for f in res.worker_floors]
        out.append(
            Check(
                "worker events/s / served worker floor's (the raw loop's transaction behind push)",
                median_ratio(pushed, pushed_floor),
                f"{statistics.median(pushed):.1f} / {statistics.median(pushed_floor):.1f} "
                f"events/s, medians of {len(pushed)} rounds",
                "the code's share through push, push and serving apart",
                None,
            )
        )
    first, bare = (float(np.median(res.cold[k])) for k in (cold.FIRST, cold.BARE))
    out.append(
        _judge(
            "cold start (import main + first answer) / bare import",
            first / bare,
            f"{first:.0f} / {bare:.0f} ms (medians)",
            "≤ 1.3x",
            1.3,
        )
    )
    out.append(
        _ratio("peer handler p50 / queue answer p50", peer.p50s(), q.p50s(), "ms", "≥ 1.5x", 1.5)
    )
    for level in res.size.levels:
        web, raw_pool = res.load[QUEUE, level], res.load[RAW_QUEUE_POOL, level]
        out.append(
            _ratio(
                f"queue webhooks/s at {level} clients / raw floor's rate, pool of {level}",
                web.rates(),
                raw_pool.rates(),
                "req/s",
                "≥ 0.7x",
                0.7,
            )
        )
        served = res.load[QUEUE_FLOOR, level]
        out.append(
            Check(
                f"queue webhooks/s at {level} clients / served queue floor's rate",
                median_ratio(web.rates(), served.rates()),
                f"{statistics.median(web.rates()):.1f} / "
                f"{statistics.median(served.rates()):.1f} req/s, medians of "
                f"{len(web.rounds)} rounds",
                "the code's share under load, serving apart",
                None,
            )
        )
    return out


def _ratio(
    what: str, a: list[float], b: list[float], unit: str, target: str, limit: float
) -> Check:
    """A target read as the median over rounds of a / b (each pair from the same round)."""
    detail = (
        f"{statistics.median(a):.1f} / {statistics.median(b):.1f} {unit}, "
        f"medians of {len(a)} rounds"
    )
    return _judge(what, median_ratio(a, b), detail, target, limit)


def cpu_ms_per_request(res: Results, name: str, level: int) -> float:
    """The server's CPU (its gunicorn worker, user + system) per answered request, over
    every round of one series under load: what sizes an instance's vCPU."""
    cpu = sum(m.cpu_seconds for m in res.memory[name, level])
    answered = sum(len(r.ms) for r in res.load[name, level].rounds)
    return cpu * 1000 / answered if answered else float("nan")


def verdict(ok: bool | None) -> str:
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


def _row(x: Series, rounds: Rounds | None = None) -> str:
    per_round = ""
    if rounds is not None and len(rounds.rounds) > 1:
        p50s = rounds.p50s()
        per_round = f" | {min(p50s):.2f} to {max(p50s):.2f}"
    return (
        f"| {x.name} | {len(x.ms)} | {x.p(50):.2f} | {x.p(95):.2f} | {x.p(99):.2f}"
        f"{per_round} | {x.errors} |"
    )


def markdown(res: Results, all_checks: list[Check]) -> str:
    s = res.size
    lb, la = res.load_before, res.load_after
    seq = {name: r.pooled() for name, r in res.sequential.items()}
    threads = sorted(set(res.threads.values()))
    lines = [
        "# Benchmark results",
        "",
        f"Written by `.venv/bin/python -m scripts.proof.bench --size {res.size_name}` on "
        f"{res.started:%Y-%m-%d %H:%M} UTC in {res.elapsed_s:.0f} s. "
        "Method and caveats: [README.md](README.md).",
        "",
        *(f"- {line}" for line in _machine()),
        f"- load average (1/5/15 min) before {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}, "
        f"after {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}",
        f"- sizes: {s.sequential} sequential samples per series in {s.rounds} interleaved "
        f"rounds; under load {s.per_level} requests per series, level and round, "
        f"{s.load_rounds} rounds; worker {s.worker_events} events over as many customers, "
        f"{s.worker_rounds} rounds; end to end {STEADY_RATE:g} events/s for "
        f"{s.steady_seconds:g} s and a burst of {s.burst}; {s.cold_runs} cold starts"
        + (f" (+{s.served_cold_runs} served)" if s.served_cold_runs else ""),
        f"- servers: functions-framework (gunicorn, 1 worker: uvicorn's event loop for the "
        "webhook and its floors, gunicorn's threads for the worker and the peer; THREADS "
        f"{'/'.join(map(str, threads))} as infra/sizing.sh sets them); emulators' push: at "
        "most 2 messages in flight per subscription, one at a time per ordering key",
        "",
        "## Targets",
        "",
        "| target | measured | against | verdict |",
        "|---|---|---|---|",
        *(
            f"| {c.what} | {c.value:.2f}x ({c.detail}) | {c.target} | {verdict(c.ok)} |"
            for c in all_checks
        ),
        "",
        "## Answer times, sequential (ms)",
        "",
        "| series | n | p50 | p95 | p99 | p50 by round (min to max) | errors |",
        "|---|---|---|---|---|---|---|",
        *(_row(seq[name], res.sequential[name]) for name in res.sequential),
        "",
        f"`webhookEvents` held {res.stored_before} records when these began and "
        f"{res.stored_after} when they ended: the emulator answers a query by scanning them.",
        "",
        "## Where the time goes (p50, ms)",
        "",
        "Each column adds one layer: the floor's work alone in the bench's process (raw), the "
        "same work served (floor), the code's service in the bench's process, the code served.",
        "",
        "| mode | serve floor | raw work | floor served | code in-process | code served "
        "| code over floor | peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, raw, floor, svc, web in (
        ("queue", RAW_QUEUE, QUEUE_FLOOR, SERVICE_QUEUE, QUEUE),
        ("sync", RAW_SYNC, SYNC_FLOOR, SERVICE_SYNC, SYNC),
    ):
        f, w = seq[floor].p(50), seq[web].p(50)
        peer = f"{seq[PEER].p(50):.2f}" if mode == "queue" else "-"
        lines.append(
            f"| {mode} | {seq[SERVE].p(50):.2f} | {seq[raw].p(50):.2f} | {f:.2f} "
            f"| {seq[svc].p(50):.2f} | {w:.2f} | {w - f:+.2f} | {peer} |"
        )
    lines += [
        "",
        "## Under load",
        "",
        "Closed loop: each client sends its next request when the last is answered. The "
        "webhook series go over HTTP to one server; the raw floors run the same least work "
        "from a thread pool of the same size in the bench's process, and the served floors the "
        "same work behind the same server as the code. The server's gunicorn worker: its "
        "peak RSS while the series ran, and its CPU (user + system) per answered request.",
        "",
        "| series | clients | requests/s (median of rounds) | p50 ms | p99 ms | RSS peak MiB "
        "| server CPU ms a request | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, level), rounds in res.load.items():
        x = rounds.pooled()
        mem = res.memory.get((name, level))
        rss = f"{max(m.peak for m in mem) / MIB:.1f}" if mem else "-"
        cpu = f"{cpu_ms_per_request(res, name, level):.2f}" if mem else "-"
        rate = statistics.median(rounds.rates())
        lines.append(
            f"| {name} | {level} | {rate:.1f} | {x.p(50):.1f} | {x.p(99):.1f} | {rss} | {cpu} "
            f"| {x.errors} |"
        )
    lines += [
        "",
        "## Worker (through push)",
        "",
        "Each round: events of as many customers accepted while the subscription held them, "
        "then released at once; events/s is the steady state (first processed to last). The "
        "raw loop: the same number of records as the queue leaves them, then one credit "
        "transaction each, one after the other. The served floor: the raw loop's transaction "
        "behind a push endpoint on the worker's server settings, fed the same way as the "
        "worker (push and serving, plus the least work).",
        "",
        "| round | events | worker events/s | p50 to processed | p99 to processed "
        "| not processed | served floor events/s | raw loop events/s | raw loop p50 ms each |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (flow, pushed_floor, loop) in enumerate(
        zip(res.worker, res.worker_floors, res.raw_loops, strict=True), 1
    ):
        lines.append(
            f"| {i} | {flow.events} | {flow.rate:.1f} | {flow.p(50):.2f} s | {flow.p(99):.2f} s "
            f"| {flow.failed} | {pushed_floor.rate:.1f} | {loop.rate:.1f} | {loop.p(50):.2f} |"
        )
    lines += [
        "",
        "## End to end (accepted → processed, through the push subscription)",
        "",
        "From each record's `receivedAt` (the webhook's create) to its `processedAt` (the "
        "worker's commit), both Firestore server timestamps.",
        "",
        "| scenario | events | p50 | p99 | max | not processed |",
        "|---|---|---|---|---|---|",
    ]
    for end in (res.steady, res.burst):
        if end is not None:
            lines.append(
                f"| {end.name} | {end.events} | {end.p(50) * 1000:.0f} ms "
                f"| {end.p(99) * 1000:.0f} ms | {max(end.seconds, default=0) * 1000:.0f} ms "
                f"| {end.failed} |"
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
        f"Bare import: `import {cold.CLIENT_LIBRARIES}`. Cold start: import `main`, then "
        "answer one signed webhook (queue mode) as the ASGI server hands it over (a scope, the "
        "body as one message), clients created on the way.",
        "",
        "![latency](latency.png)",
        "",
        "![throughput](throughput.png)",
        "",
    ]
    return "\n".join(lines)
