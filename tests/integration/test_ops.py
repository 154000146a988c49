"""``scripts/paynow-ops`` against the running local stack: every command, fixes and replays."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore, pubsub_v1
from paynow.adapters.firestore_store import FirestoreEventStore
from paynow.domain import payloads
from paynow.domain.events import normalize, parse_envelope
from paynow.domain.messages import QueueMessage

from scripts.local import localstack
from scripts.ops import cli
from scripts.ops.clients import Ops
from tests.infra.conftest import make_fake
from tests.integration.conftest import (
    WORKER_MAX_ATTEMPTS,
    DeadLetterReader,
    balance,
    ledger,
    send,
    status_of,
    wait_for,
)
from tests.integration.conftest import event as event_record
from tests.support.terminal import read_available


def ops_run(stack, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """``paynow-ops --json ARGS`` against the local stack, as an operator runs it."""
    return localstack.paynow_ops(stack.emulators, *args, env=extra_env)


def ops(stack, *args: str, **extra_env: str) -> tuple[int, Any]:
    done = ops_run(stack, *args, **extra_env)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def own_dlq(stack) -> Iterator[dict[str, str]]:
    """The environment of a DLQ subscription only this test reads: what comes after it."""
    reader = DeadLetterReader(stack.emulators.project)
    yield {"PUBSUB_DLQ_SUBSCRIPTION": reader.path.rsplit("/", 1)[-1]}
    reader.close()


def _publish_dead_letter(data: bytes, **attributes: str) -> None:
    """Put a message on the DLQ topic, as the worker or Pub/Sub itself would."""
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(localstack.PROJECT, localstack.DLQ_TOPIC)
    publisher.publish(topic, data, **attributes).result(timeout=30)


def _dead_lettered_order(stack, db, ids) -> str:
    product = ids("pack")
    doc = payloads.order_completed(
        ids("evt"), ids("order"), ids("cust"), ids("user"), [(product, 2, 500)]
    )
    assert send(stack.webhook_queue, doc).json()["status"] == "accepted"
    wait_for(lambda: status_of(db, ids("evt")) == "dead_lettered")
    return str(product)


def test_a_bad_catalog_entry_fixed_then_replayed_twice_credits_once(stack, db, ids, dlq):
    product = _dead_lettered_order(stack, db, ids)
    code, listed = ops(stack, "dlq", "list")
    assert code == 0
    mine = [m for m in listed["messages"] if m["eventId"] == ids("evt")]
    assert mine and mine[0]["errorCode"] == "unknown_product"
    assert listed["byErrorCode"]["unknown_product"] >= 1
    code, shown = ops(stack, "event", "show", ids("evt"))
    assert shown["status"] == "dead_lettered" and shown["inDeadLetterQueue"] is True
    # The operator fixes the catalog with the CLI, then replays the event.
    code, entry = ops(stack, "catalog", "show", product)
    assert code == 1 and entry["points"] is None
    code, dry = ops(stack, "catalog", "set", product, "40", "--dry-run")
    assert code == 0 and dry["changed"] is False and ops(stack, "catalog", "show", product)[0] == 1
    code, done = ops(stack, "catalog", "set", product, "40")
    assert code == 0 and (done["before"], done["after"]) == (None, 40)
    code, entry = ops(stack, "catalog", "show", product)
    assert code == 0 and entry == {"productId": product, "points": 40, "problem": None}
    code, whole = ops(stack, "catalog", "show")
    assert {"productId": product, "points": 40, "problem": None} in whole["entries"]
    code, replay = ops(stack, "dlq", "replay", "--event-id", ids("evt"))
    assert code == 0 and replay["republished"] == 1 and replay["acknowledged"] == 1
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    assert balance(db, ids("user")) == 80
    # The same dead letter arrives again (a duplicate publish): its replay is a no-op, acked.
    (letter,) = dlq.for_event(ids("evt"))
    _publish_dead_letter(letter.data, **dict(letter.attributes))
    code, again = ops(stack, "dlq", "replay", "--event-id", ids("evt"))
    assert code == 0 and (again["selected"], again["already_done"]) == (1, 1), again
    assert "nothing to redo" in again["messages"][0]["detail"]
    assert balance(db, ids("user")) == 80
    assert list(ledger(db, ids("user"))) == [ids("evt")]
    code, shown = ops(stack, "event", "show", ids("evt"))
    assert shown["status"] == "processed" and shown["ledgerDelta"] == 80
    assert shown["inDeadLetterQueue"] is False
    # Nothing of it is left to replay: asking for it again says so, with exit 1.
    code, none = ops(stack, "dlq", "replay", "--event-id", ids("evt"))
    assert code == 1 and none["selected"] == 0


def test_replay_interrupted_between_publish_and_ack_loses_nothing(
    stack, db, ids, own_dlq, monkeypatch, mocker, capsys
):
    """The CLI's own path, in this process: the ack after a successful publish fails once."""
    product = _dead_lettered_order(stack, db, ids)
    db.collection("pointsCatalog").document(product).set({"points": 5})
    monkeypatch.setenv("PUBSUB_DLQ_SUBSCRIPTION", own_dlq["PUBSUB_DLQ_SUBSCRIPTION"])
    connected = Ops.connect()
    acknowledge = connected.subscriber.acknowledge
    calls: list[object] = []

    def lost_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise gexc.ServiceUnavailable("connection lost after the publish")
        return acknowledge(*args, **kwargs)

    mocker.patch.object(connected.subscriber, "acknowledge", side_effect=lost_once)
    mocker.patch.object(Ops, "connect", return_value=connected)
    code = cli.main(["--json", "dlq", "replay", "--event-id", ids("evt")])
    first = json.loads(capsys.readouterr().out)
    assert code == 1 and (first["selected"], first["failed"], first["acknowledged"]) == (1, 1, 0)
    assert "connection lost" in first["messages"][0]["detail"]
    wait_for(lambda: status_of(db, ids("evt")) == "processed")  # the publish went out
    assert balance(db, ids("user")) == 10
    # The DLQ message is still there; replaying it now acks it without crediting again.
    code = cli.main(["--json", "dlq", "replay", "--event-id", ids("evt")])
    second = json.loads(capsys.readouterr().out)
    assert code == 0 and second["already_done"] == 1 and second["acknowledged"] == 1
    assert balance(db, ids("user")) == 10
    assert len(ledger(db, ids("user"))) == 1
    _, listed = ops(stack, "dlq", "list", **own_dlq)
    assert listed["depth"] == 0


def test_a_message_pubsub_dead_lettered_itself_is_replayed_with_fresh_attempts(
    stack, db, ids, own_dlq
):
    """Pub/Sub gave up on it: the record is still received, the message has no errorCode."""
    doc = payloads.order_completed(
        ids("evt"), ids("order"), ids("cust"), ids("user"), [("gems-100", 1, 1)]
    )
    event = normalize(parse_envelope(payloads.encode(doc)), "user_id")
    store = FirestoreEventStore(db, ttl_days=1)
    assert store.record_received(event, "queue") is None
    for _ in range(WORKER_MAX_ATTEMPTS - 1):
        store.record_failure(
            ids("evt"), "unavailable", "Firestore unavailable (ServiceUnavailable)"
        )
    original = QueueMessage.for_event(event)
    _publish_dead_letter(
        original.data(),
        **original.attributes(),
        CloudPubSubDeadLetterSourceDeliveryCount="16",
        CloudPubSubDeadLetterSourceSubscription="paynow-events-push",
        CloudPubSubDeadLetterSourceSubscriptionProject=localstack.PROJECT,
    )
    _, listed = ops(stack, "dlq", "list", **own_dlq)
    (mine,) = listed["messages"]
    assert (mine["eventId"], mine["errorCode"], mine["source"], mine["attempts"]) == (
        ids("evt"),
        "pubsub_max_delivery_attempts",
        "pubsub",
        "16",
    )
    code, replay = ops(stack, "dlq", "replay", "--event-id", ids("evt"), **own_dlq)
    assert code == 0 and replay["republished"] == 1, replay
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    assert balance(db, ids("user")) == 100
    record = event_record(db, ids("evt"))
    assert (record["attempts"], record["lastError"]) == (0, None)
    _, listed = ops(stack, "dlq", "list", **own_dlq)
    assert listed["depth"] == 0


def test_replay_and_discard_by_error_code_and_all(stack, db, ids, own_dlq):
    product = _dead_lettered_order(stack, db, ids)
    gone = QueueMessage(ids("gone"), "ON_ORDER_COMPLETED", ids("cust"))
    _publish_dead_letter(
        gone.data(), **gone.attributes(), errorCode="event_not_found", source="worker"
    )
    raw = payloads.encode({"event_type": "ON_ORDER_COMPLETED", "body": {"email": "al@example.com"}})
    _publish_dead_letter(raw, errorCode="invalid_payload", source="webhook", attempts="1")
    code, dry = ops(
        stack, "dlq", "replay", "--error-code", "unknown_product", "--dry-run", **own_dlq
    )
    assert code == 0 and (dry["selected"], dry["would_replay"]) == (1, 1)
    db.collection("pointsCatalog").document(product).set({"points": 7})
    code, replay = ops(stack, "dlq", "replay", "--error-code", "unknown_product", **own_dlq)
    assert code == 0 and replay["republished"] == 1
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    assert balance(db, ids("user")) == 14
    # What is left cannot be replayed: --all says so per message, acks none, exits 1.
    code, rest = ops(stack, "dlq", "replay", "--all", **own_dlq)
    assert code == 1 and (rest["selected"], rest["left"], rest["acknowledged"]) == (2, 2, 0)
    outcomes = {r["eventId"]: r["outcome"] for r in rest["messages"]}
    assert outcomes == {ids("gone"): "event_not_found", None: "no_event_id"}
    code, dry = ops(stack, "dlq", "discard", "--all", "--dry-run", **own_dlq)
    assert code == 0 and dry["would_discard"] == 2
    _, listed = ops(stack, "dlq", "list", **own_dlq)
    assert listed["depth"] == 2
    done = ops_run(stack, "dlq", "discard", "--all", **own_dlq)
    assert done.returncode == 0 and json.loads(done.stdout)["discarded"] == 2
    assert f"event {ids('gone')}, errorCode event_not_found" in done.stderr
    assert "al@example.com" not in done.stdout + done.stderr
    _, listed = ops(stack, "dlq", "list", **own_dlq)
    assert listed["depth"] == 0


def test_dlq_list_counts_more_than_a_page_and_consumes_nothing(stack, ids, own_dlq):
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(localstack.PROJECT, localstack.DLQ_TOPIC)
    sent = [
        publisher.publish(topic, b"{}", eventId=f"{ids('gone')}-{n}", errorCode="event_not_found")
        for n in range(150)
    ]
    for future in sent:
        future.result(timeout=30)
    code, first = ops(stack, "dlq", "list", **own_dlq)  # pages of 100
    assert code == 0 and first["depth"] == 150
    code, again = ops(stack, "dlq", "list", "--page-size", "20", **own_dlq)
    assert again["depth"] == 150 and again["byErrorCode"] == {"event_not_found": 150}
    code, gone = ops(stack, "dlq", "discard", "--all", "--page-size", "20", **own_dlq)
    assert code == 0 and gone["discarded"] == 150
    _, listed = ops(stack, "dlq", "list", **own_dlq)
    assert listed["depth"] == 0


def test_ledger_verify_catches_a_balance_corrupted_by_hand(stack, db, ids):
    doc = payloads.order_completed(
        ids("evt"), ids("order"), ids("cust"), ids("user"), [("gems-100", 1, 1)]
    )
    assert send(stack.webhook_sync, doc).json()["status"] == "processed"
    code, verdict = ops(stack, "ledger", "verify", "--user", ids("user"))
    assert code == 0 and verdict["ok"] is True and verdict["entriesChecked"] == 1
    code, everyone = ops(stack, "ledger", "verify")
    assert code == 0 and everyone["ok"] is True, everyone
    assert everyone["usersChecked"] >= 1
    code, shown = ops(stack, "user", "show", ids("user"))
    assert code == 0 and shown["balance"] == 100 and shown["consistent"] is True
    user = db.collection("users").document(ids("user"))
    user.update({"points": 1_000_000})
    code, verdict = ops(stack, "ledger", "verify", "--user", ids("user"))
    assert code == 1 and verdict["mismatched"][0]["balance"] == 1_000_000
    code, everyone = ops(stack, "ledger", "verify")
    assert code == 1 and [m["userId"] for m in everyone["mismatched"]] == [ids("user")]
    code, shown = ops(stack, "user", "show", ids("user"))
    assert code == 1 and shown["consistent"] is False
    user.update({"points": 100})  # leave it consistent


def test_ledger_verify_catches_a_deleted_balance_and_unreadable_fields(stack, db, ids):
    doc = payloads.order_completed(
        ids("evt"), ids("order"), ids("cust"), ids("user"), [("gems-100", 1, 1)]
    )
    assert send(stack.webhook_sync, doc).json()["status"] == "processed"
    user = db.collection("users").document(ids("user"))
    kept = user.get().to_dict()
    user.delete()  # the balance document goes; its ledger stays
    code, everyone = ops(stack, "ledger", "verify")
    assert code == 1
    assert [(m["userId"], m["balance"], m["ledgerSum"]) for m in everyone["mismatched"]] == [
        (ids("user"), None, 100)
    ]
    code, shown = ops(stack, "user", "show", ids("user"))
    assert code == 1 and (shown["found"], shown["balance"], shown["ledgerSum"]) == (True, None, 100)
    user.set(kept)
    entry = user.collection("pointsLedger").document(ids("evt"))
    entry.update({"delta": "100"})
    user.update({"points": firestore.DELETE_FIELD})
    code, verdict = ops(stack, "ledger", "verify", "--user", ids("user"))
    assert code == 1 and sorted(i["problem"] for i in verdict["invalidFields"]) == [
        "delta is not an integer: str '100'",
        "no points field",
    ]
    code, shown = ops(stack, "user", "show", ids("user"))
    assert code == 1 and shown["consistent"] is False and len(shown["problems"]) == 2
    entry.update({"delta": 100})  # leave it consistent
    user.set(kept)
    code, _ = ops(stack, "ledger", "verify")
    assert code == 0


def test_reconcile_and_unknown_event_commands(stack, ids):
    code, report = ops(stack, "reconcile")
    assert code == 0 and report["failed"] == 0 and "found" in report
    code, shown = ops(stack, "event", "show", ids("never"))
    assert code == 1 and shown["found"] is False


def test_health_holds_on_the_local_stack(stack):
    code, report = ops(stack, "health")
    assert code == 0, report
    assert report["ok"] is True and report["environment"] == "emulator"
    status = {c["check"]: c["status"] for c in report["checks"]}
    contract = (
        "firestore",
        "topic paynow-events",
        "topic paynow-events-dlq",
        "subscription paynow-events-push",
        "subscription paynow-events-dlq-sub",
    )
    assert {check: status[check] for check in contract} == dict.fromkeys(contract, "ok")
    # Other tests may leave dead letters or stuck events: work for a person, not a failure.
    assert status["dead letters waiting"] in ("ok", "warn")
    assert status["oldest received event"] in ("ok", "warn")
    # What only the cloud deploy sets up is reported, not failed, on the emulator.
    assert status["dead-letter policy"] == "warn" and status["push auth"] == "warn"
    assert isinstance(report["dlqDepth"], int)
    # --strict makes every warning count: the emulator's push subscription has no policy.
    code, strict = ops(stack, "health", "--strict")
    assert code == 1 and strict["ok"] is False


def test_health_fails_when_a_subscription_is_missing(stack):
    code, report = ops(stack, "health", PUBSUB_DLQ_SUBSCRIPTION="paynow-no-such-sub")
    assert code == 1 and report["ok"] is False
    (missing,) = [c for c in report["checks"] if c["check"] == "subscription paynow-no-such-sub"]
    assert missing["status"] == "fail" and missing["detail"].startswith("missing")
    assert report["dlqDepth"] is None


def test_mode_reads_the_local_environment(stack):
    code, shown = ops(stack, "mode", WEBHOOK_MODE="queue")
    assert code == 0
    assert (shown["mode"], shown["valid"]) == ("queue", True)
    assert shown["switchCommand"] == "infra/set-mode.sh infra/env/ENV.env sync"
    code, shown = ops(stack, "mode", WEBHOOK_MODE="fast")
    assert code == 1 and shown["valid"] is False


def test_mode_reads_the_deployed_webhook_and_its_settings_file(stack, tmp_path: Path):
    """The deployed service, read with gcloud (the recording fake of the infra tests)."""
    fake = make_fake(tmp_path, tmp_path, "demo-mode-project")
    fake.state_file.write_text(
        json.dumps(
            {
                "run": {
                    "paynow-webhook": {
                        "generation": 3,
                        "env": {
                            "GOOGLE_CLOUD_PROJECT": "demo-mode-project",
                            "WEBHOOK_MODE": "queue",
                        },
                        "revision": "paynow-webhook-00003-abc",
                    }
                }
            }
        )
    )
    env_file = tmp_path / "prod.env"
    env_file.write_text("PROJECT=demo-mode-project\nREGION=europe-west1\nWEBHOOK_MODE=sync\n")
    code, shown = ops(stack, "mode", "--env-file", str(env_file), **fake.env)
    assert code == 0  # the settings file says sync, but deploys keep the live mode
    assert (shown["source"], shown["mode"], shown["settingsFileMode"]) == (
        "deployed",
        "queue",
        "sync",
    )
    assert shown["revision"] == "paynow-webhook-00003-abc"
    assert shown["switchCommand"] == f"infra/set-mode.sh {env_file} sync"
    assert fake.calls()[0]["argv"][:4] == ["run", "services", "describe", "paynow-webhook"]
    env_file.write_text("PROJECT=demo-mode-project\nREGION=europe-west1\nWEBHOOK_MODE=queue\n")
    code, shown = ops(stack, "mode", "--env-file", str(env_file), **fake.env)
    assert code == 0 and shown["matchesSettingsFile"] is True
    state = json.loads(fake.state_file.read_text())
    state["run"]["paynow-webhook"]["env"]["WEBHOOK_MODE"] = "fast"
    fake.state_file.write_text(json.dumps(state))
    code, shown = ops(stack, "mode", "--env-file", str(env_file), **fake.env)
    assert code == 1 and "refuses to start" in shown["error"]


def _deployed_webhook(fake: Any, **env: str) -> None:
    """The fake gcloud's state: a deployed paynow-webhook service with this environment."""
    service = {"generation": 2, "env": env, "revision": "paynow-webhook-00002-xyz"}
    fake.state_file.write_text(json.dumps({"run": {"paynow-webhook": service}}))


def test_mode_of_a_cloud_project_reads_its_deployed_service(stack, tmp_path: Path):
    fake = make_fake(tmp_path, tmp_path, "demo-mode-cloud")
    _deployed_webhook(fake, WEBHOOK_MODE="queue")
    argv = ("--project", "demo-mode-cloud", "mode", "--region", "europe-west1")
    done = ops_run(stack, *argv, **fake.env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["source"], shown["project"], shown["mode"]) == (
        "deployed",
        "demo-mode-cloud",
        "queue",
    )
    assert done.stderr.splitlines()[0].startswith(
        "paynow-ops: target: cloud project demo-mode-cloud (--project; "
    )
    call = fake.calls()[0]["argv"]
    assert call[:4] == ["run", "services", "describe", "paynow-webhook"]
    assert "--region=europe-west1" in call and "--project=demo-mode-cloud" in call
    no_region = ops_run(stack, "--project", "demo-mode-cloud", "mode", **fake.env)
    assert no_region.returncode == 2 and "give its --region R" in no_region.stderr


def test_a_cloud_change_without_a_terminal_is_refused_and_nothing_runs(stack):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.ops.cli",
            "--project",
            "demo-no-such",
            "dlq",
            "replay",
            "--all",
        ],
        cwd=localstack.ROOT,
        env=os.environ.copy(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "paynow-ops: target: cloud project demo-no-such (--project; "
        "FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST ignored)",
        "paynow-ops: dlq replay changes data in cloud project demo-no-such; "
        "no terminal to confirm on: run it again with --yes",
    ]


def on_terminal(env: dict[str, str], *args: str, answer: str | None = None) -> tuple[int, str, str]:
    """``paynow-ops ARGS`` with stdin and stderr on a pseudo-terminal, stdout piped, as a
    person runs it with ``| less``: the exit code, stdout, and what the terminal showed."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.ops.cli", *args],
        cwd=localstack.ROOT,
        env={**env, "COLUMNS": "120", "TERM": "xterm"},
        stdin=child,
        stderr=child,
        stdout=subprocess.PIPE,
    )
    os.close(child)
    shown, answered = b"", answer is None
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        shown += read_available(main, 0.2)
        if not answered and b"Go on? [y/N]" in shown:
            os.write(main, (answer or "").encode())
            answered = True
    shown += read_available(main, 0.2)
    os.close(main)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.wait(timeout=30)
    return proc.returncode, out, shown.decode(errors="replace")


def test_a_cloud_change_not_confirmed_on_the_terminal_changes_nothing(stack):
    code, out, shown = on_terminal(
        dict(os.environ), "--project", "demo-no-such", "catalog", "set", "gems-1", "5", answer="n\n"
    )
    assert code == 2 and out == ""
    assert "catalog set changes data in cloud project demo-no-such. Go on? [y/N]" in shown
    assert "paynow-ops: catalog set not confirmed: nothing changed" in shown


@pytest.mark.parametrize(
    ("args", "bar"),
    [
        (("ledger", "verify"), "ledger verify: ledger entries"),
        (("dlq", "list"), "dlq list: messages"),
        (("dlq", "replay", "--all", "--dry-run"), "dlq replay"),
        (("reconcile",), "reconcile: republished"),
    ],
)
def test_long_commands_show_a_progress_bar_on_a_terminal_and_none_in_a_pipe(stack, args, bar):
    env = {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": localstack.PROJECT,
        "FIRESTORE_EMULATOR_HOST": stack.emulators.firestore_host,
        "PUBSUB_EMULATOR_HOST": stack.emulators.pubsub_host,
    }
    code, out, shown = on_terminal(env, *args)
    assert code in (0, 1), shown
    assert bar in shown, shown
    assert "paynow-ops: target: emulators, project demo-paynow" in shown
    assert "\x1b" not in out  # stdout is a pipe: plain text
    piped = ops_run(stack, *args)
    assert bar not in piped.stderr and "\x1b" not in piped.stderr
