"""``mode``: the WEBHOOK_MODE the webhook really runs with, and how to switch it.

Of the deployed service (its Cloud Run environment, read with gcloud) for a cloud
project; of the local stack (its ``.local/stack.env``) for the local stack's emulators;
of this environment only for other emulators, whose functions nothing here can see.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from scripts.local import localstack
from scripts.ops.clients import UsageError, problem
from scripts.ops.target import Target, local_stack_for

MODES = ("sync", "queue")


def read_settings_file(path: Path) -> dict[str, str]:
    """An infra settings file (infra/env/*.env) read as infra/lib.sh reads it: KEY=value
    lines, optional quotes, comments; nothing is run."""
    try:
        return localstack.parse_env_lines(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read the settings file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path}:{str(exc).removeprefix('line ')}") from None


def _other(mode: str) -> str:
    return "queue" if mode == "sync" else "sync"


def deployed_project(env_file: Path) -> tuple[str, str, dict[str, str]]:
    """The PROJECT and REGION of an infra settings file, and all its values."""
    values = read_settings_file(env_file)
    project, region = values.get("PROJECT"), values.get("REGION")
    if not project or not region:
        raise UsageError(f"{env_file} must set PROJECT and REGION")
    return project, region, values


def _deployed_mode(
    project: str, region: str, service: str, env_file: Path | None, file_mode: str | None
) -> tuple[dict[str, Any], bool]:
    out: dict[str, Any] = {
        "source": "deployed",
        "project": project,
        "region": region,
        "service": service,
    }
    if env_file is not None:
        out.update(settingsFile=str(env_file), settingsFileMode=file_mode)
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
    )
    if env_file is not None:
        out["matchesSettingsFile"] = mode == file_mode
    if mode not in MODES:
        out["error"] = f"WEBHOOK_MODE={mode!r} on the service: the webhook refuses to start"
        mode = "sync"
    settings = env_file or "infra/env/ENV.env"
    out["switchCommand"] = f"infra/set-mode.sh {settings} {_other(mode)}"
    out["rollbackCommand"] = f"infra/set-mode.sh {settings} sync"
    if env_file is not None:
        out["note"] = (
            f"{env_file} says WEBHOOK_MODE={file_mode}, which only a first deploy uses: "
            "infra/deploy.sh keeps the live mode, infra/set-mode.sh changes it"
        )
    return out, "error" not in out


def _stack_mode(stack: dict[str, str]) -> tuple[dict[str, Any], bool]:
    mode = stack.get("WEBHOOK_MODE", "").strip().lower()
    valid = mode in MODES
    out: dict[str, Any] = {
        "source": "local stack (.local/stack.env)",
        "stackPid": stack.get("STACK_PID"),
        "mode": mode,
        "valid": valid,
        "webhook": stack.get("PAYNOW_WEBHOOK_URL"),
        "localSwitch": "stop the stack (Ctrl-C) and start it again: "
        f"./scripts/stack --mode {_other(mode if valid else 'queue')}",
        "note": "for a deployed webhook: scripts/paynow-ops --project P mode --region R "
        "(or mode --env-file infra/env/ENV.env)",
    }
    return out, valid


def _environment_mode() -> tuple[dict[str, Any], bool]:
    mode = (os.environ.get("WEBHOOK_MODE") or "").strip().lower() or "sync"
    valid = mode in MODES
    other = _other(mode if valid else "queue")
    out: dict[str, Any] = {
        "source": "WEBHOOK_MODE of this environment (no local stack runs on these emulators)",
        "mode": mode,
        "valid": valid,
        "switchCommand": f"infra/set-mode.sh infra/env/ENV.env {other}",
        "localSwitch": f"restart the local stack: ./scripts/stack --mode {other}",
        "note": "for the deployed webhook: scripts/paynow-ops mode --env-file infra/env/ENV.env",
    }
    if not valid:
        out["error"] = "WEBHOOK_MODE must be sync or queue: a function started with it refuses to"
    return out, valid


def webhook_mode(args: argparse.Namespace, target: Target) -> tuple[dict[str, Any], bool]:
    """WEBHOOK_MODE of what ``target`` runs, and the command that switches it: the
    deployed webhook's (``--env-file``, or a cloud project with ``--region``), the local
    stack's, or, for emulators no stack of ours runs on, this environment's. Exit 1 when
    the mode is not one the webhook starts with."""
    service = args.service or "paynow-webhook"  # gen2: the Cloud Run service's name
    if args.env_file:
        env_file = Path(args.env_file)
        project, region, values = deployed_project(env_file)
        service = args.service or values.get("WEBHOOK_FUNCTION") or service
        file_mode = values.get("WEBHOOK_MODE") or "sync"
        return _deployed_mode(project, region, service, env_file, file_mode)
    if target.cloud:
        if not args.region:
            raise UsageError(
                f"the deployed webhook of {target.project} is read from its Cloud Run "
                "service: give its --region R (or --env-file infra/env/ENV.env)"
            )
        return _deployed_mode(target.project, args.region, service, None, None)
    stack = local_stack_for(target)
    if stack is not None:
        return _stack_mode(stack)
    return _environment_mode()
