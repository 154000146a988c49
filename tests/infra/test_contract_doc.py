"""docs/contract.md against the code, and the repository standing alone.

Every environment variable the functions or paynow-ops read, every error code, every
Firestore collection and field the adapters write, the queue message, the functions'
targets and the stack file are named in docs/contract.md, and the page names none the
code does not have. README and docs link only inside the repository (or to public
URLs), and nothing in the repository reads or links the folder beside it.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
from paynow import config
from paynow.adapters import documents, firestore_store
from paynow.domain import errors
from paynow.domain.messages import QueueMessage

from scripts.local import localstack
from tests.infra.conftest import ROOT
from tests.infra.test_docs import table_rows

DOCS = ROOT / "docs"
CONTRACT = (DOCS / "contract.md").read_text()
ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


def section(title: str) -> str:
    """The text under ``## title``, up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", CONTRACT, re.M | re.S)
    assert match, f"no section {title!r} in docs/contract.md"
    return match.group(1)


def named(text: str) -> set[str]:
    """Every ``code span`` of ``text``."""
    return set(re.findall(r"`([^`]+)`", text))


def first_column(title: str) -> set[str]:
    """The code spans in the first column of the section's tables."""
    return {name for row in table_rows(section(title)) for name in named(row[0])}


def _source(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def variables_read() -> set[str]:
    """Environment variables the functions and paynow-ops read: a first argument to
    config's readers, ``environ.get``/``getenv``/``environ[...]`` anywhere else."""
    found: set[str] = set()
    # paynow-ops's modules; send_webhook and smoke_test take their own, in their docstrings
    tools = {"send_webhook.py", "smoke_test.py"}
    cli = [p for p in (ROOT / "scripts" / "ops").glob("*.py") if p.name not in tools]
    files = [*(ROOT / "functions").rglob("*.py"), *cli]
    for path in files:
        for node in ast.walk(_source(path)):
            candidate = None
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                environ_get = name == "get" and (owner == "env" or owner.endswith("environ"))
                # config.py's readers, and the PayNow API settings' (paynow-ops only)
                config_reader = path.name in {"config.py", "paynow_api.py"} and name in {
                    "text",
                    "text_or",
                    "integer",
                    "choice",
                }
                if environ_get or config_reader or name == "getenv":
                    candidate = node.args[0].value
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.slice, ast.Constant)
                and ast.unparse(node.value).endswith("environ")
            ):
                candidate = node.slice.value
            if isinstance(candidate, str) and ENV_NAME.fullmatch(candidate):
                found.add(candidate)
    return found


def test_every_variable_the_code_reads_is_documented_and_no_other():
    read = variables_read()
    assert {"WEBHOOK_MODE", "PUSH_AUTH", "FUNCTION_TARGET", "PUBSUB_DLQ_SUBSCRIPTION"} <= read
    documented = {name for name in first_column("Configuration") if ENV_NAME.fullmatch(name)}
    assert sorted(read - documented) == [], "read by the code, not in docs/contract.md"
    assert sorted(documented - read) == [], "in docs/contract.md, read by no code"


def test_documented_defaults_are_the_codes():
    defaults = config.load({"GOOGLE_CLOUD_PROJECT": "p"})
    rows = {row[0].strip("`"): row[1] for row in table_rows(section("Configuration"))}
    assert rows["WEBHOOK_MODE"] == f"`{defaults.webhook_mode}`"
    assert rows["PUSH_AUTH"] == f"`{defaults.push_auth}`"
    assert rows["PUBSUB_TOPIC"] == f"`{defaults.topic}`"
    assert rows["PUBSUB_DLQ_TOPIC"] == f"`{defaults.dlq_topic}`"
    assert rows["PAYNOW_USER_ID_KEY"] == f"`{defaults.user_id_key}`"
    assert rows["OIDC_CERTS_URL"] == f"`{defaults.oidc_certs_url}`"
    for name, value in {
        "PAYNOW_SIGNATURE_TOLERANCE_SECONDS": defaults.signature_tolerance_seconds,
        "MAX_DELIVERY_ATTEMPTS": defaults.max_delivery_attempts,
        "EVENT_TTL_DAYS": defaults.event_ttl_days,
        "RECONCILE_AFTER_SECONDS": defaults.reconcile_after_seconds,
        "RECONCILE_BATCH_SIZE": defaults.reconcile_batch_size,
    }.items():
        assert rows[name] == f"`{value}`", name


def _codes(cls: type[errors.PipelineError]) -> dict[str, type[errors.PipelineError]]:
    """Each code and the most derived class that sets it (a base only passes one down)."""
    found = {cls.code: cls} if "code" in vars(cls) else {}
    for sub in cls.__subclasses__():
        found.update(_codes(sub))
    return found


def test_every_error_code_has_a_row_with_its_kind_and_status():
    codes = _codes(errors.PipelineError)
    main = _source(ROOT / "functions" / "main.py")
    answered = {  # the entry points' own codes: {"error": "...", ...}
        str(value.value)
        for node in ast.walk(main)
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values, strict=True)
        if isinstance(key, ast.Constant) and key.value == "error"
        if isinstance(value, ast.Constant)
    }
    assert answered == {"method_not_allowed", "internal"}
    rows = {row[0].strip("`"): row for row in table_rows(section("Error codes"))}
    assert sorted(set(codes) | answered) == sorted(rows)
    for code, cls in codes.items():
        kind = rows[code][1]
        if issubclass(cls, errors.Rejection):
            assert kind == f"rejection, {cls.status}", code
        elif issubclass(cls, errors.TerminalError):
            assert kind == "terminal", code
        elif issubclass(cls, errors.TransientError):
            assert kind.startswith("transient"), code
    assert rows["method_not_allowed"][1] == "rejection, 405"


def _collections() -> set[str]:
    """Every collection the adapters name: in ``.collection(NAME)`` calls and as the parts
    of the document paths they write (``Write((NAME, id, ...))``), resolved through
    ``documents``, where each name is defined once."""
    found = set(documents.COLLECTIONS)
    for module in (documents, firestore_store):
        for node in ast.walk(_source(Path(str(module.__file__)))):
            names: list[ast.expr] = []
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "collection":
                names = node.args[:1]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Write":
                path = node.args[0] if node.args else None
                names = list(path.elts[::2]) if isinstance(path, ast.Tuple) else []
            for name in names:
                if isinstance(name, ast.Name) and name.id.isupper():
                    found.add(getattr(documents, name.id))
    return found


def test_every_collection_is_documented_and_no_other():
    in_code = _collections()
    assert {"webhookEvents", "pointsLedger", "rejectedPayloads"} <= in_code
    paths = first_column("Firestore")
    documented = {part for path in paths for part in path.split("/") if part[0] != "{"}
    assert sorted(documented) == sorted(in_code)


def _written_fields() -> set[str]:
    """The keys of every document literal the adapters write (call options aside)."""
    fields: set[object] = set()
    for module in (documents, firestore_store):
        for node in ast.walk(_source(Path(str(module.__file__)))):
            if isinstance(node, ast.Dict):
                fields |= {k.value for k in node.keys if isinstance(k, ast.Constant)}
    return {f for f in fields if isinstance(f, str)} - {"retry", "timeout"}


def test_every_field_the_adapters_write_is_documented():
    fields = _written_fields()
    assert {"points", "delta", "lastError", "expireAt", "pointsReversed"} <= fields
    documented = named(section("Firestore"))
    assert sorted(fields - documented) == []


def test_the_queue_message_is_the_codes():
    message = QueueMessage(event_id="e", event_type="T", customer_id="c", user_id="u")
    text = section("Pub/Sub")
    (shown,) = re.findall(r"`(\{\"v\": 1.*?\})`", text)
    assert list(json.loads(message.data())) == re.findall(r'"(\w+)":', shown)
    for attribute in message.attributes():
        assert f"`{attribute}`" in text
    for name in (
        "paynow-events",
        "paynow-events-push",
        "paynow-events-dlq",
        "paynow-events-dlq-sub",
    ):
        assert name in named(text)


def test_the_targets_and_the_stack_file_are_the_codes():
    targets = {row[0].strip("`") for row in table_rows(section("Functions"))}
    decorated = {
        node.name
        for node in ast.walk(_source(ROOT / "functions" / "main.py"))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list
    }
    assert (
        targets
        == decorated
        == {config.WEBHOOK_TARGET, config.WORKER_TARGET, config.RECONCILE_TARGET}
    )
    stack = localstack.Stack("127.0.0.1:1", "127.0.0.1:2", "http://w/", "http://k/")
    local = section("Local stack and operator CLI")
    assert first_column("Local stack and operator CLI") == set(stack.env())
    for option, (port, _) in localstack.PORTS.items():
        assert f"`--{option.replace('_', '-')}`" in local and str(port) in local


# --- the repository stands alone -------------------------------------------------------------


def _markdown() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("page", _markdown(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_in_the_repository_or_go_to_public_urls(page: Path):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"https://", target):
            continue
        assert not re.match(r"[a-z]+:", target), f"{target}: not a public https URL"
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{target} leaves the repository"
        assert path.exists(), f"{target}: no such file"


def test_nothing_in_the_repository_reads_or_names_the_folder_beside_it():
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    mine = Path(__file__).relative_to(ROOT)
    readers = [
        name
        for name in files
        if Path(name) != mine
        and name.startswith(("tests/", "scripts/", "docs/", "functions/", "README"))
        and (ROOT / name).is_file()
        and re.search(r"\.\./shared|\"shared\"|'shared'", (ROOT / name).read_text(errors="replace"))
    ]
    assert readers == []
