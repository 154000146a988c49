"""Where a queue-mode webhook answer spends its time, sampled with py-spy inside the server.

    .venv/bin/python -m scripts.proof.bench.profile                # 30 s of sequential webhooks
    .venv/bin/python -m scripts.proof.bench.profile --seconds 60 --rate 1000

The bench compares answer times with floors; this says where a queue answer's time goes. It
starts the bench's stack, removes the push subscription (the worker stays idle, as in the
bench's webhook series), sends signed webhooks to the queue webhook for ``--seconds``, each
followed by the same call to the service in this process (as the bench interleaves its
series, so a request never lands while gunicorn is still putting the previous one's
connection back), and records the webhook's gunicorn worker with ``py-spy record --idle``
(wall clock, every thread). It prints, per request, the handler thread's time split into our
function's steps, Flask and functions-framework around it, and gunicorn around that; and the
client's own p50 answer time and the in-process service's beside it, so the part outside the
server process shows too.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "functions"))

from scripts.local import localstack
from scripts.proof.bench.stack import bench_stack
from scripts.proof.bench.workload import Workload

FUNCTION = "paynow_webhook"


def _layer(frames: list[str]) -> str:
    """The part of the request path one sampled stack of a handler thread is in."""
    if FUNCTION in frames:
        inner = frames[frames.index(FUNCTION) + 1 :]
        if "WebhookService._enqueue" in inner:
            step = inner[inner.index("WebhookService._enqueue") + 1 :]
            return "function: _enqueue > " + (step[0] if step else "(own code)")
        return "function: " + (inner[0] if inner else "(own code)")
    if "Flask.__call__" in frames:
        return "Flask + functions-framework around the function"
    return "gunicorn around Flask (parse, write)"


def breakdown(raw: Path) -> collections.Counter[str]:
    """Samples per layer, from py-spy's raw output, for the request handler threads only."""
    layers: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *rest = stack.split(";")
        frames = [f.split(" (")[0] for f in rest]
        if "ThreadPoolExecutor" in thread and "ThreadWorker.handle" in frames:
            layers[_layer(frames)] += int(count)
    return layers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    # The in-process service logs to stdout as the functions do: to a file, as the bench's.
    service_log = localstack.LOGS / f"bench-profile-service-{os.getpid()}.log"
    service_log.parent.mkdir(parents=True, exist_ok=True)
    with (
        service_log.open("w") as log,
        contextlib.redirect_stdout(log),
        bench_stack() as stack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        b = Workload(stack)
        b.detach_worker()
        for _ in range(300):  # warm: clients created, JIT of the emulators
            b.queue_webhook()
        pid = localstack.gunicorn_worker_pid(stack.processes["webhook queue"])
        raw = Path(tmp) / "spy.txt"
        recorder = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.seconds + 2),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--idle",
                "--threads",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        answers: list[float] = []
        in_process: list[float] = []
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            answers.append(b.queue_webhook())
            in_process.append(b.queue_service())
        if recorder.wait(timeout=120) != 0:
            raise SystemExit("py-spy failed (as root, or with ptrace allowed?)")
        layers = breakdown(raw)
    per_sample_ms = 1000.0 / args.rate
    n = len(answers)
    handled = sum(layers.values()) * per_sample_ms / n
    client = sorted(answers)[n // 2]
    service = sorted(in_process)[n // 2]
    print(f"{n} sequential queue webhooks; py-spy at {args.rate} Hz on gunicorn worker {pid}")
    print(
        f"client answer p50 {client:.2f} ms; server handler thread {handled:.2f} ms a request "
        f"(mean); the same service in this process p50 {service:.2f} ms"
    )
    print("| where (handler thread, wall clock) | ms a request | share |")
    print("|---|---|---|")
    for layer, samples in layers.most_common():
        ms = samples * per_sample_ms / n
        if ms >= 0.01:
            print(f"| {layer} | {ms:.2f} | {samples / sum(layers.values()):.0%} |")
    print(
        f"| outside the server's handler (client, loopback, gunicorn's accept/poll) | "
        f"{max(client - handled, 0):.2f} | - |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
