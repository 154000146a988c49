"""Signing secrets: static values, and Secret Manager with a cache and a refresh floor."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from paynow.adapters import secrets as secrets_adapter
from paynow.adapters.secrets import (
    CACHE_SECONDS,
    REFRESH_FLOOR_SECONDS,
    SecretManagerSecrets,
    StaticSecrets,
)
from paynow.domain.errors import DependencyUnavailable
from paynow.domain.signature import SecretListError, parse_secrets
from pytest_mock import MockerFixture

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


# --- several secrets, one per line ---------------------------------------------------------

WALL = 1_800_000_000.0
UNTIL = datetime.fromtimestamp(WALL, UTC)


class Wall:
    """The wall clock PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL is compared with."""

    def __init__(self, now: float = WALL) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_static_secrets_hold_one_per_line() -> None:
    secrets = StaticSecrets("order\r\nrefund\r\nchargeback\r\n", "old-order\nold-refund")
    assert secrets.current() == ("order", "refund", "chargeback", "old-order", "old-refund")


def test_static_previous_secrets_end_after_previous_until() -> None:
    wall = Wall()
    secrets = StaticSecrets("a\nb", "p1\np2", previous_until=UNTIL, wall_clock=wall)
    assert secrets.current() == ("a", "b", "p1", "p2")
    wall.now += 0.001
    assert secrets.current() == ("a", "b")


def test_secret_manager_value_holds_one_per_line() -> None:
    secrets, _, _ = make("order\nrefund\n", previous="old")
    assert secrets.current() == ("order", "refund", "old")


def test_a_secret_added_to_secret_manager_is_picked_up_by_a_refresh() -> None:
    secrets, clock, vault = make("order\nrefund")
    secrets.current()
    vault.value = "order\nrefund\nchargeback\n"
    clock.now += REFRESH_FLOOR_SECONDS
    assert secrets.refresh() is True
    assert secrets.current() == ("order", "refund", "chargeback")  # nothing older to keep
    assert len(vault.calls) == 2


def test_a_flood_of_refreshes_reads_a_multi_line_value_at_most_once_per_floor() -> None:
    secrets, clock, vault = make("a\nb\nc")
    secrets.current()
    for step in range(300):  # 150 s of refreshes, two a second
        clock.now += 0.5
        if step == 100:
            vault.value = "a\nb\nc\nd"
        secrets.refresh()
    assert len(vault.calls) == 1 + 5  # the first read, then one per 30 s floor
    assert secrets.current() == ("a", "b", "c", "d")


def test_a_secret_removed_from_secret_manager_stays_accepted_until_previous_until() -> None:
    clock, vault, wall = Clock(), Vault("keep\nleaked"), Wall()
    secrets = SecretManagerSecrets(
        SECRET_ID, fetch=vault, clock=clock, previous_until=UNTIL, wall_clock=wall
    )
    secrets.current()
    vault.value = "keep"
    clock.now += REFRESH_FLOOR_SECONDS
    assert secrets.refresh() is True
    assert secrets.current() == ("keep", "leaked")  # an in-flight retry still passes
    wall.now += 1
    assert secrets.current() == ("keep",)  # past the deadline: only the current ones


def test_previous_until_ends_the_configured_previous_with_secret_manager() -> None:
    wall = Wall()
    secrets = SecretManagerSecrets(
        SECRET_ID, "p", fetch=Vault("v"), clock=Clock(), previous_until=UNTIL, wall_clock=wall
    )
    assert secrets.current() == ("v", "p")
    wall.now += 1
    assert secrets.current() == ("v",)


@pytest.mark.parametrize(
    ("value", "previous", "reason"),
    [
        ("zq-a\n\nzq-b", None, "its latest version line 2 is empty"),
        ("\n".join(f"zq-{i}" for i in range(33)), None, "its latest version 33 secrets"),
        ("\n".join(f"zq-{i}" for i in range(30)), "zq-p1\nzq-p2\nzq-p3", "33 secrets"),
        (" \n\r\n", None, "its latest version holds no secret"),
    ],
)
def test_an_unusable_version_is_refused_naming_the_secret_not_its_value(
    capsys: pytest.CaptureFixture[str], value: str, previous: str | None, reason: str
) -> None:
    clock, vault = Clock(), Vault(value)
    secrets = SecretManagerSecrets(SECRET_ID, previous, fetch=vault, clock=clock)
    with pytest.raises(DependencyUnavailable) as info:
        secrets.current()
    assert "zq-" not in str(info.value)
    [line] = capsys.readouterr().out.splitlines()
    entry = json.loads(line)
    assert (entry["severity"], entry["secretId"]) == ("ERROR", SECRET_ID)
    assert reason in entry["reason"]
    assert "zq-" not in line


def test_an_unusable_version_is_not_read_again_on_every_request() -> None:
    clock, vault = Clock(), Vault("a\n\nb")
    secrets = SecretManagerSecrets(SECRET_ID, fetch=vault, clock=clock)
    for _ in range(50):
        clock.now += 0.1
        with pytest.raises(DependencyUnavailable):
            secrets.current()
    assert len(vault.calls) == 1
    vault.value = "a\nb"  # fixed
    clock.now += REFRESH_FLOOR_SECONDS
    assert secrets.current() == ("a", "b")
    assert len(vault.calls) == 2


def test_an_unusable_new_version_keeps_the_secrets_in_use() -> None:
    secrets, clock, vault = make("a\nb")
    secrets.current()
    vault.value = "a\n\nb\nc"
    clock.now += REFRESH_FLOOR_SECONDS
    with pytest.raises(DependencyUnavailable):  # answered 503: PayNow retries later
        secrets.refresh()
    assert secrets.current() == ("a", "b")
    clock.now += CACHE_SECONDS + 1  # the cache expires, the version is still unusable
    assert secrets.current() == ("a", "b")
    assert len(vault.calls) == 3


def test_secret_manager_bytes_that_are_not_utf8_are_unusable(mocker: MockerFixture) -> None:
    client = mocker.Mock()
    client.access_secret_version.return_value.payload.data = b"\xffzq-secret"
    mocker.patch.object(secrets_adapter, "_secret_client", return_value=client)
    with pytest.raises(SecretListError, match="not UTF-8"):
        secrets_adapter._access_secret(f"{SECRET_ID}/versions/latest")
    client.access_secret_version.return_value.payload.data = b"zq-a\nzq-b\n"
    assert parse_secrets(secrets_adapter._access_secret("x")) == ("zq-a", "zq-b")


# --- ready: the secrets without a read, for an event loop -------------------------------


def test_static_secrets_are_always_ready() -> None:
    assert StaticSecrets("now", "before").ready() == ("now", "before")


def test_ready_is_the_cached_value_while_fresh_and_none_when_a_read_is_due() -> None:
    secrets, clock, vault = make("v1", previous="v0")
    assert secrets.ready() is None  # nothing read yet
    secrets.current()
    assert secrets.ready() == ("v1", "v0")
    clock.now += CACHE_SECONDS + 1
    assert secrets.ready() is None  # stale: current() reads again, on a thread
    assert len(vault.calls) == 1  # ready never reads


def test_ready_never_waits_for_a_thread_holding_the_cache() -> None:
    secrets, _, _ = make()
    secrets.current()
    with secrets._lock:  # another thread is reading Secret Manager
        assert secrets.ready() is None
    assert secrets.ready() == ("v1",)


def test_ready_keeps_the_fast_path_while_secret_manager_fails() -> None:
    """Stale and failing: ``current`` verifies with the cached value between attempts, and
    so does ``ready``; it gives None only when an attempt is due again."""
    clock, down = Clock(), {"now": False}

    def fetch(name: str) -> str:
        if down["now"]:
            raise DependencyUnavailable("Secret Manager unavailable")
        return "v1"

    secrets = SecretManagerSecrets(SECRET_ID, fetch=fetch, clock=clock)
    secrets.current()
    down["now"] = True
    clock.now += CACHE_SECONDS + 1
    assert secrets.ready() is None  # stale, a read allowed: current() tries, on a thread
    assert secrets.current() == ("v1",)  # the read failed: the cached value is kept
    clock.now += 1
    assert secrets.ready() == ("v1",)  # no read allowed before the floor: no wait either
    clock.now += REFRESH_FLOOR_SECONDS
    assert secrets.ready() is None
