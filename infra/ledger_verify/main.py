"""``ledger_verify``: the daily points check, served as a Cloud Function the scheduler calls.

It runs the operator's own check, ``paynow-ops ledger verify --json`` (staged beside this
file by ``infra/ledger_verify/stage.sh``), and turns its verdict into one structured log
line, ``jsonPayload.metric="paynow_ledger_verify"``, which the log-based metric of the same
name counts and the ledger-mismatch alert watches. The line holds counts only: which users
disagree is for a person running ``paynow-ops ledger verify``.

Answers: 200 with the counts when the check ran (consistent or not: running it again
changes nothing), 503 when it could not run (the scheduler retries; the alert on missing
runs fires if it never succeeds), 405 for anything but POST. Access is Cloud Run's: the
function is private and internal, and only the scheduler's account may invoke it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import flask
import functions_framework
from paynow.observability import elapsed_ms, log

LEDGER_VERIFY = "paynow_ledger_verify"
HERE = Path(__file__).resolve().parent
# The CLI's own exit codes: 0 consistent, 1 inconsistent, 2 could not run.
CONSISTENT, INCONSISTENT = 0, 1
CHECK_TIMEOUT_SECONDS = 3000.0


def run_check(timeout: float = CHECK_TIMEOUT_SECONDS) -> tuple[int, dict[str, Any]]:
    """The CLI's exit code and JSON verdict (``{"ok": false, "error": ...}`` when it failed)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "scripts.ops.cli", "ledger", "verify", "--json"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 2, {"ok": False, "error": f"ledger verify took longer than {timeout:.0f} s"}
    try:
        verdict = json.loads(proc.stdout)
    except ValueError:
        verdict = None
    if not isinstance(verdict, dict):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return 2, {"ok": False, "error": f"exit {proc.returncode}: {last[:200]}"}
    return proc.returncode, verdict


def summary(code: int, verdict: dict[str, Any]) -> dict[str, Any]:
    """Counts and an outcome (``ok``, ``mismatch`` or ``error``); never a user id."""
    if code not in (CONSISTENT, INCONSISTENT) or "usersChecked" not in verdict:
        return {"outcome": "error", "error": str(verdict.get("error", f"exit {code}"))[:200]}

    def count(key: str) -> int:
        value = verdict.get(key)
        return len(value) if isinstance(value, list | dict) else 0

    return {
        "outcome": "ok" if code == CONSISTENT and verdict.get("ok") is True else "mismatch",
        "usersChecked": int(verdict.get("usersChecked", 0)),
        "entriesChecked": int(verdict.get("entriesChecked", 0)),
        "mismatched": count("mismatched"),
        "invalidFields": count("invalidFields"),
        "eventsWithSeveralEntries": count("eventsWithSeveralEntries"),
    }


@functions_framework.http
def ledger_verify(request: flask.Request) -> flask.Response:
    """Run the check once and log its verdict (the metric); see the module's docstring."""
    if request.method != "POST":
        return _answer(405, {"error": "method_not_allowed", "message": "POST only"})
    started = time.perf_counter()
    code, verdict = run_check()
    result = summary(code, verdict)
    severity = {"ok": "INFO", "mismatch": "ERROR"}.get(result["outcome"], "WARNING")
    log(
        severity,
        "ledger verify",
        metric=LEDGER_VERIFY,
        latencyMs=elapsed_ms(started),
        **result,
    )
    return _answer(503 if result["outcome"] == "error" else 200, result)


def _answer(status: int, body: dict[str, Any]) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")
