"""The settings file: complete example, defaults as documented, bad values refused early."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.conftest import EXAMPLE_ENV, TrapGcloud, base_env, run_script, settings_of


def test_example_lists_every_setting_with_its_default(tmp_path: Path) -> None:
    example = settings_of(EXAMPLE_ENV)
    keys_in_file = {
        line.split("=", 1)[0]
        for line in EXAMPLE_ENV.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert keys_in_file == set(example)  # every setting, and only settings
    required = {k: example[k] for k in ("PROJECT", "REGION", "FIRESTORE_LOCATION")}
    minimal = tmp_path / "minimal.env"
    minimal.write_text("".join(f"{k}={v}\n" for k, v in required.items()))
    defaults = settings_of(minimal)
    example_scheduler = example.pop("SCHEDULER_LOCATION")
    assert defaults.pop("SCHEDULER_LOCATION") == example_scheduler == example["REGION"]
    assert defaults == example


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ACK_DEADLINE_SECONDS=60", "ACK_DEADLINE_SECONDS (60) must exceed WORKER_TIMEOUT_SECONDS"),
        ("PUBSUB_MAX_DELIVERY_ATTEMPTS=10", "must exceed MAX_DELIVERY_ATTEMPTS"),
        ("WEBHOOK_MODE=fast", "WEBHOOK_MODE must be sync or queue"),
        ("WEBHOOK_FUNCTION=Paynow_Webhook", "WEBHOOK_FUNCTION must be lowercase"),
        ("MAX_RETRY_DELAY_SECONDS=601", "MAX_RETRY_DELAY_SECONDS must be between 0 and 600"),
        ("DLQ_RETENTION_DAYS=32", "DLQ_RETENTION_DAYS must be between 1 and 31"),
        ("EVENT_TTL_DAYS=030", "EVENT_TTL_DAYS must be a whole number"),
        ("PROJECTS=typo", "unknown setting PROJECTS"),
        ("export PROJECT=x", "expected KEY=value"),
        ("PROJECT=$(touch /tmp/infra-settings-pwned)", "PROJECT must be a Google Cloud project id"),
    ],
)
def test_bad_settings_stop_before_any_command(
    tmp_path: Path, trap_gcloud: TrapGcloud, line: str, message: str
) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text(EXAMPLE_ENV.read_text() + line + "\n")
    result = run_script(
        "infra/deploy.sh", str(env_file), "--dry-run", env=base_env(tmp_path, trap_gcloud.bin)
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert trap_gcloud.calls() == []
    assert not Path("/tmp/infra-settings-pwned").exists()


def test_missing_settings_file_and_unknown_arguments_are_refused(
    tmp_path: Path, trap_gcloud: TrapGcloud
) -> None:
    env = base_env(tmp_path, trap_gcloud.bin)
    missing = run_script("infra/deploy.sh", str(tmp_path / "nope.env"), env=env)
    assert missing.returncode == 1 and "settings file not found" in missing.stderr
    bare = run_script("infra/deploy.sh", env=env)
    assert bare.returncode == 1 and "settings file is required" in bare.stderr
    extra = run_script("infra/deploy.sh", str(EXAMPLE_ENV), "--dry-run", "--force", env=env)
    assert extra.returncode == 1 and "unexpected argument" in extra.stderr
    assert trap_gcloud.calls() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--secret-file=secret.txt", "--force"], "unexpected argument(s): --force"),
        (["--secret-stdin", "another-file.env"], "unexpected argument(s): another-file.env"),
        (["--secret-file", "secret.txt", "extra"], "unexpected argument(s): extra"),
        (["--secret-stdin", "--secret-file=secret.txt"], "give the secret once"),
        (["--secret-file"], "--secret-file needs a path"),
        (["--secret-file=no-such-file.txt"], "cannot read the secret file no-such-file.txt"),
        (["--secret-file="], "--secret-file needs a path"),
        (["--secret-file", ""], "--secret-file needs a path"),
        (["--secret-file=secret.txt", "--secret-file", "secret.txt"], "give the secret once"),
    ],
)
@pytest.mark.parametrize("script", ["infra/deploy.sh", "infra/steps/secret.sh"])
def test_deploy_and_the_secret_step_refuse_bad_arguments_before_any_step(
    tmp_path: Path, trap_gcloud: TrapGcloud, script: str, args: list[str], message: str
) -> None:
    """The secret step run alone checks its arguments as deploy.sh does (lib.sh's
    parse_secret_args): one secret source at most, a path, a readable file."""
    (tmp_path / "secret.txt").write_text("a-secret\n")
    args = [a.replace("secret.txt", str(tmp_path / "secret.txt")) for a in args]
    args = [a.replace("no-such-file.txt", str(tmp_path / "no-such-file.txt")) for a in args]
    message = message.replace("no-such-file.txt", str(tmp_path / "no-such-file.txt"))
    result = run_script(
        script,
        str(EXAMPLE_ENV),
        "--dry-run",
        *args,
        env=base_env(tmp_path, trap_gcloud.bin),
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert "###" not in result.stderr and result.commands() == []  # no step started
    assert trap_gcloud.calls() == []
