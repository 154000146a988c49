"""The clients every command shares, and what the commands report with."""

from __future__ import annotations

import os
from typing import Any

from paynow import config
from paynow.adapters import firestore_store, pubsub_publisher

DLQ_SUBSCRIPTION = os.environ.get("PUBSUB_DLQ_SUBSCRIPTION", "paynow-events-dlq-sub")
PUSH_SUBSCRIPTION = os.environ.get("PUBSUB_PUSH_SUBSCRIPTION", "paynow-events-push")
PEEK_BATCH = 100
CALL_TIMEOUT_SECONDS = 10.0
ConfigError = config.ConfigError


class UsageError(Exception):
    """A command line or settings file the CLI cannot run with (exit 2)."""


class Ops:
    """The clients the commands share, created once."""

    def __init__(self) -> None:
        self.settings = config.load(target="ops")
        self.db = firestore_store.client(self.settings.project)
        self.store = firestore_store.FirestoreEventStore(self.db, self.settings.event_ttl_days)
        self.publisher = pubsub_publisher.PubSubPublisher(
            pubsub_publisher.publisher_client(),
            self.settings.topic_path,
            self.settings.dlq_topic_path,
        )
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.dlq_path = self.subscriber.subscription_path(self.settings.project, DLQ_SUBSCRIPTION)

    # --- DLQ -----------------------------------------------------------------

    def peek_dlq(self) -> list[Any]:
        """Every message in the DLQ subscription, released again at once (nothing consumed)."""
        seen: dict[str, Any] = {}
        while True:
            response = self.subscriber.pull(
                request={"subscription": self.dlq_path, "max_messages": PEEK_BATCH}, timeout=10
            )
            fresh = [m for m in response.received_messages if m.message.message_id not in seen]
            if response.received_messages:
                self.subscriber.modify_ack_deadline(
                    request={
                        "subscription": self.dlq_path,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                        "ack_deadline_seconds": 0,
                    }
                )
            if not fresh:
                return list(seen.values())
            seen.update((m.message.message_id, m) for m in fresh)

    def pull_for_replay(self) -> list[Any]:
        """Pull the DLQ holding the messages (60 s) so replay can ack each after republishing."""
        held: dict[str, Any] = {}
        while True:
            response = self.subscriber.pull(
                request={"subscription": self.dlq_path, "max_messages": PEEK_BATCH}, timeout=10
            )
            fresh = [m for m in response.received_messages if m.message.message_id not in held]
            if not fresh:
                return list(held.values())
            held.update((m.message.message_id, m) for m in fresh)


def problem(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"
