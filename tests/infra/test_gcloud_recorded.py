"""Every command the offline plans print, run by the installed gcloud against recorded APIs.

The dry runs of infra/bootstrap.sh, infra/deploy.sh, infra/set-mode.sh and
scripts/ops/smoke_test.sh print every gcloud command they would run. Here the real gcloud
(528) runs each of them, in order, with ``CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>`` pointing
at a local server that records the REST requests and answers as an empty project would
(tests/infra/recording_api.py). So: every command parses (gcloud checks arguments before
any request), every one reaches its API, the reads of what does not exist yet are told
apart as lib.sh tells them, and the requests gcloud sends carry the intended fields: the
push subscription, every IAM binding, the function deploys, the DLQ, the jobs, the roles.
Without gcloud these tests fail (real_gcloud); they never skip.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import (
    GCLOUD_DRIVER,
    ROOT,
    base_env,
    lib_check,
    make_trap,
    real_gcloud,
    run_script,
    write_env,
)
from tests.infra.recording_api import RecordingApi, Request
from tests.infra.test_plan import (
    BOOTSTRAP_GRANTS,
    DEPLOY_GRANTS,
    LEDGER_URL,
    PROJECT,
    RECONCILE_URL,
    SA,
    WORKER_URL,
)

REGION = "europe-west1"
STDIN = "value-through-stdin"


@dataclass
class Recorded:
    commands: list[list[str]]
    outcomes: list[dict[str, Any]]
    requests: list[Request]

    def of(self, api: str, verb: str | None = None, path: str = "") -> list[Request]:
        return [
            r
            for r in self.requests
            if r.api == api and (verb is None or r.verb() == verb) and path in r.path
        ]


def _plans(directory: Path) -> list[list[str]]:
    """The commands of every dry run, in the order a first deploy runs them."""
    env_file = write_env(directory / "recorded.env", PROJECT=PROJECT)
    trap = make_trap(directory)
    env = {**base_env(directory, trap.bin), "INFRA_RENDER_DIR": str(directory / "rendered")}
    commands: list[list[str]] = []
    for script, args in (
        ("infra/bootstrap.sh", ["--dry-run", "--secret-stdin"]),
        ("infra/deploy.sh", ["--dry-run"]),
        ("infra/set-mode.sh", ["queue", "--dry-run"]),
        ("scripts/ops/smoke_test.sh", ["--dry-run"]),
    ):
        result = run_script(script, str(env_file), *args, env=env, stdin=STDIN)
        assert result.returncode == 0, result.output
        # who is logged in, and their token: local to gcloud, no API behind them
        commands += [c for c in result.commands() if c[:1] not in (["auth"], ["config"])]
    assert trap.calls() == []
    return commands


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, gcloud_config: Path) -> Iterator[Recorded]:
    directory = tmp_path_factory.mktemp("recorded")
    commands = _plans(directory)
    api = RecordingApi()
    env = base_env(gcloud_config)
    env.update(api.overrides(), CLOUDSDK_AUTH_ACCESS_TOKEN="recorded-token")
    sdk = Path(real_gcloud()).parent.parent
    bundled = sdk / "platform" / "bundledpythonunix" / "bin" / "python"
    python = os.environ.get("CLOUDSDK_PYTHON") or (
        str(bundled) if bundled.exists() else sys.executable
    )
    try:
        proc = subprocess.run(
            [python, str(GCLOUD_DRIVER), str(sdk), api.count_url],
            cwd=ROOT,
            env=env,
            input=json.dumps([{"argv": c, "stdin": STDIN} for c in commands]),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        api.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["argv"] for o in outcomes] == commands
    yield Recorded(commands, outcomes, api.recorder.requests)


def is_read(argv: list[str]) -> bool:
    return bool({"describe", "list", "get-iam-policy", "access"} & set(argv[:4]))


def test_every_command_parses_and_reaches_its_api(recorded: Recorded) -> None:
    assert len(recorded.commands) > 150
    refused = []
    for o in recorded.outcomes:
        ok = o["exit"] == 0 or (
            o["exit"] == 1 and is_read(o["argv"]) and lib_check("absent", o["stderr"])
        )
        if not ok or o["reached"] < 1:
            refused.append(
                f"gcloud {shlex.join(o['argv'])} -> exit {o['exit']}, requests {o['reached']}: "
                f"{o['stderr'].strip()[-400:]}"
            )
    assert not refused, "\n".join(refused)
    writes = [o for o in recorded.outcomes if not is_read(o["argv"])]
    assert writes and all(o["exit"] == 0 for o in writes)  # every write went through


def _body(request: Request) -> dict[str, Any]:
    assert isinstance(request.body, dict), request
    return request.body


def test_the_push_subscription_as_pubsub_receives_it(recorded: Recorded) -> None:
    (create,) = recorded.of("PUBSUB", "PUT", "/subscriptions/paynow-events-push")
    assert create.path == f"/v1/projects/{PROJECT}/subscriptions/paynow-events-push"
    assert _body(create) == {
        "name": f"projects/{PROJECT}/subscriptions/paynow-events-push",
        "topic": f"projects/{PROJECT}/topics/paynow-events",
        "pushConfig": {
            "pushEndpoint": WORKER_URL,
            "oidcToken": {"serviceAccountEmail": SA["push"], "audience": WORKER_URL},
        },
        "ackDeadlineSeconds": 90,
        "enableMessageOrdering": True,
        "retryPolicy": {"minimumBackoff": "10s", "maximumBackoff": "600s"},
        "deadLetterPolicy": {
            "deadLetterTopic": f"projects/{PROJECT}/topics/paynow-events-dlq",
            "maxDeliveryAttempts": 15,
        },
        "expirationPolicy": {},  # never expires
    }


def test_the_dlq_keeps_31_days_and_archives_everything(recorded: Recorded) -> None:
    month = "2678400s"  # 31 days: Pub/Sub's maximum for a topic and a subscription
    (topic,) = recorded.of("PUBSUB", "PUT", "/topics/paynow-events-dlq")
    assert _body(topic) == {
        "name": f"projects/{PROJECT}/topics/paynow-events-dlq",
        "messageRetentionDuration": month,
    }
    (pull,) = recorded.of("PUBSUB", "PUT", "/subscriptions/paynow-events-dlq-sub")
    assert _body(pull)["messageRetentionDuration"] == month
    assert "pushConfig" not in _body(pull) or _body(pull)["pushConfig"] == {}
    (archive,) = recorded.of("PUBSUB", "PUT", "/subscriptions/paynow-events-dlq-archive")
    assert _body(archive) == {
        "name": f"projects/{PROJECT}/subscriptions/paynow-events-dlq-archive",
        "topic": f"projects/{PROJECT}/topics/paynow-events-dlq",
        "cloudStorageConfig": {
            "bucket": f"{PROJECT}-paynow-dlq-archive",
            "filenamePrefix": "dlq/",
            "avroConfig": {"writeMetadata": True},  # the attributes (errorCode, ...) too
            "maxDuration": "600s",
        },
        "messageRetentionDuration": month,
        "expirationPolicy": {},
    }
    (bucket,) = recorded.of("STORAGE", "POST", "/b")
    assert _body(bucket)["name"] == f"{PROJECT}-paynow-dlq-archive"
    assert _body(bucket)["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"] is True
    assert _body(bucket)["iamConfiguration"]["publicAccessPrevention"] == "enforced"
    assert _body(bucket)["lifecycle"] == {
        "rule": [{"action": {"type": "Delete"}, "condition": {"age": 365}}]
    }
    assert _body(bucket)["location"].lower() == REGION


def _resource_of(group: str, resource: str) -> str:
    """Where gcloud sets a resource's policy (the REST resource name)."""
    return {
        "projects": f"projects/{resource}",
        "pubsub topics": f"projects/{PROJECT}/topics/{resource}",
        "pubsub subscriptions": f"projects/{PROJECT}/subscriptions/{resource}",
        "secrets": f"projects/{PROJECT}/secrets/{resource}",
        "iam service-accounts": f"projects/-/serviceAccounts/{resource}",
        "run services": f"projects/{PROJECT}/locations/{REGION}/services/{resource}",
        "storage buckets": f"b/{resource.removeprefix('gs://')}",
    }[group]


def _final_policies(recorded: Recorded) -> dict[str, list[dict[str, Any]]]:
    """Each resource's bindings as the last setIamPolicy (or storage PUT) sent them."""
    policies: dict[str, list[dict[str, Any]]] = {}
    for r in recorded.requests:
        if r.verb() == "setIamPolicy":
            name = r.path.split("/", 2)[2].rsplit(":", 1)[0]  # without /v1/ and :setIamPolicy
            policies[name.replace("projects/-/", "projects/-/")] = _body(r)["policy"].get(
                "bindings", []
            )
        elif r.api == "STORAGE" and r.method == "PUT" and r.path.endswith("/iam"):
            policies[r.path.removeprefix("/storage/v1/").removesuffix("/iam")] = _body(r)[
                "bindings"
            ]
    return policies


def test_every_iam_binding_reaches_its_resource_and_nothing_more(recorded: Recorded) -> None:
    policies = _final_policies(recorded)
    sent = {
        (resource, binding["role"], member)
        for resource, bindings in policies.items()
        for binding in bindings
        for member in binding["members"]
    }
    wanted = {
        # a dry run names the Pub/Sub agent with a placeholder for the project's number
        (_resource_of(group, resource), role, member)
        for group, resource, member, role in BOOTSTRAP_GRANTS | DEPLOY_GRANTS
    }

    # IAM service accounts are addressed as projects/-/serviceAccounts/EMAIL or with the
    # project: compare by email.
    def norm(item: tuple[str, str, str]) -> tuple[str, str, str]:
        resource, role, member = item
        if "/serviceAccounts/" in resource:
            resource = "serviceAccounts/" + resource.rsplit("/", 1)[-1]
        return resource, role, member

    assert {norm(i) for i in sent} == {norm(i) for i in wanted}
    conditioned = {
        (binding["role"], tuple(binding["members"])): binding["condition"]
        for binding in policies[f"projects/{PROJECT}"]
        if "condition" in binding
    }
    assert conditioned == {
        ("roles/storage.objectViewer", (f"serviceAccount:{SA['deployer']}",)): {
            "expression": f'resource.name == "projects/_/buckets/{PROJECT}_cloudbuild"',
            "title": "cloudbuild-source",
        },
        ("roles/storage.objectViewer", (f"serviceAccount:{SA['build']}",)): {
            "expression": 'resource.name.startsWith("projects/_/buckets/gcf-v2-")',
            "title": "gcf-sources",
        },
    }


def _last_function_write(recorded: Recorded, name: str) -> Request:
    writes = [
        r
        for r in recorded.of("CLOUDFUNCTIONS")
        if r.method in ("POST", "PATCH")
        and (r.path.endswith(f"/functions/{name}") or r.query.get("functionId") == [name])
    ]
    assert writes, name
    return writes[-1]


@pytest.mark.parametrize(
    ("name", "entry", "ingress", "cpu", "memory", "concurrency", "min_instances", "max_instances"),
    [
        ("paynow-webhook", "paynow_webhook", "ALLOW_ALL", "1", "512Mi", 16, 1, 20),
        ("paynow-worker", "paynow_worker", "ALLOW_INTERNAL_ONLY", "1", "512Mi", 8, 0, 20),
        ("paynow-reconcile", "paynow_reconcile", "ALLOW_INTERNAL_ONLY", "1", "512Mi", 1, 0, 1),
        ("paynow-ledger-verify", "ledger_verify", "ALLOW_INTERNAL_ONLY", "1", "1Gi", 1, 0, 1),
    ],
)
def test_each_function_deploy_carries_its_settings(
    recorded: Recorded,
    name: str,
    entry: str,
    ingress: str,
    cpu: str,
    memory: str,
    concurrency: int,
    min_instances: int,
    max_instances: int,
) -> None:
    request = _last_function_write(recorded, name)
    body = _body(request)
    build, service = body["buildConfig"], body["serviceConfig"]
    assert (build["runtime"], build["entryPoint"]) == ("python311", entry)
    assert build["serviceAccount"] == f"projects/{PROJECT}/serviceAccounts/{SA['build']}"
    assert build["source"]["storageSource"]["object"] == "source.zip"  # uploaded first
    runs_as = {"paynow-ledger-verify": SA["ledger"]}.get(
        name, SA.get(name.removeprefix("paynow-"), "")
    )
    assert service["serviceAccountEmail"] == runs_as
    assert service["ingressSettings"] == ingress
    assert (service["availableCpu"], service["availableMemory"]) == (cpu, memory)
    assert service["maxInstanceRequestConcurrency"] == concurrency
    assert service["minInstanceCount"] == min_instances
    assert service["maxInstanceCount"] == max_instances
    assert service["environmentVariables"]["THREADS"] == str(concurrency)
    assert "deploy-hash" in body["labels"] and "deploy-source" in body["labels"]
    if name == "paynow-worker":
        assert service["environmentVariables"]["PUSH_AUDIENCE"] == WORKER_URL
        assert service["environmentVariables"]["PUSH_SERVICE_ACCOUNT"] == SA["push"]
    uploads = [r for r in recorded.requests if r.api == "UPLOAD" and r.method == "PUT"]
    assert uploads and all(r.body and r.body.get("_bytes", 0) > 1000 for r in uploads)  # the zips


def test_the_jobs_call_the_private_functions_with_oidc_tokens(recorded: Recorded) -> None:
    jobs = {
        _body(r)["name"].rsplit("/", 1)[-1]: _body(r)
        for r in recorded.of("CLOUDSCHEDULER", "POST", "/jobs")
    }
    assert set(jobs) == {"paynow-reconcile", "paynow-ledger-verify"}
    for name, url in (("paynow-reconcile", RECONCILE_URL), ("paynow-ledger-verify", LEDGER_URL)):
        target = jobs[name]["httpTarget"]
        assert target["uri"] == url and target["httpMethod"] == "POST"
        assert target["oidcToken"] == {"serviceAccountEmail": SA["scheduler"], "audience": url}


def test_the_custom_roles_and_the_secrets_as_iam_and_secret_manager_receive_them(
    recorded: Recorded,
) -> None:
    roles = {
        r.query["roleId"][0] if "roleId" in r.query else _body(r)["roleId"]: _body(r)
        for r in recorded.of("IAM", "POST", "/roles")
    }
    writer = roles["paynowEventWriter"].get("role", roles["paynowEventWriter"])
    assert "datastore.entities.delete" not in writer["includedPermissions"]
    assert "datastore.entities.update" in writer["includedPermissions"]
    adds = recorded.of("SECRETMANAGER", "addVersion")
    assert [r.path.rsplit("/", 1)[-1] for r in adds] == [
        "paynow-webhook-secret:addVersion",
        "paynow-deploy-env:addVersion",
    ]
    for r in adds:  # the value came through stdin, never an argument
        assert base64.b64decode(_body(r)["payload"]["data"]).decode() == STDIN
    assert not [c for c in recorded.commands if any(STDIN in a for a in c)]


def test_the_rollback_switch_changes_only_webhook_mode(recorded: Recorded) -> None:
    (replace,) = recorded.of("RUN", "PUT", "/services/paynow-webhook")
    (container,) = _body(replace)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WEBHOOK_MODE"] == "queue"
    deployed = _last_function_write(recorded, "paynow-webhook")
    before = dict(_body(deployed)["serviceConfig"]["environmentVariables"], WEBHOOK_MODE="queue")
    assert env == before
