"""The clients every command shares, and what the commands report with."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from paynow import config
from paynow.adapters import firestore_store, pubsub_publisher
from paynow.config import Settings

from scripts.ops.dead_letters import PAGE_SIZE, DeadLetters

CALL_TIMEOUT_SECONDS = 10.0
ConfigError = config.ConfigError


class UsageError(Exception):
    """A command line or settings file the CLI cannot run with (exit 2)."""


@dataclass
class Ops:
    """The clients the commands share, created once (tests pass their own)."""

    settings: Settings
    db: Any
    store: firestore_store.FirestoreEventStore
    publisher: pubsub_publisher.PubSubPublisher
    subscriber: Any
    dlq_subscription: str = "paynow-events-dlq-sub"
    push_subscription: str = "paynow-events-push"

    @classmethod
    def connect(cls) -> Ops:
        """Clients for the project and emulators of this environment (ADC on GCP)."""
        from google.cloud import pubsub_v1

        settings = config.load(target="ops")
        db = firestore_store.client(settings.project)
        return cls(
            settings=settings,
            db=db,
            store=firestore_store.FirestoreEventStore(db, settings.event_ttl_days),
            publisher=pubsub_publisher.PubSubPublisher(
                pubsub_publisher.publisher_client(), settings.topic_path, settings.dlq_topic_path
            ),
            subscriber=pubsub_v1.SubscriberClient(),
            dlq_subscription=os.environ.get("PUBSUB_DLQ_SUBSCRIPTION") or cls.dlq_subscription,
            push_subscription=os.environ.get("PUBSUB_PUSH_SUBSCRIPTION") or cls.push_subscription,
        )

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.settings.project}/subscriptions/{name}"

    def dead_letters(self, page_size: int = PAGE_SIZE) -> DeadLetters:
        """A reader of the DLQ subscription; use it in a ``with`` so it releases what it holds."""
        path = self.subscription_path(self.dlq_subscription)
        immediate = bool(self.settings.pubsub_emulator_host)
        return DeadLetters(self.subscriber, path, page_size, immediate=immediate)


def problem(exc: BaseException) -> str:
    """One line naming a failure, short enough for a table cell."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"
