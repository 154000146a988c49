"""``ReconcileService.run``: events stuck in ``received`` are published again, oldest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from paynow.adapters.secrets import StaticSecrets
from paynow.domain import payloads
from paynow.domain.errors import DependencyUnavailable
from paynow.domain.events import PayNowEvent, normalize, parse_envelope
from paynow.domain.messages import QueueMessage
from paynow.service.ports import EventStore, Publisher
from paynow.service.reconcile import ReconcileService
from paynow.service.webhook import WebhookService
from paynow.service.worker import WorkerService
from pytest_mock import MockerFixture

from tests.unit.fakes import FakePending, FakePublisher, FakeStore
from tests.unit.helpers import CATALOG, NOW, SECRET, push, settings

AFTER = 300
START = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)


def event(doc: dict[str, Any]) -> PayNowEvent:
    return normalize(parse_envelope(payloads.encode(doc)), "user_id")


def order(event_id: str, customer: str = "cust-7", user: str | None = "user-42") -> Any:
    return payloads.order_completed(
        event_id, f"o-{event_id}", customer, user, [("gems-100", 1, 199)]
    )


class World:
    def __init__(self, batch: int = 200, max_republishes: int = 10) -> None:
        self.store = FakeStore(CATALOG, now=START)
        self.publisher = FakePublisher()
        store: EventStore = self.store
        publisher: Publisher = self.publisher
        self.settings = settings(
            WEBHOOK_MODE="queue",
            RECONCILE_AFTER_SECONDS=str(AFTER),
            RECONCILE_BATCH_SIZE=str(batch),
            RECONCILE_MAX_REPUBLISHES=str(max_republishes),
        )
        self.clock = NOW
        self.reconciler = ReconcileService(
            self.settings, store, publisher, clock=lambda: self.clock
        )

    def received(self, doc: dict[str, Any], at: datetime) -> None:
        self.store.now = at
        assert self.store.record_received(event(doc), "queue") is None


@pytest.fixture
def world() -> World:
    return World()


def test_nothing_stuck_publishes_nothing(world: World) -> None:
    report = world.reconciler.run()
    assert (report.found, report.republished, report.failed) == (0, 0, 0)
    assert report.older_than_seconds == AFTER
    assert world.publisher.published == []


def test_only_old_received_events_are_published_again_oldest_first(world: World) -> None:
    world.received(order("e-2"), START + timedelta(minutes=2))
    world.received(order("e-1", customer="cust-8", user=None), START + timedelta(minutes=3))
    for field in ("receivedAt", "republishedAt"):  # stored out of order (both start equal)
        world.store.events["e-1"][field] = START + timedelta(minutes=1)
    world.received(order("e-young"), datetime.fromtimestamp(NOW - AFTER + 5, UTC))
    world.received(order("e-done"), START)
    world.store.process(None, "e-done", "queue")
    report = world.reconciler.run()
    assert report.found == 2
    assert report.republished == 2
    assert report.event_ids == ["e-1", "e-2"]
    assert world.publisher.published == [
        QueueMessage("e-1", "ON_ORDER_COMPLETED", "cust-8", None),
        QueueMessage("e-2", "ON_ORDER_COMPLETED", "cust-7", "user-42"),
    ]
    assert world.publisher.published[0].ordering_key == "cust-8"
    assert all(p.waited for p in world.publisher.pendings)


def test_one_run_handles_at_most_one_batch() -> None:
    world = World(batch=2)
    for i in range(5):
        world.received(order(f"e-{i}"), START + timedelta(seconds=i))
    report = world.reconciler.run()
    assert (report.found, report.republished) == (2, 2)
    assert report.event_ids == ["e-0", "e-1"]


def test_failed_publishes_are_counted_and_the_rest_still_go(
    world: World, mocker: MockerFixture
) -> None:
    world.received(order("e-1"), START)
    world.received(order("e-2"), START + timedelta(seconds=1))
    outcomes = iter([DependencyUnavailable("Pub/Sub unavailable"), None])

    def publish(message: QueueMessage) -> FakePending:
        world.publisher.published.append(message)
        return FakePending("m", next(outcomes))

    mocker.patch.object(world.publisher, "publish", side_effect=publish)
    report = world.reconciler.run()
    assert (report.found, report.republished, report.failed) == (2, 1, 1)
    assert report.event_ids == ["e-2"]


def test_a_publish_refused_at_once_is_counted_and_the_rest_still_go(
    world: World, mocker: MockerFixture
) -> None:
    """publish itself may raise (a paused ordering key): the run goes on and reports it."""
    world.received(order("e-1"), START)
    world.received(order("e-2"), START + timedelta(seconds=1))
    real = world.publisher.publish
    refusals = iter([DependencyUnavailable("Pub/Sub unavailable (ordering key paused)")])

    def publish(message: QueueMessage) -> FakePending:
        if message.event_id == "e-1":
            raise next(refusals)
        return real(message)

    mocker.patch.object(world.publisher, "publish", side_effect=publish)
    report = world.reconciler.run()
    assert (report.found, report.republished, report.failed) == (2, 1, 1)
    assert report.event_ids == ["e-2"]


def test_event_whose_publish_failed_is_recovered_and_credited_once(world: World) -> None:
    """The webhook stored the event but its publish failed and PayNow never retried."""
    world.store.now = START
    webhook = WebhookService(
        world.settings, world.store, world.publisher, StaticSecrets(SECRET), clock=lambda: NOW
    )
    worker = WorkerService(world.settings, world.store, world.publisher, clock=lambda: NOW)
    world.publisher.publish_error = DependencyUnavailable("Pub/Sub unavailable")
    body, h = payloads.signed(order("e-lost"), SECRET, int(NOW * 1000))
    with pytest.raises(DependencyUnavailable):
        webhook.accept(body, h["PayNow-Signature"], h["PayNow-Timestamp"])
    assert world.store.status("e-lost") == "received"
    world.publisher.publish_error = None
    assert world.reconciler.run().event_ids == ["e-lost"]
    message = world.publisher.published[-1]
    assert worker.handle(push(message)).status == "processed"
    assert world.store.balance("user-42") == 100
    # a second run finds nothing, and a stray second delivery is a duplicate
    assert world.reconciler.run().found == 0
    assert worker.handle(push(message)).status == "duplicate"
    assert world.store.balance("user-42") == 100


# --- draining: stamps, the window, the limit ---------------------------------------------


def test_each_republish_is_stamped_and_waits_a_window_before_the_next() -> None:
    world = World()
    world.received(order("e-1"), START)
    received_at = world.store.events["e-1"]["receivedAt"]
    assert world.store.events["e-1"]["republishedAt"] == received_at  # its first publish
    assert world.reconciler.run().event_ids == ["e-1"]
    record = world.store.events["e-1"]
    assert record["republishCount"] == 1
    assert record["republishedAt"] == datetime.fromtimestamp(NOW, UTC)
    assert record["receivedAt"] == received_at  # receipt stays as it was
    world.clock = NOW + AFTER - 1  # within the window of its republish: left alone
    assert world.reconciler.run().found == 0
    world.clock = NOW + AFTER + 1
    assert world.reconciler.run().event_ids == ["e-1"]
    assert world.store.events["e-1"]["republishCount"] == 2
    assert len(world.publisher.published) == 2


def test_a_backlog_larger_than_a_batch_drains_across_runs_oldest_first() -> None:
    world = World(batch=3)
    for i in range(10):
        world.received(order(f"e-{i}", customer=f"c-{i}"), START + timedelta(seconds=i))
    runs = []
    for _ in range(5):
        world.clock += 1  # a few runs within one window: none of this run's comes back
        runs.append(world.reconciler.run().event_ids)
    assert runs == [
        ["e-0", "e-1", "e-2"],
        ["e-3", "e-4", "e-5"],
        ["e-6", "e-7", "e-8"],
        ["e-9"],
        [],
    ]
    published = [m.event_id for m in world.publisher.published]
    assert sorted(published) == sorted(f"e-{i}" for i in range(10))  # each exactly once


def test_a_failed_publish_is_not_stamped_and_goes_first_next_run(
    world: World, mocker: MockerFixture
) -> None:
    world.received(order("e-1"), START)
    world.received(order("e-2"), START + timedelta(seconds=1))
    failing = iter([DependencyUnavailable("Pub/Sub unavailable"), None])
    real = world.publisher.publish

    def publish(message: QueueMessage) -> FakePending:
        pending = real(message)
        pending.error = next(failing, None)
        return pending

    mocker.patch.object(world.publisher, "publish", side_effect=publish)
    assert world.reconciler.run().event_ids == ["e-2"]
    assert world.store.events["e-1"]["republishCount"] == 0
    world.clock += 1
    assert world.reconciler.run().event_ids == ["e-1"]


def test_after_max_republishes_a_still_received_event_is_dead_lettered() -> None:
    world = World(max_republishes=2)
    world.received(order("e-1"), START)
    for _ in range(2):
        assert world.reconciler.run().event_ids == ["e-1"]
        world.clock += AFTER + 1
    report = world.reconciler.run()
    assert (report.found, report.republished, report.dead_lettered) == (1, 0, 1)
    assert report.dead_lettered_ids == ["e-1"]
    assert len(world.publisher.published) == 2  # not a third time
    (letter,) = world.publisher.letters
    assert (letter.event_id, letter.error_code, letter.source, letter.attempts) == (
        "e-1",
        "attempts_exhausted",
        "reconcile",
        2,
    )
    assert QueueMessage.decode(letter.data).event_id == "e-1"  # the ids-only message
    record = world.store.events["e-1"]
    assert record["status"] == "dead_lettered"
    assert record["lastError"]["code"] == "attempts_exhausted"
    world.clock += AFTER + 1
    assert world.reconciler.run().found == 0  # final: never found again


def test_a_replayed_event_starts_its_republish_count_again() -> None:
    """dlq replay reopens and publishes: reconcile must not give up on it at once."""
    world = World(max_republishes=1)
    world.received(order("e-1"), START)
    world.reconciler.run()
    world.clock += AFTER + 1
    assert world.reconciler.run().dead_lettered == 1
    world.store.now = datetime.fromtimestamp(world.clock, UTC)
    reopened = world.store.reopen("e-1")
    assert reopened is not None and reopened.status == "received"
    assert world.store.events["e-1"]["republishCount"] == 0
    assert world.reconciler.run().found == 0  # just published by the replay
    world.clock += AFTER + 1
    report = world.reconciler.run()
    assert (report.republished, report.dead_lettered) == (1, 0)


def test_a_record_without_the_stamp_is_not_found_as_firestore_would_not() -> None:
    """Why every record is created with ``republishedAt``: a range filter skips a missing
    field, so the fake (like Firestore) never matches such a record."""
    world = World()
    world.received(order("e-1"), START)
    del world.store.events["e-1"]["republishedAt"]
    assert world.reconciler.run().found == 0
