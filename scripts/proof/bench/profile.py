"""Where a queue answer's or a worker delivery's time goes, sampled with py-spy in the server.

    .venv/bin/python -m scripts.proof.bench.profile                  # 30 s of queue webhooks
    .venv/bin/python -m scripts.proof.bench.profile --seconds 60 --rate 1000
    .venv/bin/python -m scripts.proof.bench.profile --target webhook-sync  # sync mode's
    .venv/bin/python -m scripts.proof.bench.profile --target worker  # a backlog through push

The bench compares times with floors; this says where the time goes. It starts the bench's
stack and records one function's gunicorn worker with ``py-spy record --idle`` (wall clock,
every thread), then prints, per request, the handlers' time split into our code's steps
(the last frame of ours and the library call it made) and the framework and server around
them: gunicorn's handler threads for a WSGI function (the worker), the worker process's event
loop for an ASGI one (the webhook, served by uvicorn), whose awaits show as the loop idle.

``webhook``: the push subscription is removed (the worker stays idle, as in the bench's
webhook series) and signed webhooks go to the queue webhook for ``--seconds``, each followed
by the same call to the service in this process (as the bench interleaves its series), so
the client's p50 and the in-process service's show beside the server's time.
``webhook-sync``: the same against the sync webhook, whose requests run the service on the
webhook's threads (``runtime.webhook_threads``): their samples are read from
``WebhookService.accept`` down.

``worker``: the bench's worker case: events of as many customers accepted while the push
subscription holds them, then released at once, to the worker and to the served worker
floor. Beside the per-delivery split it prints how many deliveries were in the worker at
once on average (the handler threads' busy time over the run's wall time), the served
floor's and the raw transaction loop's rates, and the CPU an event of every process for
the three: what bounds the rate is either the server's work per delivery, the deliveries
it is given, or the CPU the machine has for all of it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "functions"))

from scripts.local import localstack
from scripts.proof.bench.stack import BenchStack, bench_stack
from scripts.proof.bench.workload import Workload

# --target: (the function's target name, the bench stack's process serving it)
TARGETS = {
    "webhook": ("paynow_webhook", "webhook queue"),
    "webhook-sync": ("paynow_webhook", "webhook sync"),
    "worker": ("paynow_worker", "worker"),
}
# The ASGI webhook's threads (runtime.webhook_threads) and what they run: the whole service.
WEBHOOK_THREAD, SERVICE_CALL = "webhook_", "WebhookService.accept"


def _ours(frames: list[tuple[str, str]], function: str, depth: int) -> str:
    """Inside our function: the last frame of our code and the first ``depth`` library calls
    below it. Our code is what lies beside the function's own file (wherever it is served
    from), installed packages excepted."""
    names = [name for name, _ in frames]
    inner = frames[names.index(function) :]
    file = Path(inner[0][1].rpartition(":")[0])
    # the folder that holds main.py and the paynow package, whichever of them ``function`` is in
    root = str(next((p.parent for p in file.parents if p.name == "paynow"), file.parent)) + os.sep
    last_ours = max(
        i
        for i, (_, where) in enumerate(inner)
        if where.startswith(root) and "site-packages" not in where
    )
    ours = inner[last_ours][0]
    below = [name for name, _ in inner[last_ours + 1 : last_ours + 1 + depth]]
    return f"function: {ours}" + ("".join(f" > {b}" for b in below) or " (own code)")


def _thread_layer(frames: list[tuple[str, str]], function: str, depth: int) -> str:
    """A WSGI handler thread's sample (gunicorn's gthread worker)."""
    names = [name for name, _ in frames]
    if function in names:
        return _ours(frames, function, depth)
    if "Flask.__call__" in names:
        return "Flask + functions-framework around the function"
    return "gunicorn around Flask (parse, write)"


LOOP_IDLE = "event loop idle (awaiting the function's I/O, or the next request)"
LOOP_STEP = "BaseEventLoop._run_once"  # the loop's turn: what runs below it is one step


def _loop_layer(frames: list[tuple[str, str]], function: str, depth: int) -> str:
    """An ASGI worker's event loop sample (uvicorn in gunicorn's worker), read below the
    loop's ``_run_once``: the callback or coroutine step it runs. A suspended coroutine is
    not on the stack, so what the function awaits shows as the loop idle."""
    names = [name for name, _ in frames]
    inner = frames[names.index(LOOP_STEP) + 1 :] if LOOP_STEP in names else frames
    inner_names = [name for name, _ in inner]
    if not inner or inner_names[0].endswith(".select"):
        return LOOP_IDLE
    if function in inner_names:
        return _ours(inner, function, depth)
    if len(inner) > 1 and _outside_libraries(inner[1][1]):  # a task of ours (a publish)
        return _ours(inner, inner_names[1], depth)
    where = [w for _, w in inner]
    if any("/uvicorn/" in w for w in where) and not any("/starlette/" in w for w in where):
        return "uvicorn (parse, write)"
    if any("/starlette/" in w or "/functions_framework/" in w for w in where):
        return "uvicorn, starlette + functions-framework around the function"
    return "event loop: the client libraries' callbacks and the loop itself"


def _outside_libraries(where: str) -> bool:
    """A frame of the project's code: neither an installed package nor the standard library."""
    return "site-packages" not in where and "/lib/python3" not in where and "<" not in where


def breakdown(raw: list[str], function: str, depth: int = 1) -> collections.Counter[str]:
    """Samples per layer, from py-spy's raw output, of the request handlers only: gunicorn's
    handler threads (a WSGI function) or the worker's event loop (an ASGI function)."""
    layers: collections.Counter[str] = collections.Counter()
    for line in raw:
        stack, _, count = line.rpartition(" ")
        thread, *rest = stack.split(";")
        frames = [(f.split(" (")[0], f.partition(" (")[2].rstrip(")")) for f in rest]
        names = [n for n, _ in frames]
        if "ThreadPoolExecutor" in thread and "ThreadWorker.handle" in names:
            layers[_thread_layer(frames, function, depth)] += int(count)
        elif WEBHOOK_THREAD in thread and SERVICE_CALL in names:  # the webhook's slow path
            layers[_ours(frames, SERVICE_CALL, depth)] += int(count)
        elif thread.endswith("MainThread") and any("/asyncio/" in w for _, w in frames):
            layers[_loop_layer(frames, function, depth)] += int(count)
    return layers


@contextlib.contextmanager
def recording(pid: int, rate: int, seconds: float) -> Iterator[list[str]]:
    """py-spy on ``pid`` for ``seconds`` while the block runs; the list it yields holds the
    raw output's lines once the block has ended."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "spy.txt"
        args = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        args += ["--duration", str(int(seconds) + 1), "--output", str(raw)]
        recorder = subprocess.Popen(
            [*args, "--idle", "--threads", "--nonblocking", "--full-filenames"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        yield lines
        if recorder.wait(timeout=seconds + 120) != 0:
            raise SystemExit("py-spy failed (as root, or with ptrace allowed?)")
        lines.extend(raw.read_text().splitlines())


def _kept(raw: list[str], path: Path | None) -> list[str]:
    if path is not None:
        path.write_text("\n".join(raw) + "\n")
    return raw


def table(layers: collections.Counter[str], rate: int, requests: int) -> list[str]:
    per_sample_ms = 1000.0 / rate
    lines = ["| where (handler threads, wall clock) | ms a request | share |", "|---|---|---|"]
    for layer, samples in layers.most_common():
        ms = samples * per_sample_ms / requests
        if ms >= 0.01:
            lines.append(f"| {layer} | {ms:.2f} | {samples / sum(layers.values()):.0%} |")
    return lines


def webhook(stack: BenchStack, work: Workload, args: argparse.Namespace) -> list[str]:
    seconds, rate, mode = args.seconds, args.rate, args.target.removeprefix("webhook-")
    call, in_service = (
        (work.sync_webhook, work.sync_service)
        if mode == "sync"
        else (work.queue_webhook, work.queue_service)
    )
    function, process = TARGETS[args.target]
    work.detach_worker()
    for _ in range(300):  # warm: clients created, JIT of the emulators
        call()
    pid = localstack.gunicorn_worker_pid(stack.processes[process])
    answers: list[float] = []
    in_process: list[float] = []
    with recording(pid, rate, seconds + 1) as raw:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            answers.append(call())
            in_process.append(in_service())
    layers = breakdown(_kept(raw, args.raw), function, args.depth)
    n = len(answers)
    busy = sum(v for k, v in layers.items() if k != LOOP_IDLE)
    handled = busy * 1000.0 / rate / n
    client, service = sorted(answers)[n // 2], sorted(in_process)[n // 2]
    return [
        f"{n} sequential {'sync' if mode == 'sync' else 'queue'} webhooks; py-spy at {rate} Hz "
        "on the webhook's gunicorn worker",
        f"client answer p50 {client:.2f} ms; server handler {handled:.2f} ms a request "
        f"(mean; on an event loop, its idle time left out); the same service in this process "
        f"p50 {service:.2f} ms",
        *table(layers, rate, n),
        f"| outside the server's handler (client, loopback, accept/poll; on an event loop also "
        f"the awaited I/O) | {max(client - handled, 0):.2f} | - |",
    ]


def worker(stack: BenchStack, work: Workload, args: argparse.Namespace) -> list[str]:
    events, rate = args.events, args.rate
    work.attach_worker()
    run = os.getpid()
    customers = [f"profile-{run}-c{i}" for i in range(events)]
    work.backlog("warm-up", [work.ids("warm", c) for c in customers], 8)
    pid = localstack.gunicorn_worker_pid(stack.processes[TARGETS["worker"][1]])

    def released(round_: str, to: str = "worker") -> tuple[float, dict[str, float]]:
        """A backlog of ``events`` released at once to ``to``: its events/s (first processed
        to last, as the bench's), and the CPU an event, by process, while it drained."""
        backlog = [work.ids(round_, c) for c in customers]
        work.held(round_, backlog, 8)
        server = localstack.gunicorn_worker_pid(stack.processes[to])
        cpu = _Cpu(stack, {"the server (its gunicorn worker)": server})
        flow = work.drain(round_, backlog, to)
        return flow.rate, cpu.used(events)

    work.backlog("warm-up", [work.ids("warmf", c) for c in customers], 8, "worker floor")
    # The CPU is read in rounds of their own: py-spy's sampling costs CPU on these cores too.
    pushed_rate, pushed = released("cpu")
    floor_rate, floored = released("floor", "worker floor")
    with recording(pid, rate, 10 + events / 40) as raw:
        spied_rate, _ = released("spied")
    layers = breakdown(_kept(raw, args.raw), TARGETS["worker"][0], args.depth)
    busy_s = sum(layers.values()) / rate
    raw_ids = [work.ids("raw", c) for c in customers]
    work.floors.create_received(raw_ids)  # its input, as the queue leaves it: not counted
    cpu = _Cpu(stack, {"the raw loop (this process)": os.getpid()})
    loop = work.credits("raw transaction loop", raw_ids)
    looped = cpu.used(events)
    columns = (pushed, floored, looped)
    names = list(dict.fromkeys(n for c in columns for n in c))
    return [
        f"{events} events of as many customers released at once, twice: once to read the "
        f"CPU, once under py-spy at {rate} Hz on the worker's gunicorn worker",
        f"worker: {pushed_rate:.0f} events/s, first processed to last ({spied_rate:.0f} under "
        "py-spy); "
        f"handler threads busy {busy_s * 1000 / events:.2f} ms a delivery, "
        f"{busy_s * spied_rate / events:.2f} deliveries in the server at once on average",
        f"served worker floor (the raw loop's transaction behind push): {floor_rate:.0f} events/s",
        f"raw transaction loop: {loop.rate:.0f} events/s, p50 {loop.p(50):.2f} ms an event",
        "",
        "| CPU ms an event | worker through push | served floor through push | raw loop |",
        "|---|---|---|---|",
        *(f"| {n} | " + " | ".join(f"{c.get(n, 0.0):.2f}" for c in columns) + " |" for n in names),
        "",
        *table(layers, rate, events),
    ]


class _Cpu:
    """CPU used from now on by the emulators, the given processes and the whole machine."""

    def __init__(self, stack: BenchStack, pids: dict[str, int]) -> None:
        self._groups = stack.emulators
        self._pids = pids
        self._before = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: localstack.group_cpu_seconds(p) for name, p in self._groups.items()}
        now |= {name: localstack.cpu_seconds(pid) for name, pid in self._pids.items()}
        return now | {"the machine (every process)": localstack.machine_cpu_seconds()}

    def used(self, events: int) -> dict[str, float]:
        """Milliseconds of CPU an event, by process, since this was made."""
        now = self._now()
        return {name: (now[name] - self._before[name]) * 1000 / events for name in now}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="webhook")
    parser.add_argument("--seconds", type=int, default=30, help="webhook: how long to send")
    parser.add_argument("--events", type=int, default=1000, help="worker: the backlog")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--depth", type=int, default=1, help="library calls shown per step")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw output in this file")
    args = parser.parse_args()
    # The in-process service logs to stdout as the functions do: to a file, as the bench's.
    service_log = localstack.LOGS / f"bench-profile-service-{os.getpid()}.log"
    service_log.parent.mkdir(parents=True, exist_ok=True)
    with service_log.open("w") as log, contextlib.redirect_stdout(log), bench_stack() as stack:
        work = Workload(stack)
        if args.target.startswith("webhook"):
            lines = webhook(stack, work, args)
        else:
            lines = worker(stack, work, args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
