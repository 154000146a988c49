"""The daily ledger check as deployed: infra/ledger_verify staged as infra/steps/functions.sh
stages it, served by functions-framework from the staged directory alone, against the
Firestore emulator. It runs the operator's own ``paynow-ops ledger verify --json`` and
logs one structured line (the paynow_ledger_verify metric) with counts, never a user id.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from infra.ledger_verify import main as ledger_main
from scripts.local import localstack
from tests.infra.conftest import ROOT

STAGE = ROOT / "infra" / "ledger_verify" / "stage.sh"


def stage(directory: Path) -> Path:
    proc = subprocess.run(
        ["bash", str(STAGE), str(directory)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return directory


def staged_env(emulators: localstack.Emulators, project: str, source: Path) -> dict[str, str]:
    """The function's environment: the staged directory alone on the path, not the repository."""
    env = localstack.function_env(
        pubsub_host=emulators.pubsub_host, firestore_host=emulators.firestore_host
    )
    env.update(GOOGLE_CLOUD_PROJECT=project, PYTHONPATH=str(source), THREADS="1")
    return env


@dataclass
class Served:
    url: str
    project: str
    process: localstack.Process
    db: firestore.Client

    def post(self, method: str = "POST") -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.url, data=b"{}" if method == "POST" else None, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def lines(self) -> list[dict[str, Any]]:
        text = self.process.log.read_text(errors="replace")
        out = []
        for line in text.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("metric") == ledger_main.LEDGER_VERIFY:
                    out.append(entry)
        return out


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, emulators: localstack.Emulators
) -> Iterator[Served]:
    source = stage(tmp_path_factory.mktemp("ledger-source") / "staged")
    assert not (source / "functions").exists() and (source / "paynow").is_dir()
    project = f"demo-ledger-{uuid.uuid4().hex[:8]}"
    port = localstack.free_port()
    env = staged_env(emulators, project, source)
    with localstack.LocalRun() as run:
        process = run.function(
            f"ledger-verify-{port}", "ledger_verify", port, env, source=source / "main.py"
        )
        yield Served(process.address, project, process, firestore.Client(project=project))


def _user(db: firestore.Client, user_id: str, points: int, deltas: list[int]) -> None:
    user = db.collection("users").document(user_id)
    user.set({"points": points})
    for i, delta in enumerate(deltas):
        user.collection("pointsLedger").document(f"{user_id}-evt-{i}").set(
            {"delta": delta, "eventId": f"{user_id}-evt-{i}"}
        )


def test_a_consistent_ledger_logs_ok_then_a_mismatch_logs_its_counts(served: Served) -> None:
    _user(served.db, "user-balanced", 150, [100, 50])
    status, body = served.post()
    assert (status, body["outcome"], body["usersChecked"], body["mismatched"]) == (200, "ok", 1, 0)

    _user(served.db, "user-drifted", 90, [100])  # a balance that lost 10 points
    status, body = served.post()
    assert status == 200  # the check ran: a retry would find the same
    assert (body["outcome"], body["usersChecked"], body["mismatched"]) == ("mismatch", 2, 1)

    deadline = time.monotonic() + 10
    while len(served.lines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    ok, mismatch = served.lines()[-2:]
    assert (ok["severity"], ok["outcome"]) == ("INFO", "ok")
    assert (mismatch["severity"], mismatch["outcome"], mismatch["mismatched"]) == (
        "ERROR",
        "mismatch",
        1,
    )
    assert mismatch["entriesChecked"] == 3 and isinstance(mismatch["latencyMs"], float)
    log = served.process.log.read_text()
    assert "user-drifted" not in log and "user-balanced" not in log  # counts only


def test_anything_but_post_is_refused(served: Served) -> None:
    status, body = served.post("GET")
    assert status == 405 and body["error"] == "method_not_allowed"


def _run_staged(source: Path, env: dict[str, str], script: str) -> Any:
    """``python -c SCRIPT`` in the staged directory; the JSON of its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_check_that_cannot_run_answers_503_and_says_why(
    tmp_path: Path, emulators: localstack.Emulators
) -> None:
    source = stage(tmp_path / "staged")
    env = staged_env(emulators, "unused", source)
    del env["GOOGLE_CLOUD_PROJECT"]  # the CLI refuses to start: exit 2
    script = "import json, main; code, verdict = main.run_check(60); print(json.dumps(main.summary(code, verdict)))"
    summary = _run_staged(source, env, script)
    assert summary["outcome"] == "error" and "GOOGLE_CLOUD_PROJECT" in summary["error"]


def _closure(names: set[str]) -> set[str]:
    """Those distributions and everything they require, as installed here."""
    seen: set[str] = set()
    todo = [n.lower().replace("_", "-") for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return seen


def test_the_staged_requirements_cover_what_the_cli_imports(
    tmp_path: Path, emulators: localstack.Emulators
) -> None:
    """What Cloud Functions installs (the staged requirements.txt and what those require)
    holds every third-party module the CLI loads in a real run (stage.sh's
    LEDGER_EXTRA_REQUIREMENTS names what the CLI needs beyond the functions)."""
    source = stage(tmp_path / "staged")
    env = staged_env(emulators, f"demo-ledger-{uuid.uuid4().hex[:8]}", source)
    script = (
        "import contextlib, io, json, sys\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"  # the interpreter's own start-up
        "from scripts.ops import cli as ops\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = ops.main(['ledger', 'verify', '--json'])\n"
        "after = {m.split('.')[0] for m in sys.modules}\n"
        "print(json.dumps({'code': code, 'modules': sorted(after - before)}))\n"
    )
    result = _run_staged(source, env, script)
    assert result["code"] == 0
    pinned = {
        line.split("==")[0].strip()
        for line in (source / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    allowed = _closure(pinned)
    by_module = metadata.packages_distributions()
    needed = {
        dist.lower().replace("_", "-")
        for module in result["modules"]
        for dist in by_module.get(module, [])
    }
    assert needed - allowed == set(), (
        "add them to LEDGER_EXTRA_REQUIREMENTS in infra/ledger_verify/stage.sh"
    )
