"""The whole pipeline on the emulators, served by functions-framework, for integration tests.

Processes started once per session:
- ``worker``: the push endpoint of ``paynow-events-push`` (PUSH_AUTH=none, as the
  emulator's push carries no token), reaching Firestore through a TCP proxy
  the tests can cut (``worker_firestore``);
- ``webhook_queue`` (WEBHOOK_MODE=queue), reaching Firestore and Pub/Sub through
  proxies of its own (``webhook_firestore``, ``webhook_pubsub``);
- ``webhook_sync`` (WEBHOOK_MODE=sync), direct;
- ``worker_oidc``: a worker with real OIDC verification against a local issuer.
Every test uses its own ids, so tests never see each other's users or orders.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from google.cloud import firestore, pubsub_v1
from paynow.domain import payloads

from scripts.local import localstack
from scripts.local.tcp_proxy import TcpProxy
from tests.support.oidc import CertsServer, KeyPair

SECRET = "integration-secret"
PREVIOUS_SECRET = "integration-previous-secret"
PUSH_SA = "push-invoker@demo-paynow.iam.gserviceaccount.com"
WORKER_MAX_ATTEMPTS = 5
RECONCILE_AFTER_SECONDS = 30
T = TypeVar("T")


@dataclass
class Stack:
    emulators: localstack.Emulators
    worker_firestore: TcpProxy
    webhook_firestore: TcpProxy
    webhook_pubsub: TcpProxy
    webhook_queue: str
    webhook_sync: str
    worker: str
    worker_oidc: str
    reconcile: str
    issuer: KeyPair
    stranger: KeyPair
    certs: CertsServer
    processes: dict[str, localstack.Process] = field(default_factory=dict)


@pytest.fixture(scope="session")
def stack(emulators: localstack.Emulators) -> Iterator[Stack]:
    issuer, stranger = KeyPair("issuer-key"), KeyPair("stranger-key")
    certs = CertsServer(issuer)
    ports = {name: localstack.free_port() for name in ("worker", "wq", "ws", "wo", "rc")}
    urls = {name: f"http://127.0.0.1:{port}/" for name, port in ports.items()}
    emulators.provision(urls["worker"])
    common = {
        "PAYNOW_WEBHOOK_SECRET": SECRET,
        "PAYNOW_WEBHOOK_SECRET_PREVIOUS": PREVIOUS_SECRET,
        "MAX_DELIVERY_ATTEMPTS": str(WORKER_MAX_ATTEMPTS),
    }

    def env(mode: str, **extra: str) -> dict[str, str]:
        return localstack.function_env(
            pubsub_host=emulators.pubsub_host,
            firestore_host=emulators.firestore_host,
            mode=mode,
            extra={**common, **extra},
        )

    try:
        with localstack.LocalRun() as run:
            worker_fs = run.proxy(emulators.firestore_host)
            webhook_fs = run.proxy(emulators.firestore_host)
            webhook_ps = run.proxy(emulators.pubsub_host)
            functions = {
                "worker": localstack.Function(
                    "it-worker",
                    "paynow_worker",
                    ports["worker"],
                    env("sync", FIRESTORE_EMULATOR_HOST=worker_fs.address),
                ),
                "webhook_queue": localstack.Function(
                    "it-webhook-queue",
                    "paynow_webhook",
                    ports["wq"],
                    env(
                        "queue",
                        FIRESTORE_EMULATOR_HOST=webhook_fs.address,
                        PUBSUB_EMULATOR_HOST=webhook_ps.address,
                    ),
                ),
                "webhook_sync": localstack.Function(
                    "it-webhook-sync", "paynow_webhook", ports["ws"], env("sync")
                ),
                "worker_oidc": localstack.Function(
                    "it-worker-oidc",
                    "paynow_worker",
                    ports["wo"],
                    env(
                        "sync",
                        PUSH_AUTH="oidc",
                        OIDC_CERTS_URL=certs.url,
                        PUSH_AUDIENCE=urls["wo"],
                        PUSH_SERVICE_ACCOUNT=PUSH_SA,
                    ),
                ),
                "reconcile": localstack.Function(
                    "it-reconcile",
                    "paynow_reconcile",
                    ports["rc"],
                    env("sync", RECONCILE_AFTER_SECONDS=str(RECONCILE_AFTER_SECONDS)),
                ),
            }
            procs = dict(zip(functions, run.functions(*functions.values()), strict=True))
            yield Stack(
                emulators=emulators,
                worker_firestore=worker_fs,
                webhook_firestore=webhook_fs,
                webhook_pubsub=webhook_ps,
                webhook_queue=urls["wq"],
                webhook_sync=urls["ws"],
                worker=urls["worker"],
                worker_oidc=urls["wo"],
                reconcile=urls["rc"],
                issuer=issuer,
                stranger=stranger,
                certs=certs,
                processes=procs,
            )
    finally:
        certs.close()


@pytest.fixture(scope="session")
def db(emulators: localstack.Emulators) -> firestore.Client:
    return firestore.Client(project=emulators.project)


@pytest.fixture
def ids() -> Callable[[str], str]:
    """Unique ids for one test: ``ids("user")`` -> ``user-<test-unique>``."""
    run = uuid.uuid4().hex[:10]
    return lambda kind: f"{kind}-{run}"


def wait_for(probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; fail with what it last saw."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


def run_proof_tool(argv: list[str], report: Path, budget: float) -> tuple[str, dict[str, Any]]:
    """A proof tool (``scripts/proof/...``) as a subprocess of the repository's root, which
    must exit 0 within ``budget`` seconds: its stdout and its JSON report (``--report``)."""
    done = subprocess.run(
        [sys.executable, *argv, "--report", str(report)],
        cwd=localstack.ROOT,
        capture_output=True,
        text=True,
        timeout=budget,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, f"{out[-6000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
    return out, json.loads(report.read_text())


def send(
    url: str, doc: dict[str, Any] | bytes, secret: str = SECRET, **kw: Any
) -> requests.Response:
    body, headers = payloads.signed(doc, secret)
    headers.update(kw.pop("headers", {}))
    return requests.post(url, data=body, headers=headers, timeout=60, **kw)


def find_event(db: firestore.Client, event_id: str) -> dict[str, Any] | None:
    """The record webhookEvents/``event_id``, or None when there is none."""
    snap = db.collection("webhookEvents").document(event_id).get()
    return dict(snap.to_dict() or {}) if snap.exists else None


def event(db: firestore.Client, event_id: str) -> dict[str, Any]:
    record = find_event(db, event_id)
    assert record is not None, f"no record webhookEvents/{event_id}"
    return record


def status_of(db: firestore.Client, event_id: str) -> str | None:
    snap = db.collection("webhookEvents").document(event_id).get()
    return snap.get("status") if snap.exists else None


def balance(db: firestore.Client, user_id: str, missing: int | None = None) -> int | None:
    """The user's points; ``missing`` when the user has no document."""
    snap = db.collection("users").document(user_id).get()
    return snap.get("points") if snap.exists else missing


def ledger(db: firestore.Client, user_id: str) -> dict[str, dict[str, Any]]:
    docs = db.collection("users").document(user_id).collection("pointsLedger").stream()
    return {d.id: d.to_dict() for d in docs}


def push_envelope(data: bytes | dict[str, Any], **attributes: str) -> dict[str, Any]:
    """A push body shaped like Pub/Sub's, for deliveries the test makes itself."""
    import base64

    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return {
        "message": {
            "data": base64.b64encode(raw).decode(),
            "attributes": attributes,
            "messageId": uuid.uuid4().hex,
            "publishTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "subscription": f"projects/{localstack.PROJECT}/subscriptions/test",
    }


def pull_acked(
    subscriber: pubsub_v1.SubscriberClient,
    subscription: str,
    *,
    max_messages: int,
    timeout: float,
    return_immediately: bool = False,
) -> list[Any]:
    """One pull on ``subscription``; what came is acknowledged, and its messages returned.

    ``return_immediately`` answers at once when nothing is there (to prove that nothing was
    published); otherwise the pull waits up to ``timeout`` for a message.
    """
    request: dict[str, Any] = {"subscription": subscription, "max_messages": max_messages}
    if return_immediately:
        request["return_immediately"] = True
    response = subscriber.pull(request=request, timeout=timeout)
    received = list(response.received_messages)
    if received:
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]}
        )
    return [m.message for m in received]


class DeadLetterReader:
    """A pull subscription on the DLQ topic made for one test: it sees only what comes after."""

    def __init__(self, project: str) -> None:
        self._subscriber = pubsub_v1.SubscriberClient()
        topic = f"projects/{project}/topics/{localstack.DLQ_TOPIC}"
        self.path = self._subscriber.subscription_path(project, f"dlq-test-{uuid.uuid4().hex[:8]}")
        self._subscriber.create_subscription(request={"name": self.path, "topic": topic})
        self.seen: list[Any] = []

    def pull(self) -> list[Any]:
        self.seen.extend(pull_acked(self._subscriber, self.path, max_messages=100, timeout=5))
        return self.seen

    def for_event(self, event_id: str, timeout: float = 20.0) -> list[Any]:
        return wait_for(
            lambda: [m for m in self.pull() if m.attributes.get("eventId") == event_id], timeout
        )

    def close(self) -> None:
        self._subscriber.delete_subscription(request={"subscription": self.path})


@pytest.fixture
def dlq(stack: Stack) -> Iterator[DeadLetterReader]:
    reader = DeadLetterReader(stack.emulators.project)
    yield reader
    reader.close()
