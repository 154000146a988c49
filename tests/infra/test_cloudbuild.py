"""cloudbuild.yaml: its steps, and their scripts as Cloud Build would run them.

The settings step runs against the stateful fake gcloud (its Secret Manager holds the
environment's settings file, or not); the install and test steps run with stand-ins for
apt-get, bootstrap.sh and scripts/test in an image without Java.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.infra.conftest import INFRA, ROOT, make_fake, project_id, settings_of

CONFIG = (ROOT / "cloudbuild.yaml").read_text()


def step_script(step_id: str) -> str:
    """The ``- |`` block of one step (the config is plain enough to read it by indentation)."""
    lines = CONFIG.splitlines()
    start = lines.index(f"  - id: {step_id}")
    block = next(i for i in range(start, len(lines)) if lines[i].strip() == "- |")
    indent = len(lines[block]) - len(lines[block].lstrip())
    body = []
    for line in lines[block + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return textwrap.dedent("\n".join(body))


def substitute(script: str, values: dict[str, str]) -> str:
    """What Cloud Build does to a step before running it: ${_X} and $X replaced, $$ -> $."""
    for name, value in values.items():
        script = script.replace(f"${{{name}}}", value)
        script = re.sub(rf"\$(?<!\$\$){name}\b", value, script)
    assert not re.search(r"(?<!\$)\$(\{_|_|PROJECT_ID)", script), script
    return script.replace("$$", "$")


BUILD_PROJECT = "demo-build-project"
# The environment's real settings: nothing like example.env's.
REAL_SETTINGS = """\
PROJECT=demo-real-project
REGION=asia-northeast1
FIRESTORE_LOCATION=nam5
WEBHOOK_MODE=queue
NOTIFICATION_CHANNELS=projects/demo-real-project/notificationChannels/7
MAX_DELIVERY_ATTEMPTS=12
PUBSUB_MAX_DELIVERY_ATTEMPTS=20"""  # no newline at the end, as an editor may leave it


def test_steps_in_order_on_one_pinned_image() -> None:
    ids = re.findall(r"^  - id: (\S+)$", CONFIG, flags=re.M)
    assert ids == ["settings", "install", "audit", "lint-and-test", "deploy", "smoke-test"]
    images = re.findall(r"^    name: (\S+)$", CONFIG, flags=re.M)
    assert images == ["gcr.io/google.com/cloudsdktool/cloud-sdk:528.0.0"] * 6
    audit = step_script("audit")
    assert "pip-audit --strict --no-deps" in audit and "-r functions/requirements.txt" in audit
    assert "./scripts/test" in step_script("lint-and-test")
    assert "      - infra/deploy.sh infra/env/ci.env\n" in CONFIG
    assert "      - scripts/ops/smoke_test.sh infra/env/ci.env\n" in CONFIG
    steps = CONFIG[CONFIG.index("\nsteps:") :]
    assert "example.env" not in steps  # never a fallback
    substitutions = CONFIG[CONFIG.index("substitutions:") : CONFIG.index("\noptions:")]
    assert re.findall(r"^  (_\w+): (.*)$", substitutions, flags=re.M) == [
        ("_PROJECT", "''"),
        ("_REGION", "''"),
        ("_ENV_SECRET", "paynow-deploy-env"),
    ]


def run_settings_step(
    tmp_path: Path,
    gcloud_config: Path,
    substitutions: dict[str, str],
    secrets: dict[str, str],
    errors: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The settings step in a copy of the checkout, with Secret Manager holding ``secrets``
    (and the fake's ``FAKE_GCLOUD_ERRORS``)."""
    work = tmp_path / "workspace"
    (work / "infra" / "env").mkdir(parents=True)
    (work / "infra" / "lib.sh").write_text((INFRA / "lib.sh").read_text())
    project = project_id()
    fake = make_fake(tmp_path, gcloud_config, project)
    fake.state_file.write_text(
        json.dumps({"secrets": {k: {"versions": [v]} for k, v in secrets.items()}})
    )
    if errors:
        fake.env["FAKE_GCLOUD_ERRORS"] = json.dumps(errors)
    script = substitute(
        step_script("settings"),
        {"_PROJECT": "", "_REGION": "", "_ENV_SECRET": "paynow-deploy-env"}
        | substitutions
        | {"PROJECT_ID": project},
    )
    result = subprocess.run(
        ["bash", "-ceu", script],
        cwd=work,
        env=fake.env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result, work / "infra" / "env" / "ci.env"


def test_the_settings_come_whole_from_secret_manager(tmp_path: Path, gcloud_config: Path) -> None:
    result, ci_env = run_settings_step(
        tmp_path, gcloud_config, {}, {"paynow-deploy-env": REAL_SETTINGS}
    )
    assert result.returncode == 0, result.stderr
    real = tmp_path / "real.env"
    real.write_text(REAL_SETTINGS)
    assert settings_of(ci_env) == settings_of(real)
    assert "deploying to demo-real-project in asia-northeast1" in result.stderr


def test_non_empty_substitutions_override_project_and_region_only(
    tmp_path: Path, gcloud_config: Path
) -> None:
    result, ci_env = run_settings_step(
        tmp_path,
        gcloud_config,
        {"_PROJECT": "demo-other-project", "_REGION": "us-central1", "_ENV_SECRET": "stage-env"},
        {"stage-env": REAL_SETTINGS},
    )
    assert result.returncode == 0, result.stderr
    real = tmp_path / "real.env"
    real.write_text(REAL_SETTINGS)
    expected = settings_of(real) | {
        "PROJECT": "demo-other-project",
        "REGION": "us-central1",
        # what defaults to a name of the project or region follows the override
        "SCHEDULER_LOCATION": "us-central1",
        "BUILD_SERVICE_ACCOUNT": "paynow-build@demo-other-project.iam.gserviceaccount.com",
        "DLQ_ARCHIVE_BUCKET": "demo-other-project-paynow-dlq-archive",
    }
    assert settings_of(ci_env) == expected


@pytest.mark.parametrize(
    "errors",
    [
        {},  # no such secret
        {"secrets versions access": "PERMISSION_DENIED: Permission denied (or it may not exist)."},
    ],
)
def test_without_the_settings_secret_the_build_stops(
    tmp_path: Path, gcloud_config: Path, errors: dict[str, str]
) -> None:
    secrets = {"paynow-deploy-env": REAL_SETTINGS} if errors else {}
    result, ci_env = run_settings_step(tmp_path, gcloud_config, {}, secrets, errors)
    assert result.returncode == 1
    assert "cannot read the settings file from Secret Manager: secret paynow-deploy-env" in (
        result.stderr
    )
    assert "gcloud secrets versions add paynow-deploy-env" in result.stderr
    assert "roles/secretmanager.secretAccessor" in result.stderr
    assert list(ci_env.parent.iterdir()) == []  # no settings file at all, example or other


# --- Java before whatever needs it -----------------------------------------------------


@pytest.mark.parametrize(
    ("step_id", "needs_java"),
    [("install", "scripts/bootstrap.sh"), ("lint-and-test", "scripts/test")],
)
def test_java_is_installed_before_what_needs_it(
    tmp_path: Path, step_id: str, needs_java: str
) -> None:
    """In an image without Java, the step installs it before the script that requires it."""
    bin_dir = tmp_path / "bin"  # the whole PATH: no java, no real apt-get
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    apt = bin_dir / "apt-get"
    apt.write_text(
        "#!/bin/sh\n"
        f'echo "apt-get $*" >> {shlex.quote(str(log))}\n'
        'case " $* " in *" default-jre-headless "*) '
        f"/bin/cp {shlex.quote(str(java))} {shlex.quote(str(bin_dir / 'java'))} ;; esac\n"
    )
    apt.chmod(0o755)
    work = tmp_path / "workspace"
    (work / "scripts").mkdir(parents=True)
    for name in ("bootstrap.sh", "test"):  # both refuse to run without Java, as bootstrap.sh does
        stand_in = work / "scripts" / name
        stand_in.write_text(
            "#!/bin/sh\n"
            'command -v java >/dev/null || { echo "error: java is required" >&2; exit 1; }\n'
            f'echo "{name} ran" >> {shlex.quote(str(log))}\n'
        )
        stand_in.chmod(0o755)
    script = substitute(step_script(step_id), {})
    result = subprocess.run(
        ["/bin/bash", "-ceu", script],
        cwd=work,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    ran = f"{Path(needs_java).name} ran"
    assert lines[-1] == ran
    installs = [i for i, line in enumerate(lines) if "default-jre-headless" in line]
    assert installs and installs[0] < lines.index(ran)
