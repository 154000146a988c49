"""Publishing to ``paynow-events`` (ordered) and ``paynow-events-dlq``.

One ``PublisherClient`` per process. Batching waits at most 1 ms (the
library's 10 ms default would add ~10 ms to every awaited publish), and a
publish gives up after ``PUBLISH_TIMEOUT_SECONDS`` so a webhook answers 503
rather than hanging. With ordering on, a failed publish pauses its key until
``resume_publish``: the done-callback resumes it so the next attempt can go.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from google.api_core.retry import Retry
from google.cloud.pubsub_v1 import PublisherClient
from google.cloud.pubsub_v1.publisher.exceptions import PublishToPausedOrderingKeyException
from google.cloud.pubsub_v1.types import BatchSettings, PublisherOptions

from paynow.adapters.google_errors import calling
from paynow.domain.errors import DependencyUnavailable
from paynow.domain.messages import DeadLetter, QueueMessage

PUBLISH_TIMEOUT_SECONDS = 10.0
_RETRY = Retry(initial=0.05, maximum=1.0, multiplier=2.0, timeout=PUBLISH_TIMEOUT_SECONDS)

_clients: dict[str, PublisherClient] = {}
_clients_lock = threading.Lock()


def publisher_client() -> PublisherClient:
    """The process's publisher client, created on first use."""
    with _clients_lock:
        if "default" not in _clients:
            _clients["default"] = PublisherClient(
                batch_settings=BatchSettings(max_messages=100, max_latency=0.001),
                publisher_options=PublisherOptions(
                    enable_message_ordering=True, retry=_RETRY, timeout=PUBLISH_TIMEOUT_SECONDS
                ),
            )
        return _clients["default"]


class PubSubPublisher:
    def __init__(self, client: PublisherClient, topic_path: str, dlq_path: str) -> None:
        self._client = client
        self._topic = topic_path
        self._dlq = dlq_path

    def publish(self, message: QueueMessage) -> _Pending:
        key = message.ordering_key
        with calling("Pub/Sub"):
            try:
                future = self._publish(message)
            except PublishToPausedOrderingKeyException:
                # A failed publish paused the key and its resume below has not run yet
                # (it runs on the publisher's thread): resume now and try once more.
                self._client.resume_publish(self._topic, key)
                try:
                    future = self._publish(message)
                except PublishToPausedOrderingKeyException as exc:
                    raise DependencyUnavailable(
                        "Pub/Sub unavailable (ordering key paused)"
                    ) from exc

        def resume_on_failure(done: Future[str]) -> None:
            if done.exception() is not None:
                self._client.resume_publish(self._topic, key)

        future.add_done_callback(resume_on_failure)
        return _Pending(future)

    def _publish(self, message: QueueMessage) -> Future[str]:
        future: Future[str] = self._client.publish(
            self._topic, message.data(), ordering_key=message.ordering_key, **message.attributes()
        )
        return future

    def dead_letter(self, letter: DeadLetter) -> None:
        with calling("Pub/Sub"):
            self._client.publish(self._dlq, letter.data, **letter.attributes()).result(
                timeout=PUBLISH_TIMEOUT_SECONDS
            )


class _Pending:
    """A publish under way; ``wait`` turns its failure into a transient error."""

    def __init__(self, future: Future[str]) -> None:
        self._future = future

    def wait(self) -> str:
        with calling("Pub/Sub"):
            return self._future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
