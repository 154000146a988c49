"""infra/steps/secret.sh: a typed secret is not echoed, and a failed read of the latest
version is told apart (none yet: add the first; no permission or anything else: stop)."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import termios
import time
import uuid
from pathlib import Path

import pytest

from tests.infra.conftest import (
    ROOT,
    FakeGcloud,
    TrapGcloud,
    base_env,
    gcloud_against_failing_api,
    lib_check,
    make_fake,
    project_id,
    run_script,
    write_env,
)
from tests.support.terminal import read_available

STEP = "infra/steps/secret.sh"
PROJECT = "demo-secret-project"


def test_a_secret_typed_at_a_terminal_is_not_echoed(
    tmp_path: Path, trap_gcloud: TrapGcloud
) -> None:
    value = f"typed-secret-{uuid.uuid4().hex}"
    env_file = write_env(tmp_path / "tty.env", PROJECT=PROJECT)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        ["bash", str(ROOT / STEP), str(env_file), "--dry-run", "--secret-stdin"],
        cwd=ROOT,
        env=base_env(tmp_path, trap_gcloud.bin),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    try:
        shown = b""
        deadline = time.monotonic() + 20
        while b"signing secret" not in shown and time.monotonic() < deadline:
            shown += read_available(master, 0.5)
        assert b"signing secret" in shown, shown  # the prompt
        # Wait for the script to turn the terminal's echo off (it never does if it echoes).
        deadline = time.monotonic() + 3
        while termios.tcgetattr(slave)[3] & termios.ECHO and time.monotonic() < deadline:
            time.sleep(0.02)
        os.write(master, value.encode() + b"\n")
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:  # a script that reads to the end of input
            os.write(master, b"\x04")
            proc.wait(timeout=20)
        shown += read_available(master, 1.0)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)
    text = shown.decode(errors="replace")
    assert proc.returncode == 0, text
    assert value not in text
    assert "+ gcloud secrets versions add paynow-webhook-secret" in text
    assert trap_gcloud.calls() == []


def _fake_with_a_secret(tmp_path: Path, config: Path, value: str) -> tuple[FakeGcloud, Path]:
    project = project_id()
    fake = make_fake(tmp_path, config, project)
    env_file = write_env(tmp_path / "secret.env", PROJECT=project)
    first = run_script(STEP, str(env_file), "--secret-stdin", env=fake.env, stdin=value)
    assert first.returncode == 0, first.output
    assert fake.state()["secrets"]["paynow-webhook-secret"]["versions"] == [value]
    return fake, env_file


def _adds(fake: FakeGcloud, since: int) -> list[dict[str, object]]:
    """The signing secret's new versions (the step stores the settings file beside it)."""
    return [
        c
        for c in fake.calls()[since:]
        if c["argv"][:4] == ["secrets", "versions", "add", "paynow-webhook-secret"]
    ]


def test_no_version_yet_adds_the_first(tmp_path: Path, gcloud_config: Path) -> None:
    project = project_id()
    fake = make_fake(tmp_path, gcloud_config, project)
    env_file = write_env(tmp_path / "secret.env", PROJECT=project)
    value = f"first-{uuid.uuid4().hex}"
    result = run_script(STEP, str(env_file), "--secret-stdin", env=fake.env, stdin=value)
    assert result.returncode == 0, result.output
    assert "no readable latest version yet" in result.stderr
    assert [c["stdin_sha256"] for c in _adds(fake, 0)] == [
        hashlib.sha256(value.encode()).hexdigest()
    ]


def test_a_disabled_latest_version_counts_as_none_and_a_version_is_added(
    tmp_path: Path, gcloud_config: Path
) -> None:
    fake, env_file = _fake_with_a_secret(tmp_path, gcloud_config, "the-old-value")
    mark = fake.mark()
    fake.env["FAKE_GCLOUD_ERRORS"] = json.dumps(
        {
            "secrets versions access": "FAILED_PRECONDITION: Secret Version "
            "[projects/p/secrets/paynow-webhook-secret/versions/1] is in DISABLED state."
        }
    )
    again = run_script(STEP, str(env_file), "--secret-stdin", env=fake.env, stdin="the-old-value")
    assert again.returncode == 0, again.output
    assert "no readable latest version yet" in again.stderr
    assert [c["stdin_sha256"] for c in _adds(fake, mark)] == [
        hashlib.sha256(b"the-old-value").hexdigest()
    ]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            "PERMISSION_DENIED: Permission 'secretmanager.versions.access' denied for resource "
            "'projects/p/secrets/paynow-webhook-secret/versions/latest' (or it may not exist).",
            "roles/secretmanager.secretAccessor",
        ),
        ("UNAVAILABLE: The service is currently unavailable.", "command failed"),
    ],
)
def test_a_read_that_fails_otherwise_stops_before_adding(
    tmp_path: Path, gcloud_config: Path, error: str, message: str
) -> None:
    fake, env_file = _fake_with_a_secret(tmp_path, gcloud_config, "the-old-value")
    mark = fake.mark()
    fake.env["FAKE_GCLOUD_ERRORS"] = json.dumps({"secrets versions access": error})
    again = run_script(STEP, str(env_file), "--secret-stdin", env=fake.env, stdin="the-old-value")
    assert again.returncode == 1, again.output
    assert message in again.stderr and "nothing was added" in again.stderr
    assert _adds(fake, mark) == []
    assert fake.state()["secrets"]["paynow-webhook-secret"]["versions"] == ["the-old-value"]


def test_the_real_gcloud_errors_of_a_version_read_are_told_apart(gcloud_config: Path) -> None:
    access = [
        "secrets",
        "versions",
        "access",
        "latest",
        "--secret=paynow-webhook-secret",
        f"--project={PROJECT}",
    ]
    (forbidden,) = gcloud_against_failing_api([access], gcloud_config, 403)
    (missing,) = gcloud_against_failing_api([access], gcloud_config, 404)
    assert forbidden["exit"] == missing["exit"] == 1
    assert [lib_check(c, forbidden["stderr"]) for c in ("absent", "denied")] == [False, True]
    assert [lib_check(c, missing["stderr"]) for c in ("absent", "denied")] == [True, False]
