"""``--plan``: every read against the live project (here the fake gcloud), no write; each
resource listed as create, update (with the fields that differ) or unchanged.

The fake logs every call: a plan's calls must all be reads, whatever the project holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.infra.conftest import (
    Deployed,
    FakeGcloud,
    Result,
    is_mutation,
    make_fake,
    project_id,
    run_script,
    write_env,
)


def plan_lines(result: Result) -> dict[str, tuple[str, str]]:
    """``what -> (action, detail)`` from the plan's lines ("  ~ update    WHAT: DETAIL")."""
    out = {}
    for line in result.stderr.splitlines():
        match = re.match(r"^  [+~=!-] (create|update|unchanged|remove|missing) +(.+)$", line)
        if match:
            what, _, detail = match.group(2).partition(": ")
            out[what] = (match.group(1), detail)
    return out


def only_reads(fake: FakeGcloud, since: int) -> None:
    calls = [c["argv"] for c in fake.calls()[since:]]
    assert calls, "the plan read nothing"
    assert [c for c in calls if is_mutation(c)] == []


def test_a_plan_of_an_empty_project_reads_and_lists_every_create(
    tmp_path: Path, gcloud_config: Path
) -> None:
    project = project_id()
    fake = make_fake(tmp_path, gcloud_config, project)
    env_file = write_env(tmp_path / "empty.env", PROJECT=project)
    boot = run_script("infra/bootstrap.sh", str(env_file), "--plan", env=fake.env)
    assert boot.returncode == 0, boot.output
    only_reads(fake, 0)
    lines = plan_lines(boot)
    assert (
        lines[f"service account paynow-deployer@{project}.iam.gserviceaccount.com"][0] == "create"
    )
    assert lines["custom role paynowEventWriter"][0] == "create"
    assert lines["the signing secret's first version"][0] == "create"  # a real run would stop
    assert {action for action, _ in lines.values()} == {"create", "update"}
    assert not fake.state_file.exists() or json.loads(fake.state_file.read_text())["apis"] == []

    mark = fake.mark()
    deploy = run_script("infra/deploy.sh", str(env_file), "--plan", env=fake.env)
    assert deploy.returncode == 1, deploy.output  # the bootstrap's part is missing
    only_reads(fake, mark)
    lines = plan_lines(deploy)
    assert lines["function paynow-worker"][0] == "create"
    assert lines["subscription paynow-events-dlq-archive"][0] == "create"
    assert lines["API pubsub.googleapis.com"][0] == "missing"
    assert lines[f"service account paynow-push@{project}.iam.gserviceaccount.com"] == (
        "missing",
        f"does not exist; infra/bootstrap.sh {env_file} (a project owner, once) creates it",
    )
    assert "a real deploy stops here (the plan goes on)" in deploy.stderr
    assert "Plan done: nothing was changed." in deploy.stderr


def test_a_plan_of_a_deployed_project_changes_nothing_and_says_so(
    tmp_path: Path, gcloud_config: Path, deployed: Deployed
) -> None:
    fake, env_file = deployed.fake(tmp_path, gcloud_config)
    for script in ("infra/bootstrap.sh", "infra/deploy.sh"):
        mark = fake.mark()
        result = run_script(script, str(env_file), "--plan", env=fake.env)
        assert result.returncode == 0, result.output
        only_reads(fake, mark)
        actions = {action for action, _ in plan_lines(result).values()}
        assert actions == {"unchanged"}, plan_lines(result)
        assert re.search(
            r"Plan: 0 to create, 0 to update, 0 to remove, \d+ unchanged", result.stderr
        )
    assert fake.state() == json.loads(deployed.state)


def test_a_plan_names_the_fields_that_drifted(
    tmp_path: Path, gcloud_config: Path, deployed: Deployed
) -> None:
    fake, env_file = deployed.fake(tmp_path, gcloud_config)
    state = fake.state()
    worker = state["functions"]["paynow-worker"]["serviceConfig"]
    worker["availableMemory"] = "256Mi"
    worker["ingressSettings"] = "ALLOW_ALL"
    worker["environmentVariables"]["MAX_DELIVERY_ATTEMPTS"] = "3"
    state["functions"]["paynow-worker"]["labels"]["deploy-hash"] = "edited-by-hand"
    state["jobs"]["paynow-reconcile"]["schedule"] = "0 * * * *"
    state["pubsub"]["subscriptions"]["paynow-events-push"]["ackDeadlineSeconds"] = 20
    state["pubsub"]["topics"]["paynow-events-dlq"]["messageRetentionDuration"] = "604800s"
    state["policies"]["services/paynow-reconcile"]["roles/run.invoker"].append("allUsers")
    state["roles"]["paynowEventWriter"]["includedPermissions"].append("datastore.entities.delete")
    fake.state_file.write_text(json.dumps(state))
    drifted = fake.state_file.read_text()

    mark = fake.mark()
    deploy = run_script("infra/deploy.sh", str(env_file), "--plan", env=fake.env)
    assert deploy.returncode == 1, deploy.output  # the widened custom role is the bootstrap's
    only_reads(fake, mark)
    lines = plan_lines(deploy)
    action, detail = lines["function paynow-worker"]
    assert action == "update"
    assert "memory '256Mi' -> '512Mi'" in detail
    assert "ingress 'ALLOW_ALL' -> 'ALLOW_INTERNAL_ONLY'" in detail
    assert "environment '" in detail and "MAX_DELIVERY_ATTEMPTS=3" in detail
    assert "cpu" not in detail and "timeout" not in detail  # only what differs
    assert lines["scheduler job paynow-reconcile"] == (
        "update",
        "schedule '0 * * * *' -> '*/5 * * * *'",
    )
    assert lines["subscription paynow-events-push"] == ("update", "ackDeadlineSeconds '20' -> '90'")
    assert lines["topic paynow-events-dlq"] == (
        "update",
        "messageRetentionDuration '604800s' -> '2678400s'",
    )
    assert lines["roles/run.invoker for allUsers on run services paynow-reconcile"][0] == "remove"
    assert lines["custom role paynowEventWriter"][0] == "missing"
    assert lines["function paynow-webhook"][0] == "unchanged"
    assert fake.state() == json.loads(drifted)  # nothing changed

    mark = fake.mark()
    boot = run_script("infra/bootstrap.sh", str(env_file), "--plan", env=fake.env)
    assert boot.returncode == 0, boot.output
    only_reads(fake, mark)
    role = plan_lines(boot)["custom role paynowEventWriter"]
    assert role[0] == "update" and "datastore.entities.delete" in role[1]


@pytest.mark.parametrize(
    "step", ["functions", "pubsub", "iam", "scheduler", "monitoring", "verify"]
)
def test_every_deploy_step_takes_plan_alone(
    tmp_path: Path, gcloud_config: Path, deployed: Deployed, step: str
) -> None:
    fake, env_file = deployed.fake(tmp_path, gcloud_config)
    result = run_script(f"infra/steps/{step}.sh", str(env_file), "--plan", env=fake.env)
    assert result.returncode == 0, result.output
    only_reads(fake, 0)
    assert "PLAN (" in result.stderr


@pytest.mark.parametrize("script", ["infra/deploy.sh", "infra/bootstrap.sh"])
def test_help_documents_both_plans(script: str, tmp_path: Path) -> None:
    result = run_script(script, "--help", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0
    text = result.stderr
    assert "--plan" in text and "--dry-run" in text
    assert "live" in text and "nothing" in text


def test_set_mode_plans_the_switch_and_changes_nothing(
    tmp_path: Path, gcloud_config: Path, deployed: Deployed
) -> None:
    fake, env_file = deployed.fake(tmp_path, gcloud_config)
    result = run_script("infra/set-mode.sh", str(env_file), "queue", "--plan", env=fake.env)
    assert result.returncode == 0, result.output
    only_reads(fake, 0)
    assert plan_lines(result)["Cloud Run service paynow-webhook"] == (
        "update",
        "WEBHOOK_MODE 'sync' -> 'queue'",
    )
    assert fake.state() == json.loads(deployed.state)


def test_a_rotation_is_applied_then_removed_and_each_plan_says_so(
    tmp_path: Path, gcloud_config: Path, deployed: Deployed
) -> None:
    """WEBHOOK_SECRET_PREVIOUS_VERSION / _UNTIL: the previous version pinned on the webhook
    as PAYNOW_WEBHOOK_SECRET_PREVIOUS with its end, and cleared by the deploy after."""
    fake, env_file = deployed.fake(tmp_path, gcloud_config)
    plain = env_file.read_text()
    env_file.write_text(
        plain
        + "WEBHOOK_SECRET_PREVIOUS_VERSION=1\nWEBHOOK_SECRET_PREVIOUS_UNTIL=2026-12-24T12:00:00Z\n"
    )
    plan = run_script("infra/steps/functions.sh", str(env_file), "--plan", env=fake.env)
    assert plan.returncode == 0, plan.output
    action, detail = plan_lines(plan)["function paynow-webhook"]
    assert action == "update"
    assert "secrets '' -> 'PAYNOW_WEBHOOK_SECRET_PREVIOUS=paynow-webhook-secret:1'" in detail
    assert "PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL=2026-12-24T12:00:00Z" in detail
    assert plan_lines(plan)["function paynow-worker"][0] == "unchanged"

    rotate = run_script("infra/steps/functions.sh", str(env_file), env=fake.env)
    assert rotate.returncode == 0, rotate.output
    config = fake.state()["functions"]["paynow-webhook"]["serviceConfig"]
    assert config["secretEnvironmentVariables"] == [
        {
            "key": "PAYNOW_WEBHOOK_SECRET_PREVIOUS",
            "projectId": deployed.project,
            "secret": "paynow-webhook-secret",
            "version": "1",
        }
    ]
    assert config["environmentVariables"]["PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL"] == (
        "2026-12-24T12:00:00Z"
    )
    again = run_script("infra/steps/functions.sh", str(env_file), "--plan", env=fake.env)
    assert plan_lines(again)["function paynow-webhook"][0] == "unchanged"

    env_file.write_text(plain)  # the rotation is over
    mark = fake.mark()
    done = run_script("infra/steps/functions.sh", str(env_file), env=fake.env)
    assert done.returncode == 0, done.output
    (deploy,) = [c["argv"] for c in fake.calls()[mark:] if c["argv"][:2] == ["functions", "deploy"]]
    assert "--clear-secrets" in deploy
    config = fake.state()["functions"]["paynow-webhook"]["serviceConfig"]
    assert "secretEnvironmentVariables" not in config
    assert "PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL" not in config["environmentVariables"]
