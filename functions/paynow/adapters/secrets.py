"""The webhook signing secrets: from the environment, or Secret Manager with a cache.

Each value holds one or more secrets, one per line (``domain.signature.parse_secrets``):
PayNow signs each webhook subscription with its own. The previous ones of a
rotation are accepted until ``PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL``. With Secret
Manager the latest version is cached for ``CACHE_SECONDS``; a signature that
matches nothing refreshes the cache at most once every ``REFRESH_FLOOR_SECONDS``,
so a secret added there is picked up within seconds while a flood of bad
signatures cannot flood Secret Manager. The secrets read before a refresh stay
accepted as implicit previous ones (until the same time). A version that is not a
usable list is refused with an error log that names the secret, never its value.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from paynow.domain.errors import DependencyUnavailable
from paynow.domain.signature import SecretListError, SigningSecrets, parse_secrets
from paynow.observability import log

CACHE_SECONDS = 300.0
REFRESH_FLOOR_SECONDS = 30.0


class StaticSecrets:
    """Secrets given as values (local runs, or injected by the deploy)."""

    def __init__(
        self,
        current: str,
        previous: str | None = None,
        previous_until: datetime | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = SigningSecrets(
            parse_secrets(current), parse_secrets(previous), previous_until
        )
        self._wall_clock = wall_clock

    def current(self) -> tuple[str, ...]:
        return self._secrets.in_force(self._wall_clock())

    def ready(self) -> tuple[str, ...]:
        return self.current()

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
        previous_until: datetime | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret_id = secret_id
        self._name = f"{secret_id}/versions/latest"
        self._previous = parse_secrets(previous)
        self._previous_until = previous_until
        self._fetch = fetch or _access_secret
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._value: SigningSecrets | None = None
        self._older: tuple[str, ...] = ()
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._unusable_at = float("-inf")

    def current(self) -> tuple[str, ...]:
        with self._lock:
            stale = self._clock() - self._fetched_at > CACHE_SECONDS
            if self._value is None and self._clock() - self._unusable_at < REFRESH_FLOOR_SECONDS:
                # The version just read is not a usable list: reading it again on every
                # request would only turn requests into Secret Manager reads.
                raise _unusable()
            value = self._value
            if value is None or (stale and self._may_attempt()):
                try:
                    value = self._load()
                except Exception:
                    if value is None:
                        raise
                    # Secret Manager is down: keep verifying with the value we have.
            return value.in_force(self._wall_clock(), self._older)

    def ready(self) -> tuple[str, ...] | None:
        """What ``current`` would answer when it would not read: the cached secrets while
        fresh, or while stale with no read allowed yet (Secret Manager failing: ``current``
        keeps verifying with them too). None when a read is due or another thread holds the
        cache (reading it), so an event loop never waits on Secret Manager."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            stale = self._clock() - self._fetched_at > CACHE_SECONDS
            if self._value is None or (stale and self._may_attempt()):
                return None
            return self._value.in_force(self._wall_clock(), self._older)
        finally:
            self._lock.release()

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

    def _load(self) -> SigningSecrets:
        self._attempted_at = self._clock()
        try:
            current = parse_secrets(self._fetch(self._name))
            if not current:
                raise SecretListError("holds no secret")
            value = SigningSecrets(current, self._previous, self._previous_until)
        except SecretListError as exc:
            self._unusable_at = self._clock()
            log(
                "ERROR",
                "webhook signing secret unusable",
                secretId=self._secret_id,
                reason=f"its latest version {exc}"
                + (" (with PAYNOW_WEBHOOK_SECRET_PREVIOUS)" if self._previous else ""),
            )
            raise _unusable() from None
        if self._value is not None and value.current != self._value.current:
            self._older = tuple(s for s in self._value.current if s not in value.current)
        self._value = value
        self._fetched_at = self._clock()
        return value


def _unusable() -> DependencyUnavailable:
    # Answered 503, so PayNow retries once the secret is fixed; the reason is logged.
    return DependencyUnavailable("the webhook signing secret cannot be used; see the logs")


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
    try:
        return str(response.payload.data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SecretListError("is not UTF-8 text") from None
