"""Wiring: settings, clients and services built once per process, on first use.

Entry points call these; nothing here runs at import, so a cold start pays
only for what the first request's path needs.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
from typing import TYPE_CHECKING

from paynow import config
from paynow.config import ConfigError, Settings
from paynow.service.async_queue import AsyncQueue
from paynow.service.reconcile import ReconcileService
from paynow.service.webhook import WebhookService
from paynow.service.worker import WorkerService

if TYPE_CHECKING:
    from paynow.adapters.firestore_store import FirestoreEventStore
    from paynow.adapters.oidc import OidcVerifier
    from paynow.adapters.pubsub_publisher import PubSubPublisher


@functools.cache
def settings() -> Settings:
    return config.load()


@functools.cache
def store() -> FirestoreEventStore:
    from paynow.adapters import firestore_store

    s = settings()
    return firestore_store.FirestoreEventStore(firestore_store.client(s.project), s.event_ttl_days)


@functools.cache
def publisher() -> PubSubPublisher:
    from paynow.adapters import pubsub_publisher

    s = settings()
    return pubsub_publisher.PubSubPublisher(
        pubsub_publisher.publisher_client(), s.topic_path, s.dlq_topic_path
    )


@functools.cache
def webhook() -> WebhookService:
    from paynow.adapters.secrets import SecretManagerSecrets, StaticSecrets

    s = settings()
    secrets: StaticSecrets | SecretManagerSecrets
    previous, until = s.webhook_secret_previous, s.webhook_secret_previous_until
    if s.webhook_secret:
        secrets = StaticSecrets(s.webhook_secret, previous, until)
    elif s.webhook_secret_id:
        secrets = SecretManagerSecrets(s.webhook_secret_id, previous, previous_until=until)
    else:  # config.load refuses this for paynow_webhook; another target asked for the webhook
        raise ConfigError("PAYNOW_WEBHOOK_SECRET or PAYNOW_WEBHOOK_SECRET_ID must be set")
    return WebhookService(s, store(), publisher(), secrets)


@functools.cache
def async_queue() -> AsyncQueue:
    """Queue mode's recording for the webhook's event loop. Made on the first queued webhook,
    inside that loop: the async clients' channels belong to the loop they are made in."""
    from google.cloud import firestore

    from paynow.adapters.firestore_store import AsyncEventRecords
    from paynow.adapters.pubsub_publisher import AsyncPubSubPublisher

    s = settings()
    records = AsyncEventRecords(
        firestore.AsyncClient(project=s.project), store(), webhook_threads()
    )
    return AsyncQueue(records, AsyncPubSubPublisher(s.topic_path))


@functools.cache
def webhook_threads() -> cf.ThreadPoolExecutor:
    """The webhook's threads for the blocking path (sync mode, errors, dead letters):
    ``THREADS`` of them, the instance's concurrency, so none waits behind another."""
    return cf.ThreadPoolExecutor(settings().threads, thread_name_prefix="webhook")


@functools.cache
def worker() -> WorkerService:
    return WorkerService(settings(), store(), publisher())


@functools.cache
def reconciler() -> ReconcileService:
    return ReconcileService(settings(), store(), publisher())


@functools.cache
def push_verifier() -> OidcVerifier | None:
    """The push token verifier, or None when PUSH_AUTH=none (emulator only)."""
    s = settings()
    return _verifier(s.push_audience, s.push_service_account)


@functools.cache
def scheduler_verifier() -> OidcVerifier | None:
    """The Cloud Scheduler token verifier of ``paynow_reconcile``, or None when PUSH_AUTH=none."""
    s = settings()
    return _verifier(s.reconcile_audience, s.scheduler_service_account)


def _verifier(audience: str | None, email: str | None) -> OidcVerifier | None:
    s = settings()
    if s.push_auth == "none":
        return None
    from paynow.adapters.oidc import OidcVerifier

    if not (audience and email):  # config.load requires them for the target it serves
        raise ConfigError("an OIDC audience and service account must be set for this function")
    return OidcVerifier(audience, email, s.oidc_certs_url)
