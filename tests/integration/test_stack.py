"""``scripts/stack`` itself, started for real on free ports and stopped by signals.

Each test runs the whole command (bootstrap check, both emulators, the two functions)
with a ``--local-dir`` of its own, so a developer's running stack and its
``.local/stack.env`` are never touched. While it runs, a sampler records every process
group the stack starts; after it exits, none of them may have a living process, no
process may name one of its ports, and every port must be free again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from scripts.local import localstack

STACK = localstack.ROOT / "scripts" / "stack"
STOP_WITHIN_SECONDS = 15.0  # the contract
READY_WITHIN_SECONDS = 120.0


@dataclass
class Run:
    popen: subprocess.Popen[bytes]
    ports: dict[str, int]
    local: Path
    out: Path
    err: Path
    groups: set[int] = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def env_file(self) -> Path:
        return self.local / "stack.env"

    def sample(self) -> None:
        """Record the process group each child of the stack leads (the shell wrapper's own
        helpers, before it execs Python, stay in the test's group and are not counted)."""
        while not self.done.is_set():
            groups = localstack.process_groups()
            for pid, parent in localstack.parent_pids().items():
                if parent == self.popen.pid and pid in groups.get(pid, []):
                    self.groups.add(pid)
            time.sleep(0.02)

    def wait_ready(self) -> dict[str, str]:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while time.monotonic() < deadline:
            values = localstack.running_stack(self.env_file)
            if values is not None:
                return values
            assert self.popen.poll() is None, self.err.read_text()
            time.sleep(0.1)
        raise AssertionError(f"no {self.env_file} after {READY_WITHIN_SECONDS} s")

    def stop(self, sig: int) -> float:
        """Send ``sig``; the seconds until the stack exited."""
        started = time.monotonic()
        self.popen.send_signal(sig)
        self.popen.wait(timeout=STOP_WITHIN_SECONDS + 10)
        return time.monotonic() - started

    def leftovers(self) -> list[str]:
        """Living processes of the stack's groups, or naming one of its ports."""
        self.done.set()
        groups = localstack.process_groups()
        left = [pid for group in self.groups for pid in groups.get(group, [])]
        marks = [f"{p}" for p in self.ports.values()]
        for pid in (p for members in groups.values() for p in members):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            words = {w.decode(errors="replace") for w in argv}
            flat = " ".join(words)
            if any(
                f"--port={m}" in flat
                or f"127.0.0.1:{m}" in flat
                or ("--port" in words and m in words)
                for m in marks
            ):
                left.append(pid)
        return [_describe(pid) for pid in sorted(set(left))]

    def busy_ports(self) -> list[int]:
        busy = []
        for port in self.ports.values():
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    busy.append(port)
        return busy


def _describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        command = "?"
    return f"{pid}: {command[:120]}"


@pytest.fixture
def run_stack(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """Start ``scripts/stack`` (arguments later, by ``launch``); kill what a failed test left."""
    runs: list[Run] = []

    def launch(*args: str, env: dict[str, str] | None = None) -> Run:
        ports = {
            name: localstack.free_port() for name in ("pubsub", "firestore", "webhook", "worker")
        }
        local = tmp_path / f"local-{len(runs)}"
        out, err = tmp_path / f"out-{len(runs)}", tmp_path / f"err-{len(runs)}"
        argv = [str(STACK), "--local-dir", str(local)]
        for name, port in ports.items():
            argv += [f"--{name}-port", str(port)]
        with out.open("wb") as o, err.open("wb") as e:
            popen = subprocess.Popen(
                [*argv, *args], stdout=o, stderr=e, env={**os.environ, **(env or {})}
            )
        run = Run(popen, ports, local, out, err)
        threading.Thread(target=run.sample, daemon=True).start()
        runs.append(run)
        return run

    yield launch
    for run in runs:
        run.done.set()
        if run.popen.poll() is None:
            run.popen.kill()
            run.popen.wait()
        groups = localstack.process_groups()
        for group in run.groups:
            if groups.get(group):
                os.killpg(group, signal.SIGKILL)


def _assert_all_gone(run: Run, seconds: float) -> None:
    assert seconds < STOP_WITHIN_SECONDS, f"took {seconds:.1f} s to stop"
    assert run.leftovers() == [], "processes left running"
    assert run.busy_ports() == [], "ports still held"
    assert not run.env_file.exists(), f"{run.env_file} left behind"


MOMENTS = {
    # seconds after the launch: in the first second, Python is starting or the Pub/Sub
    # emulator is being spawned (at 0.3 s often still the bash wrapper)
    "SIGTERM at 0.3 s": (signal.SIGTERM, 0.3),
    "SIGINT at 0.7 s": (signal.SIGINT, 0.7),
    "SIGTERM at 1.5 s": (signal.SIGTERM, 1.5),
    # the moment the stack has started its Nth process group: the Firestore emulator, the
    # worker, the webhook (before it answers and the stack file is written)
    "SIGINT as the Firestore emulator starts": (signal.SIGINT, 2),
    "SIGTERM as the worker starts": (signal.SIGTERM, 3),
    "SIGHUP as the webhook starts": (signal.SIGHUP, 4),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_signal_during_start_up_stops_everything_started(run_stack, moment):
    sig, when = MOMENTS[moment]
    run = run_stack()
    if isinstance(when, float):
        time.sleep(when)
    else:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while len(run.groups) < when and time.monotonic() < deadline:
            assert run.popen.poll() is None, run.err.read_text()
            time.sleep(0.01)
        assert len(run.groups) >= when
    seconds = run.stop(sig)
    # Before bash execs Python, the signal ends the wrapper itself: nothing has started.
    assert run.popen.returncode in (0, -sig), run.err.read_text()
    _assert_all_gone(run, seconds)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_running_stack_writes_its_file_and_stops_on_a_signal(run_stack, sig):
    run = run_stack("--mode", "sync")
    values = run.wait_ready()
    assert values == {
        "GOOGLE_CLOUD_PROJECT": localstack.PROJECT,
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{run.ports['firestore']}",
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{run.ports['pubsub']}",
        "WEBHOOK_MODE": "sync",
        "PAYNOW_WEBHOOK_URL": f"http://127.0.0.1:{run.ports['webhook']}/",
        "PAYNOW_WORKER_URL": f"http://127.0.0.1:{run.ports['worker']}/",
        "STACK_PID": str(run.popen.pid),
    }
    assert requests.get(values["PAYNOW_WEBHOOK_URL"], timeout=5).status_code == 405
    assert len(run.groups) == 4  # two emulators, two functions
    seconds = run.stop(sig)
    assert run.popen.returncode == 0, run.err.read_text()
    _assert_all_gone(run, seconds)


def _members(group: int, word: str) -> list[int]:
    """The processes of ``group`` whose command line holds ``word``."""
    found = []
    for pid in localstack.process_groups().get(group, []):
        if word.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            found.append(pid)
    return found


def _freeze_two_children(run: Run) -> None:
    """SIGSTOP the Firestore emulator's JVM and the webhook's gunicorn worker: a stopped
    process acts on no signal but SIGKILL, as a hung JVM or worker would."""
    parents = localstack.parent_pids()
    by_port = {}
    for group in run.groups:
        command = Path(f"/proc/{group}/cmdline").read_bytes()
        for name, port in run.ports.items():
            if str(port).encode() in command:
                by_port[name] = group
    (java,) = _members(by_port["firestore"], "java")
    (gunicorn_worker,) = [
        pid
        for pid in _members(by_port["webhook"], "functions_framework")
        if parents[pid] != run.popen.pid
    ]
    for pid in (java, gunicorn_worker):
        os.kill(pid, signal.SIGSTOP)


def test_a_hung_child_is_killed_within_the_bound(run_stack):
    run = run_stack()
    run.wait_ready()
    _freeze_two_children(run)
    seconds = run.stop(signal.SIGTERM)
    assert seconds >= localstack.STOP_GRACE_SECONDS  # it waited, then killed
    assert run.popen.returncode == 0, run.err.read_text()
    _assert_all_gone(run, seconds)


def test_a_second_ctrl_c_kills_a_hung_child_at_once(run_stack):
    run = run_stack()
    run.wait_ready()
    _freeze_two_children(run)
    started = time.monotonic()
    run.popen.send_signal(signal.SIGINT)
    time.sleep(1)
    run.popen.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    run.popen.wait(timeout=STOP_WITHIN_SECONDS + 10)
    seconds = time.monotonic() - started
    assert seconds < localstack.STOP_GRACE_SECONDS, f"{seconds:.1f} s: it waited the grace out"
    assert run.popen.returncode == 0, run.err.read_text()
    _assert_all_gone(run, seconds)


def test_a_child_that_exits_by_itself_stops_the_rest(run_stack):
    run = run_stack()
    run.wait_ready()
    worker = next(
        g
        for g in run.groups
        if str(run.ports["worker"]).encode() in Path(f"/proc/{g}/cmdline").read_bytes()
    )
    started = time.monotonic()
    os.killpg(worker, signal.SIGKILL)
    run.popen.wait(timeout=STOP_WITHIN_SECONDS + 10)
    assert run.popen.returncode == 1
    assert "worker exited by itself" in run.err.read_text()
    _assert_all_gone(run, time.monotonic() - started)


def test_a_failure_during_start_up_stops_what_was_started(run_stack):
    run = run_stack(env={"MAX_DELIVERY_ATTEMPTS": "0"})  # the worker refuses to start
    run.popen.wait(timeout=READY_WITHIN_SECONDS)
    err = run.err.read_text()
    assert run.popen.returncode == 1
    assert "could not start" in err and "MAX_DELIVERY_ATTEMPTS" in err, err
    assert len(run.groups) >= 3  # both emulators were running, and the worker
    _assert_all_gone(run, 0.0)


def test_a_port_in_use_is_one_line_naming_it_and_its_process(run_stack):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = run_stack("--webhook-port", str(port))  # the last --webhook-port wins
        run.popen.wait(timeout=30)
        lines = run.err.read_text().splitlines()
    assert run.popen.returncode == 1
    (line,) = lines
    assert line.startswith(
        f"stack: port {port} (the webhook) is already in use by pid {os.getpid()} ("
    ), line
    assert line.endswith("): stop it, or choose another with --webhook-port"), line
    assert run.groups == set()  # nothing was started


def test_a_second_stack_on_the_same_local_dir_is_refused(run_stack):
    first = run_stack()
    first.wait_ready()
    second = run_stack("--local-dir", str(first.local))
    second.popen.wait(timeout=30)
    assert second.popen.returncode == 1
    assert f"another stack is running (pid {first.popen.pid}" in second.err.read_text()
    assert first.env_file.exists() and first.popen.poll() is None
    _assert_all_gone(first, first.stop(signal.SIGTERM))
