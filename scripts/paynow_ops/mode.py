"""``mode``: the webhook's WEBHOOK_MODE (deployed, or of this shell) and how to switch it."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from scripts.paynow_ops.clients import UsageError, problem

MODES = ("sync", "queue")


def read_settings_file(path: Path) -> dict[str, str]:
    """An infra settings file (infra/env/*.env) read as infra/lib.sh reads it: KEY=value
    lines, optional quotes, comments; nothing is run."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the settings file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if not match:
            raise UsageError(f"{path}:{n}: expected KEY=value")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def _other(mode: str) -> str:
    return "queue" if mode == "sync" else "sync"


def _deployed_mode(env_file: Path) -> tuple[dict[str, Any], bool]:
    values = read_settings_file(env_file)
    project, region = values.get("PROJECT"), values.get("REGION")
    if not project or not region:
        raise UsageError(f"{env_file} must set PROJECT and REGION")
    service = values.get("WEBHOOK_FUNCTION") or "paynow-webhook"  # gen2: the service's name
    file_mode = values.get("WEBHOOK_MODE") or "sync"
    out: dict[str, Any] = {
        "source": "deployed",
        "project": project,
        "region": region,
        "service": service,
        "settingsFile": str(env_file),
        "settingsFileMode": file_mode,
    }
    argv = [
        "gcloud",
        "run",
        "services",
        "describe",
        service,
        f"--region={region}",
        f"--project={project}",
        "--format=json",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {**out, "mode": None, "error": problem(exc)}, False
    if done.returncode != 0:
        error = " ".join(done.stderr.split())[-300:]
        return {**out, "mode": None, "error": f"{' '.join(argv)}: {error}"}, False
    doc = json.loads(done.stdout)
    containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
    env = {e.get("name"): e.get("value") for e in containers[0].get("env", [])}
    mode = str(env.get("WEBHOOK_MODE") or "sync").strip().lower()  # unset: the code's default
    status = doc.get("status", {})
    traffic = (status.get("traffic") or [{}])[0]
    out.update(
        mode=mode,
        revision=status.get("latestReadyRevisionName"),
        serving=f"{traffic.get('revisionName')} at {traffic.get('percent')}%",
        matchesSettingsFile=mode == file_mode,
    )
    if mode not in MODES:
        out["error"] = f"WEBHOOK_MODE={mode!r} on the service: the webhook refuses to start"
        mode = "sync"
    out["switchCommand"] = f"infra/set-mode.sh {env_file} {_other(mode)}"
    out["rollbackCommand"] = f"infra/set-mode.sh {env_file} sync"
    out["note"] = (
        f"{env_file} says WEBHOOK_MODE={file_mode}, which only a first deploy uses: "
        "infra/deploy.sh keeps the live mode, infra/set-mode.sh changes it"
    )
    return out, "error" not in out


def _local_mode() -> tuple[dict[str, Any], bool]:
    mode = (os.environ.get("WEBHOOK_MODE") or "").strip().lower() or "sync"
    valid = mode in MODES
    other = _other(mode if valid else "queue")
    out: dict[str, Any] = {
        "source": "local environment (WEBHOOK_MODE of this shell)",
        "mode": mode,
        "valid": valid,
        "switchCommand": f"infra/set-mode.sh infra/env/ENV.env {other}",
        "localSwitch": f"restart the local stack: ./scripts/stack --mode {other}",
        "note": "for the deployed webhook: scripts/paynow-ops mode --env-file infra/env/ENV.env",
    }
    if not valid:
        out["error"] = "WEBHOOK_MODE must be sync or queue: a function started with it refuses to"
    return out, valid


def webhook_mode(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """WEBHOOK_MODE of the deployed webhook (``--env-file``: its Cloud Run service, read with
    gcloud) or of this shell, and the command that switches it. Exit 1 when the mode is
    not one the webhook starts with."""
    if args.env_file:
        return _deployed_mode(Path(args.env_file))
    return _local_mode()
