"""docs/cloud-setup.md against the scripts: the prerequisites they need, every step
deploy.sh runs, every grant iam.sh makes (with its reason), and how the build runs."""

from __future__ import annotations

import re

from tests.infra.conftest import INFRA, ROOT
from tests.infra.test_plan import AGENT, EXPECTED_GRANTS, SA

SETUP = (ROOT / "docs" / "cloud-setup.md").read_text()


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


def test_the_step_table_lists_every_step_deploy_runs_in_order() -> None:
    (steps,) = re.findall(r"^for step in (.+); do$", (INFRA / "deploy.sh").read_text(), re.M)
    table = section("3. First deploy")
    documented = [
        m.group(1)
        for row in table_rows(table[: table.index("A first deploy takes")])
        if (m := re.fullmatch(r"`(.+)\.sh`", row[1]))
    ]
    assert documented == steps.split()


def test_the_access_table_gives_every_grant_a_reason() -> None:
    rows = table_rows(section("Access: what `iam.sh` grants"))
    names = {f"serviceAccount:{email}": f"`paynow-{n}`" for n, email in SA.items()}
    names[f"serviceAccount:{AGENT}"] = "Pub/Sub service agent"
    names["allUsers"] = "`allUsers`"
    kinds = {
        "projects": "project",
        "pubsub topics": "topic",
        "pubsub subscriptions": "subscription",
        "secrets": "secret",
        "iam service-accounts": "service account",
        "run services": "service",
    }
    documented = set()
    for identity, role, on, why in rows:
        assert why, (identity, role, on)
        documented.add((identity, role, on))
    missing = []
    for group, resource, member, role in EXPECTED_GRANTS:
        name = resource if group != "iam service-accounts" else resource.split("@")[0]
        target = "project" if group == "projects" else f"{kinds[group]} `{name}`"
        if not any(
            names[member] in identity and r == f"`{role}`" and o == target
            for identity, r, o in documented
        ):
            missing.append((member, role, target))
    assert not missing
    assert len(rows) == len(EXPECTED_GRANTS)  # and nothing the scripts do not grant
    (dlq,) = [
        why
        for identity, role, on, why in rows
        if identity == "`paynow-webhook`" and on == "topic `paynow-events-dlq`"
    ]
    assert "sync mode" in dlq and "invalid_payload" in dlq


def test_the_build_runs_as_the_deployer_with_its_settings_secret() -> None:
    build = section("8. Deploy from Cloud Build")
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
    assert (
        "gcloud secrets add-iam-policy-binding paynow-deploy-env --project=PROJECT \\\n"
        '  --member="serviceAccount:$DEPLOYER" --role=roles/secretmanager.secretAccessor'
    ) in build
