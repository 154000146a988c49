"""Running the infra scripts: real gcloud, a recording fake, or nothing at all (--dry-run).

Nothing here skips: without gcloud (or bash) the tests that need it fail, saying so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
EXAMPLE_ENV = INFRA / "env" / "example.env"
FAKE_GCLOUD = Path(__file__).resolve().parent / "fake_gcloud.py"
MUTATING = {"create", "deploy", "update", "enable", "add", "add-iam-policy-binding"}
MUTATING |= {"remove-iam-policy-binding", "delete"}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def commands(self) -> list[list[str]]:
        """The gcloud commands the script printed ("+ gcloud ..."), as argv lists."""
        return [
            shlex.split(line[2:])[1:]
            for line in self.stderr.splitlines()
            if line.startswith("+ gcloud ")
        ]


def is_mutation(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    return any(w in MUTATING for w in words[:4])


def real_gcloud() -> str:
    found = shutil.which("gcloud")
    assert found, "gcloud is required for the infra tests (the Google Cloud CLI)"
    return str(Path(found).resolve())


def project_id() -> str:
    return f"demo-infra-{uuid.uuid4().hex[:8]}"


def write_env(path: Path, **settings: str) -> Path:
    """example.env with some settings overridden (later lines win)."""
    lines = EXAMPLE_ENV.read_text()
    lines += "".join(f"{key}={value}\n" for key, value in settings.items())
    path.write_text(lines)
    return path


@pytest.fixture(scope="session")
def gcloud_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gcloud-config")


def base_env(config: Path, path_prefix: Path | None = None) -> dict[str, str]:
    """A clean environment: only what bash and gcloud need, nothing from the user's gcloud."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env = {
        "PATH": f"{path_prefix}{os.pathsep}{path}" if path_prefix else path,
        "HOME": os.environ.get("HOME", str(config)),
        "LANG": "C.UTF-8",
        "CLOUDSDK_CONFIG": str(config),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_SURVEY_DISABLE_PROMPTS": "1",
    }
    return env


def run_script(
    script: str | Path,
    *args: str,
    env: Mapping[str, str],
    stdin: str | None = None,
    timeout: float = 300,
) -> Result:
    path = script if isinstance(script, Path) else ROOT / script
    proc = subprocess.run(
        ["bash", str(path), *args],
        cwd=ROOT,
        env=dict(env),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class TrapGcloud:
    """A gcloud first on PATH that only records being called and fails: for --dry-run."""

    bin: Path
    log: Path

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def make_trap(directory: Path) -> TrapGcloud:
    bin_dir = directory / "trap-bin"
    bin_dir.mkdir()
    log = directory / "trap.log"
    shim = bin_dir / "gcloud"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\nexit 97\n')
    shim.chmod(0o755)
    return TrapGcloud(bin_dir, log)


@pytest.fixture
def trap_gcloud(tmp_path: Path) -> TrapGcloud:
    return make_trap(tmp_path)


@dataclass
class FakeGcloud:
    """The stateful fake (fake_gcloud.py) first on PATH."""

    env: dict[str, str]
    state_file: Path
    log_file: Path

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_file.read_text()))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def mark(self) -> int:
        """The number of calls so far: ``calls()[mark:]`` are the ones after it."""
        return len(self.calls())


def make_fake(directory: Path, config: Path, project: str) -> FakeGcloud:
    bin_dir = directory / "fake-bin"
    bin_dir.mkdir()
    shim = bin_dir / "gcloud"
    shim.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_GCLOUD))} "$@"\n'
    )
    shim.chmod(0o755)
    env = base_env(config, bin_dir)
    env.update(
        FAKE_GCLOUD_STATE=str(directory / "fake-state.json"),
        FAKE_GCLOUD_LOG=str(directory / "fake-calls.jsonl"),
        FAKE_GCLOUD_SDK=str(Path(real_gcloud()).parent.parent),
        FAKE_GCLOUD_PROJECT=project,
    )
    return FakeGcloud(env, directory / "fake-state.json", directory / "fake-calls.jsonl")


def emulator_env(config: Path, pubsub_host: str, project: str) -> dict[str, str]:
    """The real gcloud, talking to the Pub/Sub emulator as project ``project``."""
    env = base_env(config)
    env.update(
        CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=f"http://{pubsub_host}/",
        CLOUDSDK_AUTH_ACCESS_TOKEN="emulator-needs-no-token",
        CLOUDSDK_CORE_PROJECT=project,
    )
    return env
