"""Cold start: a fresh interpreter importing ``main`` and answering its first webhook,
beside a bare import of the client libraries (the least a cold instance loads)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from scripts.local import localstack
from scripts.ops.output import track
from scripts.proof.bench.measurement import post_json
from scripts.proof.bench.workload import Workload

# the clients the contract needs, and the frameworks the webhook is served with
CLIENT_LIBRARIES = (
    "google.cloud.firestore, google.cloud.pubsub_v1, flask, starlette, functions_framework"
)

# The first webhook as the ASGI server hands it over: a scope, the body as one message.
_COLD_CHILD = """
import asyncio, json, os, sys, time
import main
imported = time.monotonic()
from starlette.requests import Request
body, headers = sys.argv[1].encode(), json.loads(sys.argv[2])
headers["Content-Length"] = str(len(body))
scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
         "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
async def receive():
    return {"type": "http.request", "body": body, "more_body": False}
answer = asyncio.run(main.paynow_webhook(Request(scope, receive)))
answered = time.monotonic()
print("BENCH " + json.dumps({"imported": imported, "answered": answered,
                             "status": answer.status_code}), flush=True)
os._exit(0)
"""

_BARE_CHILD = f"""
import time
import {CLIENT_LIBRARIES}
print("BENCH " + str(time.monotonic()), flush=True)
"""

BARE, IMPORT, FIRST = "bare import", "import main", "import main + first answer"
SERVED_405, SERVED_200 = "functions-framework: first 405", "functions-framework: first 200"


def _child(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run a fresh interpreter; returns when it was started (monotonic) and its BENCH line."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", *argv],
        cwd=localstack.FUNCTIONS,
        env={**env, "PYTHONPATH": str(localstack.FUNCTIONS)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    return started, lines[-1].removeprefix("BENCH ")


def cold_start(work: Workload, runs: int, served_runs: int) -> dict[str, list[float]]:
    """Fresh processes, bare import and cold start alternating, in turn first (same noise);
    then ``served_runs`` functions-framework servers started and asked once."""
    env = work.stack.env("queue")
    out: dict[str, list[float]] = {BARE: [], IMPORT: [], FIRST: []}
    for run in track(range(runs), "cold start", runs):
        for which in ("bare", "cold") if run % 2 == 0 else ("cold", "bare"):
            if which == "bare":
                started, line = _child([_BARE_CHILD], env)
                out[BARE].append((float(line) - started) * 1000)
                continue
            body, headers = work.signed(work.ids("cold"))
            started, line = _child([_COLD_CHILD, body.decode(), json.dumps(headers)], env)
            child = json.loads(line)
            if child["status"] != 200:
                raise RuntimeError(f"cold webhook answered {child['status']}")
            out[IMPORT].append((child["imported"] - started) * 1000)
            out[FIRST].append((child["answered"] - started) * 1000)
    if served_runs:
        out[SERVED_405], out[SERVED_200] = [], []
    for _ in range(served_runs):
        port = localstack.free_port()
        started = time.monotonic()
        proc = localstack.start_function(f"bench-cold-{port}", "paynow_webhook", port, env)
        try:
            listening = time.monotonic()
            body, headers = work.signed(work.ids("coldserved"))
            post_json(proc.address, body, headers, "accepted")
            answered = time.monotonic()
        finally:
            proc.stop()
        out[SERVED_405].append((listening - started) * 1000)
        out[SERVED_200].append((answered - started) * 1000)
    return out
