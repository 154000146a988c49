"""The driver: PayNow as it behaves, delivering the scenario's webhooks.

One customer's events are sent in order (the next after the previous got its 2xx),
customers concurrently, at ``rate`` events per second; any answer above 299 (or none) is
retried with exponential backoff until a 2xx, each attempt signed anew. Copies (the
duplicates, the retries across the switch) go on the side. Every attempt and its answer is
recorded with the monotonic clock, for the invariants and the report.
"""

from __future__ import annotations

import concurrent.futures as cf
import heapq
import itertools
import random
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

import requests
from paynow.domain import payloads

from scripts.local import localstack
from scripts.proof.chaos.scenario import Planned

SECRET = localstack.DEMO_SECRET
REQUEST_TIMEOUT = 60.0  # one webhook request; the functions bound their own calls to ~10-20 s
DELIVERY_DEADLINE = 300.0  # a delivery still without a 2xx after this is reported as lost
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 4.0
SENDER_THREADS, COPY_THREADS = 64, 16  # mostly asleep in backoff: one lane each


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
