"""The deploy plan, read from ``--dry-run``: what no emulator can check.

A dry run prints every gcloud command and runs none (a gcloud that only records being
called sits first on PATH). From the printed plan: access is exactly what each identity
needs, the worker and reconcile are never public, no primitive role appears, the
secret's value is never an argument nor printed, names follow the contract, and
set-mode touches WEBHOOK_MODE only.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from paynow.adapters import firestore_store

from tests.infra.conftest import (
    EXAMPLE_ENV,
    Result,
    TrapGcloud,
    base_env,
    is_mutation,
    make_trap,
    run_script,
    write_env,
)

PROJECT = "demo-plan-project"
SA = {
    name: f"paynow-{name}@{PROJECT}.iam.gserviceaccount.com"
    for name in ("webhook", "worker", "reconcile", "push", "scheduler")
}
AGENT = "service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
WORKER_URL = "https://dry-run.invalid/paynow-worker"
RECONCILE_URL = "https://dry-run.invalid/paynow-reconcile"

# (command group, resource, member, role): the whole access model, nothing more.
EXPECTED_GRANTS = {
    ("projects", PROJECT, f"serviceAccount:{SA['webhook']}", "roles/datastore.user"),
    ("projects", PROJECT, f"serviceAccount:{SA['worker']}", "roles/datastore.user"),
    ("projects", PROJECT, f"serviceAccount:{SA['reconcile']}", "roles/datastore.user"),
    ("pubsub topics", "paynow-events", f"serviceAccount:{SA['webhook']}", "roles/pubsub.publisher"),
    (
        "pubsub topics",
        "paynow-events",
        f"serviceAccount:{SA['reconcile']}",
        "roles/pubsub.publisher",
    ),
    (
        "pubsub topics",
        "paynow-events-dlq",
        f"serviceAccount:{SA['webhook']}",
        "roles/pubsub.publisher",
    ),
    (
        "pubsub topics",
        "paynow-events-dlq",
        f"serviceAccount:{SA['worker']}",
        "roles/pubsub.publisher",
    ),
    ("pubsub topics", "paynow-events-dlq", f"serviceAccount:{AGENT}", "roles/pubsub.publisher"),
    (
        "pubsub subscriptions",
        "paynow-events-push",
        f"serviceAccount:{AGENT}",
        "roles/pubsub.subscriber",
    ),
    (
        "secrets",
        "paynow-webhook-secret",
        f"serviceAccount:{SA['webhook']}",
        "roles/secretmanager.secretAccessor",
    ),
    (
        "iam service-accounts",
        SA["push"],
        f"serviceAccount:{AGENT}",
        "roles/iam.serviceAccountTokenCreator",
    ),
    ("run services", "paynow-webhook", "allUsers", "roles/run.invoker"),
    ("run services", "paynow-worker", f"serviceAccount:{SA['push']}", "roles/run.invoker"),
    ("run services", "paynow-reconcile", f"serviceAccount:{SA['scheduler']}", "roles/run.invoker"),
}


def flags(argv: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--switch`` arguments (the last one wins)."""
    out = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            out[name] = value
    return out


def words(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith("--")]


@pytest.fixture(scope="module")
def secret_value() -> str:
    return f"plan-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory, secret_value: str) -> tuple[Result, list[str]]:
    tmp = tmp_path_factory.mktemp("plan")
    trap = make_trap(tmp)
    env_file = write_env(tmp / "plan.env", PROJECT=PROJECT)
    result = run_script(
        "infra/deploy.sh",
        str(env_file),
        "--dry-run",
        "--secret-stdin",
        env=base_env(tmp, trap.bin),
        stdin=secret_value + "\n",
    )
    assert result.returncode == 0, result.output
    return result, trap.calls()


def test_dry_run_runs_no_gcloud_and_prints_every_step(plan: tuple[Result, list[str]]) -> None:
    result, calls = plan
    assert calls == []
    groups = [" ".join(words(c)[:2]) for c in result.commands()]
    first = {g: groups.index(g) for g in reversed(groups)}
    order = [
        "services list",
        "iam service-accounts",
        "secrets describe",
        "firestore databases",
        "functions describe",
        "pubsub topics",
        "projects describe",
        "scheduler jobs",
    ]
    assert [first[g] for g in order] == sorted(first[g] for g in order)


def test_secret_value_is_never_an_argument_nor_printed(
    plan: tuple[Result, list[str]], secret_value: str
) -> None:
    result, _ = plan
    assert secret_value not in result.output
    adds = [c for c in result.commands() if words(c)[:3] == ["secrets", "versions", "add"]]
    assert adds == [
        [
            "secrets",
            "versions",
            "add",
            "paynow-webhook-secret",
            f"--project={PROJECT}",
            "--data-file=-",
        ]
    ]


def test_functions_are_deployed_from_source_with_own_identity_and_access(
    plan: tuple[Result, list[str]],
) -> None:
    result, _ = plan
    deploys = [c for c in result.commands() if words(c)[:2] == ["functions", "deploy"]]
    final = {words(c)[2]: flags(c) for c in deploys}  # the last deploy of each function
    assert set(final) == {"paynow-webhook", "paynow-worker", "paynow-reconcile"}
    for argv in deploys:
        f = flags(argv)
        assert f["gen2"] == "" and f["runtime"] == "python311" and "trigger-http" in f
        assert f["source"] == str(Path(__file__).resolve().parents[2] / "functions")
        public = "allow-unauthenticated" in f
        assert public != ("no-allow-unauthenticated" in f)
        assert public == (words(argv)[2] == "paynow-webhook")
    webhook, worker, reconcile = (
        final["paynow-webhook"],
        final["paynow-worker"],
        final["paynow-reconcile"],
    )
    assert (webhook["entry-point"], worker["entry-point"], reconcile["entry-point"]) == (
        "paynow_webhook",
        "paynow_worker",
        "paynow_reconcile",
    )
    assert [
        webhook["service-account"],
        worker["service-account"],
        reconcile["service-account"],
    ] == [
        SA["webhook"],
        SA["worker"],
        SA["reconcile"],
    ]
    common = {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "PUBSUB_TOPIC": "paynow-events",
        "PUBSUB_DLQ_TOPIC": "paynow-events-dlq",
        "MAX_DELIVERY_ATTEMPTS": "10",
        "EVENT_TTL_DAYS": "30",
        "PAYNOW_USER_ID_KEY": "user_id",
    }

    def env(f: dict[str, str]) -> dict[str, str]:
        return dict(pair.split("=", 1) for pair in f["set-env-vars"].split(","))

    assert env(webhook) == {
        **common,
        "WEBHOOK_MODE": "sync",
        "PAYNOW_WEBHOOK_SECRET_ID": f"projects/{PROJECT}/secrets/paynow-webhook-secret",
    }
    assert env(worker) == {
        **common,
        "PUSH_AUTH": "oidc",
        "PUSH_SERVICE_ACCOUNT": SA["push"],
        "PUSH_AUDIENCE": WORKER_URL,
    }
    assert env(reconcile) == {
        **common,
        "PUSH_AUTH": "oidc",
        "SCHEDULER_SERVICE_ACCOUNT": SA["scheduler"],
        "RECONCILE_AUDIENCE": RECONCILE_URL,
    }
    assert int(worker["timeout"].rstrip("s")) < 90  # the push subscription's ack deadline


def test_access_is_exactly_the_designed_grants(plan: tuple[Result, list[str]]) -> None:
    result, _ = plan
    grants = set()
    for argv in result.commands():
        if "add-iam-policy-binding" in argv:
            w = words(argv)
            verb = w.index("add-iam-policy-binding")
            f = flags(argv)
            grants.add((" ".join(w[:verb]), w[verb + 1], f["member"], f["role"]))
    assert grants == EXPECTED_GRANTS
    roles = [flags(c).get("role", "") for c in result.commands()]
    assert not {"roles/owner", "roles/editor", "roles/viewer"} & set(roles)
    assert not any("remove-iam-policy-binding" in c for c in result.commands())


def test_pubsub_matches_the_contract(plan: tuple[Result, list[str]]) -> None:
    result, _ = plan
    creates = {
        words(c)[1:4][-1]: flags(c)
        for c in result.commands()
        if words(c)[:1] == ["pubsub"] and words(c)[2] == "create"
    }
    assert set(creates) == {
        "paynow-events",
        "paynow-events-dlq",
        "paynow-events-push",
        "paynow-events-dlq-sub",
    }
    push = creates["paynow-events-push"]
    assert push == {
        "topic": "paynow-events",
        "project": PROJECT,
        "enable-message-ordering": "",
        "push-endpoint": WORKER_URL,
        "push-auth-service-account": SA["push"],
        "push-auth-token-audience": WORKER_URL,
        "ack-deadline": "90",
        "min-retry-delay": "10s",
        "max-retry-delay": "600s",
        "dead-letter-topic": "paynow-events-dlq",
        "max-delivery-attempts": "15",
        "expiration-period": "never",
    }
    dlq = creates["paynow-events-dlq-sub"]
    assert dlq["topic"] == "paynow-events-dlq" and "push-endpoint" not in dlq
    assert dlq["expiration-period"] == "never"


def test_firestore_ttl_and_index(plan: tuple[Result, list[str]]) -> None:
    result, _ = plan
    ttl = {
        (words(c)[4], flags(c)["collection-group"])
        for c in result.commands()
        if words(c)[:4] == ["firestore", "fields", "ttls", "update"]
    }
    assert ttl == {("expireAt", "webhookEvents"), ("expireAt", "rejectedPayloads")}
    index, *others = [
        c
        for c in result.commands()
        if words(c)[:4] == ["firestore", "indexes", "composite", "create"]
    ]
    assert flags(index)["collection-group"] == "webhookEvents"
    assert [a for a in index if a.startswith("--field-config=")] == [
        "--field-config=field-path=status,order=ascending",
        "--field-config=field-path=receivedAt,order=ascending",
    ]
    # every composite index a query of the store or the tooling needs, and only those
    planned = [
        tuple(
            (parts["field-path"], parts["order"].upper())
            for a in c
            if a.startswith("--field-config=")
            for parts in [dict(kv.split("=", 1) for kv in a.split("=", 1)[1].split(","))]
        )
        for c in (index, *others)
    ]
    assert planned == list(firestore_store.COMPOSITE_INDEXES)
    assert all(flags(c)["collection-group"] == "webhookEvents" for c in others)
    (database,) = [
        c for c in result.commands() if words(c)[:3] == ["firestore", "databases", "create"]
    ]
    assert flags(database)["type"] == "firestore-native"


def test_scheduler_calls_reconcile_with_an_oidc_token(plan: tuple[Result, list[str]]) -> None:
    result, _ = plan
    (job,) = [
        c for c in result.commands() if words(c)[:4] == ["scheduler", "jobs", "create", "http"]
    ]
    f = flags(job)
    assert words(job)[4] == "paynow-reconcile"
    assert f["schedule"] == "*/5 * * * *" and f["http-method"] == "POST"
    assert f["uri"] == f["oidc-token-audience"] == RECONCILE_URL
    assert f["oidc-service-account-email"] == SA["scheduler"]


def test_every_command_names_the_project(plan: tuple[Result, list[str]]) -> None:
    result, _ = plan
    for argv in result.commands():
        project = flags(argv).get("project") or (argv[2] if argv[:1] == ["projects"] else None)
        assert project == PROJECT, argv


def test_a_first_deploy_takes_the_mode_from_the_settings_file(
    tmp_path: Path, trap_gcloud: TrapGcloud
) -> None:
    env_file = write_env(tmp_path / "queue.env", PROJECT=PROJECT, WEBHOOK_MODE="queue")
    result = run_script(
        "infra/steps/functions.sh",
        str(env_file),
        "--dry-run",
        env=base_env(tmp_path, trap_gcloud.bin),
    )
    assert result.returncode == 0, result.output
    (webhook,) = [
        flags(c)
        for c in result.commands()
        if words(c)[:3] == ["functions", "deploy", "paynow-webhook"]
    ]
    assert "WEBHOOK_MODE=queue" in webhook["set-env-vars"].split(",")
    assert "mode stays" not in result.stderr
    assert trap_gcloud.calls() == []


def test_set_mode_changes_only_webhook_mode(tmp_path: Path, trap_gcloud: TrapGcloud) -> None:
    env_file = write_env(tmp_path / "mode.env", PROJECT=PROJECT)
    result = run_script(
        "infra/set-mode.sh",
        str(env_file),
        "queue",
        "--dry-run",
        env=base_env(tmp_path, trap_gcloud.bin),
    )
    assert result.returncode == 0, result.output
    assert trap_gcloud.calls() == []
    changes = [c for c in result.commands() if is_mutation(c)]
    assert changes == [
        [
            "run",
            "services",
            "update",
            "paynow-webhook",
            "--region=europe-west1",
            f"--project={PROJECT}",
            "--update-env-vars=WEBHOOK_MODE=queue",
            "--quiet",
        ]
    ]


@pytest.mark.parametrize("args", [["fast"], [], ["sync", "queue"]])
def test_set_mode_refuses_anything_but_one_mode(
    tmp_path: Path, trap_gcloud: TrapGcloud, args: list[str]
) -> None:
    result = run_script(
        "infra/set-mode.sh", str(EXAMPLE_ENV), *args, env=base_env(tmp_path, trap_gcloud.bin)
    )
    assert result.returncode == 1
    assert "sync" in result.stderr and "queue" in result.stderr
    assert trap_gcloud.calls() == []


def test_smoke_test_plan_only_reads(tmp_path: Path, trap_gcloud: TrapGcloud) -> None:
    env_file = write_env(tmp_path / "smoke.env", PROJECT=PROJECT)
    result = run_script(
        "scripts/smoke_test.sh", str(env_file), "--dry-run", env=base_env(tmp_path, trap_gcloud.bin)
    )
    assert result.returncode == 0, result.output
    assert trap_gcloud.calls() == []
    commands = result.commands()
    assert commands and not [c for c in commands if is_mutation(c)]
    assert words(commands[-2])[:4] == ["secrets", "versions", "access", "latest"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the secret file"),
        ("", "the secret is empty"),
        ("  \n", "the secret is empty"),
        ("first-line\nsecond-line\n", "the secret must be a single line"),
    ],
)
def test_secret_file_is_checked_before_anything_runs(
    tmp_path: Path, trap_gcloud: TrapGcloud, content: str | None, message: str
) -> None:
    secret_file = tmp_path / "secret.txt"
    if content is not None:
        secret_file.write_text(content)
    env_file = write_env(tmp_path / "secret.env", PROJECT=PROJECT)
    result = run_script(
        "infra/steps/secret.sh",
        str(env_file),
        "--dry-run",
        f"--secret-file={secret_file}",
        env=base_env(tmp_path, trap_gcloud.bin),
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert result.commands() == []


def test_secret_from_a_file_goes_through_stdin(tmp_path: Path, trap_gcloud: TrapGcloud) -> None:
    value = f"file-secret-{uuid.uuid4().hex}"
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(value + "\n")
    env_file = write_env(tmp_path / "secret.env", PROJECT=PROJECT)
    result = run_script(
        "infra/steps/secret.sh",
        str(env_file),
        "--secret-file",
        str(secret_file),
        "--dry-run",
        env=base_env(tmp_path, trap_gcloud.bin),
    )
    assert result.returncode == 0, result.output
    assert value not in result.output
    assert [words(c)[:3] for c in result.commands() if is_mutation(c)] == [
        ["secrets", "create", "paynow-webhook-secret"],
        ["secrets", "versions", "add"],
    ]
    assert trap_gcloud.calls() == []
