"""Configuration: read once at start-up into a frozen object, validated.

A bad value raises ``ConfigError`` naming the variable, which stops the
process before it serves anything (functions-framework imports main.py,
main.py calls ``load``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from paynow.domain.signature import SecretListError, SigningSecrets, parse_secrets

WEBHOOK_TARGET = "paynow_webhook"
WORKER_TARGET = "paynow_worker"
RECONCILE_TARGET = "paynow_reconcile"
DEFAULT_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
_SECRET_ID = re.compile(r"projects/[^/]+/secrets/[^/]+")


class ConfigError(ValueError):
    """A configuration variable is missing or has a value the pipeline cannot use."""


@dataclass(frozen=True)
class Settings:
    webhook_mode: Literal["sync", "queue"]
    project: str
    webhook_secret: str | None
    webhook_secret_previous: str | None
    webhook_secret_previous_until: datetime | None
    webhook_secret_id: str | None
    signature_tolerance_seconds: int
    user_id_key: str
    topic: str
    dlq_topic: str
    push_audience: str | None
    push_service_account: str | None
    push_auth: Literal["oidc", "none"]
    oidc_certs_url: str
    max_delivery_attempts: int
    event_ttl_days: int
    reconcile_after_seconds: int
    reconcile_batch_size: int
    reconcile_max_republishes: int
    reconcile_audience: str | None
    scheduler_service_account: str | None
    pubsub_emulator_host: str | None
    firestore_emulator_host: str | None
    # functions-framework's request threads for the worker and reconcile; for the webhook
    # (on an event loop, where the framework does not read it) its own pool for the rest
    threads: int

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.topic}"

    @property
    def dlq_topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.dlq_topic}"


def load(env: Mapping[str, str] | None = None, target: str | None = None) -> Settings:
    """Read and validate every variable; ``target`` adds that function's requirements."""
    env = os.environ if env is None else env
    target = target if target is not None else env.get("FUNCTION_TARGET")

    def text(name: str) -> str | None:
        return env.get(name, "").strip() or None

    def text_or(name: str, default: str) -> str:
        return text(name) or default

    def integer(name: str, default: int, low: int, high: int) -> int:
        raw = text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (text(name) or default).lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    mode = choice("WEBHOOK_MODE", "sync", ("sync", "queue"))
    push_auth = choice("PUSH_AUTH", "oidc", ("oidc", "none"))
    project = text("GOOGLE_CLOUD_PROJECT") or text("GCP_PROJECT")
    if not project:
        raise ConfigError("GOOGLE_CLOUD_PROJECT must name the Google Cloud project")
    pubsub_emulator = text("PUBSUB_EMULATOR_HOST")
    if push_auth == "none" and not pubsub_emulator:
        raise ConfigError(
            "PUSH_AUTH=none is accepted only with PUBSUB_EMULATOR_HOST set (local runs)"
        )
    secret_id = text("PAYNOW_WEBHOOK_SECRET_ID")
    if secret_id and not _SECRET_ID.fullmatch(secret_id):
        raise ConfigError(
            f"PAYNOW_WEBHOOK_SECRET_ID must look like projects/P/secrets/S, got {secret_id!r}"
        )
    _check_secrets(text("PAYNOW_WEBHOOK_SECRET"), text("PAYNOW_WEBHOOK_SECRET_PREVIOUS"))
    user_id_key = text_or("PAYNOW_USER_ID_KEY", "user_id")
    certs_url = text_or("OIDC_CERTS_URL", DEFAULT_CERTS_URL)
    if not certs_url.startswith(("https://", "http://")):
        raise ConfigError(f"OIDC_CERTS_URL must be an http(s) URL, got {certs_url!r}")
    settings = Settings(
        webhook_mode=mode,  # type: ignore[arg-type]
        project=project,
        webhook_secret=text("PAYNOW_WEBHOOK_SECRET"),
        webhook_secret_previous=text("PAYNOW_WEBHOOK_SECRET_PREVIOUS"),
        webhook_secret_previous_until=_instant(
            "PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL", text("PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL")
        ),
        webhook_secret_id=secret_id,
        signature_tolerance_seconds=integer("PAYNOW_SIGNATURE_TOLERANCE_SECONDS", 300, 1, 3600),
        user_id_key=user_id_key,
        topic=text_or("PUBSUB_TOPIC", "paynow-events"),
        dlq_topic=text_or("PUBSUB_DLQ_TOPIC", "paynow-events-dlq"),
        push_audience=text("PUSH_AUDIENCE"),
        push_service_account=text("PUSH_SERVICE_ACCOUNT"),
        push_auth=push_auth,  # type: ignore[arg-type]
        oidc_certs_url=certs_url,
        max_delivery_attempts=integer("MAX_DELIVERY_ATTEMPTS", 10, 1, 100),
        event_ttl_days=integer("EVENT_TTL_DAYS", 30, 1, 3650),
        reconcile_after_seconds=integer("RECONCILE_AFTER_SECONDS", 300, 1, 86400),
        reconcile_batch_size=integer("RECONCILE_BATCH_SIZE", 200, 1, 5000),
        reconcile_max_republishes=integer("RECONCILE_MAX_REPUBLISHES", 10, 1, 1000),
        reconcile_audience=text("RECONCILE_AUDIENCE"),
        scheduler_service_account=text("SCHEDULER_SERVICE_ACCOUNT"),
        pubsub_emulator_host=pubsub_emulator,
        firestore_emulator_host=text("FIRESTORE_EMULATOR_HOST"),
        threads=integer("THREADS", 4 * (os.cpu_count() or 1), 1, 1000),
    )
    _require_for_target(settings, target)
    return settings


def _check_secrets(current: str | None, previous: str | None) -> None:
    """The one-per-line secret values: usable lists, at most MAX_SECRETS in all."""

    def parsed(name: str, value: str | None) -> tuple[str, ...]:
        try:
            return parse_secrets(value)
        except SecretListError as exc:  # its message never quotes a secret
            raise ConfigError(f"{name}: {exc}") from None

    try:
        SigningSecrets(
            parsed("PAYNOW_WEBHOOK_SECRET", current),
            parsed("PAYNOW_WEBHOOK_SECRET_PREVIOUS", previous),
        )
    except SecretListError as exc:
        raise ConfigError(
            f"PAYNOW_WEBHOOK_SECRET and PAYNOW_WEBHOOK_SECRET_PREVIOUS together: {exc}"
        ) from None


def _instant(name: str, raw: str | None) -> datetime | None:
    """An ISO-8601 time with its UTC offset; a naive one is refused rather than guessed."""
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must be an ISO-8601 time such as 2026-01-31T12:00:00Z, got {raw!r}"
        ) from None
    if value.tzinfo is None:
        raise ConfigError(
            f"{name} must say its UTC offset (Z, or +01:00), got {raw!r}: "
            "a time without one is a different moment on each machine"
        )
    return value.astimezone(UTC)


def _require_for_target(s: Settings, target: str | None) -> None:
    """What a deployed function cannot run without; the others never read it."""
    if target == WEBHOOK_TARGET and not (s.webhook_secret or s.webhook_secret_id):
        raise ConfigError(
            "PAYNOW_WEBHOOK_SECRET or PAYNOW_WEBHOOK_SECRET_ID must be set for paynow_webhook"
        )
    if target == WORKER_TARGET and s.push_auth == "oidc":
        for name, value in (
            ("PUSH_AUDIENCE", s.push_audience),
            ("PUSH_SERVICE_ACCOUNT", s.push_service_account),
        ):
            if not value:
                raise ConfigError(f"{name} must be set for paynow_worker when PUSH_AUTH=oidc")
    if target == RECONCILE_TARGET and s.push_auth == "oidc":
        for name, value in (
            ("RECONCILE_AUDIENCE", s.reconcile_audience),
            ("SCHEDULER_SERVICE_ACCOUNT", s.scheduler_service_account),
        ):
            if not value:
                raise ConfigError(f"{name} must be set for paynow_reconcile when PUSH_AUTH=oidc")
