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
    def __init__(self, batch: int = 200) -> None:
        self.store = FakeStore(CATALOG, now=START)
        self.publisher = FakePublisher()
        store: EventStore = self.store
        publisher: Publisher = self.publisher
        self.settings = settings(
            WEBHOOK_MODE="queue",
            RECONCILE_AFTER_SECONDS=str(AFTER),
            RECONCILE_BATCH_SIZE=str(batch),
        )
        self.reconciler = ReconcileService(self.settings, store, publisher, clock=lambda: NOW)

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
    world.store.events["e-1"]["receivedAt"] = START + timedelta(minutes=1)  # stored out of order
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
