"""The local stack: official emulators, topics and subscriptions, a demo catalog, both functions.

The one way emulators, functions and TCP proxies are started, stopped and
waited for: ``scripts/stack`` runs the stack for a developer (``up``), the test
suite's fixtures start its pieces on free ports, and the proof tools
(``scripts/proof/``: chaos, drill, load, bench) run against them. A harness
that starts several pieces keeps them in one ``LocalRun``, which starts
emulators side by side, functions side by side (optionally with each log line
stamped with the monotonic clock), proxies a test can cut, and stops them all
at once.

Every child runs in a process group of its own (so a Ctrl-C at the terminal
reaches only the stack, which then stops them in its own time), which means
nothing stops them but the stack: ``main`` turns SIGINT, SIGTERM and SIGHUP,
from the first moment on, into ``Stopped``, and every way out stops every
group it started (SIGTERM, then SIGKILL for what is left) within
``STOP_GRACE_SECONDS + KILL_WAIT_SECONDS``. It imports nothing heavy before
its handlers are in place.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
sys.path.insert(0, str(FUNCTIONS))

from paynow.domain import payloads  # noqa: E402

if TYPE_CHECKING:
    from scripts.local.tcp_proxy import TcpProxy

LOCAL = ROOT / ".local"
LOGS = LOCAL / "logs"
STACK_ENV = LOCAL / "stack.env"
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
STOP_GRACE_SECONDS = 9.0  # after SIGTERM, before SIGKILL
KILL_WAIT_SECONDS = 4.0  # after SIGKILL: the contract's 15 s, with a margin
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FREE_PORT_FLOOR = 10000  # the lowest port handed out: clear of well-known services
_handed: set[int] = set()
_handed_lock = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now, and nothing will be given by the kernel meanwhile.

    A port the kernel picks (``bind`` to 0) is free only until something else asks for
    one: the Firestore emulator binds three such ports of its own (a WebSocket server and
    two internal gRPC ones) while it starts, and it took one the stack had chosen for a
    function, whose readiness probe then reached the emulator. So the port comes from
    below the kernel's ephemeral range, where no automatic bind or outgoing connection
    lands, and is never handed twice by one process.
    """
    low = _ephemeral_low()
    with _handed_lock:
        candidates = range(FREE_PORT_FLOOR, low)
        # not a secret: any spread will do, so two harnesses rarely try the same ports
        for port in random.sample(candidates, k=min(200, len(candidates))):
            if port not in _handed and _bindable(port):
                _handed.add(port)
                return port
    raise RuntimeError(f"no free port between {FREE_PORT_FLOOR} and {low}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default where it is not told)."""
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Process:
    """A child started in its own process group, so stopping it stops its children too."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    address: str = ""

    def send(self, sig: int) -> None:
        """Signal every process of the group (the child and what it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def finished(self, groups: Mapping[int, list[int]] | None = None) -> bool:
        """The child has exited and nothing of its group lives on (a java an emulator's
        wrapper left behind still holds the port). ``groups``: ``process_groups()``."""
        groups = process_groups() if groups is None else groups
        return self.popen.poll() is not None and not groups.get(self.popen.pid)

    def stop(self, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        """``sig`` to the group, then SIGKILL after ``wait`` seconds."""
        stop_all([self], sig=sig, grace=wait)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- stopping: signals and process groups ------------------------------------------------


class Stopped(BaseException):
    """SIGINT, SIGTERM or SIGHUP reached the stack (raised once, in the main thread)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """What the stop handler knows: the first signal, one still to raise, a hurry."""

    first: int | None = None
    pending: int | None = None
    held = 0  # > 0 while the main thread starts a child and records it
    hurry = threading.Event()  # a second signal: SIGKILL what is left at once


def _on_stop_signal(signum: int, _frame: FrameType | None) -> None:
    """The first signal raises ``Stopped`` (after a child being started is recorded); later
    ones only hurry the stop, so nothing interrupts the cleanup."""
    if _Signals.first is not None:
        _Signals.hurry.set()
        return
    _Signals.first = signum
    if _Signals.held:
        _Signals.pending = signum
        return
    raise Stopped(signum)


def install_stop_handlers() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Start a child and record it with no ``Stopped`` in between (main thread only: the
    handler runs there); a signal that came meanwhile is raised on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Signals.held += 1
    try:
        yield
    finally:
        _Signals.held -= 1
        if not _Signals.held and _Signals.pending is not None:
            signum, _Signals.pending = _Signals.pending, None
            raise Stopped(signum)


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Every process's pid and the fields of /proc/PID/stat after its name (state, ppid,
    pgrp, ...); processes that end while being read are left out."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            yield int(entry.name), _after_name(stat)


def _after_name(stat: str) -> list[str]:
    """The fields of a /proc/PID/stat line after the command name (which may hold spaces
    and parentheses): state, ppid, pgrp, ..."""
    return stat.rsplit(")", 1)[1].split()


def process_groups() -> dict[int, list[int]]:
    """Every living (not zombie) process by its process group."""
    groups: dict[int, list[int]] = {}
    for pid, fields in _proc_stats():
        if fields[0] != "Z":
            groups.setdefault(int(fields[2]), []).append(pid)
    return groups


def stop_all(
    processes: Iterable[Process], sig: int = signal.SIGTERM, grace: float = STOP_GRACE_SECONDS
) -> list[Process]:
    """Stop every process group at once: ``sig``, then SIGKILL what is left after ``grace``
    seconds (at once after a second stop signal). Returns those still running after that."""
    live = [p for p in processes if not p.finished()]
    for proc in live:
        proc.send(sig)
    for wait, last in ((grace, False), (KILL_WAIT_SECONDS, True)):
        deadline = time.monotonic() + wait
        while live and time.monotonic() < deadline and (last or not _Signals.hurry.is_set()):
            time.sleep(0.05)
            groups = process_groups()
            live = [p for p in live if not p.finished(groups)]
        if not last:
            for proc in live:
                proc.send(signal.SIGKILL)
    return live


def parent_pids() -> dict[int, int]:
    """Every running process's parent: ``{pid: parent pid}``."""
    return {pid: int(fields[1]) for pid, fields in _proc_stats()}


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


def cpu_seconds(pid: int) -> float:
    """The user + system CPU ``pid`` has used so far (utime and stime of /proc/PID/stat)."""
    fields = _after_name(Path(f"/proc/{pid}/stat").read_text())
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(process: Process) -> float:
    """The CPU the living processes of ``process``'s group have used so far (an emulator:
    gcloud's wrapper and the JVM it starts)."""
    total = 0.0
    for pid in process_groups().get(process.popen.pid, []):
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def machine_cpu_seconds() -> float:
    """The CPU every core of the machine has spent busy so far, in seconds (/proc/stat:
    user, nice, system, irq, softirq; not idle, iowait, or time the hypervisor stole)."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def spawn(
    name: str,
    argv: list[str],
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    *,
    logs: Path | None = None,
    started: list[Process] | None = None,
    stamped: bool = False,
) -> Process:
    """Start ``argv`` in a new session, its output to ``logs/NAME.log``; appended to
    ``started`` before anything can interrupt, so whoever stops that list stops it too.

    ``stamped``: every log line starts with ``time.monotonic()`` (``%.3f``), the clock a
    harness records its own events with, so a failure's log lines can be set beside them
    (the functions' JSON lines carry no time of their own).
    """
    logs = LOGS if logs is None else logs
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    out = log.open("wb")
    try:
        with _signals_held():
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdout=subprocess.PIPE if stamped else out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            proc = Process(name, popen, log)
            if started is not None:
                started.append(proc)
    except BaseException:
        out.close()
        raise
    if stamped:
        copier = threading.Thread(
            target=_copy_stamped, args=(popen, out), name=f"log-{name}", daemon=True
        )
        copier.start()
    else:
        out.close()
    return proc


def _copy_stamped(popen: subprocess.Popen[bytes], out: BinaryIO) -> None:
    """Copy the child's output to its log line by line, each behind the monotonic clock."""
    with out:
        for line in popen.stdout or ():
            out.write(f"{time.monotonic():.3f} ".encode() + line)
            out.flush()


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
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            # not answering yet, or something that is not our HTTP server answered: if the
            # port is another's, the child exits (address in use) and says so above
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer at {url} in {timeout}s:\n{proc.log_tail()}")


def _pubsub_argv(port: int, project: str) -> list[str]:
    return [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port=127.0.0.1:{port}",
        f"--project={project}",
        "--quiet",
    ]


def _firestore_argv(port: int) -> list[str]:
    return ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", "--quiet"]


def _wait_emulator(proc: Process, port: int) -> Process:
    wait_http(f"http://127.0.0.1:{port}/", proc)
    proc.address = f"127.0.0.1:{port}"
    return proc


def start_pubsub_emulator(
    port: int,
    project: str = PROJECT,
    *,
    logs: Path | None = None,
    started: list[Process] | None = None,
) -> Process:
    """The Pub/Sub emulator alone (``start_emulators`` starts both side by side)."""
    proc = spawn(f"pubsub-emulator-{port}", _pubsub_argv(port, project), logs=logs, started=started)
    return _wait_emulator(proc, port)


def start_firestore_emulator(
    port: int, *, logs: Path | None = None, started: list[Process] | None = None
) -> Process:
    """The Firestore emulator alone (``start_emulators`` starts both side by side)."""
    proc = spawn(f"firestore-emulator-{port}", _firestore_argv(port), logs=logs, started=started)
    return _wait_emulator(proc, port)


@dataclass(frozen=True)
class Emulators:
    """Where the two emulators answer (``host:port``) and the project they serve."""

    pubsub_host: str
    firestore_host: str
    project: str = PROJECT

    def env(self) -> contextlib.AbstractContextManager[None]:
        """Point this process's Google clients at these emulators for a block."""
        return emulator_env(self.pubsub_host, self.firestore_host, project=self.project)

    def provision(self, worker_url: str, catalog: Mapping[str, int] = DEMO_CATALOG) -> None:
        """The contract's topics and subscriptions (push to ``worker_url``) and a catalog."""
        with self.env():
            provision_pubsub(worker_url, self.project)
            seed_catalog(catalog, self.project)


def start_emulators(
    pubsub_port: int | None = None,
    firestore_port: int | None = None,
    *,
    logs: Path | None = None,
    started: list[Process] | None = None,
) -> Emulators:
    """Both emulators side by side (free ports unless given): each takes seconds to answer,
    so both are spawned before either is waited for. When one does not come up, both are
    stopped before the error leaves."""
    ports = (pubsub_port or free_port(), firestore_port or free_port())
    mine: list[Process] = []
    try:
        for name, argv, port in (
            ("pubsub-emulator", _pubsub_argv(ports[0], PROJECT), ports[0]),
            ("firestore-emulator", _firestore_argv(ports[1]), ports[1]),
        ):
            mine.append(spawn(f"{name}-{port}", argv, logs=logs, started=started))
        pubsub, firestore = (_wait_emulator(p, port) for p, port in zip(mine, ports, strict=True))
    except BaseException:
        stop_all(mine)
        raise
    return Emulators(pubsub.address, firestore.address)


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


@dataclass(frozen=True)
class Function:
    """One function to serve: its log name, its target, its port and environment, and the
    file that defines the target (``functions/main.py`` unless staged elsewhere, or a tool's
    own targets, as the benchmark's floors); its directory is the import path and cwd."""

    name: str
    target: str
    port: int
    env: Mapping[str, str]
    source: Path = FUNCTIONS / "main.py"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def argv(self) -> list[str]:
        """functions-framework, as Cloud Functions serves a target (gunicorn, threads)."""
        return [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            self.target,
            "--source",
            str(self.source),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]


RESTART_PAUSE_SECONDS = 1.0  # before another try on a port a stopped function just released


def start_functions(
    functions: Iterable[Function],
    *,
    logs: Path | None = None,
    started: list[Process] | None = None,
    stamped: bool = False,
) -> list[Process]:
    """Serve every function, side by side: all are spawned before any is waited for (each
    spends seconds importing), then each must answer its port (405 to a GET). When one
    does not, every one this call started is stopped before the error leaves."""
    todo = list(functions)
    mine: list[Process] = []
    try:
        for fn in todo:
            env = {**fn.env, "PYTHONPATH": str(fn.source.parent)}
            proc = spawn(
                fn.name,
                fn.argv(),
                env=env,
                cwd=fn.source.parent,
                logs=logs,
                started=started,
                stamped=stamped,
            )
            mine.append(proc)
        for fn, proc in zip(todo, mine, strict=True):
            wait_http(fn.url, proc, ok=(405,))
            proc.address = fn.url
    except BaseException:
        stop_all(mine)
        raise
    return mine


def start_function(
    name: str,
    target: str,
    port: int,
    env: Mapping[str, str],
    *,
    logs: Path | None = None,
    started: list[Process] | None = None,
    source: Path = FUNCTIONS / "main.py",
    stamped: bool = False,
    tries: int = 1,
) -> Process:
    """Serve one target with functions-framework, as Cloud Functions does (gunicorn, threads).

    ``tries`` > 1: a restart on a port just released may find it still held; each further
    try (log ``NAME-tryN``) comes a second after the last failed. The last failure leaves
    as the ``RuntimeError`` saying why, with the function's log.
    """
    if tries < 1:
        raise ValueError(f"tries must be at least 1, got {tries}")
    attempt = 1
    while True:
        fn = Function(name if attempt == 1 else f"{name}-try{attempt}", target, port, env, source)
        try:
            return start_functions([fn], logs=logs, started=started, stamped=stamped)[0]
        except RuntimeError:
            if attempt >= tries:
                raise
            time.sleep(RESTART_PAUSE_SECONDS)
            attempt += 1


@contextlib.contextmanager
def emulator_env(
    pubsub_host: str, firestore_host: str, *, project: str | None = None
) -> Iterator[None]:
    """Point this process's Google clients at the emulators (and, given ``project``, set
    ``GOOGLE_CLOUD_PROJECT``) for the block; what was there before comes back after."""
    wanted = {"PUBSUB_EMULATOR_HOST": pubsub_host, "FIRESTORE_EMULATOR_HOST": firestore_host}
    if project is not None:
        wanted["GOOGLE_CLOUD_PROJECT"] = project
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def push_subscription(name: str, topic: str, push_config: Mapping[str, Any]) -> dict[str, Any]:
    """The request that creates an ordered push subscription as the local stack's is made
    (the contract's ack deadline and backoff)."""
    from google.protobuf import duration_pb2

    return {
        "name": name,
        "topic": topic,
        "push_config": dict(push_config),
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


def provision_pubsub(worker_url: str, project: str = PROJECT) -> None:
    """Topics and subscriptions as the contract names them (idempotent)."""
    from google.api_core import exceptions as gexc
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    publisher, subscriber = PublisherClient(), SubscriberClient()
    topic = publisher.topic_path(project, TOPIC)
    dlq = publisher.topic_path(project, DLQ_TOPIC)
    for path in (topic, dlq):
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=path)
    push = push_subscription(
        subscriber.subscription_path(project, PUSH_SUBSCRIPTION),
        topic,
        {"push_endpoint": worker_url},
    )
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
    mode: str = "sync"
    project: str = PROJECT

    def stop(self) -> list[Process]:
        """Stop every process at once (see ``stop_all``); those that would not stop."""
        return stop_all(self.processes)

    def env(self) -> dict[str, str]:
        """What ``.local/stack.env`` says: the target of ``paynow-ops`` and the other tools."""
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "WEBHOOK_MODE": self.mode,
            "PAYNOW_WEBHOOK_URL": self.webhook_url,
            "PAYNOW_WORKER_URL": self.worker_url,
            "STACK_PID": str(os.getpid()),
        }

    def watch(self, interval: float = 0.5) -> None:
        """Return never: raise ``StackError`` when one of the processes exits by itself
        (``Stopped`` comes out of the sleep when a stop signal arrives)."""
        while True:
            for proc in self.processes:
                code = proc.popen.poll()
                if code is not None:
                    raise StackError(
                        f"{proc.name} exited by itself (code {code}); its log: {proc.log}"
                    )
            time.sleep(interval)


def up(
    pubsub_port: int,
    firestore_port: int,
    webhook_port: int,
    worker_port: int,
    mode: str,
    *,
    logs: Path | None = None,
    started: list[Process] | None = None,
) -> Stack:
    """Start the whole stack; on any failure or stop signal, stop what was started.

    ``started`` (the caller's list) gets each process the moment it exists, so a caller
    can stop them even if this is interrupted while it cleans up.
    """
    procs: list[Process] = [] if started is None else started
    try:
        emulators = start_emulators(pubsub_port, firestore_port, logs=logs, started=procs)
        worker_url = f"http://127.0.0.1:{worker_port}/"
        emulators.provision(worker_url)
        env = function_env(
            pubsub_host=emulators.pubsub_host, firestore_host=emulators.firestore_host, mode=mode
        )
        start_functions(
            [
                Function("worker", "paynow_worker", worker_port, env),
                Function("webhook", "paynow_webhook", webhook_port, env),
            ],
            logs=logs,
            started=procs,
        )
    except BaseException:
        stop_all(procs)
        raise
    return Stack(
        emulators.pubsub_host,
        emulators.firestore_host,
        f"http://127.0.0.1:{webhook_port}/",
        worker_url,
        procs,
        mode=mode,
    )


class LocalRun:
    """What one harness starts on the local stack, stopped together: emulators, functions
    and TCP proxies (the test fixtures, the chaos run, the drill, the load run).

    ``stamped``: every function's log lines start with the monotonic clock (see ``spawn``).
    Used as a context manager, or ``stop`` when done: every process is stopped at once
    (``stop_all``) and every proxy closed.
    """

    def __init__(self, *, logs: Path | None = None, stamped: bool = False) -> None:
        self.logs = logs
        self.stamped = stamped
        self.processes: list[Process] = []
        self.proxies: list[TcpProxy] = []

    def __enter__(self) -> LocalRun:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def emulators(
        self, pubsub_port: int | None = None, firestore_port: int | None = None
    ) -> Emulators:
        """Both emulators, side by side (``start_emulators``)."""
        return start_emulators(pubsub_port, firestore_port, logs=self.logs, started=self.processes)

    def functions(self, *functions: Function) -> list[Process]:
        """Every function, side by side (``start_functions``)."""
        return start_functions(
            functions, logs=self.logs, started=self.processes, stamped=self.stamped
        )

    def function(
        self,
        name: str,
        target: str,
        port: int,
        env: Mapping[str, str],
        *,
        tries: int = 1,
        source: Path = FUNCTIONS / "main.py",
    ) -> Process:
        """One function (``start_function``; ``tries`` for a restart on the same port)."""
        return start_function(
            name,
            target,
            port,
            env,
            logs=self.logs,
            started=self.processes,
            source=source,
            stamped=self.stamped,
            tries=tries,
        )

    def proxy(self, address: str) -> TcpProxy:
        """A TCP proxy to ``host:port`` that a harness can cut (``TcpProxy.cut``)."""
        from scripts.local.tcp_proxy import TcpProxy  # only harnesses cut connections

        host, port = address.rsplit(":", 1)
        proxy = TcpProxy(host, int(port))
        self.proxies.append(proxy)
        return proxy

    def stop(self) -> list[Process]:
        """Stop every process at once and close every proxy; the processes that would not stop."""
        left = stop_all(self.processes)
        for proxy in self.proxies:
            proxy.close()
        return left


def paynow_ops(
    emulators: Emulators,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """``paynow-ops --json ARGS`` against ``emulators``, as an operator runs it: a process of
    its own, the environment of this one without PayNow settings, plus ``env``."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("PAYNOW_")}
    child.update(
        GOOGLE_CLOUD_PROJECT=emulators.project,
        FIRESTORE_EMULATOR_HOST=emulators.firestore_host,
        PUBSUB_EMULATOR_HOST=emulators.pubsub_host,
    )
    child.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "scripts.ops.cli", "--json", *args],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- the command: ports, .local/stack.env ------------------------------------------------


class StackError(Exception):
    """What stops the stack from starting or running, said in one line."""


PORTS = {
    "pubsub_port": (8085, "the Pub/Sub emulator"),
    "firestore_port": (8086, "the Firestore emulator"),
    "webhook_port": (8080, "the webhook"),
    "worker_port": (8081, "the worker"),
}


def port_holder(port: int) -> str | None:
    """The process listening on ``port`` (``pid N (command)``), when /proc tells."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                return f"pid {entry.name} ({command.strip()[:80]})"
    return None


def check_ports(ports: Mapping[str, int]) -> None:
    """Every port distinct and free on 127.0.0.1, or a ``StackError`` naming the first that
    is not (and who holds it, when that can be told)."""
    seen: dict[int, str] = {}
    for option, port in ports.items():
        flag = "--" + option.replace("_", "-")
        if port in seen:
            raise StackError(f"{flag} {port} is the port of {seen[port]} too")
        seen[port] = flag
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is no user
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                holder = port_holder(port)
                by = f" by {holder}" if holder else ""
                raise StackError(
                    f"port {port} ({PORTS[option][1]}) is already in use{by}: "
                    f"stop it, or choose another with {flag}"
                ) from None


def parse_env_lines(text: str) -> dict[str, str]:
    """``KEY=value`` lines (comments, blank lines, optional quotes), as infra/lib.sh and a
    shell's ``set -a; . FILE`` read them; nothing is run. ``ValueError`` names a bad line."""
    values: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if not match:
            raise ValueError(f"line {n}: expected KEY=value")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_stack(path: Path = STACK_ENV) -> dict[str, str] | None:
    """The values of a stack file whose stack still runs; None when there is none (or
    it is left over from a stack that was killed)."""
    try:
        values = parse_env_lines(path.read_text())
    except (OSError, ValueError):
        return None
    pid = values.get("STACK_PID", "")
    return values if pid.isdigit() and pid_alive(int(pid)) else None


def write_stack_env(path: Path, values: Mapping[str, str]) -> None:
    """Written whole or not at all (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    lines = [
        "# Written by scripts/stack while it runs, removed when it stops. paynow-ops reads it;",
        "# a shell can too: set -a; . .local/stack.env; set +a",
        *(f"{key}={value}" for key, value in values.items()),
    ]
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def remove_stack_env(path: Path) -> None:
    """Remove the file if this process wrote it (never another stack's)."""
    with contextlib.suppress(OSError, ValueError):
        if parse_env_lines(path.read_text()).get("STACK_PID") == str(os.getpid()):
            path.unlink()


def _stop_everything(started: list[Process], env_file: Path) -> list[Process]:
    """Stop what was started and remove the stack file. A first stop signal arriving in
    here raises ``Stopped`` once (later ones only hurry): the work starts again."""
    while True:
        try:
            _Signals.first = _Signals.first or signal.SIGTERM
            left = stop_all(started)
            remove_stack_env(env_file)
            return left
        except Stopped:
            continue


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/stack",
        description="Run the PayNow pipeline locally on the emulators, in the foreground. "
        "Ctrl-C or SIGTERM stops every process it started.",
    )
    parser.add_argument("--mode", choices=("sync", "queue"), default="queue")
    for option, (default, what) in PORTS.items():
        parser.add_argument(
            "--" + option.replace("_", "-"),
            type=int,
            default=default,
            metavar="PORT",
            help=f"port of {what} (default {default})",
        )
    parser.add_argument(
        "--local-dir",
        type=Path,
        default=LOCAL,
        metavar="DIR",
        help="where stack.env and logs/ go (default .local)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the stack until a stop signal; 0 once everything stopped, 1 when it could not
    start or run (one line on stderr), 3 when a process would not stop."""
    install_stop_handlers()  # first: a signal from now on stops what has started
    args = _parser().parse_args(argv)
    env_file, logs = args.local_dir / "stack.env", args.local_dir / "logs"
    started: list[Process] = []
    code = 0
    try:
        other = running_stack(env_file)
        if other is not None:
            raise StackError(
                f"another stack is running (pid {other['STACK_PID']}, {env_file}): "
                "stop it first, or give this one its own --local-dir"
            )
        ports = {option: getattr(args, option) for option in PORTS}
        check_ports(ports)
        print(f"starting the local stack ({args.mode} mode) ...", flush=True)
        stack = up(
            args.pubsub_port,
            args.firestore_port,
            args.webhook_port,
            args.worker_port,
            args.mode,
            logs=logs,
            started=started,
        )
        write_stack_env(env_file, stack.env())
        print(
            f"PayNow pipeline running ({args.mode} mode)\n"
            f"  webhook   {stack.webhook_url}\n"
            f"  worker    {stack.worker_url} (push from {PUSH_SUBSCRIPTION})\n"
            f"  Pub/Sub   {stack.pubsub_host}   Firestore {stack.firestore_host}\n"
            f"  logs      {logs}\n"
            f"  target    {env_file} (scripts/paynow-ops reads it)\n"
            "Send an event from another shell:\n"
            f"  .venv/bin/python scripts/ops/send_webhook.py order_completed "
            f"--url {stack.webhook_url}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stack.watch()
    except Stopped as stop:
        print(f"stack: {stop}: stopping ...", file=sys.stderr, flush=True)
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr, flush=True)
        code = 1
    except Exception as exc:
        print(f"stack: could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        left = _stop_everything(started, env_file)
    if left:
        names = ", ".join(f"{p.name} (group {p.popen.pid})" for p in left)
        print(f"stack: still running after SIGKILL: {names}", file=sys.stderr)
        return 3
    if started:
        names = ", ".join(p.name for p in started)
        print(f"stack: stopped {names}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
