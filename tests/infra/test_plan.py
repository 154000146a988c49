"""The deploy plan, read from ``--dry-run``: what no emulator can check.

A dry run prints every gcloud command and runs none (a gcloud that only records being
called sits first on PATH). From the printed plan: access is exactly what each identity
needs, the worker and reconcile are never public, no primitive role appears, the
secret's value is never an argument nor printed, names follow the contract, and
set-mode touches WEBHOOK_MODE only.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from paynow.adapters import firestore_store

from tests.infra.conftest import (
    DEPLOYER_PREDEFINED_ROLES,
    EXAMPLE_ENV,
    ROOT,
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
    for name in ("webhook", "worker", "reconcile", "push", "scheduler", "deployer", "build")
}
SA["ledger"] = f"paynow-ledger-verify@{PROJECT}.iam.gserviceaccount.com"
AGENT = "service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
WORKER_URL = "https://dry-run.invalid/paynow-worker"
RECONCILE_URL = "https://dry-run.invalid/paynow-reconcile"
LEDGER_URL = "https://dry-run.invalid/paynow-ledger-verify"
BUCKET = f"gs://{PROJECT}-paynow-dlq-archive"
WRITER = f"projects/{PROJECT}/roles/paynowEventWriter"
SMOKE = f"projects/{PROJECT}/roles/paynowSmokeTest"
DEPLOYER_ROLES = (
    *DEPLOYER_PREDEFINED_ROLES,
    "roles/logging.logWriter",
    SMOKE,
    "roles/storage.objectViewer",  # its build's source bucket only (a condition)
)

Grant = tuple[str, str, str, str]  # (command group, resource, member, role)


def _sa(name: str) -> str:
    return f"serviceAccount:{SA[name]}"


# What the bootstrap (a project owner, once) grants: everything above the resources the
# deploy creates. Nothing here is the deployer's to grant.
BOOTSTRAP_GRANTS: set[Grant] = {
    ("projects", PROJECT, _sa("webhook"), WRITER),
    ("projects", PROJECT, _sa("worker"), WRITER),
    ("projects", PROJECT, _sa("reconcile"), "roles/datastore.viewer"),
    ("projects", PROJECT, _sa("ledger"), "roles/datastore.viewer"),
    *{("projects", PROJECT, _sa("deployer"), role) for role in DEPLOYER_ROLES},
    ("projects", PROJECT, _sa("build"), "roles/logging.logWriter"),
    ("projects", PROJECT, _sa("build"), "roles/artifactregistry.writer"),
    ("projects", PROJECT, _sa("build"), "roles/storage.objectViewer"),
    *{
        ("iam service-accounts", SA[name], _sa("deployer"), "roles/iam.serviceAccountUser")
        for name in ("webhook", "worker", "reconcile", "ledger", "push", "scheduler", "build")
    },
    (
        "iam service-accounts",
        SA["push"],
        f"serviceAccount:{AGENT}",
        "roles/iam.serviceAccountTokenCreator",
    ),
    ("secrets", "paynow-webhook-secret", _sa("webhook"), "roles/secretmanager.secretAccessor"),
    ("secrets", "paynow-webhook-secret", _sa("deployer"), "roles/secretmanager.secretAccessor"),
    ("secrets", "paynow-webhook-secret", _sa("deployer"), "roles/secretmanager.viewer"),
    ("secrets", "paynow-deploy-env", _sa("deployer"), "roles/secretmanager.secretAccessor"),
    ("storage buckets", BUCKET, f"serviceAccount:{AGENT}", "roles/storage.objectCreator"),
    ("storage buckets", BUCKET, f"serviceAccount:{AGENT}", "roles/storage.legacyBucketReader"),
}
# What the CI deploy grants: only on the topics, subscription and services it creates.
DEPLOY_GRANTS: set[Grant] = {
    ("pubsub topics", "paynow-events", _sa("webhook"), "roles/pubsub.publisher"),
    ("pubsub topics", "paynow-events", _sa("reconcile"), "roles/pubsub.publisher"),
    ("pubsub topics", "paynow-events-dlq", _sa("webhook"), "roles/pubsub.publisher"),
    ("pubsub topics", "paynow-events-dlq", _sa("worker"), "roles/pubsub.publisher"),
    ("pubsub topics", "paynow-events-dlq", f"serviceAccount:{AGENT}", "roles/pubsub.publisher"),
    (
        "pubsub subscriptions",
        "paynow-events-push",
        f"serviceAccount:{AGENT}",
        "roles/pubsub.subscriber",
    ),
    ("run services", "paynow-webhook", "allUsers", "roles/run.invoker"),
    ("run services", "paynow-worker", _sa("push"), "roles/run.invoker"),
    ("run services", "paynow-reconcile", _sa("scheduler"), "roles/run.invoker"),
    ("run services", "paynow-ledger-verify", _sa("scheduler"), "roles/run.invoker"),
}
# The whole access model, nothing more.
EXPECTED_GRANTS = BOOTSTRAP_GRANTS | DEPLOY_GRANTS


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


Plan = tuple[Result, list[str]]


@pytest.fixture(scope="module")
def boot_plan(tmp_path_factory: pytest.TempPathFactory, secret_value: str) -> Plan:
    """infra/bootstrap.sh --dry-run: the owner's one-time part."""
    tmp = tmp_path_factory.mktemp("boot-plan")
    trap = make_trap(tmp)
    env_file = write_env(tmp / "plan.env", PROJECT=PROJECT)
    result = run_script(
        "infra/bootstrap.sh",
        str(env_file),
        "--dry-run",
        "--secret-stdin",
        env=base_env(tmp, trap.bin),
        stdin=secret_value + "\n",
    )
    assert result.returncode == 0, result.output
    return result, trap.calls()


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """infra/deploy.sh --dry-run: the CI deploy."""
    tmp = tmp_path_factory.mktemp("plan")
    trap = make_trap(tmp)
    env_file = write_env(tmp / "plan.env", PROJECT=PROJECT)
    result = run_script("infra/deploy.sh", str(env_file), "--dry-run", env=base_env(tmp, trap.bin))
    assert result.returncode == 0, result.output
    return result, trap.calls()


def grants_of(result: Result) -> set[Grant]:
    grants = set()
    for argv in result.commands():
        if "add-iam-policy-binding" in argv:
            w = words(argv)
            verb = w.index("add-iam-policy-binding")
            f = flags(argv)
            grants.add((" ".join(w[:verb]), w[verb + 1], f["member"], f["role"]))
    return grants


def _in_order(result: Result, order: list[str]) -> None:
    groups = [" ".join(words(c)[:2]) for c in result.commands()]
    first = {g: groups.index(g) for g in reversed(groups)}
    assert [first[g] for g in order] == sorted(first[g] for g in order)


def test_dry_run_runs_no_gcloud_and_prints_every_step(boot_plan: Plan, plan: Plan) -> None:
    for result, calls in (boot_plan, plan):
        assert calls == []
        assert "Plan: " in result.stderr
    _in_order(
        boot_plan[0],
        [
            "services list",
            "iam service-accounts",
            "secrets describe",
            "firestore databases",
            "storage buckets",
            "iam roles",
            "projects get-iam-policy",
        ],
    )
    _in_order(
        plan[0],
        ["services list", "functions describe", "pubsub topics", "run services", "scheduler jobs"],
    )
    deploy_steps = re.findall(r"^### (\S+)$", plan[0].stderr, re.MULTILINE)
    assert deploy_steps == ["verify", "functions", "pubsub", "iam", "scheduler", "monitoring"]
    boot_steps = re.findall(r"^### (\S+)$", boot_plan[0].stderr, re.MULTILINE)
    assert boot_steps == ["apis", "service-accounts", "secret", "firestore", "archive", "access"]


def test_secret_value_is_never_an_argument_nor_printed(
    boot_plan: Plan, plan: Plan, secret_value: str
) -> None:
    result, _ = boot_plan
    assert secret_value not in result.output
    adds = [c for c in result.commands() if words(c)[:3] == ["secrets", "versions", "add"]]
    assert adds == [
        ["secrets", "versions", "add", name, f"--project={PROJECT}", "--data-file=-"]
        for name in ("paynow-webhook-secret", "paynow-deploy-env")  # the value, the settings
    ]
    # The deploy reads no secret value and writes none.
    deploy = plan[0].commands()
    assert not [c for c in deploy if words(c)[:1] == ["secrets"] and is_mutation(c)]
    assert not [c for c in deploy if words(c)[:3] == ["secrets", "versions", "access"]]


def test_functions_are_deployed_from_source_with_own_identity_and_access(plan: Plan) -> None:
    result, _ = plan
    deploys = [c for c in result.commands() if words(c)[:2] == ["functions", "deploy"]]
    final = {words(c)[2]: flags(c) for c in deploys}  # the last deploy of each function
    assert set(final) == {
        "paynow-webhook",
        "paynow-worker",
        "paynow-reconcile",
        "paynow-ledger-verify",
    }
    functions_dir = str(Path(__file__).resolve().parents[2] / "functions")
    for argv in deploys:
        f = flags(argv)
        assert f["gen2"] == "" and f["runtime"] == "python311" and "trigger-http" in f
        assert (f["source"] == functions_dir) == (words(argv)[2] != "paynow-ledger-verify")
        public = "allow-unauthenticated" in f
        assert public != ("no-allow-unauthenticated" in f)
        assert public == (words(argv)[2] == "paynow-webhook")
        # Only the webhook takes traffic from outside the project.
        assert f["ingress-settings"] == ("all" if public else "internal-only")
        assert f["build-service-account"] == f"projects/{PROJECT}/serviceAccounts/{SA['build']}"
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

    # THREADS: gunicorn serves exactly the concurrency Cloud Run sends (infra/sizing.sh).
    assert env(webhook) == {
        **common,
        "WEBHOOK_MODE": "sync",
        "PAYNOW_WEBHOOK_SECRET_ID": f"projects/{PROJECT}/secrets/paynow-webhook-secret",
        "THREADS": "16",
    }
    assert env(worker) == {
        **common,
        "PUSH_AUTH": "oidc",
        "PUSH_SERVICE_ACCOUNT": SA["push"],
        "PUSH_AUDIENCE": WORKER_URL,
        "THREADS": "8",
    }
    assert env(reconcile) == {
        **common,
        "PUSH_AUTH": "oidc",
        "SCHEDULER_SERVICE_ACCOUNT": SA["scheduler"],
        "RECONCILE_AUDIENCE": RECONCILE_URL,
        "THREADS": "1",
    }
    assert env(final["paynow-ledger-verify"]) == {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "PUBSUB_TOPIC": "paynow-events",
        "PUBSUB_DLQ_TOPIC": "paynow-events-dlq",
        "THREADS": "1",
    }
    assert int(worker["timeout"].rstrip("s")) < 90  # the push subscription's ack deadline
    assert "set-secrets" not in webhook and "clear-secrets" not in webhook  # a first deploy


def test_sizes_come_from_infra_sizing(plan: Plan) -> None:
    """cpu, memory, concurrency and minimum instances per function, as infra/sizing.sh says;
    every concurrency above 1 on a whole vCPU (Cloud Run requires it)."""
    result, _ = plan
    final = {
        words(c)[2]: flags(c) for c in result.commands() if words(c)[:2] == ["functions", "deploy"]
    }
    sizes = {
        name: (f["cpu"], f["memory"], f["concurrency"], f["min-instances"], f["max-instances"])
        for name, f in final.items()
    }
    assert sizes == {
        "paynow-webhook": ("1", "512Mi", "16", "1", "20"),
        "paynow-worker": ("1", "512Mi", "8", "0", "20"),
        "paynow-reconcile": ("1", "512Mi", "1", "0", "1"),
        "paynow-ledger-verify": ("1", "1Gi", "1", "0", "1"),
    }
    sizing = (ROOT / "infra" / "sizing.sh").read_text()
    for line in re.findall(r"^[A-Z]+_(?:CPU|MEMORY|CONCURRENCY|MIN_INSTANCES)=.*$", sizing, re.M):
        assert re.search(rf"^# .*\n{re.escape(line)}$", sizing, re.M), f"{line}: no reason above it"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("WEBHOOK_CPU=0.5", "WEBHOOK_CONCURRENCY=16 needs WEBHOOK_CPU of at least 1"),
        ("WORKER_CONCURRENCY=0", "WORKER_CONCURRENCY must be 1-1000"),
        ("LEDGER_MEMORY=1G", "LEDGER_MEMORY must be a size such as 512Mi"),
        ("RECONCILE_CPU=12", "RECONCILE_CPU must be a fraction below 1"),
    ],
)
def test_sizes_that_cloud_run_would_refuse_stop_the_step(change: str, message: str) -> None:
    key = change.split("=", maxsplit=1)[0]
    prefix = key.split("_")[0]
    script = (
        f"source {ROOT / 'infra' / 'lib.sh'}; source {ROOT / 'infra' / 'sizing.sh'}; "
        f"{change}; check_sizing {prefix}"
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    for prefix in ("WEBHOOK", "WORKER", "RECONCILE", "LEDGER"):  # as committed: all valid
        ok = subprocess.run(
            [
                "bash",
                "-c",
                f"source {ROOT / 'infra' / 'lib.sh'}; source {ROOT / 'infra' / 'sizing.sh'}; check_sizing {prefix}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert ok.returncode == 0, ok.stderr


def _functions_dry_run(
    tmp_path: Path, trap_gcloud: TrapGcloud, env_file: Path
) -> tuple[Result, dict[str, str]]:
    """``infra/steps/functions.sh ENV --dry-run``: its result and the webhook deploy's flags."""
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
    return result, webhook


def test_a_rotation_injects_the_previous_version_until_its_end(
    tmp_path: Path, trap_gcloud: TrapGcloud
) -> None:
    env_file = write_env(
        tmp_path / "rotation.env",
        PROJECT=PROJECT,
        WEBHOOK_SECRET_PREVIOUS_VERSION="3",
        WEBHOOK_SECRET_PREVIOUS_UNTIL="2026-12-24T12:00:00Z",
    )
    result, webhook = _functions_dry_run(tmp_path, trap_gcloud, env_file)
    assert webhook["set-secrets"] == "PAYNOW_WEBHOOK_SECRET_PREVIOUS=paynow-webhook-secret:3"
    env = dict(pair.split("=", 1) for pair in webhook["set-env-vars"].split(","))
    assert env["PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL"] == "2026-12-24T12:00:00Z"
    assert "PAYNOW_WEBHOOK_SECRET_PREVIOUS" not in env  # a secret reference, not a value
    others = [
        flags(c)
        for c in result.commands()
        if words(c)[:2] == ["functions", "deploy"] and words(c)[2] != "paynow-webhook"
    ]
    assert others and not [f for f in others if "set-secrets" in f]  # the webhook's alone
    assert trap_gcloud.calls() == []


def test_access_is_exactly_the_designed_grants(boot_plan: Plan, plan: Plan) -> None:
    assert grants_of(boot_plan[0]) == BOOTSTRAP_GRANTS
    assert grants_of(plan[0]) == DEPLOY_GRANTS
    for result, _ in (boot_plan, plan):
        roles = [flags(c).get("role", "") for c in result.commands()]
        assert not {"roles/owner", "roles/editor", "roles/viewer"} & set(roles)
        assert not any("remove-iam-policy-binding" in c for c in result.commands())
    # Two project-level grants are narrowed by a condition to one bucket (name pattern).
    conditions = {
        flags(c)["member"]: flags(c)["condition"]
        for c in boot_plan[0].commands()
        if words(c)[:2] == ["projects", "add-iam-policy-binding"]
        and flags(c)["role"] == "roles/storage.objectViewer"
    }
    assert conditions == {
        _sa(
            "deployer"
        ): f'expression=resource.name == "projects/_/buckets/{PROJECT}_cloudbuild",title=cloudbuild-source',
        _sa(
            "build"
        ): 'expression=resource.name.startsWith("projects/_/buckets/gcf-v2-"),title=gcf-sources',
    }


def test_the_deploy_needs_no_iam_or_secret_admin(plan: Plan) -> None:
    """The CI deploy changes no project policy, no service account's, no secret's, no
    bucket's, creates no account, role or secret, and enables no API."""
    for argv in plan[0].commands():
        if not is_mutation(argv):
            continue
        assert words(argv)[0] in (
            "functions",
            "pubsub",
            "run",
            "scheduler",
            "logging",
            "alpha",
            "monitoring",
        ), argv


def test_the_custom_firestore_roles_cannot_delete(boot_plan: Plan) -> None:
    roles = {
        words(c)[3]: set(flags(c)["permissions"].split(","))
        for c in boot_plan[0].commands()
        if words(c)[:3] == ["iam", "roles", "create"]
    }
    assert roles == {
        "paynowEventWriter": {
            "datastore.databases.get",
            "datastore.databases.getMetadata",
            "datastore.entities.create",
            "datastore.entities.get",
            "datastore.entities.list",
            "datastore.entities.update",
        },
        "paynowSmokeTest": {"datastore.entities.get", "datastore.entities.delete"},
    }


def test_pubsub_matches_the_contract(plan: Plan) -> None:
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
        "paynow-events-dlq-archive",
    }
    # The DLQ keeps what it must: 31 days (Pub/Sub's maximum) on the topic and its pull
    # subscription, and every message archived to the bucket with its attributes.
    assert creates["paynow-events-dlq"]["message-retention-duration"] == "31d"
    assert "message-retention-duration" not in creates["paynow-events"]
    assert creates["paynow-events-dlq-sub"]["message-retention-duration"] == "31d"
    assert creates["paynow-events-dlq-archive"] == {
        "topic": "paynow-events-dlq",
        "project": PROJECT,
        "cloud-storage-bucket": BUCKET.removeprefix("gs://"),
        "cloud-storage-file-prefix": "dlq/",
        "cloud-storage-output-format": "avro",
        "cloud-storage-write-metadata": "",
        "cloud-storage-max-duration": "10m",
        "message-retention-duration": "31d",
        "expiration-period": "never",
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


def test_firestore_ttl_and_index(boot_plan: Plan) -> None:
    result, _ = boot_plan
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


def test_scheduler_calls_reconcile_and_the_ledger_check_with_an_oidc_token(plan: Plan) -> None:
    result, _ = plan
    jobs = {
        words(c)[4]: flags(c)
        for c in result.commands()
        if words(c)[:4] == ["scheduler", "jobs", "create", "http"]
    }
    assert set(jobs) == {"paynow-reconcile", "paynow-ledger-verify"}
    for name, url, schedule, deadline in (
        ("paynow-reconcile", RECONCILE_URL, "*/5 * * * *", "120s"),
        ("paynow-ledger-verify", LEDGER_URL, "17 3 * * *", "1800s"),
    ):
        f = jobs[name]
        assert f["schedule"] == schedule and f["http-method"] == "POST"
        assert f["uri"] == f["oidc-token-audience"] == url
        assert f["oidc-service-account-email"] == SA["scheduler"]
        assert f["attempt-deadline"] == deadline


def test_every_command_names_the_project(boot_plan: Plan, plan: Plan) -> None:
    for result, _ in (boot_plan, plan):
        for argv in result.commands():
            if argv[:1] == ["config"]:  # who runs it: not a project's
                continue
            project = flags(argv).get("project") or (argv[2] if argv[:1] == ["projects"] else None)
            assert project == PROJECT, argv


def test_a_first_deploy_takes_the_mode_from_the_settings_file(
    tmp_path: Path, trap_gcloud: TrapGcloud
) -> None:
    env_file = write_env(tmp_path / "queue.env", PROJECT=PROJECT, WEBHOOK_MODE="queue")
    result, webhook = _functions_dry_run(tmp_path, trap_gcloud, env_file)
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
        "scripts/ops/smoke_test.sh",
        str(env_file),
        "--dry-run",
        env=base_env(tmp_path, trap_gcloud.bin),
    )
    assert result.returncode == 0, result.output
    assert trap_gcloud.calls() == []
    commands = result.commands()
    assert commands and not [c for c in commands if is_mutation(c)]
    assert ["secrets", "versions", "access", "latest"] in [words(c)[:4] for c in commands]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the secret file"),
        ("", "the secret is empty"),
        ("  \n", "the secret is empty"),
        ("first-line\n\nsecond-line\n", "line 2 of the secret is blank between two secrets"),
        ("".join(f"secret-{n}\n" for n in range(33)), "the secret holds 33 secrets; at most 32"),
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


@pytest.mark.parametrize("count", [1, 6])  # one secret, or one per PayNow webhook subscription
def test_secret_from_a_file_goes_through_stdin(
    tmp_path: Path, trap_gcloud: TrapGcloud, count: int
) -> None:
    secrets = [f"file-secret-{uuid.uuid4().hex}" for _ in range(count)]
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("\r\n".join(secrets) + "\n")
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
    assert not [v for v in secrets if v in result.output]
    assert [words(c)[:4] for c in result.commands() if is_mutation(c)] == [
        ["secrets", "create", "paynow-webhook-secret"],
        ["secrets", "versions", "add", "paynow-webhook-secret"],
        ["secrets", "create", "paynow-deploy-env"],  # the settings file, for Cloud Build
        ["secrets", "versions", "add", "paynow-deploy-env"],
    ]
    assert trap_gcloud.calls() == []
