"""The whole deploy, for real, against the recording fake gcloud (tests/infra/fake_gcloud.py).

One story, run once for the module: a first deploy into an empty project, a second one
(which must change nothing), the rollback switch twice, then drift repaired by a third
deploy. Each test reads one chapter of it: the resources and policies left in the
fake's state, and the commands the scripts ran. The last test gives every command the
scripts ran, and every command of the dry-run plans, to the real gcloud CLI, which must
accept them all.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import (
    ROOT,
    FakeGcloud,
    Result,
    base_env,
    is_mutation,
    make_fake,
    make_trap,
    project_id,
    real_gcloud,
    run_script,
    write_env,
)

VERBS = {
    "access",
    "add",
    "add-iam-policy-binding",
    "create",
    "deploy",
    "describe",
    "enable",
    "get-iam-policy",
    "list",
    "remove-iam-policy-binding",
    "update",
}


@dataclass
class Chapter:
    result: Result
    calls: list[dict[str, Any]]
    state: dict[str, Any]

    def mutations(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls if is_mutation(c["argv"])]


@dataclass
class Story:
    project: str
    secret: str
    env_file: Path
    fake: FakeGcloud
    chapters: dict[str, Chapter] = field(default_factory=dict)


def _chapter(story: Story, script: str, *args: str, stdin: str | None = None) -> Chapter:
    mark = story.fake.mark()
    result = run_script(script, str(story.env_file), *args, env=story.fake.env, stdin=stdin)
    return Chapter(result, story.fake.calls()[mark:], story.fake.state())


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
    s.chapters["first"] = _chapter(s, "infra/deploy.sh", "--secret-stdin", stdin=s.secret + "\n")
    s.chapters["second"] = _chapter(s, "infra/deploy.sh", "--secret-stdin", stdin=s.secret + "\n")
    s.chapters["to_queue"] = _chapter(s, "infra/set-mode.sh", "queue")
    s.chapters["queue_again"] = _chapter(s, "infra/set-mode.sh", "queue")
    _drift(s)
    s.chapters["repair"] = _chapter(s, "infra/deploy.sh")
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
    first = story.chapters["first"]
    assert first.result.returncode == 0, first.result.output
    state = first.state
    assert set(state["service_accounts"]) == {
        sa(story, n) for n in ("webhook", "worker", "reconcile", "push", "scheduler")
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
    assert (
        deploys == ["paynow-webhook", "paynow-worker", "paynow-worker"] + ["paynow-reconcile"] * 2
    )
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
    assert policies["services/paynow-reconcile"] == {
        "roles/run.invoker": [f"serviceAccount:{sa(story, 'scheduler')}"]
    }
    assert policies["topics/paynow-events"] == {
        "roles/pubsub.publisher": sorted(
            f"serviceAccount:{sa(story, n)}" for n in ("webhook", "reconcile")
        )
    }
    agent = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    assert policies["topics/paynow-events-dlq"] == {
        "roles/pubsub.publisher": sorted(
            [f"serviceAccount:{sa(story, n)}" for n in ("webhook", "worker")] + [agent]
        )
    }
    assert policies["subscriptions/paynow-events-push"] == {"roles/pubsub.subscriber": [agent]}
    assert policies[f"serviceAccounts/{sa(story, 'push')}"] == {
        "roles/iam.serviceAccountTokenCreator": [agent]
    }
    assert policies["secrets/paynow-webhook-secret"] == {
        "roles/secretmanager.secretAccessor": [f"serviceAccount:{sa(story, 'webhook')}"]
    }
    assert policies[f"projects/{story.project}"] == {
        "roles/datastore.user": sorted(
            f"serviceAccount:{sa(story, n)}" for n in ("webhook", "worker", "reconcile")
        )
    }


def test_secret_goes_through_stdin_only(story: Story) -> None:
    first = story.chapters["first"]
    assert first.state["secrets"]["paynow-webhook-secret"]["versions"] == [story.secret]
    adds = [c for c in first.calls if c["argv"][:3] == ["secrets", "versions", "add"]]
    assert [c["stdin_sha256"] for c in adds] == [hashlib.sha256(story.secret.encode()).hexdigest()]
    for chapter in story.chapters.values():
        assert story.secret not in chapter.result.output
        assert not [c for c in chapter.calls if story.secret in " ".join(c["argv"])]


def test_second_deploy_changes_nothing(story: Story) -> None:
    second = story.chapters["second"]
    assert second.result.returncode == 0, second.result.output
    assert second.mutations() == []
    assert second.state == story.chapters["first"].state
    assert second.state["secrets"]["paynow-webhook-secret"]["versions"] == [story.secret]
    assert "the latest version already holds this value" in second.result.stderr


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
    assert "Set WEBHOOK_MODE=queue in" in switch.result.stderr  # the file still says sync
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
    # the deploy applies the settings file's mode again: the rollback switch lasts until then
    assert state["run"]["paynow-webhook"]["env"]["WEBHOOK_MODE"] == "sync"


# --- the real gcloud accepts every command ---------------------------------------------

MARK = "mock-api-reached"
APIS = (
    "CLOUDFUNCTIONS",
    "CLOUDRESOURCEMANAGER",
    "CLOUDSCHEDULER",
    "FIRESTORE",
    "IAM",
    "PUBSUB",
    "RUN",
    "SECRETMANAGER",
    "SERVICEUSAGE",
)


class _Refuse(http.server.BaseHTTPRequestHandler):
    """Every Google API, answering 403 to everything."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": MARK}}
        ).encode()
        self.send_response(403)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def shape(argv: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A command without its resource and flag values: the same shape, the same parse."""
    words = [a for a in argv if not a.startswith("--")]
    verb = next(i for i, w in enumerate(words) if w in VERBS)
    path = words[: verb + 1] + (["http"] if words[verb + 1 : verb + 2] == ["http"] else [])
    return tuple(path), tuple(sorted(a.split("=", 1)[0] for a in argv if a.startswith("--")))


def dry_run_commands(tmp_path: Path, gcloud_config: Path) -> list[list[str]]:
    env_file = write_env(tmp_path / "plan.env", PROJECT="demo-accept-project")
    trap = make_trap(tmp_path)
    env = base_env(gcloud_config, trap.bin)
    plans = [
        run_script(
            "infra/deploy.sh", str(env_file), "--dry-run", "--secret-stdin", env=env, stdin="x"
        ),
        run_script("infra/deploy.sh", str(env_file), "--dry-run", env=env),
        run_script("infra/set-mode.sh", str(env_file), "queue", "--dry-run", env=env),
        run_script("scripts/smoke_test.sh", str(env_file), "--dry-run", env=env),
    ]
    for plan in plans:
        assert plan.returncode == 0, plan.output
    assert trap.calls() == []
    return [c for plan in plans for c in plan.commands()]


def test_gcloud_accepts_every_command(story: Story, tmp_path: Path, gcloud_config: Path) -> None:
    ran = [c["argv"] for chapter in story.chapters.values() for c in chapter.calls]
    commands: dict[Any, list[str]] = {}
    for argv in ran + dry_run_commands(tmp_path, gcloud_config):
        if argv[:2] != ["auth", "print-access-token"]:
            commands.setdefault(shape(argv), argv)
    for needed in (
        ("scheduler", "jobs", "update", "http"),
        ("run", "services", "remove-iam-policy-binding"),
        ("run", "services", "update"),
        ("secrets", "versions", "list"),
    ):
        assert needed in {path for path, _ in commands}, needed

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = base_env(gcloud_config)
    env.update(
        CLOUDSDK_AUTH_ACCESS_TOKEN="not-a-real-token",
        CLOUDSDK_PROXY_TYPE="http",
        CLOUDSDK_PROXY_ADDRESS="127.0.0.1",
        CLOUDSDK_PROXY_PORT=str(server.server_address[1]),
        **{f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}": f"http://{api.lower()}.mock/" for api in APIS},
    )
    gcloud = real_gcloud()

    def attempt(argv: list[str]) -> str | None:
        proc = subprocess.run(
            [gcloud, *argv],
            cwd=ROOT,
            env=env,
            input="value-through-stdin",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode == 1 and MARK in proc.stderr:
            return None
        return f"gcloud {' '.join(argv)}\n  -> exit {proc.returncode}: {proc.stderr.strip()[-400:]}"

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            refused = [r for r in pool.map(attempt, commands.values()) if r]
    finally:
        server.shutdown()
        server.server_close()
    assert not refused, "gcloud did not accept:\n" + "\n".join(refused)
