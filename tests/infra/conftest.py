"""Running the infra scripts: real gcloud, a recording fake, or nothing at all (--dry-run).

Nothing here skips: without gcloud (or bash) the tests that need it fail, saying so.
"""

from __future__ import annotations

import http.server
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.json_handler import JsonHandler

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
EXAMPLE_ENV = INFRA / "env" / "example.env"
FAKE_GCLOUD = Path(__file__).resolve().parent / "fake_gcloud.py"
GCLOUD_DRIVER = Path(__file__).resolve().parent / "gcloud_driver.py"
MUTATING = {
    "add",
    "add-iam-policy-binding",
    "create",
    "delete",
    "deploy",
    "enable",
    "remove-iam-policy-binding",
    "update",
}


# The predefined roles the bootstrap grants the CI deployer on the project (besides its
# custom smoke-test role, the log writer and a conditioned bucket reader).
DEPLOYER_PREDEFINED_ROLES = (
    "roles/cloudfunctions.developer",
    "roles/run.admin",
    "roles/pubsub.admin",
    "roles/cloudscheduler.admin",
    "roles/logging.configWriter",
    "roles/monitoring.alertPolicyEditor",
    "roles/monitoring.dashboardEditor",
    "roles/serviceusage.serviceUsageViewer",
    "roles/browser",
    "roles/iam.securityReviewer",
)


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


def settings_of(env_file: Path) -> dict[str, str]:
    """Every setting as lib.sh resolves it from ``env_file``."""
    script = (
        f"source {INFRA / 'lib.sh'}; load_settings {env_file}; "
        'for k in "${SETTINGS[@]}"; do printf "%s=%s\\n" "$k" "${!k}"; done'
    )
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def lib_check(check: str, stderr: str) -> bool:
    """lib.sh's own verdict on a failed command's error output: does its ``check`` (``absent``:
    "the resource does not exist"; ``denied``: "the caller lacks a permission") hold?"""
    proc = subprocess.run(
        ["bash", "-c", f"source {INFRA / 'lib.sh'}; {check}"],
        input=stderr,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


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
    """The stateful fake (fake_gcloud.py) first on PATH, and the testIamPermissions methods
    the scripts call with curl (_IamTests): every permission asked is held, except those
    withheld with ``deny``; a service account or secret the fake does not hold is a 404."""

    env: dict[str, str]
    state_file: Path
    log_file: Path
    deny_file: Path

    def deny(self, *entries: str) -> None:
        """Withhold permissions: ``"PERMISSION"`` everywhere, or ``"PATH_PART PERMISSION"``
        only on resources whose URL path contains PATH_PART. No argument: withhold nothing."""
        self.deny_file.write_text(json.dumps(list(entries)))

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_file.read_text()))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def mark(self) -> int:
        """The number of calls so far: ``calls()[mark:]`` are the ones after it."""
        return len(self.calls())

    def run(
        self, script: str | Path, env_file: Path, *args: str, stdin: str | None = None
    ) -> FakeRun:
        """Run ``script ENV_FILE ARGS`` against the fake: its result, its calls, the state after."""
        mark = self.mark()
        result = run_script(script, str(env_file), *args, env=self.env, stdin=stdin)
        return FakeRun(result, self.calls()[mark:], self.state())


@dataclass
class FakeRun:
    """One script run against ``FakeGcloud``."""

    result: Result
    calls: list[dict[str, Any]]
    state: dict[str, Any]

    def mutations(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls if is_mutation(c["argv"])]


class _IamTests(JsonHandler):
    """POST .../RESOURCE:testIamPermissions, answered from the fake's state and deny list."""

    state_file: Path
    deny_file: Path

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        path = self.path.split("?")[0]
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        deny = json.loads(self.deny_file.read_text()) if self.deny_file.exists() else []
        exists = True
        if "/serviceAccounts/" in path:
            email = path.split("/serviceAccounts/")[1].split(":")[0]
            exists = email in state.get("service_accounts", {})
        elif "/secrets/" in path:
            exists = path.split("/secrets/")[1].split(":")[0] in state.get("secrets", {})
        if not self.headers.get("authorization", "").startswith("Bearer ") or not exists:
            status = 401 if exists else 404
            self.send_json(status, {"error": {"code": status, "message": "test IAM"}})
            return

        def withheld(permission: str) -> bool:
            for entry in deny:
                part, _, name = entry.rpartition(" ")
                if name == permission and (not part or part in path):
                    return True
            return False

        held = [p for p in body.get("permissions", []) if not withheld(p)]
        self.send_json(200, {"permissions": held} if held else {})


def make_fake(directory: Path, config: Path, project: str) -> FakeGcloud:
    bin_dir = directory / "fake-bin"
    bin_dir.mkdir()
    shim = bin_dir / "gcloud"
    # The fake imports gcloud's own modules on every call: their bytecode is cached outside
    # the SDK's directory (the environment may forbid writing it, which costs ~0.3 s a call).
    cache = shlex.quote(str(Path(tempfile.gettempdir()) / "paynow-fake-gcloud-pycache"))
    shim.write_text(
        "#!/bin/sh\n"
        f"exec env -u PYTHONDONTWRITEBYTECODE {shlex.quote(sys.executable)} -X pycache_prefix={cache}"
        f' {shlex.quote(str(FAKE_GCLOUD))} "$@"\n'
    )
    shim.chmod(0o755)
    state_file, deny_file = directory / "fake-state.json", directory / "fake-deny.json"
    handler = type("Tests", (_IamTests,), {"state_file": state_file, "deny_file": deny_file})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tests_url = f"http://127.0.0.1:{server.server_address[1]}/"
    env = base_env(config, bin_dir)
    env.update(
        FAKE_GCLOUD_STATE=str(state_file),
        FAKE_GCLOUD_LOG=str(directory / "fake-calls.jsonl"),
        FAKE_GCLOUD_SDK=str(Path(real_gcloud()).parent.parent),
        FAKE_GCLOUD_PROJECT=project,
        FAKE_GCLOUD_ACCOUNT=f"paynow-deployer@{project}.iam.gserviceaccount.com",
        CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER=tests_url,
        CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM=tests_url,
        CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER=tests_url,
    )
    return FakeGcloud(env, state_file, directory / "fake-calls.jsonl", deny_file)


def emulator_env(config: Path, pubsub_host: str, project: str) -> dict[str, str]:
    """The real gcloud, talking to the Pub/Sub emulator as project ``project``."""
    env = base_env(config)
    env.update(
        CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=f"http://{pubsub_host}/",
        CLOUDSDK_AUTH_ACCESS_TOKEN="emulator-needs-no-token",
        CLOUDSDK_CORE_PROJECT=project,
    )
    return env


# --- does the real gcloud accept a command? ------------------------------------------

_APIS = (
    "CLOUDFUNCTIONS",
    "CLOUDRESOURCEMANAGER",
    "CLOUDSCHEDULER",
    "FIRESTORE",
    "IAM",
    "LOGGING",
    "MONITORING",
    "PUBSUB",
    "RUN",
    "SECRETMANAGER",
    "SERVICEUSAGE",
    "STORAGE",
)


class _FailingApi(JsonHandler):
    """Every Google API, answering each request with one error (``status``);
    GET /__count says how many requests came so far."""

    status = 403
    requests = 0

    def _answer(self) -> None:
        if self.path == "/__count":
            self.send_json(200, str(_FailingApi.requests).encode())
            return
        _FailingApi.requests += 1
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        name = {403: "PERMISSION_DENIED", 404: "NOT_FOUND"}[self.status]
        message = f"answered {self.status} by the test API"
        self.send_json(
            self.status,
            json.dumps(
                {"error": {"code": self.status, "status": name, "message": message}}
            ).encode(),
        )

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer


def gcloud_against_failing_api(
    commands: list[list[str]], config: Path, status: int
) -> list[dict[str, Any]]:
    """Run each command with the real gcloud CLI against APIs that answer ``status``.

    Every API endpoint is pointed (through gcloud's proxy setting) at a local server
    answering each request with that error. All commands run in one gcloud process
    (gcloud_driver.py), so dozens take seconds. Returns one outcome per command:
    ``exit``, ``reached`` (requests the API received), ``stderr``.
    """
    handler = type("Api", (_FailingApi,), {"status": status, "requests": 0})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    env = base_env(config)
    env.update(
        CLOUDSDK_AUTH_ACCESS_TOKEN="not-a-real-token",
        CLOUDSDK_PROXY_TYPE="http",
        CLOUDSDK_PROXY_ADDRESS="127.0.0.1",
        CLOUDSDK_PROXY_PORT=str(port),
    )
    env.update({f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{a}": f"http://{a.lower()}.mock/" for a in _APIS})
    sdk = Path(real_gcloud()).parent.parent
    bundled = sdk / "platform" / "bundledpythonunix" / "bin" / "python"
    python = os.environ.get("CLOUDSDK_PYTHON") or (
        str(bundled) if bundled.exists() else sys.executable
    )
    batch = [{"argv": argv, "stdin": "value-through-stdin"} for argv in commands]
    try:
        proc = subprocess.run(
            [python, str(GCLOUD_DRIVER), str(sdk), f"http://127.0.0.1:{port}/__count"],
            cwd=ROOT,
            env=env,
            input=json.dumps(batch),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcomes = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["argv"] for o in outcomes] == commands
    return outcomes


# --- a project bootstrapped and deployed once, for the tests that start from there -------


@dataclass(frozen=True)
class Deployed:
    """The fake's state after infra/bootstrap.sh and infra/deploy.sh into an empty project."""

    project: str
    state: str  # the state file's JSON
    env_file_text: str

    def fake(self, directory: Path, config: Path) -> tuple[FakeGcloud, Path]:
        """A fake gcloud of its own holding this state, and the project's settings file."""
        fake = make_fake(directory, config, self.project)
        fake.state_file.write_text(self.state)
        env_file = directory / "deployed.env"
        env_file.write_text(self.env_file_text)
        return fake, env_file


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory, gcloud_config: Path) -> Deployed:
    tmp = tmp_path_factory.mktemp("deployed")
    project = project_id()
    fake = make_fake(tmp, gcloud_config, project)
    env_file = write_env(tmp / "deployed.env", PROJECT=project)
    boot = run_script(
        "infra/bootstrap.sh", str(env_file), "--secret-stdin", env=fake.env, stdin="a-secret\n"
    )
    assert boot.returncode == 0, boot.output
    deploy = run_script("infra/deploy.sh", str(env_file), env=fake.env)
    assert deploy.returncode == 0, deploy.output
    return Deployed(project, fake.state_file.read_text(), env_file.read_text())
