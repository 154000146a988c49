"""The faults: a seeded plan of worker kills and connection cuts, fired at event counts,
and the switch from queue to sync mode halfway with messages still in flight.

Faults fire when a number of events has been released (plus a seeded delay), not at clock
times, so a replay runs the same scenario. The production code has no fault hooks: a kill
is a SIGKILL to the worker's process group, a cut resets and refuses every connection of
the functions' proxy to one emulator.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from scripts.local import localstack
from scripts.local.tcp_proxy import TcpProxy
from scripts.proof.chaos.driver import Driver
from scripts.proof.chaos.stack import ChaosStack
from scripts.proof.chaos.world import count_received
from scripts.proof.verdicts import say


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
            took = self.stack.restart_worker()
            fault.restored_at = time.monotonic()
            fault.note = f"backlog {backlog}, restart {took:.1f}s"
            say("chaos", f"worker SIGKILLed at event {fault.trigger} ({fault.note})")
            return
        proxy: TcpProxy = (
            self.stack.firestore_proxy if fault.kind == "firestore" else self.stack.pubsub_proxy
        )
        fault.fired_at = time.monotonic()
        proxy.cut()
        time.sleep(fault.duration)
        proxy.restore()
        fault.restored_at = time.monotonic()
        say("chaos", f"{fault.kind} cut for {fault.duration:.1f}s at event {fault.trigger}")


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
    """Start a sync-mode webhook, move PayNow's traffic to it, retry some first-half events,
    and stop the queue-mode webhook once its last request is answered. A failure is noted
    in ``switch.error`` (a harness failure: the run did not switch)."""
    try:
        switch.started = time.monotonic()
        sync = stack.start_sync_webhook()
        switch.in_flight = count_received(db, limit=5000)
        driver.switch_to(sync.address, "sync")
        switch.flipped = time.monotonic()
        switch.at_event = driver.released
        say(
            "chaos",
            f"switched to sync mode at event {switch.at_event}: {switch.in_flight} still received",
        )
        retries = [e for e in driver.events[: switch.at_event] if e.switch_retry]
        switch.retried = len(retries)
        for k, event in enumerate(retries):
            # A retry of what PayNow already delivered: never ahead of the original's 2xx.
            driver.send_copy(event, "switch", time.monotonic() + 0.05 * k, after_2xx=True)
        while driver.inflight("queue"):
            time.sleep(0.05)
        queue_webhook.stop()
        switch.queue_webhook_stopped = time.monotonic()
    except Exception as exc:
        switch.error = f"{type(exc).__name__}: {exc}"
