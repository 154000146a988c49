"""The publisher adapter over a mocked ``PublisherClient``: what it does with a paused key."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from google.cloud.pubsub_v1.publisher.exceptions import PublishToPausedOrderingKeyException
from paynow.adapters.pubsub_publisher import PubSubPublisher
from paynow.domain.errors import DependencyUnavailable
from paynow.domain.messages import QueueMessage
from pytest_mock import MockerFixture

TOPIC, DLQ = "projects/p/topics/paynow-events", "projects/p/topics/paynow-events-dlq"
MESSAGE = QueueMessage(event_id="e1", event_type="ON_ORDER_COMPLETED", customer_id="c1")


def _done(value: str | None = None, error: Exception | None = None) -> Future[str]:
    future: Future[str] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value or "m1")
    return future


def test_a_paused_key_is_resumed_and_the_message_published(mocker: MockerFixture) -> None:
    client = mocker.Mock()
    client.publish.side_effect = [PublishToPausedOrderingKeyException("c1"), _done("m7")]
    assert PubSubPublisher(client, TOPIC, DLQ).publish(MESSAGE).wait() == "m7"
    client.resume_publish.assert_called_once_with(TOPIC, "c1")
    assert [c.kwargs["ordering_key"] for c in client.publish.call_args_list] == ["c1", "c1"]


def test_a_key_that_stays_paused_is_a_transient_error(mocker: MockerFixture) -> None:
    client = mocker.Mock()
    client.publish.side_effect = PublishToPausedOrderingKeyException("c1")
    with pytest.raises(DependencyUnavailable, match="ordering key paused"):
        PubSubPublisher(client, TOPIC, DLQ).publish(MESSAGE)


def test_a_failed_publish_resumes_its_key_for_the_next_one(mocker: MockerFixture) -> None:
    client = mocker.Mock()
    client.publish.return_value = _done(error=RuntimeError("send failed"))
    pending = PubSubPublisher(client, TOPIC, DLQ).publish(MESSAGE)
    client.resume_publish.assert_called_once_with(TOPIC, "c1")
    with pytest.raises(RuntimeError):
        pending.wait()
