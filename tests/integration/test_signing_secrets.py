"""Several signing secrets over real HTTP: one per PayNow webhook subscription, and a rotation.

Two sync-mode webhooks on the emulators, each started with three current secrets
(CRLF-separated, with a trailing line end, as a Windows editor saves them) and two
previous ones: one whose PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL is tomorrow, one whose
deadline has passed. (Secret Manager has no emulator: its multi-line values are
covered by tests/unit/test_secrets.py and test_webhook_service.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from paynow.domain import payloads

from scripts.local import localstack
from tests.integration.conftest import balance, find_event, send

CURRENT = ("it-sub-order-secret", "it-sub-refund-secret", "it-sub-chargeback-secret")
PREVIOUS = ("it-old-order-secret", "it-old-refund-secret")
LINES = [("gems-100", 1, 199)]  # 100 points


def webhook_env(emulators: localstack.Emulators, **extra: str) -> dict[str, str]:
    return localstack.function_env(
        pubsub_host=emulators.pubsub_host,
        firestore_host=emulators.firestore_host,
        extra={
            "PAYNOW_WEBHOOK_SECRET": "\r\n".join(CURRENT) + "\r\n",
            "PAYNOW_WEBHOOK_SECRET_PREVIOUS": "\n".join(PREVIOUS),
            **extra,
        },
    )


@pytest.fixture(scope="module")
def webhooks(stack) -> Iterator[dict[str, str]]:
    """``in_grace`` (the previous secrets end tomorrow) and ``past_grace`` (a minute ago)."""
    now = datetime.now(UTC)
    deadlines = {
        "in_grace": (now + timedelta(days=1)).isoformat(),
        "past_grace": (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    functions = [
        localstack.Function(
            f"it-secrets-{name}",
            "paynow_webhook",
            localstack.free_port(),
            webhook_env(stack.emulators, PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL=until),
        )
        for name, until in deadlines.items()
    ]
    with localstack.LocalRun() as run:
        procs = run.functions(*functions)
        yield {name: proc.address for name, proc in zip(deadlines, procs, strict=True)}


@pytest.mark.parametrize("which", ["in_grace", "past_grace"])
def test_each_subscription_secret_is_accepted_and_a_fourth_refused(webhooks, db, ids, which):
    for n, secret in enumerate(CURRENT):
        doc = payloads.order_completed(ids(f"e{n}"), ids(f"o{n}"), ids("c"), ids("u"), LINES)
        answer = send(webhooks[which], doc, secret=secret)
        assert (answer.status_code, answer.json()["status"]) == (200, "processed")
    assert balance(db, ids("u")) == 300
    forged = payloads.order_completed(ids("e-forged"), ids("o-forged"), ids("c"), ids("u"), LINES)
    answer = send(webhooks[which], forged, secret="it-sub-fourth-secret")
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_signature"
    assert find_event(db, ids("e-forged")) is None
    assert balance(db, ids("u")) == 300


def test_previous_secrets_are_accepted_until_their_deadline_and_refused_after(webhooks, db, ids):
    for n, secret in enumerate(PREVIOUS):
        doc = payloads.order_completed(ids(f"in{n}"), ids(f"oi{n}"), ids("c"), ids("u"), LINES)
        assert send(webhooks["in_grace"], doc, secret=secret).json()["status"] == "processed"
        late = payloads.order_completed(ids(f"past{n}"), ids(f"op{n}"), ids("c"), ids("u"), LINES)
        answer = send(webhooks["past_grace"], late, secret=secret)
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_signature")
        assert find_event(db, ids(f"past{n}")) is None
    assert balance(db, ids("u")) == 200


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("PAYNOW_WEBHOOK_SECRET", "it-cfg-secret-a\n\nit-cfg-secret-b", "line 2 is empty"),
        (
            "PAYNOW_WEBHOOK_SECRET",
            "\n".join(f"it-cfg-secret-{n}" for n in range(33)),
            "33 secrets; at most 32",
        ),
        ("PAYNOW_WEBHOOK_SECRET_PREVIOUS", "it-cfg-secret-a\n \nit-cfg-secret-b", "line 2"),
        ("PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL", "2026-01-31T12:00:00", "UTC offset"),
        ("PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL", "next tuesday", "ISO-8601"),
    ],
)
def test_a_bad_secret_setting_stops_the_webhook_naming_the_variable(
    emulators, variable, value, reason
):
    env = webhook_env(emulators, **{variable: value})
    with pytest.raises(RuntimeError) as failure:
        localstack.start_function("bad-secrets", "paynow_webhook", localstack.free_port(), env)
    text = str(failure.value)
    assert "exited" in text
    assert variable in text and reason in text
    assert "it-cfg-secret" not in text and not any(s in text for s in CURRENT + PREVIOUS)


def test_send_webhook_signs_with_the_first_of_several_secrets(webhooks):
    """The local sender reads PAYNOW_WEBHOOK_SECRET in the same one-per-line format."""
    env = {**os.environ, "PAYNOW_WEBHOOK_SECRET": "\n".join(reversed(CURRENT)) + "\n"}
    url = webhooks["past_grace"]
    done = subprocess.run(
        [sys.executable, "scripts/ops/send_webhook.py", "order_completed", "--fresh", "--url", url],
        cwd=localstack.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("200 ")
