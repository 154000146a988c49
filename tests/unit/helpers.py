"""Shared helpers of the unit tests: settings from a plain mapping, a fixed clock, push bodies."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from paynow import config
from paynow.config import Settings
from paynow.domain.messages import QueueMessage

SECRET = "unit-test-secret"
PREVIOUS_SECRET = "unit-test-previous"
NOW = 1_800_000_000.0  # a fixed "now" in Unix seconds
NOW_MS = int(NOW * 1000)
CATALOG = {"gems-100": 100, "gems-550": 550, "vip-monthly": 300}


def settings(target: str | None = None, **env: str) -> Settings:
    """``config.load`` over a minimal environment plus ``env``."""
    base = {"GOOGLE_CLOUD_PROJECT": "demo-unit", "PAYNOW_WEBHOOK_SECRET": SECRET}
    return config.load({**base, **env}, target=target)


def push(
    message: QueueMessage | bytes, age_s: float | None = 1.0, attempt: int | None = None
) -> bytes:
    """A push subscription's request body for ``message``, published ``age_s`` before ``NOW``.

    ``publishTime`` carries nanoseconds, as Pub/Sub sends it.
    """
    data = message if isinstance(message, bytes) else message.data()
    msg: dict[str, Any] = {
        "data": base64.b64encode(data).decode(),
        "messageId": "123",
        "attributes": {} if isinstance(message, bytes) else message.attributes(),
    }
    if age_s is not None:
        published = datetime.fromtimestamp(NOW - age_s, UTC)
        msg["publishTime"] = published.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    doc: dict[str, Any] = {"message": msg, "subscription": "projects/p/subscriptions/push"}
    if attempt is not None:
        doc["deliveryAttempt"] = attempt
    return json.dumps(doc).encode()


def unwrapped(
    message: QueueMessage | bytes, age_s: float | None = 1.0, write_metadata: bool = True
) -> tuple[bytes, dict[str, str]]:
    """An unwrapped push (``--push-no-wrapper``) of ``message``: the data as the body, and
    with ``write_metadata`` the metadata and attributes as the headers Pub/Sub writes."""
    data = message if isinstance(message, bytes) else message.data()
    if not write_metadata:
        return data, {}
    headers = {
        "x-goog-pubsub-subscription-name": "projects/p/subscriptions/push",
        "x-goog-pubsub-message-id": "123",
    }
    if not isinstance(message, bytes):
        headers.update(message.attributes())
        headers["x-goog-pubsub-ordering-key"] = message.ordering_key
    if age_s is not None:
        published = datetime.fromtimestamp(NOW - age_s, UTC)
        headers["x-goog-pubsub-publish-time"] = (
            published.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        )
    return data, headers
