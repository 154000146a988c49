"""scripts/ops/smoke_test.py against the functions served locally on the emulators.

The same checks a deploy runs against the live project: here the webhook and the worker
run under functions-framework, and Firestore's REST API is the emulator's. In queue mode
the event goes the whole way: published by the webhook, pushed by the emulator's push
subscription to the worker (the emulator sends no OIDC token: the worker runs with
PUSH_AUTH=none here; the token itself is what only a live project proves), processed, and
every document the smoke test wrote is deleted afterwards.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from google.cloud import firestore

from scripts.local import localstack
from tests.infra.conftest import ROOT

SECRET = f"smoke-secret-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Served:
    webhook: str
    worker: str
    firestore: str


@pytest.fixture(scope="module")
def served(emulators: localstack.Emulators) -> Iterator[Served]:
    env = localstack.function_env(
        pubsub_host=emulators.pubsub_host,
        firestore_host=emulators.firestore_host,
        extra={"PAYNOW_WEBHOOK_SECRET": SECRET},
    )
    worker_port, webhook_port = localstack.free_port(), localstack.free_port()
    worker_env = {
        **env,
        "PUSH_AUTH": "oidc",
        "PUSH_AUDIENCE": f"http://127.0.0.1:{worker_port}/",
        "PUSH_SERVICE_ACCOUNT": "paynow-push@demo-paynow.iam.gserviceaccount.com",
    }
    with localstack.LocalRun() as run:
        worker, webhook = run.functions(
            localstack.Function("smoke-worker", "paynow_worker", worker_port, worker_env),
            localstack.Function("smoke-webhook", "paynow_webhook", webhook_port, env),
        )
        yield Served(webhook.address, worker.address, f"http://{emulators.firestore_host}")


def smoke(
    served: Served,
    secret: str,
    *protected: str,
    timeout: int = 15,
    project: str = localstack.PROJECT,
    mode: str = "sync",
    queue_timeout: int = 60,
) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable,
        str(ROOT / "scripts" / "ops" / "smoke_test.py"),
        f"--project={project}",
        f"--webhook-url={served.webhook}",
        f"--firestore-url={served.firestore}",
        f"--timeout={timeout}",
        f"--mode={mode}",
        f"--queue-timeout={queue_timeout}",
    ]
    args += [f"--protected-url={url}" for url in protected]
    env = {"PATH": "/usr/bin:/bin", "PAYNOW_WEBHOOK_SECRET": secret, "SMOKE_ACCESS_TOKEN": "owner"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_smoke_test_passes_on_a_working_pipeline(served: Served) -> None:
    result = smoke(served, SECRET, served.worker)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * 5
    assert lines[-2] == "ok   cleaned up 1 smoke document(s)"
    assert lines[-1] == "smoke test passed"
    assert SECRET not in result.stdout + result.stderr


def test_smoke_test_signs_with_the_first_of_several_secrets(served: Served) -> None:
    result = smoke(served, f"{SECRET}\r\nanother-subscription-secret\r\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "another-subscription-secret" not in result.stdout + result.stderr


def test_smoke_test_refuses_an_unusable_secret_list(served: Served) -> None:
    result = smoke(served, f"{SECRET}\n\nanother-subscription-secret")
    assert result.returncode == 2
    assert "PAYNOW_WEBHOOK_SECRET: line 2 is empty" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_smoke_test_fails_on_a_wrong_secret(served: Served) -> None:
    result = smoke(served, SECRET + "-rotated-elsewhere", timeout=3)
    assert result.returncode == 1
    assert "FAIL webhook accepts a signed event" in result.stdout
    assert "FAIL event recorded in webhookEvents" in result.stdout


class _Open(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_smoke_test_fails_when_a_protected_function_is_open(served: Served) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Open)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        open_url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = smoke(served, SECRET, served.worker, open_url)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert f"FAIL {open_url} refuses a caller without a token" in result.stdout
    assert f"ok   {served.worker} refuses a caller without a token" in result.stdout


@dataclass(frozen=True)
class Queued:
    served: Served
    project: str
    db: firestore.Client


@pytest.fixture(scope="module")
def queued(emulators: localstack.Emulators) -> Iterator[Queued]:
    """A webhook in queue mode and a worker behind the emulator's push subscription, in a
    project of their own (so any document left behind is the smoke test's)."""
    project, base = _queue_env(emulators)
    worker_port, webhook_port = localstack.free_port(), localstack.free_port()
    with localstack.LocalRun() as run:
        worker, webhook = run.functions(
            localstack.Function("smoke-q-worker", "paynow_worker", worker_port, base),
            localstack.Function("smoke-q-webhook", "paynow_webhook", webhook_port, base),
        )
        localstack.provision_pubsub(worker.address, project=project)
        served = Served(webhook.address, worker.address, f"http://{emulators.firestore_host}")
        yield Queued(served, project, firestore.Client(project=project))


def _queue_env(emulators: localstack.Emulators) -> tuple[str, dict[str, str]]:
    """A project of its own (so any document left behind is the smoke test's) and the queue
    mode environment of its functions."""
    project = f"demo-smoke-{uuid.uuid4().hex[:8]}"
    env = localstack.function_env(
        pubsub_host=emulators.pubsub_host,
        firestore_host=emulators.firestore_host,
        mode="queue",
        extra={"PAYNOW_WEBHOOK_SECRET": SECRET, "GOOGLE_CLOUD_PROJECT": project},
    )
    return project, env


def _documents(db: firestore.Client) -> list[str]:
    return [
        f"{name}/{doc.id}"
        for name in ("webhookEvents", "paynowSubscriptions", "users")
        for doc in db.collection(name).stream()
    ]


def test_queue_mode_goes_through_push_and_the_worker_then_cleans_up(queued: Queued) -> None:
    # (no protected URL: this worker takes PUSH_AUTH=none, the emulator's push has no token)
    result = smoke(queued.served, SECRET, project=queued.project, mode="queue")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   webhook queues a signed event (smoke-q-" in result.stdout
    assert "ok   the worker processed it (published, pushed" in result.stdout
    assert "ok   cleaned up 3 smoke document(s)" in result.stdout
    assert _documents(queued.db) == []  # records and subscription: all gone


def test_queue_mode_fails_when_nothing_processes_the_event(emulators: localstack.Emulators) -> None:
    """A push endpoint nobody answers: the event stays received, the check fails, and what
    it wrote is left to be looked at (and named)."""
    project, env = _queue_env(emulators)
    with localstack.LocalRun() as run:
        webhook = run.function(
            "smoke-q-lonely-webhook", "paynow_webhook", localstack.free_port(), env
        )
        localstack.provision_pubsub(f"http://127.0.0.1:{localstack.free_port()}/", project=project)
        served = Served(webhook.address, webhook.address, f"http://{emulators.firestore_host}")
        result = smoke(served, SECRET, project=project, mode="queue", queue_timeout=4)
    assert result.returncode == 1
    assert "FAIL the worker processed it" in result.stdout
    assert "left for a look: scripts/paynow-ops event show smoke-q-" in result.stdout
    left = _documents(firestore.Client(project=project))
    assert [d for d in left if d.startswith("webhookEvents/smoke-q-")]  # kept, received
    assert not [d for d in left if d.startswith("webhookEvents/smoke-2")]  # the ignored one went
