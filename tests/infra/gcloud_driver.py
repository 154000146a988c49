"""Run many gcloud commands in one process, the way ``gcloud.py`` runs one.

    python gcloud_driver.py SDK_ROOT COUNT_URL < commands.json > outcomes.jsonl

Each command is ``{"argv": [...], "stdin": "..."}``; each outcome is one JSON line
``{"argv", "exit", "reached", "stderr"}``: ``exit`` is what the command would have exited
with (2 for an argument gcloud does not accept), ``reached`` how many requests the local
API at COUNT_URL received during the command, ``stderr`` what it printed there. Starting gcloud once instead of once per
command makes checking dozens of commands take seconds.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import tempfile
import urllib.request
from typing import Any


def _count(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(resp.read())


def main() -> int:
    sdk, count_url = sys.argv[1], sys.argv[2]
    commands: list[dict[str, Any]] = json.load(sys.stdin)
    sys.path[:0] = [f"{sdk}/lib", f"{sdk}/lib/third_party"]
    # Outcomes go to the real stdout; what the commands print there (some write to the
    # stream gcloud's log module holds) goes to a file descriptor of its own.
    out = os.fdopen(os.dup(1), "w")
    with tempfile.TemporaryFile() as printed:
        os.dup2(printed.fileno(), 1)
        _run_all(commands, out, count_url)
    return 0


def _run_all(commands: list[dict[str, Any]], out: Any, count_url: str) -> None:
    cli = importlib.import_module("googlecloudsdk.gcloud_main").CreateCLI([])
    saved_stdout = sys.stdout
    saved_stderr = os.dup(2)
    for command in commands:
        before = _count(count_url)
        sys.stdin = io.TextIOWrapper(io.BytesIO(command.get("stdin", "").encode()))
        sys.stdout = io.StringIO()
        with tempfile.TemporaryFile() as err:
            sys.stderr.flush()
            os.dup2(err.fileno(), 2)
            try:
                cli.Execute(command["argv"])
                code: int | str = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception as exc:  # a crash is a failure too, reported with its type
                code = f"crashed: {type(exc).__name__}: {exc}"
            finally:
                sys.stdout = saved_stdout
                sys.stderr.flush()
                os.dup2(saved_stderr, 2)
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
        reached = _count(count_url) - before
        outcome = {"argv": command["argv"], "exit": code, "reached": reached, "stderr": stderr}
        out.write(json.dumps(outcome) + "\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
