"""``AsyncQueue``: queue mode's steps on an event loop, over the in-memory store and publisher."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from paynow.adapters.secrets import StaticSecrets
from paynow.domain import payloads
from paynow.domain.errors import DependencyUnavailable
from paynow.domain.events import PayNowEvent, normalize, parse_envelope
from paynow.service.async_queue import AsyncQueue
from paynow.service.webhook import Accepted, WebhookService

from tests.unit.fakes import FakeAsyncPublisher, FakeAsyncRecords, FakePublisher, FakeStore
from tests.unit.helpers import CATALOG, SECRET, settings


def _event(event_id: str = "e1") -> PayNowEvent:
    doc = payloads.order_completed(event_id, "o1", "cust-7", "user-42", [("gems-100", 1, 199)])
    return normalize(parse_envelope(payloads.encode(doc)), "user_id")


def _queue(store: FakeStore, publisher: FakePublisher) -> tuple[WebhookService, AsyncQueue]:
    service = WebhookService(
        settings(WEBHOOK_MODE="queue"), store, publisher, StaticSecrets(SECRET)
    )
    return service, AsyncQueue(FakeAsyncRecords(store), FakeAsyncPublisher(publisher))


def test_the_publish_goes_out_before_the_record_is_created_and_both_are_done() -> None:
    store = FakeStore(CATALOG)
    publisher = FakePublisher(store.journal)
    service, queue = _queue(store, publisher)
    answer = asyncio.run(queue.run(service.enqueue_steps(_event())))
    assert answer == Accepted("accepted", "e1")
    assert store.journal == ["publisher.publish:e1", "store.record_received:e1"]
    assert store.events["e1"]["status"] == "received"
    assert [m.event_id for m in publisher.published] == ["e1"]
    assert publisher.pendings[0].waited


def test_a_failed_publish_is_the_answer_s_error() -> None:
    store = FakeStore(CATALOG)
    publisher = FakePublisher(store.journal, publish_error=DependencyUnavailable("Pub/Sub down"))
    service, queue = _queue(store, publisher)
    with pytest.raises(DependencyUnavailable):
        asyncio.run(queue.run(service.enqueue_steps(_event())))


def test_a_duplicate_answers_without_the_publish_and_its_failure_is_not_left_unseen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore(CATALOG)
    publisher = FakePublisher(store.journal, publish_error=DependencyUnavailable("Pub/Sub down"))
    service, queue = _queue(store, publisher)
    store.events["e1"] = {"status": "processed"}

    async def run() -> Any:
        answer = await queue.run(service.enqueue_steps(_event()))
        await asyncio.sleep(0.01)  # the publish task ends, failed
        return answer

    assert asyncio.run(run()) == Accepted("duplicate", "e1")
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    assert "exception was never retrieved" not in caplog.text
