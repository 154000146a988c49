"""The operator docs against what they describe.

docs/cloud-setup.md against the scripts: the prerequisites they need, every step deploy.sh
runs, every grant iam.sh makes (with its reason), and how the build runs.
docs/architecture.md against the code: every error code and collection, links that lead
somewhere, and a place in README's table of documents.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from paynow.adapters import documents
from paynow.domain import errors

from tests.infra.conftest import INFRA, ROOT
from tests.infra.test_plan import AGENT, BOOTSTRAP_GRANTS, DEPLOY_GRANTS, PROJECT, SA, Grant

DOCS = ROOT / "docs"
SETUP = (DOCS / "cloud-setup.md").read_text()
ARCHITECTURE = (DOCS / "architecture.md").read_text()


def section(title_start: str) -> str:
    """The text of the section whose heading starts with ``title_start`` (up to the next
    heading of its level or above; lines in code blocks are not headings)."""
    lines = SETUP.splitlines()
    start = next(
        i for i, line in enumerate(lines) if re.match(rf"#+ {re.escape(title_start)}", line)
    )
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    body, fenced = [], False
    for line in lines[start + 1 :]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            break
        body.append(line)
    return "\n".join(body)


def table_rows(text: str) -> list[list[str]]:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]
    return rows[2:]  # without the header and the rule


def test_prerequisites_name_both_gcloud_components() -> None:
    prerequisites = section("1. Prerequisites")
    assert "`alpha`" in prerequisites and "`beta`" in prerequisites
    assert "gcloud components install alpha beta" in prerequisites


@pytest.mark.parametrize(
    ("script", "title"), [("bootstrap.sh", "3. Bootstrap"), ("deploy.sh", "4. Deploy")]
)
def test_the_step_tables_list_every_step_each_script_runs_in_order(script: str, title: str) -> None:
    (steps,) = re.findall(r"^run_steps (.+)$", (INFRA / script).read_text(), re.M)
    table = section(title)
    documented = [
        m.group(1) for row in table_rows(table) if (m := re.fullmatch(r"`(.+)\.sh`", row[1]))
    ]
    assert documented == steps.split()
    for step in documented:
        assert (INFRA / "steps" / f"{step}.sh").is_file(), step


@pytest.mark.parametrize(
    ("title", "grants"),
    [
        ("Access: what `access.sh` grants", BOOTSTRAP_GRANTS),
        ("Access: what `iam.sh` grants", DEPLOY_GRANTS),
    ],
)
def test_the_access_tables_give_every_grant_a_reason(title: str, grants: set[Grant]) -> None:
    """Every role of every identity, bootstrap's and deploy's, each once, with its reason."""
    rows = table_rows(section(title))
    names = {f"serviceAccount:{email}": f"`{email.split('@')[0]}`" for email in SA.values()}
    names[f"serviceAccount:{AGENT}"] = "Pub/Sub service agent"
    names["allUsers"] = "`allUsers`"
    kinds = {
        "projects": "project",
        "pubsub topics": "topic",
        "pubsub subscriptions": "subscription",
        "secrets": "secret",
        "iam service-accounts": "service account",
        "run services": "service",
        "storage buckets": "bucket",
    }
    documented = set()
    for identity, role, on, why in rows:
        assert why, (identity, role, on)
        documented.add((identity, role, on))
    missing = []
    for group, resource, member, role in grants:
        name = resource if group != "iam service-accounts" else resource.split("@")[0]
        name = name.removeprefix("gs://").replace(PROJECT, "PROJECT")
        target = "project" if group == "projects" else f"{kinds[group]} `{name}`"
        shown = f"`{role.replace(PROJECT, 'PROJECT')}`"
        if not any(
            names[member] in identity and r == shown and o == target
            for identity, r, o in documented
        ):
            missing.append((member, role, target))
    assert not missing
    assert len(rows) == len(grants)  # and nothing the scripts do not grant


def test_the_webhooks_dlq_grant_and_the_deployers_limits_are_explained() -> None:
    rows = table_rows(section("Access: what `iam.sh` grants"))
    (dlq,) = [
        why
        for identity, role, on, why in rows
        if identity == "`paynow-webhook`" and on == "topic `paynow-events-dlq`"
    ]
    assert "sync mode" in dlq and "invalid_payload" in dlq
    bootstrap = section("Access: what `access.sh` grants")
    for absent in (
        "resourcemanager.projectIamAdmin",
        "iam.serviceAccountAdmin",
        "serviceUsageAdmin",
    ):
        assert absent in bootstrap.split("does **not** hold")[1], absent


def test_the_build_runs_as_the_deployer_with_its_settings_secret() -> None:
    build = section("9. Deploy from Cloud Build")
    assert (
        "gcloud builds submit --project=PROJECT --config=cloudbuild.yaml \\\n"
        "  --service-account=projects/PROJECT/serviceAccounts/"
        "paynow-deployer@PROJECT.iam.gserviceaccount.com"
    ) in build
    assert "iam.serviceAccountUser" in build and "actAs" in build
    assert (
        "gcloud secrets versions add paynow-deploy-env --project=PROJECT "
        "--data-file=infra/env/prod.env"
    ) in build
    # the deployer, its access to the settings and its build account come from the bootstrap
    assert "The bootstrap stores it" in build and "read access to it" in build
    assert "`paynow-build`" in build


# --- docs/architecture.md ------------------------------------------------------------------


def _codes(cls: type[errors.PipelineError]) -> set[str]:
    found = {cls.code}
    for sub in cls.__subclasses__():
        found |= _codes(sub)
    return found


def test_architecture_names_every_error_code_and_collection() -> None:
    codes = _codes(errors.PipelineError)
    assert {"no_user_id", "invalid_signature", "awaiting_earlier_event"} <= codes
    assert sorted(c for c in codes if f"`{c}`" not in ARCHITECTURE) == []
    collections = set(documents.COLLECTIONS)
    assert {"webhookEvents", "pointsLedger", "rejectedPayloads"} <= collections
    assert sorted(c for c in collections if not re.search(rf"`(\S*/)?{c}/", ARCHITECTURE)) == []
    for word in ("received", "processed", "ignored", "dead_lettered", "sync", "queue"):
        assert word in ARCHITECTURE


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_architecture_links_lead_somewhere_and_readme_lists_it() -> None:
    links = re.findall(r"\]\(([^)]+)\)", ARCHITECTURE)
    assert {"cloud-setup.md", "runbook.md", "operations.md", "queue-contract.md"} <= {
        link.split("#")[0] for link in links
    }
    for link in links:
        path, _, anchor = link.partition("#")
        target = (DOCS / path).resolve()
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", Path(target).read_text(), flags=re.M)
            assert anchor in {_anchor(h) for h in headings}, link
    readme = (ROOT / "README.md").read_text()
    assert "| [docs/architecture.md](docs/architecture.md) |" in readme
