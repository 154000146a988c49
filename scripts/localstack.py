"""The local stack: official emulators, topics and subscriptions, a demo catalog, both functions.

Used three ways, so the stack is built one way only: ``scripts/stack`` runs
it for a developer, the test suite's session fixtures start it on free
ports, and ``scripts/bench.py`` / ``scripts/chaos.py`` measure against it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
sys.path.insert(0, str(FUNCTIONS))

from paynow.domain import payloads  # noqa: E402

LOGS = ROOT / ".local" / "logs"
PROJECT = "demo-paynow"
TOPIC = "paynow-events"
DLQ_TOPIC = "paynow-events-dlq"
PUSH_SUBSCRIPTION = "paynow-events-push"
DLQ_SUBSCRIPTION = "paynow-events-dlq-sub"
DEMO_CATALOG = {
    # the products of the sample events (PayNow product ids are Flake ids): send_webhook's
    # order_completed credits 2 x 100 + 550 = 750, a subscription period 300
    payloads.IDS["product"]: 100,
    payloads.IDS["product2"]: 550,
    payloads.IDS["plan"]: 300,
    # readable ids the tests, the benchmark and the chaos run build their orders with
    "gems-100": 100,
    "gems-550": 550,
    "gems-1200": 1200,
    "vip-monthly": 300,
}
DEMO_SECRET = "local-demo-signing-secret"  # noqa: S105 - the local stack's own, never a real one
PUSH_ACK_DEADLINE_SECONDS = 60
PUSH_MIN_BACKOFF_SECONDS = 1
PUSH_MAX_BACKOFF_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """A child started in its own process group, so stopping it stops its children too."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    address: str = ""

    def stop(self, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=wait)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def parent_pids() -> dict[int, int]:
    """Every running process's parent, from /proc: ``{pid: parent pid}``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def proc_status(pid: int, key: str) -> int:
    """The number of a ``key:`` line of /proc/<pid>/status (``VmRSS`` in kB, ``Threads``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def gunicorn_worker_pid(process: Process, timeout: float = 30.0) -> int:
    """The one worker child of a function's process (functions-framework runs gunicorn's arbiter).

    Waits up to ``timeout`` seconds for exactly one child; ``timeout=0`` looks once.
    """
    arbiter = process.popen.pid
    deadline = time.monotonic() + timeout
    while True:
        children = [pid for pid, parent in parent_pids().items() if parent == arbiter]
        if len(children) == 1:
            return children[0]
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{process.name}: gunicorn worker processes {children}")
        time.sleep(0.2)


def rss_bytes(pid: int) -> int:
    return proc_status(pid, "VmRSS") * 1024


def spawn(
    name: str, argv: list[str], env: Mapping[str, str] | None = None, cwd: Path = ROOT
) -> Process:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log)


def wait_http(url: str, proc: Process, timeout: float = 90.0, ok: tuple[int, ...] = (200,)) -> None:
    """Wait until ``url`` answers one of ``ok``; fail loudly with the process's log if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - local URL
                if resp.status in ok:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer at {url} in {timeout}s:\n{proc.log_tail()}")


def start_pubsub_emulator(port: int, project: str = PROJECT) -> Process:
    proc = spawn(
        f"pubsub-emulator-{port}",
        [
            "gcloud",
            "beta",
            "emulators",
            "pubsub",
            "start",
            f"--host-port=127.0.0.1:{port}",
            f"--project={project}",
            "--quiet",
        ],
    )
    wait_http(f"http://127.0.0.1:{port}/", proc)
    proc.address = f"127.0.0.1:{port}"
    return proc


def start_firestore_emulator(port: int) -> Process:
    proc = spawn(
        f"firestore-emulator-{port}",
        ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", "--quiet"],
    )
    wait_http(f"http://127.0.0.1:{port}/", proc)
    proc.address = f"127.0.0.1:{port}"
    return proc


def function_env(
    *,
    pubsub_host: str,
    firestore_host: str,
    mode: str = "sync",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a local function runs with: the contract's variables, emulator hosts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYNOW_", "PUSH_"))}
    env.update(
        {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "PUBSUB_EMULATOR_HOST": pubsub_host,
            "FIRESTORE_EMULATOR_HOST": firestore_host,
            "WEBHOOK_MODE": mode,
            "PAYNOW_WEBHOOK_SECRET": DEMO_SECRET,
            "PUSH_AUTH": "none",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def start_function(name: str, target: str, port: int, env: Mapping[str, str]) -> Process:
    """Serve one target with functions-framework, as Cloud Functions does (gunicorn, threads)."""
    proc = spawn(
        name,
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            target,
            "--source",
            str(FUNCTIONS / "main.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**env, "PYTHONPATH": str(FUNCTIONS)},
        cwd=FUNCTIONS,
    )
    wait_http(f"http://127.0.0.1:{port}/", proc, ok=(405,))
    proc.address = f"http://127.0.0.1:{port}/"
    return proc


@contextlib.contextmanager
def emulator_env(pubsub_host: str, firestore_host: str) -> Iterator[None]:
    """Point this process's Google clients at the emulators for the block."""
    saved = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")}
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def provision_pubsub(worker_url: str, project: str = PROJECT) -> None:
    """Topics and subscriptions as the contract names them (idempotent)."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, TOPIC)
    dlq = publisher.topic_path(project, DLQ_TOPIC)
    for path in (topic, dlq):
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=path)
    push = {
        "name": subscriber.subscription_path(project, PUSH_SUBSCRIPTION),
        "topic": topic,
        "push_config": {"push_endpoint": worker_url},
        "ack_deadline_seconds": PUSH_ACK_DEADLINE_SECONDS,
        "enable_message_ordering": True,
        "retry_policy": {
            "minimum_backoff": duration_pb2.Duration(seconds=PUSH_MIN_BACKOFF_SECONDS),
            "maximum_backoff": duration_pb2.Duration(seconds=PUSH_MAX_BACKOFF_SECONDS),
        },
        # No dead_letter_policy here: the emulator (0.8.20) crashes the subscription's push
        # threads when an *ordered* message reaches its max attempts. The worker dead-letters
        # by itself after MAX_DELIVERY_ATTEMPTS; the cloud subscription has the policy too.
    }
    try:
        subscriber.create_subscription(request=push)
    except gexc.AlreadyExists:
        subscriber.modify_push_config(
            subscription=push["name"], push_config={"push_endpoint": worker_url}
        )
    with contextlib.suppress(gexc.AlreadyExists):
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(project, DLQ_SUBSCRIPTION),
                "topic": dlq,
                "ack_deadline_seconds": 60,
            }
        )


def seed_catalog(catalog: Mapping[str, int] = DEMO_CATALOG, project: str = PROJECT) -> None:
    from google.cloud import firestore

    db = firestore.Client(project=project)
    batch = db.batch()
    for product_id, points in catalog.items():
        batch.set(db.collection("pointsCatalog").document(product_id), {"points": points})
    batch.commit()


@dataclass
class Stack:
    """A running local stack; ``stop`` ends every process it started."""

    pubsub_host: str
    firestore_host: str
    webhook_url: str
    worker_url: str
    processes: list[Process] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


def up(
    pubsub_port: int, firestore_port: int, webhook_port: int, worker_port: int, mode: str
) -> Stack:
    procs: list[Process] = []
    try:
        procs.append(start_pubsub_emulator(pubsub_port))
        procs.append(start_firestore_emulator(firestore_port))
        ps, fs = f"127.0.0.1:{pubsub_port}", f"127.0.0.1:{firestore_port}"
        worker_url = f"http://127.0.0.1:{worker_port}/"
        with emulator_env(ps, fs):
            provision_pubsub(worker_url)
            seed_catalog()
        env = function_env(pubsub_host=ps, firestore_host=fs, mode=mode)
        procs.append(start_function("worker", "paynow_worker", worker_port, env))
        procs.append(start_function("webhook", "paynow_webhook", webhook_port, env))
    except BaseException:
        for proc in reversed(procs):
            proc.stop()
        raise
    return Stack(ps, fs, f"http://127.0.0.1:{webhook_port}/", worker_url, procs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run the PayNow pipeline locally on the emulators."
    )
    parser.add_argument("--mode", choices=("sync", "queue"), default="queue")
    parser.add_argument("--pubsub-port", type=int, default=8085)
    parser.add_argument("--firestore-port", type=int, default=8086)
    parser.add_argument("--webhook-port", type=int, default=8080)
    parser.add_argument("--worker-port", type=int, default=8081)
    args = parser.parse_args()
    stack = up(
        args.pubsub_port, args.firestore_port, args.webhook_port, args.worker_port, args.mode
    )
    print(
        f"PayNow pipeline running ({args.mode} mode)\n"
        f"  webhook   {stack.webhook_url}\n"
        f"  worker    {stack.worker_url} (push from {PUSH_SUBSCRIPTION})\n"
        f"  Pub/Sub   {stack.pubsub_host}   Firestore {stack.firestore_host}\n"
        f"  logs      {LOGS}\n"
        "Send an event from another shell:\n"
        "  .venv/bin/python scripts/send_webhook.py order_completed\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
