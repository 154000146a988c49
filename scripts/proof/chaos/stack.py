"""The run's own local stack: emulators, a cuttable proxy in front of each, the functions.

Everything is started through ``scripts.local.localstack`` on free ports, in one
``LocalRun`` the run stops as a whole; every function's log lines are stamped with the
monotonic clock the report's answers and faults carry. The functions reach both emulators
only through the proxies, which the faults cut; the driver and the checks read the
emulators directly.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

from scripts.local import localstack
from scripts.local.tcp_proxy import TcpProxy
from scripts.proof.chaos.scenario import CATALOG

RECONCILE_AFTER_SECONDS = 5
RESTART_TRIES = 5  # a restart on the worker's port may find it not yet released


@dataclass
class ChaosStack:
    """What ``start`` brought up; the worker is restarted on its one port, so the push
    subscription keeps pointing at it."""

    tag: str
    max_attempts: int
    local: localstack.LocalRun
    emulators: localstack.Emulators
    firestore_proxy: TcpProxy
    pubsub_proxy: TcpProxy
    worker_port: int
    workers: list[localstack.Process] = field(default_factory=list)

    @classmethod
    def start(cls, tag: str, max_attempts: int, local: localstack.LocalRun) -> ChaosStack:
        """Emulators, proxies, topics and subscriptions, the catalog (no function yet)."""
        emulators = local.emulators()
        worker_port = localstack.free_port()
        emulators.provision(f"http://127.0.0.1:{worker_port}/", CATALOG)
        return cls(
            tag,
            max_attempts,
            local,
            emulators,
            local.proxy(emulators.firestore_host),
            local.proxy(emulators.pubsub_host),
            worker_port,
        )

    @property
    def worker(self) -> localstack.Process:
        """The worker running now (the last one started)."""
        return self.workers[-1]

    def env(self, mode: str, **extra: str) -> dict[str, str]:
        """A function's environment: both emulators reached through the cuttable proxies."""
        return localstack.function_env(
            pubsub_host=self.pubsub_proxy.address,
            firestore_host=self.firestore_proxy.address,
            mode=mode,
            extra={"MAX_DELIVERY_ATTEMPTS": str(self.max_attempts), **extra},
        )

    def function(self, role: str, target: str, mode: str, **extra: str) -> localstack.Function:
        return localstack.Function(
            f"chaos-{self.tag}-{role}", target, localstack.free_port(), self.env(mode, **extra)
        )

    def start_functions(self) -> tuple[localstack.Process, localstack.Process]:
        """The worker, the queue-mode webhook and reconcile, side by side: (webhook, reconcile)."""
        worker = localstack.Function(
            f"chaos-{self.tag}-worker-1", "paynow_worker", self.worker_port, self.env("queue")
        )
        reconcile = self.function(
            "reconcile",
            "paynow_reconcile",
            "sync",
            RECONCILE_AFTER_SECONDS=str(RECONCILE_AFTER_SECONDS),
            RECONCILE_BATCH_SIZE="5000",
        )
        webhook = self.function("webhook-queue", "paynow_webhook", "queue")
        started = self.local.functions(worker, webhook, reconcile)
        self.workers.append(started[0])
        return started[1], started[2]

    def start_sync_webhook(self) -> localstack.Process:
        (webhook,) = self.local.functions(self.function("webhook-sync", "paynow_webhook", "sync"))
        return webhook

    def kill_worker(self) -> None:
        self.worker.stop(signal.SIGKILL)

    def restart_worker(self) -> float:
        """Start the worker again on its port; how long it took to answer."""
        began = time.monotonic()
        self.workers.append(
            self.local.function(
                f"chaos-{self.tag}-worker-{len(self.workers) + 1}",
                "paynow_worker",
                self.worker_port,
                self.env("queue"),
                tries=RESTART_TRIES,
            )
        )
        return time.monotonic() - began

    def logs(self) -> list[str]:
        return [str(p.log) for p in self.local.processes]
