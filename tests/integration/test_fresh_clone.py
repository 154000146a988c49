"""A new user's first local run, on a fresh copy of the repository (no .venv, no .local):
``paynow-ops`` before anything else, then ``scripts/stack``, an event, a look with
``paynow-ops`` through the stack's file alone, and a stop. The commands are the ones
docs/local-development.md shows; nothing is exported by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from scripts.local import localstack

CLEAN = ("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")


def _fresh_copy(into: Path) -> Path:
    """The repository's files as a clone has them: tracked and new, nothing ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=localstack.ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = localstack.ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    assert not (into / ".venv").exists() and not (into / ".local").exists()
    return into


def test_a_new_user_runs_the_stack_and_looks_inside_with_paynow_ops(tmp_path):
    clone = _fresh_copy(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if k not in CLEAN and not k.startswith("PAYNOW_")}
    env.pop("VIRTUAL_ENV", None)

    def ops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(clone / "scripts" / "paynow-ops"), *args],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    # Before the stack: paynow-ops sets up .venv itself, then says what it needs.
    first = ops("health")
    assert (clone / ".venv" / "bin" / "python").is_file(), first.stderr
    assert "installing pinned requirements into .venv" in first.stderr
    assert first.returncode == 2 and "no target: pass --project P" in first.stderr, first.stderr

    ports = {name: localstack.free_port() for name in ("pubsub", "firestore", "webhook", "worker")}
    argv = [str(clone / "scripts" / "stack"), "--mode", "sync"]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    log = (tmp_path / "stack.log").open("wb")
    stack = subprocess.Popen(argv, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        stack_file = clone / ".local" / "stack.env"
        deadline = time.monotonic() + 180
        while localstack.running_stack(stack_file) is None:
            assert stack.poll() is None, (tmp_path / "stack.log").read_text()
            assert time.monotonic() < deadline, "the stack did not come up"
            time.sleep(0.2)

        mode = ops("--json", "mode")
        assert mode.returncode == 0, mode.stderr
        assert mode.stderr.splitlines()[0] == (
            "paynow-ops: target: emulators, project demo-paynow: "
            f"Firestore 127.0.0.1:{ports['firestore']}, Pub/Sub 127.0.0.1:{ports['pubsub']} "
            f"(the local stack, pid {stack.pid}, from .local/stack.env)"
        )
        shown = json.loads(mode.stdout)
        assert (shown["mode"], shown["source"]) == ("sync", "local stack (.local/stack.env)")

        sent = subprocess.run(
            [
                str(clone / ".venv" / "bin" / "python"),
                "scripts/ops/send_webhook.py",
                "order_completed",
                "--url",
                f"http://127.0.0.1:{ports['webhook']}/",
            ],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0 and sent.stdout.startswith("200 "), sent.stdout + sent.stderr
        assert json.loads(sent.stdout.split(" ", 1)[1])["status"] == "processed"

        user = ops("--json", "user", "show", "user-42")
        assert user.returncode == 0, user.stderr
        assert json.loads(user.stdout)["balance"] == 750

        health = ops("health")  # tables, piped: plain text
        assert health.returncode == 0, health.stdout + health.stderr
        assert re.search(r"^environment +emulator$", health.stdout, re.M), health.stdout
        assert "\x1b" not in health.stdout

        started = time.monotonic()
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=30) == 0
        assert time.monotonic() - started < 15
        assert not stack_file.exists()
    finally:
        if stack.poll() is None:  # a failed check: the stack stops what it started itself
            stack.terminate()
            stack.wait(timeout=30)
        log.close()

    after = ops("health")
    assert after.returncode == 2 and "no target" in after.stderr
