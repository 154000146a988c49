"""The whole deploy, for real, against the recording fake gcloud (tests/infra/fake_gcloud.py).

One story, run once for the module: the owner's bootstrap of an empty project, a first
deploy, the bootstrap and the deploy again (which must change nothing), the rollback
switch twice, a deploy after the switch (which keeps the live mode), then drift repaired
by a last deploy. Each test reads one chapter of it: the resources and policies left in the
fake's state, and the commands the scripts ran. The last tests give every command the
scripts ran, and every command of the dry-run plans, to the real gcloud CLI: it must
accept them all, and lib.sh must read its "not found" answers as "absent" and nothing
else as such.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.conftest import (
    DEPLOYER_PREDEFINED_ROLES,
    FakeGcloud,
    FakeRun,
    base_env,
    gcloud_against_failing_api,
    lib_check,
    make_fake,
    make_trap,
    project_id,
    run_script,
    write_env,
)


@dataclass
class Story:
    project: str
    secret: str
    env_file: Path
    fake: FakeGcloud
    chapters: dict[str, FakeRun] = field(default_factory=dict)


def _chapter(story: Story, script: str, *args: str, stdin: str | None = None) -> FakeRun:
    return story.fake.run(script, story.env_file, *args, stdin=stdin)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, gcloud_config: Path) -> Iterator[Story]:
    tmp = tmp_path_factory.mktemp("deploy-story")
    project = project_id()
    s = Story(
        project=project,
        secret=f"story-secret-{uuid.uuid4().hex}",
        env_file=write_env(tmp / "story.env", PROJECT=project),
        fake=make_fake(tmp, gcloud_config, project),
    )
    # Keep the files the steps generate: the last tests hand their commands to the real gcloud.
    s.fake.env["INFRA_RENDER_DIR"] = str(tmp / "rendered")
    s.chapters["boot"] = _chapter(s, "infra/bootstrap.sh", "--secret-stdin", stdin=s.secret + "\n")
    s.chapters["first"] = _chapter(s, "infra/deploy.sh")
    s.chapters["boot_again"] = _chapter(
        s, "infra/bootstrap.sh", "--secret-stdin", stdin=s.secret + "\n"
    )
    s.chapters["second"] = _chapter(s, "infra/deploy.sh")
    s.chapters["to_queue"] = _chapter(s, "infra/set-mode.sh", "queue")
    s.chapters["queue_again"] = _chapter(s, "infra/set-mode.sh", "queue")
    s.chapters["after_switch"] = _chapter(s, "infra/deploy.sh")  # the file still says sync
    _drift(s)
    s.chapters["repair"] = _chapter(s, "infra/deploy.sh")
    s.chapters["functions_again"] = _chapter(s, "infra/steps/functions.sh")
    yield s


def _drift(story: Story) -> None:
    """What a hurried operator might leave behind."""
    state = story.fake.state()
    state["policies"]["services/paynow-worker"]["roles/run.invoker"] = ["allUsers"]
    state["jobs"]["paynow-reconcile"]["schedule"] = "0 * * * *"
    state["functions"]["paynow-webhook"]["state"] = "FAILED"
    story.fake.state_file.write_text(json.dumps(state))


def sa(story: Story, name: str) -> str:
    return f"paynow-{name}@{story.project}.iam.gserviceaccount.com"


def test_first_deploy_builds_everything(story: Story) -> None:
    boot, first = story.chapters["boot"], story.chapters["first"]
    assert boot.result.returncode == 0, boot.result.output
    assert first.result.returncode == 0, first.result.output
    state = first.state
    assert set(state["service_accounts"]) == {
        sa(story, n)
        for n in (
            "webhook",
            "worker",
            "reconcile",
            "push",
            "scheduler",
            "ledger-verify",
            "deployer",
            "build",
        )
    }
    assert state["buckets"][f"{story.project}-paynow-dlq-archive"]["lifecycle_config"] == {
        "rule": [{"action": {"type": "Delete"}, "condition": {"age": 365}}]
    }
    assert {"cloudfunctions.googleapis.com", "pubsub.googleapis.com", "run.googleapis.com"} <= set(
        state["apis"]
    )
    assert state["firestore"]["type"] == "FIRESTORE_NATIVE"
    assert sorted(map(tuple, state["ttls"])) == [
        ("rejectedPayloads", "expireAt"),
        ("webhookEvents", "expireAt"),
    ]
    assert [f["fieldPath"] for f in state["indexes"][0]["fields"]] == [
        "status",
        "receivedAt",
        "__name__",
    ]
    fns = state["functions"]
    worker_url = fns["paynow-worker"]["serviceConfig"]["uri"]
    reconcile_url = fns["paynow-reconcile"]["serviceConfig"]["uri"]
    assert (
        fns["paynow-worker"]["serviceConfig"]["environmentVariables"]["PUSH_AUDIENCE"] == worker_url
    )
    assert (
        fns["paynow-reconcile"]["serviceConfig"]["environmentVariables"]["RECONCILE_AUDIENCE"]
        == reconcile_url
    )
    deploys = [c[2] for c in first.mutations() if c[:2] == ["functions", "deploy"]]
    # the worker and reconcile need their own URL: deployed twice, the first time only
    assert deploys == ["paynow-worker"] * 2 + ["paynow-reconcile"] * 2 + [
        "paynow-ledger-verify",
        "paynow-webhook",
    ]
    ingress = {n: f["serviceConfig"]["ingressSettings"] for n, f in fns.items()}
    assert ingress == {
        "paynow-webhook": "ALLOW_ALL",
        "paynow-worker": "ALLOW_INTERNAL_ONLY",
        "paynow-reconcile": "ALLOW_INTERNAL_ONLY",
        "paynow-ledger-verify": "ALLOW_INTERNAL_ONLY",
    }
    assert set(state["jobs"]) == {"paynow-reconcile", "paynow-ledger-verify"}
    archive = state["pubsub"]["subscriptions"]["paynow-events-dlq-archive"]
    assert archive["cloudStorageConfig"]["bucket"] == f"{story.project}-paynow-dlq-archive"
    assert archive["cloudStorageConfig"]["avroConfig"] == {"writeMetadata": True}
    assert state["pubsub"]["topics"]["paynow-events-dlq"]["messageRetentionDuration"] == "2678400s"
    # The deployer never touched a project, account, secret or bucket policy.
    assert not [
        m
        for m in first.mutations()
        if m[0] in ("projects", "iam", "secrets", "storage", "services")
    ]
    job = state["jobs"]["paynow-reconcile"]
    assert job["httpTarget"]["uri"] == job["httpTarget"]["oidcToken"]["audience"] == reconcile_url
    push = state["pubsub"]["subscriptions"]["paynow-events-push"]
    assert push["pushConfig"] == {
        "pushEndpoint": worker_url,
        "oidcToken": {"serviceAccountEmail": sa(story, "push"), "audience": worker_url},
    }
    assert push["enableMessageOrdering"] is True
    assert "PayNow webhook URL: https://paynow-webhook-" in first.result.stderr


def test_access_in_the_project_is_least_privilege(story: Story) -> None:
    policies = story.chapters["first"].state["policies"]
    project = story.project
    agent = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    deployer = f"serviceAccount:{sa(story, 'deployer')}"
    everyone = [
        (resource, role, member)
        for resource, bindings in policies.items()
        for role, members in bindings.items()
        for member in members
    ]
    assert not [b for b in everyone if b[1] in ("roles/owner", "roles/editor", "roles/viewer")]
    public = [(r, role) for r, role, m in everyone if m in ("allUsers", "allAuthenticatedUsers")]
    assert public == [("services/paynow-webhook", "roles/run.invoker")]
    assert policies["services/paynow-worker"] == {
        "roles/run.invoker": [f"serviceAccount:{sa(story, 'push')}"]
    }
    for service in ("paynow-reconcile", "paynow-ledger-verify"):
        assert policies[f"services/{service}"] == {
            "roles/run.invoker": [f"serviceAccount:{sa(story, 'scheduler')}"]
        }
    assert policies["topics/paynow-events"] == {
        "roles/pubsub.publisher": sorted(
            f"serviceAccount:{sa(story, n)}" for n in ("webhook", "reconcile")
        )
    }
    assert policies["topics/paynow-events-dlq"] == {
        "roles/pubsub.publisher": sorted(
            [f"serviceAccount:{sa(story, n)}" for n in ("webhook", "worker")] + [agent]
        )
    }
    assert policies["subscriptions/paynow-events-push"] == {"roles/pubsub.subscriber": [agent]}
    assert policies[f"serviceAccounts/{sa(story, 'push')}"] == {
        "roles/iam.serviceAccountTokenCreator": [agent],
        "roles/iam.serviceAccountUser": [deployer],
    }
    for name in ("webhook", "worker", "reconcile", "ledger-verify", "scheduler", "build"):
        assert policies[f"serviceAccounts/{sa(story, name)}"] == {
            "roles/iam.serviceAccountUser": [deployer]
        }
    assert policies["secrets/paynow-webhook-secret"] == {
        "roles/secretmanager.secretAccessor": sorted(
            [f"serviceAccount:{sa(story, 'webhook')}", deployer]
        ),
        "roles/secretmanager.viewer": [deployer],
    }
    assert policies["secrets/paynow-deploy-env"] == {
        "roles/secretmanager.secretAccessor": [deployer]
    }
    assert policies[f"buckets/{project}-paynow-dlq-archive"] == {
        "roles/storage.legacyBucketReader": [agent],
        "roles/storage.objectCreator": [agent],
    }
    build = f"serviceAccount:{sa(story, 'build')}"
    writer = f"projects/{project}/roles/paynowEventWriter"
    smoke = f"projects/{project}/roles/paynowSmokeTest"
    assert policies[f"projects/{project}"] == {
        writer: sorted(f"serviceAccount:{sa(story, n)}" for n in ("webhook", "worker")),
        "roles/datastore.viewer": sorted(
            f"serviceAccount:{sa(story, n)}" for n in ("reconcile", "ledger-verify")
        ),
        **{
            role: [deployer]
            for role in (
                *DEPLOYER_PREDEFINED_ROLES,
                smoke,
                "roles/storage.objectViewer|cloudbuild-source",
            )
        },
        "roles/logging.logWriter": sorted([deployer, build]),
        "roles/artifactregistry.writer": [build],
        "roles/storage.objectViewer|gcf-sources": [build],
    }
    roles = story.chapters["first"].state["roles"]
    assert "datastore.entities.delete" not in roles["paynowEventWriter"]["includedPermissions"]


def test_secret_goes_through_stdin_only(story: Story) -> None:
    boot = story.chapters["boot"]
    assert boot.state["secrets"]["paynow-webhook-secret"]["versions"] == [story.secret]
    settings = story.env_file.read_text()
    assert boot.state["secrets"]["paynow-deploy-env"]["versions"] == [settings]
    adds = [c for c in boot.calls if c["argv"][:3] == ["secrets", "versions", "add"]]
    assert [c["stdin_sha256"] for c in adds] == [
        hashlib.sha256(story.secret.encode()).hexdigest(),
        hashlib.sha256(settings.encode()).hexdigest(),
    ]
    for chapter in story.chapters.values():
        assert story.secret not in chapter.result.output
        assert not [c for c in chapter.calls if story.secret in " ".join(c["argv"])]


def test_second_deploy_changes_nothing(story: Story) -> None:
    again, second = story.chapters["boot_again"], story.chapters["second"]
    for chapter in (again, second):
        assert chapter.result.returncode == 0, chapter.result.output
        assert chapter.mutations() == []
    assert second.state == story.chapters["first"].state
    assert second.state["secrets"]["paynow-webhook-secret"]["versions"] == [story.secret]
    assert "the latest version already holds this value" in again.result.stderr
    assert re.search(
        r"Plan: 0 to create, 0 to update, 0 to remove, \d+ unchanged", second.result.stderr
    )


def test_set_mode_switches_only_webhook_mode_and_waits_for_it(story: Story) -> None:
    before = story.chapters["second"].state["run"]
    switch = story.chapters["to_queue"]
    assert switch.result.returncode == 0, switch.result.output
    assert switch.mutations() == [
        [
            "run",
            "services",
            "update",
            "paynow-webhook",
            "--region=europe-west1",
            f"--project={story.project}",
            "--update-env-vars=WEBHOOK_MODE=queue",
            "--quiet",
        ]
    ]
    after = switch.state["run"]
    assert after["paynow-webhook"]["env"] == {
        **before["paynow-webhook"]["env"],
        "WEBHOOK_MODE": "queue",
    }
    assert after["paynow-webhook"]["revision"] != before["paynow-webhook"]["revision"]
    assert {k: v for k, v in after.items() if k != "paynow-webhook"} == {
        k: v for k, v in before.items() if k != "paynow-webhook"
    }
    assert f"serves revision {after['paynow-webhook']['revision']} with WEBHOOK_MODE=queue" in (
        switch.result.stderr
    )
    assert "says WEBHOOK_MODE=sync: deploys keep the live mode (queue)" in switch.result.stderr
    again = story.chapters["queue_again"]
    assert again.result.returncode == 0 and again.mutations() == []
    assert "already in queue mode" in again.result.stderr


def test_a_later_deploy_repairs_drift_and_only_that(story: Story) -> None:
    repair = story.chapters["repair"]
    assert repair.result.returncode == 0, repair.result.output
    assert repair.mutations() == [
        repair.mutations()[0],  # the failed webhook, deployed again (checked below)
        [
            "run",
            "services",
            "add-iam-policy-binding",
            "paynow-worker",
            "--region=europe-west1",
            f"--project={story.project}",
            f"--member=serviceAccount:{sa(story, 'push')}",
            "--role=roles/run.invoker",
            "--format=none",
        ],
        [
            "run",
            "services",
            "remove-iam-policy-binding",
            "paynow-worker",
            "--region=europe-west1",
            f"--project={story.project}",
            "--member=allUsers",
            "--role=roles/run.invoker",
            "--format=none",
        ],
        repair.mutations()[3],
    ]
    assert repair.mutations()[0][:3] == ["functions", "deploy", "paynow-webhook"]
    assert repair.mutations()[3][:5] == ["scheduler", "jobs", "update", "http", "paynow-reconcile"]
    state = repair.state
    assert state["policies"]["services/paynow-worker"] == {
        "roles/run.invoker": [f"serviceAccount:{sa(story, 'push')}"]
    }
    assert state["jobs"]["paynow-reconcile"]["schedule"] == "*/5 * * * *"
    assert state["functions"]["paynow-webhook"]["state"] == "ACTIVE"
    # the webhook deployed again keeps the live mode, not the settings file's (sync)
    webhook_env = next(a for a in repair.mutations()[0] if a.startswith("--set-env-vars="))
    assert "WEBHOOK_MODE=queue" in webhook_env.split("=", 1)[1].split(",")
    assert state["run"]["paynow-webhook"]["env"]["WEBHOOK_MODE"] == "queue"
    assert "mode stays queue; use infra/set-mode.sh to change it" in repair.result.stderr


def test_a_deploy_after_a_switch_keeps_the_live_mode_and_changes_nothing(story: Story) -> None:
    after = story.chapters["after_switch"]
    assert after.result.returncode == 0, after.result.output
    assert after.mutations() == []  # the switch alone does not make the webhook out of date
    assert after.state == story.chapters["queue_again"].state
    assert after.state["run"]["paynow-webhook"]["env"]["WEBHOOK_MODE"] == "queue"
    assert (
        "says WEBHOOK_MODE=sync, the live webhook runs queue: mode stays queue; "
        "use infra/set-mode.sh to change it"
    ) in " ".join(after.result.stderr.split())
    assert "The webhook runs WEBHOOK_MODE=queue." in after.result.stderr


def test_the_functions_step_describes_each_function_once(story: Story) -> None:
    """The webhook's live mode comes from the describe that decides whether to deploy it."""
    again = story.chapters["functions_again"]
    assert again.result.returncode == 0, again.result.output
    assert again.mutations() == []
    described = [c["argv"][2] for c in again.calls if c["argv"][:2] == ["functions", "describe"]]
    assert described == [
        "paynow-worker",
        "paynow-reconcile",
        "paynow-ledger-verify",
        "paynow-webhook",
    ]
    assert "mode stays queue; use infra/set-mode.sh to change it" in again.result.stderr


# --- the real gcloud accepts every command ---------------------------------------------


def dry_run_commands(directory: Path, config: Path) -> list[list[str]]:
    env_file = write_env(
        directory / "plan.env",
        PROJECT="demo-accept-project",
        BUILD_SERVICE_ACCOUNT="paynow-build@demo-accept-project.iam.gserviceaccount.com",
    )
    trap = make_trap(directory)
    env = {**base_env(config, trap.bin), "INFRA_RENDER_DIR": str(directory / "rendered")}
    plans = [
        run_script(
            "infra/bootstrap.sh", str(env_file), "--dry-run", "--secret-stdin", env=env, stdin="x"
        ),
        run_script("infra/deploy.sh", str(env_file), "--dry-run", env=env),
        run_script("infra/set-mode.sh", str(env_file), "queue", "--dry-run", env=env),
        run_script("scripts/ops/smoke_test.sh", str(env_file), "--dry-run", env=env),
    ]
    for plan in plans:
        assert plan.returncode == 0, plan.output
    assert trap.calls() == []
    return [c for plan in plans for c in plan.commands()]


@pytest.fixture(scope="module")
def every_command(
    story: Story, tmp_path_factory: pytest.TempPathFactory, gcloud_config: Path
) -> list[list[str]]:
    """Every distinct command the story ran, and every command of the dry-run plans."""
    commands: list[list[str]] = []
    ran = [c["argv"] for chapter in story.chapters.values() for c in chapter.calls]
    for argv in ran + dry_run_commands(tmp_path_factory.mktemp("plans"), gcloud_config):
        # who is logged in, and their token: local to gcloud, no API behind them
        if argv not in commands and argv[:1] not in (["auth"], ["config"]):
            commands.append(argv)
    for needed in (  # the paths only a repair takes are in too
        ["scheduler", "jobs", "update", "http"],
        ["run", "services", "remove-iam-policy-binding"],
        ["run", "services", "update"],
        ["secrets", "versions", "list"],
    ):
        assert [c for c in commands if c[: len(needed)] == needed], needed
    return commands


def is_read(argv: list[str]) -> bool:
    """The commands the scripts run through lib.sh's ``query``."""
    return bool({"describe", "list", "get-iam-policy"} & set(argv[:4]))


def test_gcloud_accepts_every_command(every_command: list[list[str]], gcloud_config: Path) -> None:
    """gcloud checks arguments before calling an API: accepted means the API was reached."""
    outcomes = gcloud_against_failing_api(every_command, gcloud_config, 403)
    refused = [
        f"gcloud {shlex.join(o['argv'])} -> exit {o['exit']}, API requests {o['reached']}: "
        f"{o['stderr'].strip()[-300:]}"
        for o in outcomes
        if o["exit"] != 1 or o["reached"] < 1
    ]
    assert not refused, "gcloud did not accept:\n" + "\n".join(refused)
    denied = [
        o["argv"] for o in outcomes if is_read(o["argv"]) and lib_check("absent", o["stderr"])
    ]
    assert denied == []  # a permission error is never taken for "not there yet"


def test_every_read_tells_a_missing_resource_apart(
    every_command: list[list[str]], gcloud_config: Path
) -> None:
    """Each service words "not found" its own way; lib.sh must recognise every one of them,
    except a missing project, which must stop the script rather than look like a blank one."""
    reads = [argv for argv in every_command if is_read(argv)]
    assert len(reads) > 15
    outcomes = gcloud_against_failing_api(reads, gcloud_config, 404)
    assert all(o["exit"] == 1 for o in outcomes), outcomes
    # A 404 on the project itself, or on a list whose only parent is the project (the
    # monitoring step's metric, policy and dashboard lists), is a missing project.
    project_lists = (
        ["logging", "metrics", "list"],
        ["alpha", "monitoring", "policies", "list"],
        ["monitoring", "dashboards", "list"],
    )
    project_reads = [
        o
        for o in outcomes
        if o["argv"][0] in ("projects", "services")
        or any(o["argv"][: len(words)] == words for words in project_lists)
    ]
    assert len(project_reads) >= 3
    assert not [o["argv"] for o in project_reads if lib_check("absent", o["stderr"])]
    missed = [
        f"gcloud {shlex.join(o['argv'])}: {o['stderr'].strip()[-300:]}"
        for o in outcomes
        if o not in project_reads and not lib_check("absent", o["stderr"])
    ]
    assert not missed, "a 404 not recognised as absent:\n" + "\n".join(missed)
