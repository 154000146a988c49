"""``scripts/paynow-ops`` against the running local stack: every command, fixes and replays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from scripts import localstack, payloads
from tests.infra.conftest import make_fake
from tests.integration.conftest import balance, ledger, send, status_of, wait_for


def ops(stack, *args: str, **extra_env: str) -> tuple[int, Any]:
    env = {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": localstack.PROJECT,
        "FIRESTORE_EMULATOR_HOST": stack.emulators.firestore_host,
        "PUBSUB_EMULATOR_HOST": stack.emulators.pubsub_host,
        **extra_env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "scripts.ops", "--json", *args],
        cwd=localstack.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _dead_lettered_order(stack, db, ids) -> str:
    product = ids("pack")
    doc = payloads.order(ids("evt"), ids("order"), ids("cust"), ids("user"), [(product, 2, 500)])
    assert send(stack.webhook_queue, doc).json()["status"] == "accepted"
    wait_for(lambda: status_of(db, ids("evt")) == "dead_lettered")
    return str(product)


def test_a_bad_catalog_entry_fixed_then_replayed_credits_once(stack, db, ids):
    product = _dead_lettered_order(stack, db, ids)
    code, listed = ops(stack, "dlq", "list")
    assert code == 0
    mine = [m for m in listed["messages"] if m["eventId"] == ids("evt")]
    assert mine and mine[0]["errorCode"] == "unknown_product"
    assert listed["byErrorCode"]["unknown_product"] >= 1
    code, shown = ops(stack, "event", "show", ids("evt"))
    assert shown["status"] == "dead_lettered" and shown["inDeadLetterQueue"] is True
    # The operator fixes the catalog, then replays the event.
    db.collection("pointsCatalog").document(product).set({"points": 40})
    code, replay = ops(stack, "dlq", "replay", "--event-id", ids("evt"))
    assert code == 0 and replay["republished"] >= 1
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    assert balance(db, ids("user")) == 80
    # Replaying again (the message is gone; a second copy would be 'already final') credits nothing.
    _, again = ops(stack, "dlq", "replay", "--event-id", ids("evt"))
    assert again.get("republished", 0) == 0
    assert balance(db, ids("user")) == 80
    assert list(ledger(db, ids("user"))) == [ids("evt")]
    code, shown = ops(stack, "event", "show", ids("evt"))
    assert shown["status"] == "processed" and shown["ledgerDelta"] == 80
    assert shown["inDeadLetterQueue"] is False


def test_replay_interrupted_between_publish_and_ack_loses_nothing(stack, db, ids):
    product = _dead_lettered_order(stack, db, ids)
    db.collection("pointsCatalog").document(product).set({"points": 5})
    # The first replay "crashes" after publishing: simulate with --dry-run's release, then a
    # by-hand reopen + publish and no ack, exactly what a crash after publish leaves behind.
    ops(stack, "dlq", "replay", "--event-id", ids("evt"), "--dry-run")
    from scripts.paynow_ops.clients import Ops

    saved = dict(os.environ)
    try:
        os.environ["GOOGLE_CLOUD_PROJECT"] = localstack.PROJECT
        half = Ops()
        assert half.store.reopen(ids("evt")) == "received"
        from paynow.domain.messages import QueueMessage

        half.publisher.publish(
            QueueMessage(ids("evt"), "ON_ORDER_COMPLETED", ids("cust"), ids("user"))
        ).wait()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    # The DLQ message is still there; replaying it now acks it without crediting again.
    code, replay = ops(stack, "dlq", "replay", "--event-id", ids("evt"))
    assert code == 0 and replay["already_final"] == 1
    assert balance(db, ids("user")) == 10
    assert len(ledger(db, ids("user"))) == 1


def test_ledger_verify_catches_a_balance_corrupted_by_hand(stack, db, ids):
    doc = payloads.order(ids("evt"), ids("order"), ids("cust"), ids("user"), [("gems-100", 1, 1)])
    assert send(stack.webhook_sync, doc).json()["status"] == "processed"
    code, verdict = ops(stack, "ledger", "verify", "--user", ids("user"))
    assert code == 0 and verdict["ok"] is True
    code, shown = ops(stack, "user", "show", ids("user"))
    assert code == 0 and shown["balance"] == 100 and shown["consistent"] is True
    db.collection("users").document(ids("user")).update({"points": 1_000_000})
    code, verdict = ops(stack, "ledger", "verify", "--user", ids("user"))
    assert code == 1 and verdict["mismatched"][0]["balance"] == 1_000_000
    code, shown = ops(stack, "user", "show", ids("user"))
    assert code == 1 and shown["consistent"] is False
    db.collection("users").document(ids("user")).update({"points": 100})  # leave it consistent


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
    assert code == 1  # the settings file says sync: the next deploy would switch it back
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
