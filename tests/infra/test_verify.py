"""infra/steps/verify.sh, the deploy's first step: read-only, it finds what the bootstrap
has not provided and says exactly what, who provides it, and that nothing was changed.

Against the fake gcloud and its testIamPermissions server (tests/infra/conftest.py): the
deploying account's permissions are withheld one by one, the bootstrap's bindings and
resources removed one by one, and the whole deploy must stop before any write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Deployed, FakeGcloud, Result, is_mutation, run_script


def _deploy(fake: FakeGcloud, env_file: Path) -> tuple[Result, list[list[str]]]:
    mark = fake.mark()
    result = run_script("infra/deploy.sh", str(env_file), env=fake.env)
    return result, [c["argv"] for c in fake.calls()[mark:]]


def _drop(path: list[str], member: str) -> Callable[[dict[str, Any]], None]:
    """Remove one member from one binding of the fake's policies."""

    def change(state: dict[str, Any]) -> None:
        node: Any = state["policies"]
        for key in path:
            node = node[key]
        node.remove(member)

    return change


@pytest.mark.parametrize(
    ("denied", "expected"),
    [
        (
            ["run.services.setIamPolicy"],
            "roles/run.admin for {deployer} on project {project}: lacks run.services.setIamPolicy",
        ),
        (
            ["pubsub.topics.setIamPolicy", "pubsub.subscriptions.create"],
            "roles/pubsub.admin for {deployer} on project {project}: lacks "
            "pubsub.topics.setIamPolicy, pubsub.subscriptions.create",
        ),
        (
            ["datastore.entities.delete"],
            "projects/{project}/roles/paynowSmokeTest for {deployer} on project {project}: "
            "lacks datastore.entities.delete",
        ),
        (
            ["paynow-build@ iam.serviceAccounts.actAs"],
            "roles/iam.serviceAccountUser for {deployer} on service account "
            "paynow-build@{project}.iam.gserviceaccount.com: lacks iam.serviceAccounts.actAs",
        ),
        (
            ["secrets/paynow-webhook-secret secretmanager.versions.access"],
            "roles/secretmanager.secretAccessor for {deployer} on secret paynow-webhook-secret: "
            "lacks secretmanager.versions.access",
        ),
    ],
)
def test_a_missing_permission_of_the_deployer_is_named_with_its_role(
    tmp_path: Path, gcloud_config: Path, deployed: Deployed, denied: list[str], expected: str
) -> None:
    fake, env_file = deployed.fake(tmp_path, gcloud_config)
    fake.deny(*denied)
    result, calls = _deploy(fake, env_file)
    assert result.returncode == 1
    deployer = f"paynow-deployer@{deployed.project}.iam.gserviceaccount.com"
    message = expected.format(deployer=deployer, project=deployed.project)
    assert message in " ".join(result.stderr.split())
    assert "nothing was changed" in result.stderr and "infra/bootstrap.sh" in result.stderr
    assert "(1) prerequisite" in result.stderr.replace("1 prerequisite(s)", "(1) prerequisite")
    assert [c for c in calls if is_mutation(c)] == []
    assert "### functions" not in result.stderr  # stopped at the first step


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            _drop(
                ["secrets/paynow-webhook-secret", "roles/secretmanager.secretAccessor"],
                "serviceAccount:paynow-webhook@{project}.iam.gserviceaccount.com",
            ),
            "roles/secretmanager.secretAccessor for paynow-webhook@{project}.iam.gserviceaccount.com "
            "on secrets paynow-webhook-secret: not granted",
        ),
        (
            _drop(
                ["projects/{project}", "projects/{project}/roles/paynowEventWriter"],
                "serviceAccount:paynow-worker@{project}.iam.gserviceaccount.com",
            ),
            "projects/{project}/roles/paynowEventWriter for paynow-worker@{project}.iam.gserviceaccount.com "
            "on projects {project}: not granted",
        ),
        (
            _drop(
                [
                    "serviceAccounts/paynow-push@{project}.iam.gserviceaccount.com",
                    "roles/iam.serviceAccountTokenCreator",
                ],
                "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com",
            ),
            "roles/iam.serviceAccountTokenCreator for service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com "
            "on iam service-accounts paynow-push@{project}.iam.gserviceaccount.com: not granted",
        ),
        (
            _drop(
                ["buckets/{project}-paynow-dlq-archive", "roles/storage.objectCreator"],
                "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com",
            ),
            "roles/storage.objectCreator for service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com "
            "on storage buckets gs://{project}-paynow-dlq-archive: not granted",
        ),
        (
            lambda s: s["roles"].pop("paynowSmokeTest"),
            "custom role paynowSmokeTest: does not exist",
        ),
        (
            lambda s: s["roles"]["paynowEventWriter"]["includedPermissions"].append(
                "datastore.entities.delete"
            ),
            "custom role paynowEventWriter: has 'datastore.databases.get,datastore.databases.getMetadata,"
            "datastore.entities.create,datastore.entities.delete,",
        ),
        (
            lambda s: s["service_accounts"].pop(
                "paynow-ledger-verify@{project}.iam.gserviceaccount.com"
            ),
            "service account paynow-ledger-verify@{project}.iam.gserviceaccount.com: does not exist",
        ),
        (
            lambda s: s["secrets"]["paynow-webhook-secret"].update(versions=[]),
            "a version of secret paynow-webhook-secret: none enabled",
        ),
        (
            lambda s: s.update(apis=[a for a in s["apis"] if a != "cloudscheduler.googleapis.com"]),
            "API cloudscheduler.googleapis.com: not enabled",
        ),
    ],
)
def test_a_missing_part_of_the_bootstrap_is_named(
    tmp_path: Path,
    gcloud_config: Path,
    deployed: Deployed,
    change: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    fake, env_file = deployed.fake(tmp_path, gcloud_config)
    project = deployed.project
    text = fake.state_file.read_text()
    state = json.loads(text)
    # the parameters name the project as {project}: fill it in, in the state's keys too
    formatted = json.loads(text.replace(project, "{project}"))
    change(formatted)
    state = json.loads(json.dumps(formatted).replace("{project}", project))
    fake.state_file.write_text(json.dumps(state))
    result, calls = _deploy(fake, env_file)
    assert result.returncode == 1, result.output
    assert expected.format(project=project) in " ".join(result.stderr.split())
    assert "nothing was changed" in result.stderr
    assert [c for c in calls if is_mutation(c)] == []


def test_the_deploy_needs_no_project_iam_admin(
    tmp_path: Path, gcloud_config: Path, deployed: Deployed
) -> None:
    """Without resourcemanager.projects.setIamPolicy (projectIamAdmin), nor secret admin,
    nor serviceUsage admin, a deploy that has something to do does it."""
    fake, env_file = deployed.fake(tmp_path, gcloud_config)
    fake.deny(
        "resourcemanager.projects.setIamPolicy",
        "iam.serviceAccounts.setIamPolicy",
        "secretmanager.secrets.setIamPolicy",
        "secretmanager.versions.add",
        "serviceusage.services.enable",
    )
    fake.env["FAKE_GCLOUD_ERRORS"] = json.dumps(
        {
            words: "PERMISSION_DENIED: the deployer holds no admin role for this"
            for words in (
                "projects add-iam-policy-binding",
                "iam service-accounts add-iam-policy-binding",
                "secrets add-iam-policy-binding",
                "secrets versions add",
                "services enable",
                "storage buckets add-iam-policy-binding",
                "iam roles create",
                "iam roles update",
            )
        }
    )
    state = fake.state()
    state["jobs"]["paynow-reconcile"]["schedule"] = "0 * * * *"  # something to repair
    fake.state_file.write_text(json.dumps(state))
    result, calls = _deploy(fake, env_file)
    assert result.returncode == 0, result.output
    assert [c[:5] for c in calls if is_mutation(c)] == [
        ["scheduler", "jobs", "update", "http", "paynow-reconcile"]
    ]
