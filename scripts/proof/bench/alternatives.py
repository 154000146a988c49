"""The load target's alternatives, measured beside the code and its floors in one run.

    .venv/bin/python -m scripts.proof.bench.alternatives               # 5 rounds of 800
    .venv/bin/python -m scripts.proof.bench.alternatives --rounds 1 --requests 48

Target 6 of the bench is queue webhooks/s under load against the raw floor from a pool of
the same size. This runs, in interleaved rounds at each concurrency, the raw pool, the
served queue floor and the code as the bench does, and beside them the ways of serving
that were weighed:

- ``WSGI floor: gunicorn threads``: queue mode's least work on gunicorn's threads with the
  blocking clients (``served.wsgi_queue_floor``), as the webhook was served before it became
  an ASGI function;
- ``webhook, 2 processes``: the code unchanged, ``WORKERS=2`` (two uvicorn workers under
  gunicorn's arbiter: two interpreters, so two GILs, on the instance's vCPUs);
- ``ASGI: the service on threads``: the code's service unchanged behind functions-framework's
  ASGI server, every request on a thread (``served_asgi.webhook_on_threads``): the ASGI server
  without the event loop's fast path.

It prints one markdown table and writes nothing else. Numbers are not judged: the CI runs
it tiny to keep it working.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "functions"))

from scripts.local import localstack
from scripts.proof.bench.measurement import Rounds, measure, say
from scripts.proof.bench.run import QUEUE, QUEUE_FLOOR, RAW_QUEUE_POOL
from scripts.proof.bench.stack import SERVED, SERVED_ASGI, bench_stack
from scripts.proof.bench.workload import Workload

WSGI_FLOOR = "WSGI floor: gunicorn threads"
TWO_PROCESSES = "webhook, 2 processes"
ASGI_THREADS = "ASGI: the service on threads"


@dataclass(frozen=True)
class Alternative:
    name: str
    target: str
    source: Path
    extra: dict[str, str]


ALTERNATIVES = (
    Alternative(WSGI_FLOOR, "wsgi_queue_floor", SERVED, {}),
    Alternative(
        TWO_PROCESSES, "paynow_webhook", localstack.FUNCTIONS / "main.py", {"WORKERS": "2"}
    ),
    Alternative(ASGI_THREADS, "webhook_on_threads", SERVED_ASGI, {}),
)


def run(rounds: int, requests: int, levels: tuple[int, ...]) -> dict[tuple[str, int], Rounds]:
    """Every series at every level, interleaved in ``rounds``, after a warm-up of each."""
    started: list[localstack.Process] = []
    out: dict[tuple[str, int], Rounds] = {}
    with bench_stack() as stack:
        try:
            for alt in ALTERNATIVES:
                spec = (alt.target, alt.source, "queue", "WEBHOOK")  # the webhook's settings
                stack.start(alt.name, started, spec, alt.extra)
            work = Workload(stack)
            work.detach_worker()

            def served(n: int, name: str) -> Callable[[], float]:
                return lambda: work.post(name, "accepted", work.ids(f"alt{n}"))

            series: list[tuple[str, Callable[[], float]]] = [
                (RAW_QUEUE_POOL, work.raw_queue_work),
                (QUEUE_FLOOR, work.queue_floor),
                (QUEUE, work.queue_webhook),
                *((alt.name, served(n, alt.name)) for n, alt in enumerate(ALTERNATIVES)),
            ]
            say("warming up")
            for name, op in series:
                measure(name, op, 40, 8)
            for r in range(rounds):
                say(f"round {r + 1} of {rounds}")
                for level in levels:
                    for name, op in series:
                        got = measure(name, op, requests, level)
                        out.setdefault((name, level), Rounds(name)).rounds.append(got)
        finally:
            localstack.stop_all(started)
    return out


def table(results: dict[tuple[str, int], Rounds], levels: tuple[int, ...]) -> str:
    """Median req/s over rounds, its ratio to the raw pool's (each round's own), p99, errors."""
    names = list(dict.fromkeys(name for name, _ in results))
    lines = [
        "| series | " + " | ".join(f"{c} clients: req/s, x raw, p99 ms" for c in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for name in names:
        cells = []
        for level in levels:
            mine, raw = results[(name, level)], results[(RAW_QUEUE_POOL, level)]
            ratios = [m / r for m, r in zip(mine.rates(), raw.rates(), strict=True) if r]
            pooled = mine.pooled()
            errors = f", {pooled.errors} errors" if pooled.errors else ""
            cells.append(
                f"{statistics.median(mine.rates()):.0f}, {statistics.median(ratios):.2f}x, "
                f"{pooled.p(99):.1f}{errors}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.proof.bench.alternatives", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=800, help="per series, level and round")
    parser.add_argument("--levels", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args(argv)
    levels = tuple(args.levels)
    # The services log to stdout as the functions do: to a file, as theirs.
    service_log = localstack.LOGS / f"bench-alternatives-{os.getpid()}.log"
    service_log.parent.mkdir(parents=True, exist_ok=True)
    with service_log.open("w") as log, contextlib.redirect_stdout(log):
        results = run(args.rounds, args.requests, levels)
    print(f"{args.rounds} rounds of {args.requests} requests a series and level\n")
    print(table(results, levels), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
