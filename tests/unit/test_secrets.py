"""Signing secrets: static values, and Secret Manager with a cache and a refresh floor."""

from __future__ import annotations

import contextlib

import pytest
from paynow.adapters.secrets import (
    CACHE_SECONDS,
    REFRESH_FLOOR_SECONDS,
    SecretManagerSecrets,
    StaticSecrets,
)
from paynow.domain.errors import DependencyUnavailable

SECRET_ID = "projects/p/secrets/paynow"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Vault:
    """A fake Secret Manager: the latest value, and every name asked for."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls: list[str] = []

    def __call__(self, name: str) -> str:
        self.calls.append(name)
        return self.value


def make(
    value: str = "v1", previous: str | None = None
) -> tuple[SecretManagerSecrets, Clock, Vault]:
    clock, vault = Clock(), Vault(value)
    return SecretManagerSecrets(SECRET_ID, previous, fetch=vault, clock=clock), clock, vault


# --- StaticSecrets ---------------------------------------------------------------


def test_static_secrets_current_and_previous() -> None:
    assert StaticSecrets("now", "before").current() == ("now", "before")


@pytest.mark.parametrize("previous", [None, ""])
def test_static_secrets_without_previous(previous: str | None) -> None:
    assert StaticSecrets("now", previous).current() == ("now",)


def test_static_secrets_never_refresh() -> None:
    assert StaticSecrets("now").refresh() is False


# --- SecretManagerSecrets ------------------------------------------------------------


def test_reads_the_latest_version_lazily() -> None:
    secrets, _, vault = make()
    assert vault.calls == []
    assert secrets.current() == ("v1",)
    assert vault.calls == [f"{SECRET_ID}/versions/latest"]


def test_previous_value_from_config_is_accepted_too() -> None:
    secrets, _, _ = make("v1", previous="v0")
    assert secrets.current() == ("v1", "v0")


def test_value_is_cached_within_cache_seconds() -> None:
    secrets, clock, vault = make()
    for step in (0.0, 1.0, CACHE_SECONDS / 2, CACHE_SECONDS):
        clock.now = 1000.0 + step
        assert secrets.current() == ("v1",)
    assert len(vault.calls) == 1


def test_value_is_read_again_after_cache_seconds() -> None:
    secrets, clock, vault = make()
    secrets.current()
    vault.value = "v2"
    clock.now += CACHE_SECONDS + 1
    assert secrets.current() == ("v2", "v1")
    assert len(vault.calls) == 2
    clock.now += 1
    secrets.current()
    assert len(vault.calls) == 2


def test_refresh_is_refused_within_the_floor() -> None:
    secrets, clock, vault = make()
    secrets.current()
    vault.value = "v2"
    clock.now += REFRESH_FLOOR_SECONDS - 1
    assert secrets.refresh() is False
    assert len(vault.calls) == 1
    assert secrets.current() == ("v1",)


def test_refresh_after_the_floor_reads_a_rotated_value() -> None:
    secrets, clock, vault = make()
    secrets.current()
    vault.value = "v2"
    clock.now += REFRESH_FLOOR_SECONDS
    assert secrets.refresh() is True
    assert len(vault.calls) == 2
    # the rotated value first, the one before it still accepted
    assert secrets.current() == ("v2", "v1")
    assert len(vault.calls) == 2


def test_refresh_without_a_change_returns_false() -> None:
    secrets, clock, vault = make()
    secrets.current()
    clock.now += REFRESH_FLOOR_SECONDS + 1
    assert secrets.refresh() is False
    assert len(vault.calls) == 2
    assert secrets.current() == ("v1",)


def test_a_flood_of_refreshes_reads_at_most_once_per_floor() -> None:
    secrets, clock, vault = make()
    secrets.current()
    start = clock.now
    while clock.now < start + 3 * REFRESH_FLOOR_SECONDS:
        clock.now += 0.5
        secrets.refresh()
    assert len(vault.calls) == 4  # the first read, then one per floor


def test_refresh_restarts_the_cache_period() -> None:
    secrets, clock, vault = make()
    secrets.current()
    clock.now += CACHE_SECONDS - 1
    secrets.refresh()
    clock.now += CACHE_SECONDS - 1
    secrets.current()
    assert len(vault.calls) == 2


def test_refresh_before_any_read_loads() -> None:
    secrets, _, vault = make()
    assert secrets.refresh() is True
    assert secrets.current() == ("v1",)
    assert len(vault.calls) == 1


def test_two_rotations_keep_only_the_last_older_value() -> None:
    secrets, clock, vault = make("v1", previous="cfg")
    secrets.current()
    for value in ("v2", "v3"):
        vault.value = value
        clock.now += REFRESH_FLOOR_SECONDS
        assert secrets.refresh() is True
    assert secrets.current() == ("v3", "v2", "cfg")


def test_fetch_failure_propagates_and_a_later_call_retries() -> None:
    vault = Vault("v1")
    failures = [DependencyUnavailable("Secret Manager unavailable")]

    def flaky(name: str) -> str:
        if failures:
            raise failures.pop()
        return vault(name)

    secrets = SecretManagerSecrets(SECRET_ID, fetch=flaky, clock=Clock())
    with pytest.raises(DependencyUnavailable):
        secrets.current()
    assert secrets.current() == ("v1",)


def test_refresh_floor_holds_while_secret_manager_fails() -> None:
    """A flood of bad signatures during an outage must not become a flood of reads."""
    clock, vault = Clock(), Vault("v1")
    down = {"now": False}
    calls: list[str] = []

    def fetch(name: str) -> str:
        calls.append(name)
        if down["now"]:
            raise DependencyUnavailable("Secret Manager unavailable")
        return vault(name)

    secrets = SecretManagerSecrets(SECRET_ID, fetch=fetch, clock=clock)
    secrets.current()
    down["now"] = True
    clock.now += REFRESH_FLOOR_SECONDS + 1
    for _ in range(20):
        clock.now += 0.1
        with contextlib.suppress(DependencyUnavailable):
            secrets.refresh()
    assert len(calls) <= 2  # the first read, then at most one attempt per floor
