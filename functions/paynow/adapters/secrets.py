"""The webhook signing secrets: from the environment, or Secret Manager with a cache.

During a rotation two secrets are accepted (current and previous). With
Secret Manager the latest version is cached for ``CACHE_SECONDS``; a
signature that matches nothing refreshes the cache at most once every
``REFRESH_FLOOR_SECONDS``, so a rotated secret is picked up within seconds,
while a flood of bad signatures cannot flood Secret Manager. The value read
before a refresh stays accepted as an implicit previous secret.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

CACHE_SECONDS = 300.0
REFRESH_FLOOR_SECONDS = 30.0


class StaticSecrets:
    """Secrets given as values (local runs, or injected by the deploy)."""

    def __init__(self, current: str, previous: str | None = None) -> None:
        self._secrets = tuple(s for s in (current, previous) if s)

    def current(self) -> tuple[str, ...]:
        return self._secrets

    def refresh(self) -> bool:
        """Nothing to refresh: return False so the caller does not retry."""
        return False


class SecretManagerSecrets:
    """The latest version of one Secret Manager secret, cached."""

    def __init__(
        self,
        secret_id: str,
        previous: str | None = None,
        fetch: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = f"{secret_id}/versions/latest"
        self._previous = previous
        self._fetch = fetch or _access_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._older: str | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")

    def current(self) -> tuple[str, ...]:
        with self._lock:
            stale = self._clock() - self._fetched_at > CACHE_SECONDS
            if self._value is None or (stale and self._may_attempt()):
                try:
                    self._load()
                except Exception:
                    if self._value is None:
                        raise
                    # Secret Manager is down: keep verifying with the value we have.
            return tuple(s for s in (self._value, self._older, self._previous) if s)

    def refresh(self) -> bool:
        """Re-read after a failed match; True when a different value was found."""
        with self._lock:
            if not self._may_attempt():
                return False
            before = self._value
            self._load()
            return self._value != before

    def _may_attempt(self) -> bool:
        """At most one read per REFRESH_FLOOR_SECONDS, failed reads included."""
        last = max(self._fetched_at, self._attempted_at)
        return self._clock() - last >= REFRESH_FLOOR_SECONDS

    def _load(self) -> None:
        self._attempted_at = self._clock()
        value = self._fetch(self._name)
        if self._value is not None and value != self._value:
            self._older = self._value
        self._value = value
        self._fetched_at = self._clock()


def read_latest(secret_id: str) -> str:
    """The latest version of the secret ``projects/P/secrets/S``, read once (no cache)."""
    return _access_secret(f"{secret_id}/versions/latest")


@functools.cache
def _secret_client() -> Any:
    """One Secret Manager client per process; imported only where Secret Manager is used."""
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient()


def _access_secret(name: str) -> str:
    from paynow.adapters.google_errors import calling

    with calling("Secret Manager"):
        response = _secret_client().access_secret_version(name=name, timeout=10.0)
    return str(response.payload.data.decode("utf-8")).strip()
