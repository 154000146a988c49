"""Reconcile draining a backlog on the emulators: the real Firestore query and stamps.

Each test has a project of its own on the emulators (Firestore keeps one database per
project), so the counts are exact: no other test's stuck records are in its batches.
``ReconcileService`` runs in this process with the real store and publisher; its clock
is moved instead of waiting out the window.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore, pubsub_v1
from paynow import config
from paynow.adapters import pubsub_publisher
from paynow.adapters.firestore_store import FirestoreEventStore
from paynow.domain.messages import QueueMessage
from paynow.service.reconcile import ReconcileService

from scripts.local import localstack

BACKLOG, BATCH, WINDOW = 1000, 200, 300


@dataclass
class World:
    project: str
    db: firestore.Client
    store: FirestoreEventStore
    subscriber: pubsub_v1.SubscriberClient
    events_sub: str
    dlq_sub: str
    now: float

    def service(self, **env: str) -> ReconcileService:
        settings = config.load(
            {
                "GOOGLE_CLOUD_PROJECT": self.project,
                "RECONCILE_AFTER_SECONDS": str(WINDOW),
                "RECONCILE_BATCH_SIZE": str(BATCH),
                **env,
            }
        )
        publisher = pubsub_publisher.PubSubPublisher(
            pubsub_publisher.publisher_client(), settings.topic_path, settings.dlq_topic_path
        )
        return ReconcileService(settings, self.store, publisher, clock=lambda: self.now)

    def pulled(self, subscription: str, expected: int) -> list[Any]:
        """The messages waiting on ``subscription`` (acknowledged): until ``expected`` came,
        then one more look, so an extra one would be seen too."""
        messages: list[Any] = []
        deadline = time.monotonic() + 60
        while True:
            response = self.subscriber.pull(
                request={
                    "subscription": subscription,
                    "max_messages": 1000,
                    "return_immediately": True,
                },
                timeout=30,
            )
            got = list(response.received_messages)
            if got:
                self.subscriber.acknowledge(
                    request={"subscription": subscription, "ack_ids": [m.ack_id for m in got]}
                )
                messages.extend(m.message for m in got)
            elif len(messages) >= expected or time.monotonic() > deadline:
                return messages
            else:
                time.sleep(0.2)


@pytest.fixture
def world(emulators: localstack.Emulators) -> Iterator[World]:
    project = f"drain-{uuid.uuid4().hex[:8]}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    paths = {}
    for topic in ("paynow-events", "paynow-events-dlq"):
        path = publisher.topic_path(project, topic)
        publisher.create_topic(name=path)
        paths[topic] = subscriber.subscription_path(project, f"{topic}-test")
        subscriber.create_subscription(request={"name": paths[topic], "topic": path})
    db = firestore.Client(project=project)
    yield World(
        project,
        db,
        FirestoreEventStore(db, ttl_days=30),
        subscriber,
        paths["paynow-events"],
        paths["paynow-events-dlq"],
        time.time(),
    )
    for path in paths.values():
        subscriber.delete_subscription(request={"subscription": path})


def stuck_records(world: World, count: int, *, stamped: bool = True) -> list[str]:
    """``count`` records left ``received`` an hour ago, one customer each; oldest first."""
    start = datetime.fromtimestamp(world.now, UTC) - timedelta(hours=1)
    ids = [f"evt-{i:04d}" for i in range(count)]
    for chunk in range(0, count, 500):
        batch = world.db.batch()
        for i, event_id in enumerate(ids[chunk : chunk + 500], chunk):
            received_at = start + timedelta(milliseconds=i)
            record: dict[str, Any] = {
                "eventType": "ON_ORDER_COMPLETED",
                "userId": f"user-{i}",
                "customerId": f"cust-{i}",
                "status": "received",
                "mode": "queue",
                "receivedAt": received_at,
                "attempts": 0,
                "lastError": None,
                "data": {"orderId": f"order-{i}", "lines": [], "totalAmount": 1, "currency": "usd"},
            }
            if stamped:
                record.update(republishedAt=received_at, republishCount=0)
            batch.set(world.db.collection("webhookEvents").document(event_id), record)
        batch.commit()
    return ids


def test_1000_stuck_events_with_batch_200_drain_in_at_most_6_runs_oldest_first(world):
    ids = stuck_records(world, BACKLOG)
    service = world.service()
    runs: list[list[str]] = []
    for _ in range(6):
        world.now += 5  # scheduled runs, all within the window of the first one's stamps
        report = service.run()
        assert report.failed == 0
        runs.append(report.event_ids)
        if report.found == 0:
            break
    assert len(runs) <= 6
    assert [len(r) for r in runs] == [200, 200, 200, 200, 200, 0]
    assert [e for run in runs for e in run] == ids  # oldest first, across runs too
    published = Counter(
        QueueMessage.decode(m.data).event_id for m in world.pulled(world.events_sub, BACKLOG)
    )
    assert set(published) == set(ids) and set(published.values()) == {1}  # none twice
    snaps = world.db.collection("webhookEvents").stream()
    counts = Counter(s.get("republishCount") for s in snaps)
    assert counts == {1: BACKLOG}


def test_a_republished_event_goes_out_again_after_the_window_then_is_dead_lettered(world):
    (event_id,) = stuck_records(world, 1)
    service = world.service(RECONCILE_MAX_REPUBLISHES="2")
    first = world.now
    assert service.run().event_ids == [event_id]
    record = world.db.collection("webhookEvents").document(event_id).get().to_dict() or {}
    assert record["republishCount"] == 1
    assert record["republishedAt"] == datetime.fromtimestamp(first, UTC)
    world.now += WINDOW - 10
    assert service.run().found == 0  # republished within the window: skipped
    world.now += 20
    assert service.run().event_ids == [event_id]
    world.now += WINDOW + 1
    report = service.run()
    assert (report.republished, report.dead_lettered) == (0, 1)
    record = world.db.collection("webhookEvents").document(event_id).get().to_dict() or {}
    assert record["status"] == "dead_lettered"
    assert record["lastError"]["code"] == "attempts_exhausted"
    (letter,) = world.pulled(world.dlq_sub, 1)
    attributes = dict(letter.attributes)
    assert (attributes["eventId"], attributes["errorCode"], attributes["source"]) == (
        event_id,
        "attempts_exhausted",
        "reconcile",
    )
    assert attributes["attempts"] == "2"
    assert len(world.pulled(world.events_sub, 2)) == 2


def test_records_from_before_the_stamp_are_found_once_stamped(world):
    """An upgrade's one-off (paynow-ops reconcile --stamp-legacy): a range filter cannot
    match a missing field, so records written before republishedAt are invisible until
    stamped with their receipt."""
    ids = stuck_records(world, 3, stamped=False)
    service = world.service()
    assert service.run().found == 0
    assert world.store.stamp_unstamped(page=2) == 3
    assert world.store.stamp_unstamped(page=2) == 0  # idempotent
    assert service.run().event_ids == ids
