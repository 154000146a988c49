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
    _refused_before_any_command(tmp_path, trap_gcloud, line, message, "infra/deploy.sh")
    assert not Path("/tmp/infra-settings-pwned").exists()


def _refused_before_any_command(
    tmp_path: Path, trap_gcloud: TrapGcloud, line: str, message: str, *scripts: str
) -> None:
    """Each script, given the example settings plus ``line``, exits 1 saying ``message``
    and runs no gcloud command."""
    env_file = tmp_path / "bad.env"
    env_file.write_text(EXAMPLE_ENV.read_text() + line.replace("\\n", "\n") + "\n")
    for script in scripts:
        result = run_script(
            script, str(env_file), "--dry-run", env=base_env(tmp_path, trap_gcloud.bin)
        )
        assert result.returncode == 1, script
        assert message in result.stderr, script
    assert trap_gcloud.calls() == []


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
@pytest.mark.parametrize("script", ["infra/bootstrap.sh", "infra/steps/secret.sh"])
def test_bootstrap_and_the_secret_step_refuse_bad_arguments_before_any_step(
    tmp_path: Path, trap_gcloud: TrapGcloud, script: str, args: list[str], message: str
) -> None:
    """The secret step run alone checks its arguments as bootstrap.sh does (lib.sh's
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


@pytest.mark.parametrize("arg", ["--secret-stdin", "--secret-file=x.txt"])
def test_the_deploy_never_takes_the_signing_secret(
    tmp_path: Path, trap_gcloud: TrapGcloud, arg: str
) -> None:
    """The CI deploy holds no secret admin: the value goes in through the bootstrap."""
    result = run_script(
        "infra/deploy.sh",
        str(EXAMPLE_ENV),
        "--dry-run",
        arg,
        env=base_env(tmp_path, trap_gcloud.bin),
    )
    assert result.returncode == 1
    assert "the deploy never handles the signing secret" in result.stderr
    assert "infra/bootstrap.sh" in result.stderr
    assert result.commands() == [] and trap_gcloud.calls() == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "WEBHOOK_SECRET_PREVIOUS_UNTIL=2026-12-24T12:00:00Z",
            "needs WEBHOOK_SECRET_PREVIOUS_VERSION",
        ),
        (
            "WEBHOOK_SECRET_PREVIOUS_VERSION=latest",
            "WEBHOOK_SECRET_PREVIOUS_VERSION must be empty or a version",
        ),
        (
            "WEBHOOK_SECRET_PREVIOUS_VERSION=3\nWEBHOOK_SECRET_PREVIOUS_UNTIL=tomorrow",
            "must be empty or a UTC time",
        ),
        ("DLQ_ARCHIVE_DAYS=31", "DLQ_ARCHIVE_DAYS must be between 32 and 3650"),
        ("DLQ_ARCHIVE_BUCKET=Bad_Bucket", "DLQ_ARCHIVE_BUCKET must be a bucket name"),
        ("LEDGER_TIMEOUT_SECONDS=3600", "LEDGER_TIMEOUT_SECONDS must be between 60 and 1800"),
        ("LEDGER_VERIFY_SCHEDULE=daily", "LEDGER_VERIFY_SCHEDULE must be a cron schedule"),
        ("DEPLOYER_SA_NAME=ci", "DEPLOYER_SA_NAME must be a service account id"),
    ],
)
def test_bad_new_settings_stop_before_any_command(
    tmp_path: Path, trap_gcloud: TrapGcloud, line: str, message: str
) -> None:
    _refused_before_any_command(
        tmp_path, trap_gcloud, line, message, "infra/deploy.sh", "infra/bootstrap.sh"
    )


def test_a_retired_setting_is_ignored_with_a_warning(tmp_path: Path) -> None:
    """FUNCTION_MEMORY is now per function in infra/sizing.sh; an old settings file still loads."""
    env_file = tmp_path / "old.env"
    env_file.write_text(EXAMPLE_ENV.read_text() + "FUNCTION_MEMORY=256Mi\n")
    assert "FUNCTION_MEMORY" not in settings_of(env_file)
    trap = tmp_path / "t"
    trap.mkdir()
    result = run_script("infra/steps/apis.sh", str(env_file), "--dry-run", env=base_env(trap))
    assert result.returncode == 0, result.output
    assert "FUNCTION_MEMORY is no longer a setting (ignored)" in result.stderr
    assert "infra/sizing.sh" in result.stderr


@pytest.mark.parametrize("both", [["--dry-run", "--plan"], ["--plan", "--dry-run"]])
def test_dry_run_and_plan_exclude_each_other(
    tmp_path: Path, trap_gcloud: TrapGcloud, both: list[str]
) -> None:
    result = run_script(
        "infra/deploy.sh", str(EXAMPLE_ENV), *both, env=base_env(tmp_path, trap_gcloud.bin)
    )
    assert result.returncode == 1 and "not both" in result.stderr
    assert trap_gcloud.calls() == []
