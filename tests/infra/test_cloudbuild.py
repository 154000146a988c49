"""cloudbuild.yaml: its steps, and its deploy script as Cloud Build would run it."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.infra.conftest import EXAMPLE_ENV, INFRA, ROOT

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


def test_steps_in_order_on_one_pinned_image() -> None:
    ids = re.findall(r"^  - id: (\S+)$", CONFIG, flags=re.M)
    assert ids == ["install", "lint-and-test", "deploy", "smoke-test"]
    images = re.findall(r"^    name: (\S+)$", CONFIG, flags=re.M)
    assert images == ["gcr.io/google.com/cloudsdktool/cloud-sdk:528.0.0"] * 4
    assert "./scripts/test" in step_script("lint-and-test")
    assert "scripts/smoke_test.sh infra/env/cloudbuild.env" in CONFIG


@pytest.mark.parametrize(
    ("override", "expected"),
    [("", "demo-build-project"), ("demo-other-project", "demo-other-project")],
)
def test_deploy_step_writes_the_settings_from_the_substitutions(
    tmp_path: Path, override: str, expected: str
) -> None:
    (tmp_path / "infra" / "env").mkdir(parents=True)
    (tmp_path / "infra" / "env" / "example.env").write_text(EXAMPLE_ENV.read_text())
    # deploy.sh stands in for itself: it only resolves the settings it was given.
    (tmp_path / "infra" / "deploy.sh").write_text(
        f'#!/usr/bin/env bash\nsource {INFRA / "lib.sh"}\nload_settings "$1"\n'
        'printf "%s %s %s\\n" "$PROJECT" "$REGION" "$FIRESTORE_LOCATION"\n'
    )
    (tmp_path / "infra" / "deploy.sh").chmod(0o755)
    script = substitute(
        step_script("deploy"),
        {
            "_PROJECT": override,
            "_REGION": "asia-northeast1",
            "_ENV_FILE": "infra/env/example.env",
            "PROJECT_ID": "demo-build-project",
        },
    )
    result = subprocess.run(
        ["bash", "-ceu", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{expected} asia-northeast1 eur3\n"
