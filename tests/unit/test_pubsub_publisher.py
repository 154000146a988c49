"""The publisher adapter over a mocked ``PublisherClient``: one Publish RPC per message,
started at once, its failures retried or turned into transient errors."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from paynow.adapters.pubsub_publisher import PubSubPublisher
from paynow.domain.errors import DependencyUnavailable
from paynow.domain.messages import DeadLetter, QueueMessage
from pytest_mock import MockerFixture

TOPIC, DLQ = "projects/p/topics/paynow-events", "projects/p/topics/paynow-events-dlq"
MESSAGE = QueueMessage(event_id="e1", event_type="ON_ORDER_COMPLETED", customer_id="c1")


class _Failed(grpc.RpcError, grpc.Call):
    """What gRPC's future raises: an ``RpcError`` that is also the call, with its code."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "refused"

    def trailing_metadata(self) -> Any:
        return ()

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> Any:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def _client(mocker: MockerFixture, outcome: Any) -> Any:
    """A client whose Publish future answers ``outcome`` (a message id, or raises it)."""
    client = mocker.Mock()
    call = client.api.transport.publish.future.return_value
    if isinstance(outcome, BaseException):
        call.result.side_effect = outcome
    else:
        call.result.return_value.message_ids = [outcome]
    return client


def test_a_message_goes_out_in_one_rpc_with_its_key_and_attributes(mocker: MockerFixture) -> None:
    client = _client(mocker, "m7")
    pending = PubSubPublisher(client, TOPIC, DLQ).publish(MESSAGE)
    (request,), kwargs = client.api.transport.publish.future.call_args
    assert request.topic == TOPIC
    (sent,) = request.messages
    assert (sent.ordering_key, sent.data, dict(sent.attributes)) == (
        "c1",
        MESSAGE.data(),
        MESSAGE.attributes(),
    )
    assert kwargs["timeout"] == 10.0
    assert ("x-goog-request-params", f"topic={TOPIC}") in kwargs["metadata"]
    assert pending.wait() == "m7"
    client.api.publish.assert_not_called()


def test_a_message_without_a_customer_is_keyed_by_its_event(mocker: MockerFixture) -> None:
    client = _client(mocker, "m1")
    PubSubPublisher(client, TOPIC, DLQ).publish(QueueMessage("e9", "ON_REFUND", None))
    (request,), _ = client.api.transport.publish.future.call_args
    assert request.messages[0].ordering_key == "e9"


def test_a_passing_failure_is_retried_with_the_clients_retry(mocker: MockerFixture) -> None:
    client = _client(mocker, _Failed(grpc.StatusCode.UNAVAILABLE))
    client.api.publish.return_value.message_ids = ["m8"]
    assert PubSubPublisher(client, TOPIC, DLQ).publish(MESSAGE).wait() == "m8"
    ((), kwargs) = client.api.publish.call_args
    assert kwargs["request"].messages[0].ordering_key == "c1"
    assert 0 < kwargs["timeout"] <= 10.0


def test_a_refusal_is_a_transient_error_not_retried(mocker: MockerFixture) -> None:
    client = _client(mocker, _Failed(grpc.StatusCode.PERMISSION_DENIED))
    with pytest.raises(DependencyUnavailable, match="Pub/Sub unavailable"):
        PubSubPublisher(client, TOPIC, DLQ).publish(MESSAGE).wait()
    client.api.publish.assert_not_called()


def test_a_call_refused_before_it_starts_is_a_transient_error(mocker: MockerFixture) -> None:
    client = _client(mocker, "unused")
    client.api.transport.publish.future.side_effect = _Failed(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(DependencyUnavailable, match="Pub/Sub unavailable"):
        PubSubPublisher(client, TOPIC, DLQ).publish(MESSAGE)


def test_a_dead_letter_is_awaited_on_the_dlq_topic_without_a_key(mocker: MockerFixture) -> None:
    client = _client(mocker, "m2")
    letter = DeadLetter(
        data=b"{}",
        event_id="e1",
        error_code="unknown_product",
        error_message="x",
        attempts=1,
        source="worker",
    )
    PubSubPublisher(client, TOPIC, DLQ).dead_letter(letter)
    (request,), _ = client.api.transport.publish.future.call_args
    assert request.topic == DLQ
    assert request.messages[0].ordering_key == ""
    assert dict(request.messages[0].attributes) == letter.attributes()
    client.api.transport.publish.future.return_value.result.assert_called_once()
