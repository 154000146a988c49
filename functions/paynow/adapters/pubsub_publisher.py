"""Publishing to ``paynow-events`` (with the ordering key) and ``paynow-events-dlq``.

One ``PublisherClient`` per process, used for its channel and its generated client only:
each message goes out in a Publish RPC of its own, started at once. The client's batching
(a commit thread per batch and a timer, even at 1 ms) cost about 3 ms of every awaited
publish here (docs/benchmarks/README.md), and batching buys nothing when every request
waits for its own message. Without the client's ordering machinery there is no key to
pause or resume: a message still carries its ordering key, and Pub/Sub delivers one key's
messages in the order it received them.

``publish`` starts the RPC without a thread of ours (gRPC's own future), so the webhook
creates its record while the message is in flight; ``wait`` takes the answer, and a
failure Pub/Sub may recover from is retried, with the generated client's retry, in what
is left of ``PUBLISH_TIMEOUT_SECONDS``, so a webhook answers 503 rather than hang.

``AsyncPubSubPublisher`` is the same Publish RPC on the generated async client, for the
webhook's event loop: the same request, retry and bound.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.api_core.retry import AsyncRetry, Retry, if_exception_type
from google.cloud.pubsub_v1 import PublisherClient
from google.pubsub_v1 import PublishRequest, PubsubMessage
from google.pubsub_v1.services.publisher import PublisherAsyncClient

from paynow.adapters.google_errors import calling
from paynow.domain.messages import DeadLetter, QueueMessage

PUBLISH_TIMEOUT_SECONDS = 10.0
# Pub/Sub's own list of the Publish errors worth another try.
_RETRYABLE = (
    gexc.Aborted,
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
    gexc.Unknown,
)


def _backoff(kind: type[Retry] | type[AsyncRetry]) -> Any:
    """Publish's retry, for the blocking client (``Retry``) or the async one (``AsyncRetry``)."""
    return kind(
        predicate=if_exception_type(*_RETRYABLE),
        initial=0.05,
        maximum=1.0,
        multiplier=2.0,
        timeout=PUBLISH_TIMEOUT_SECONDS,
    )


_RETRY: Retry = _backoff(Retry)
_ASYNC_RETRY: AsyncRetry = _backoff(AsyncRetry)

_clients: dict[str, PublisherClient] = {}
_clients_lock = threading.Lock()


def publisher_client() -> PublisherClient:
    """The process's publisher client, created on first use (its channel is shared)."""
    with _clients_lock:
        if "default" not in _clients:
            _clients["default"] = PublisherClient()
        return _clients["default"]


class PubSubPublisher:
    def __init__(self, client: PublisherClient, topic_path: str, dlq_path: str) -> None:
        self._api = client.api
        self._topic = topic_path
        self._dlq = dlq_path
        self._metadata = {
            path: (gapic_v1.routing_header.to_grpc_metadata((("topic", path),)),)  # type: ignore[no-untyped-call]
            for path in (topic_path, dlq_path)
        }

    def publish(self, message: QueueMessage) -> _Pending:
        request = _request(self._topic, message.data(), message.attributes(), message.ordering_key)
        return self._start(self._topic, request)

    def dead_letter(self, letter: DeadLetter) -> None:
        self._start(self._dlq, _request(self._dlq, letter.data, letter.attributes(), "")).wait()

    def _start(self, topic: str, request: PublishRequest) -> _Pending:
        with calling("Pub/Sub"):
            try:
                call = self._api.transport.publish.future(
                    request, timeout=PUBLISH_TIMEOUT_SECONDS, metadata=self._metadata[topic]
                )
            except grpc.RpcError as exc:  # a channel may fail the call before it starts
                raise gexc.from_grpc_error(exc) from exc  # type: ignore[no-untyped-call]
        return _Pending(self, request, call, time.monotonic() + PUBLISH_TIMEOUT_SECONDS)

    def retried(self, request: PublishRequest, seconds: float) -> str:
        """The blocking Publish with the generated client's retry, within ``seconds``."""
        response = self._api.publish(
            request=request, retry=_RETRY.with_timeout(seconds), timeout=seconds
        )
        return str(response.message_ids[0])


def _request(topic: str, data: bytes, attributes: dict[str, str], key: str) -> PublishRequest:
    return PublishRequest(
        topic=topic,
        messages=[PubsubMessage(data=data, attributes=attributes, ordering_key=key)],
    )


class _Pending:
    """A publish under way; ``wait`` returns its message id or raises a transient error."""

    def __init__(
        self, publisher: PubSubPublisher, request: PublishRequest, call: Any, deadline: float
    ) -> None:
        self._publisher = publisher
        self._request = request
        self._call = call
        self._deadline = deadline

    def wait(self) -> str:
        with calling("Pub/Sub"):
            try:
                return str(self._call.result().message_ids[0])
            except grpc.RpcError as exc:
                error = gexc.from_grpc_error(exc)  # type: ignore[no-untyped-call]
                left = self._deadline - time.monotonic()
                if not isinstance(error, _RETRYABLE) or left <= 0:
                    raise error from exc
            return self._publisher.retried(self._request, left)


class AsyncPubSubPublisher:
    """Publishing to the main topic from an event loop: one Publish RPC per message.

    Make it inside the loop that will use it: the async client's channel belongs to it.
    """

    def __init__(self, topic_path: str, client: PublisherAsyncClient | None = None) -> None:
        self._client = client or PublisherAsyncClient()
        self._topic = topic_path

    async def publish(self, message: QueueMessage) -> str:
        """The message durable on the topic: its id, or a ``TransientError``."""
        request = _request(self._topic, message.data(), message.attributes(), message.ordering_key)
        with calling("Pub/Sub"):
            response = await self._client.publish(
                request=request, retry=_ASYNC_RETRY, timeout=PUBLISH_TIMEOUT_SECONDS
            )
        return str(response.message_ids[0])
