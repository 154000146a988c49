"""Configuration: defaults, validation, and what each function target requires."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from paynow import config
from paynow.config import ConfigError
from paynow.domain.signature import parse_secrets

BASE = {"GOOGLE_CLOUD_PROJECT": "demo"}


def load(target: str | None = None, **env: str) -> config.Settings:
    return config.load({**BASE, **env}, target=target)


def test_defaults() -> None:
    s = load()
    assert s.webhook_mode == "sync"
    assert s.project == "demo"
    assert s.webhook_secret is None
    assert s.webhook_secret_previous is None
    assert s.webhook_secret_previous_until is None
    assert s.webhook_secret_id is None
    assert s.signature_tolerance_seconds == 300
    assert s.user_id_key == "user_id"
    assert s.topic == "paynow-events"
    assert s.dlq_topic == "paynow-events-dlq"
    assert s.push_auth == "oidc"
    assert s.oidc_certs_url == "https://www.googleapis.com/oauth2/v1/certs"
    assert s.max_delivery_attempts == 10
    assert s.event_ttl_days == 30
    assert s.topic_path == "projects/demo/topics/paynow-events"
    assert s.dlq_topic_path == "projects/demo/topics/paynow-events-dlq"


def test_values_are_read() -> None:
    s = load(
        WEBHOOK_MODE="queue",
        PAYNOW_WEBHOOK_SECRET="s1",
        PAYNOW_WEBHOOK_SECRET_PREVIOUS="s0",
        PAYNOW_WEBHOOK_SECRET_ID="projects/p/secrets/paynow",
        PAYNOW_SIGNATURE_TOLERANCE_SECONDS="120",
        PAYNOW_USER_ID_KEY="uid",
        PUBSUB_TOPIC="t",
        PUBSUB_DLQ_TOPIC="d",
        PUSH_AUDIENCE="https://worker",
        PUSH_SERVICE_ACCOUNT="push@p.iam.gserviceaccount.com",
        OIDC_CERTS_URL="http://127.0.0.1:9/certs",
        MAX_DELIVERY_ATTEMPTS="5",
        EVENT_TTL_DAYS="7",
    )
    assert (s.webhook_mode, s.webhook_secret, s.webhook_secret_previous) == ("queue", "s1", "s0")
    assert s.webhook_secret_id == "projects/p/secrets/paynow"
    assert s.signature_tolerance_seconds == 120
    assert s.user_id_key == "uid"
    assert s.topic_path == "projects/demo/topics/t"
    assert s.dlq_topic_path == "projects/demo/topics/d"
    assert (s.push_audience, s.push_service_account) == (
        "https://worker",
        "push@p.iam.gserviceaccount.com",
    )
    assert s.oidc_certs_url == "http://127.0.0.1:9/certs"
    assert (s.max_delivery_attempts, s.event_ttl_days) == (5, 7)


def test_blank_values_fall_back_to_defaults() -> None:
    s = load(WEBHOOK_MODE="  ", PUBSUB_TOPIC="", MAX_DELIVERY_ATTEMPTS=" ")
    assert (s.webhook_mode, s.topic, s.max_delivery_attempts) == ("sync", "paynow-events", 10)


def test_settings_are_frozen() -> None:
    s = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.webhook_mode = "queue"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    monkeypatch.setenv("WEBHOOK_MODE", "queue")
    monkeypatch.delenv("FUNCTION_TARGET", raising=False)
    monkeypatch.delenv("PUSH_AUTH", raising=False)
    s = config.load()
    assert (s.project, s.webhook_mode) == ("from-env", "queue")


def test_function_target_from_the_environment_adds_its_requirements() -> None:
    with pytest.raises(ConfigError, match="PAYNOW_WEBHOOK_SECRET"):
        config.load({**BASE, "FUNCTION_TARGET": "paynow_webhook"})


@pytest.mark.parametrize("mode", ["async", "Queue2", "none", "1"])
def test_bad_webhook_mode_names_the_variable(mode: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_MODE") as info:
        load(WEBHOOK_MODE=mode)
    assert mode.lower() in str(info.value)


def test_webhook_mode_is_case_insensitive() -> None:
    assert load(WEBHOOK_MODE="QUEUE").webhook_mode == "queue"


def test_missing_project_is_an_error() -> None:
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        config.load({})


def test_gcp_project_is_a_fallback() -> None:
    assert config.load({"GCP_PROJECT": "legacy"}).project == "legacy"


def test_push_auth_none_needs_the_emulator() -> None:
    with pytest.raises(ConfigError, match="PUSH_AUTH"):
        load(PUSH_AUTH="none")


def test_push_auth_none_with_the_emulator_is_accepted() -> None:
    s = load(PUSH_AUTH="none", PUBSUB_EMULATOR_HOST="localhost:8085")
    assert s.push_auth == "none"
    assert s.pubsub_emulator_host == "localhost:8085"


def test_bad_push_auth_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PUSH_AUTH"):
        load(PUSH_AUTH="basic")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PAYNOW_SIGNATURE_TOLERANCE_SECONDS", "five"),
        ("PAYNOW_SIGNATURE_TOLERANCE_SECONDS", "1.5"),
        ("PAYNOW_SIGNATURE_TOLERANCE_SECONDS", "0"),
        ("PAYNOW_SIGNATURE_TOLERANCE_SECONDS", "3601"),
        ("MAX_DELIVERY_ATTEMPTS", "ten"),
        ("MAX_DELIVERY_ATTEMPTS", "0"),
        ("MAX_DELIVERY_ATTEMPTS", "101"),
        ("MAX_DELIVERY_ATTEMPTS", "-3"),
        ("EVENT_TTL_DAYS", "30d"),
        ("EVENT_TTL_DAYS", "0"),
        ("EVENT_TTL_DAYS", "3651"),
        ("RECONCILE_AFTER_SECONDS", "x"),
        ("RECONCILE_BATCH_SIZE", "5001"),
        ("RECONCILE_MAX_REPUBLISHES", "0"),
        ("RECONCILE_MAX_REPUBLISHES", "1001"),
        ("RECONCILE_MAX_REPUBLISHES", "many"),
    ],
)
def test_bad_integer_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "attr"),
    [
        ("PAYNOW_SIGNATURE_TOLERANCE_SECONDS", "1", "signature_tolerance_seconds"),
        ("PAYNOW_SIGNATURE_TOLERANCE_SECONDS", "3600", "signature_tolerance_seconds"),
        ("MAX_DELIVERY_ATTEMPTS", "1", "max_delivery_attempts"),
        ("MAX_DELIVERY_ATTEMPTS", "100", "max_delivery_attempts"),
        ("EVENT_TTL_DAYS", "3650", "event_ttl_days"),
        ("RECONCILE_MAX_REPUBLISHES", "1", "reconcile_max_republishes"),
        ("RECONCILE_MAX_REPUBLISHES", "1000", "reconcile_max_republishes"),
    ],
)
def test_integer_bounds_are_inclusive(name: str, value: str, attr: str) -> None:
    assert getattr(load(**{name: value}), attr) == int(value)


@pytest.mark.parametrize(
    "secret_id",
    [
        "paynow-secret",
        "projects/p/secrets/",
        "projects//secrets/s",
        "projects/p/secrets/s/versions/latest",
        "secrets/s",
    ],
)
def test_bad_secret_id_names_the_variable(secret_id: str) -> None:
    with pytest.raises(ConfigError, match="PAYNOW_WEBHOOK_SECRET_ID"):
        load(PAYNOW_WEBHOOK_SECRET_ID=secret_id)


def test_bad_certs_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="OIDC_CERTS_URL"):
        load(OIDC_CERTS_URL="file:///etc/passwd")


# --- per target ------------------------------------------------------------------


def test_webhook_needs_a_secret_or_a_secret_id() -> None:
    with pytest.raises(ConfigError, match="PAYNOW_WEBHOOK_SECRET"):
        load(target=config.WEBHOOK_TARGET)
    assert load(target=config.WEBHOOK_TARGET, PAYNOW_WEBHOOK_SECRET="s").webhook_secret == "s"
    s = load(target=config.WEBHOOK_TARGET, PAYNOW_WEBHOOK_SECRET_ID="projects/p/secrets/s")
    assert s.webhook_secret_id == "projects/p/secrets/s"


def test_previous_secret_alone_does_not_satisfy_the_webhook() -> None:
    with pytest.raises(ConfigError):
        load(target=config.WEBHOOK_TARGET, PAYNOW_WEBHOOK_SECRET_PREVIOUS="old")


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "PUSH_AUDIENCE"),
        ({"PUSH_SERVICE_ACCOUNT": "sa@x"}, "PUSH_AUDIENCE"),
        ({"PUSH_AUDIENCE": "https://w"}, "PUSH_SERVICE_ACCOUNT"),
    ],
)
def test_worker_with_oidc_needs_audience_and_account(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        load(target=config.WORKER_TARGET, **env)


def test_worker_with_oidc_and_both_values_loads() -> None:
    s = load(target=config.WORKER_TARGET, PUSH_AUDIENCE="https://w", PUSH_SERVICE_ACCOUNT="sa@x")
    assert s.push_auth == "oidc"


def test_worker_without_oidc_needs_neither() -> None:
    s = load(target=config.WORKER_TARGET, PUSH_AUTH="none", PUBSUB_EMULATOR_HOST="h:1")
    assert s.push_audience is None


def test_webhook_does_not_need_push_settings_nor_worker_a_secret() -> None:
    load(target=config.WEBHOOK_TARGET, PAYNOW_WEBHOOK_SECRET="s")
    load(target=config.WORKER_TARGET, PUSH_AUDIENCE="https://w", PUSH_SERVICE_ACCOUNT="sa@x")


def test_reconcile_with_oidc_needs_its_audience_and_account() -> None:
    with pytest.raises(ConfigError, match="RECONCILE_AUDIENCE"):
        load(target=config.RECONCILE_TARGET)
    with pytest.raises(ConfigError, match="SCHEDULER_SERVICE_ACCOUNT"):
        load(target=config.RECONCILE_TARGET, RECONCILE_AUDIENCE="https://r")


# --- several signing secrets -------------------------------------------------------


def test_secrets_hold_one_per_line() -> None:
    s = load(
        PAYNOW_WEBHOOK_SECRET="order-secret\r\nrefund-secret\r\n",
        PAYNOW_WEBHOOK_SECRET_PREVIOUS="old-order-secret\n",
    )
    assert s.webhook_secret == "order-secret\r\nrefund-secret"  # the value, checked
    assert parse_secrets(s.webhook_secret) == ("order-secret", "refund-secret")
    assert parse_secrets(s.webhook_secret_previous) == ("old-order-secret",)


@pytest.mark.parametrize("name", ["PAYNOW_WEBHOOK_SECRET", "PAYNOW_WEBHOOK_SECRET_PREVIOUS"])
def test_a_blank_line_between_secrets_stops_start_up_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{name: "zq-secret-1\n\nzq-secret-2"})
    assert str(info.value).startswith(f"{name}: line 2 is empty")
    assert "zq-secret" not in str(info.value)


@pytest.mark.parametrize("name", ["PAYNOW_WEBHOOK_SECRET", "PAYNOW_WEBHOOK_SECRET_PREVIOUS"])
def test_more_than_32_secrets_stops_start_up_naming_the_variable(name: str) -> None:
    load(**{name: "\n".join(f"zq-{i}" for i in range(32))})
    with pytest.raises(ConfigError) as info:
        load(**{name: "\n".join(f"zq-{i}" for i in range(33))})
    assert str(info.value) == f"{name}: 33 secrets; at most 32 are accepted"


def test_more_than_32_current_and_previous_together_stops_start_up() -> None:
    current = "\n".join(f"zq-c{i}" for i in range(20))
    load(PAYNOW_WEBHOOK_SECRET=current, PAYNOW_WEBHOOK_SECRET_PREVIOUS=current)  # 20 in all
    with pytest.raises(ConfigError) as info:
        load(
            PAYNOW_WEBHOOK_SECRET=current,
            PAYNOW_WEBHOOK_SECRET_PREVIOUS="\n".join(f"zq-p{i}" for i in range(13)),
        )
    message = str(info.value)
    assert "PAYNOW_WEBHOOK_SECRET and PAYNOW_WEBHOOK_SECRET_PREVIOUS" in message
    assert "33 secrets" in message and "zq-" not in message


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T13:30:00+01:30", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31 12:00:00.250+00:00", datetime(2026, 1, 31, 12, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_previous_until_is_an_iso_8601_moment(value: str, moment: datetime) -> None:
    until = load(PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL=value).webhook_secret_previous_until
    assert until == moment and until is not None and until.tzinfo == UTC


def test_previous_until_unset_is_none() -> None:
    assert load(PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL=" ").webhook_secret_previous_until is None


@pytest.mark.parametrize("value", ["2026-01-31T12:00:00", "2026-01-31"])
def test_previous_until_without_an_offset_stops_start_up(value: str) -> None:
    """A naive time means another moment on each machine: refused, not guessed."""
    with pytest.raises(ConfigError, match="PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL") as info:
        load(PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL=value)
    assert "offset" in str(info.value)


@pytest.mark.parametrize("value", ["tomorrow", "31/01/2026", "2026-13-01T00:00:00Z", "1769860800"])
def test_previous_until_not_iso_8601_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match="PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL") as info:
        load(PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL=value)
    assert "ISO-8601" in str(info.value)
