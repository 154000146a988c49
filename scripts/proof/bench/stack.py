"""The bench's stack: emulators, the code's functions and the floors' functions, on free ports.

Every piece is started by ``scripts.local.localstack`` (the one way to start them), under
log names of its own (``.local/logs/bench-*``) so it runs beside a developer's stack and
the test suite. The servers get the deploy's settings: ``THREADS`` is the concurrency
``infra/sizing.sh`` gives each function (functions.sh sets it so on Cloud Run).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scripts.local import localstack

SERVED = Path(__file__).with_name("served.py")
SERVED_ASGI = Path(__file__).with_name("served_asgi.py")
SIZING = localstack.ROOT / "infra" / "sizing.sh"
# name: (target, source, mode, sizing prefix); each floor runs with its function's settings,
# on its server: the webhook's on the ASGI server (served_asgi), the worker's on gunicorn's
# threads (served)
FUNCTIONS = {
    "worker": ("paynow_worker", None, "queue", "WORKER"),
    "webhook queue": ("paynow_webhook", None, "queue", "WEBHOOK"),
    "webhook sync": ("paynow_webhook", None, "sync", "WEBHOOK"),
    "serve floor": ("serve_floor", SERVED_ASGI, "queue", "WEBHOOK"),
    "queue floor": ("queue_floor", SERVED_ASGI, "queue", "WEBHOOK"),
    "sync floor": ("sync_floor", SERVED_ASGI, "sync", "WEBHOOK"),
    "peer": ("peer_webhook", SERVED, "queue", "WEBHOOK"),
    "worker floor": ("worker_floor", SERVED, "queue", "WORKER"),
}


def sizing(path: Path = SIZING) -> dict[str, str]:
    """The ``NAME=value`` assignments of ``infra/sizing.sh``."""
    pattern = re.compile(r"^([A-Z][A-Z0-9_]*)=(\S+)$")
    return {
        m.group(1): m.group(2)
        for line in path.read_text().splitlines()
        if (m := pattern.match(line.strip()))
    }


@dataclass
class BenchStack:
    pubsub_host: str
    firestore_host: str
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, localstack.Process] = field(default_factory=dict)
    emulators: dict[str, localstack.Process] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)

    def env(self, mode: str, threads: int | None = None) -> dict[str, str]:
        extra = {"THREADS": str(threads)} if threads else None
        return localstack.function_env(
            pubsub_host=self.pubsub_host, firestore_host=self.firestore_host, mode=mode, extra=extra
        )

    def start(
        self,
        name: str,
        started: list[localstack.Process],
        spec: tuple[str, Path | None, str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> localstack.Process:
        """Serve ``name`` (``spec``: its target, source, mode and sizing prefix, else its
        entry in ``FUNCTIONS``), with ``extra`` added to its environment."""
        target, source, mode, prefix = spec or FUNCTIONS[name]
        port = localstack.free_port()
        threads = int(sizing()[f"{prefix}_CONCURRENCY"])
        proc = localstack.start_function(
            f"bench-{re.sub(r'[^a-z0-9]+', '-', name.lower())}-{port}",
            target,
            port,
            {**self.env(mode, threads), **(extra or {})},
            source=source or localstack.FUNCTIONS / "main.py",
            started=started,
        )
        self.urls[name], self.processes[name], self.threads[name] = proc.address, proc, threads
        return proc


@contextlib.contextmanager
def bench_stack() -> Iterator[BenchStack]:
    """Both emulators side by side, then every function of ``FUNCTIONS`` side by side;
    everything stops when the block ends."""
    procs: list[localstack.Process] = []
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            pubsub, fs = _all(
                [
                    pool.submit(
                        localstack.start_pubsub_emulator, localstack.free_port(), started=procs
                    ),
                    pool.submit(
                        localstack.start_firestore_emulator, localstack.free_port(), started=procs
                    ),
                ]
            )
            stack = BenchStack(pubsub.address, fs.address)
            stack.emulators = {"Pub/Sub emulator": pubsub, "Firestore emulator": fs}
            with localstack.emulator_env(pubsub.address, fs.address):
                # the worker's URL is not known yet: provision_pubsub runs again once it is
                localstack.provision_pubsub("http://127.0.0.1:9/")
                localstack.seed_catalog()
            _all([pool.submit(stack.start, name, procs) for name in FUNCTIONS])
        with localstack.emulator_env(pubsub.address, fs.address):
            localstack.provision_pubsub(stack.urls["worker"])
            yield stack
    finally:
        localstack.stop_all(procs)


def _all(futures: list[cf.Future[localstack.Process]]) -> list[localstack.Process]:
    """Wait for every start (each is in ``started`` from its first moment), then raise the
    first failure."""
    out, failure = [], None
    for future in futures:
        try:
            out.append(future.result())
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return out
