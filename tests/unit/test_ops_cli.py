"""``paynow-ops`` as a command line: where --json goes, what an error looks like, catalog."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pytest_mock import MockerFixture

from scripts.ops import catalog, cli
from scripts.ops.clients import ConfigError, Ops

pytestmark = pytest.mark.usefixtures("emulator_target")


@pytest.fixture
def ops(mocker: MockerFixture) -> Any:
    """``Ops.connect`` answering a mock (``Any``: tests set its clients' answers)."""
    connected = mocker.MagicMock()
    mocker.patch.object(Ops, "connect", return_value=connected)
    return connected


def test_json_is_accepted_after_the_command_too(ops, capsys):
    ops.store.event_status.return_value = None
    assert cli.main(["event", "show", "evt-1", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"eventId": "evt-1", "found": False}
    assert cli.main(["--json", "event", "show", "evt-1"]) == 1
    assert json.loads(capsys.readouterr().out)["found"] is False
    assert cli.main(["event", "show", "evt-1"]) == 1
    assert re.search(r"^found +False$", capsys.readouterr().out, re.M)


def test_an_unexpected_error_is_one_line_and_exit_2(ops, capsys):
    ops.store.event_status.side_effect = RuntimeError("boom\nsecond line")
    assert cli.main(["event", "show", "evt-1", "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "ok": False,
        "error": "unexpected error: RuntimeError: boom second line",
    }
    target, error = err.splitlines()  # every command says its target first
    assert target.startswith("paynow-ops: target: emulators, project demo-unit")
    assert error == "paynow-ops: unexpected error: RuntimeError: boom second line"
    assert cli.main(["event", "show", "evt-1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and len(err.splitlines()) == 2


def test_a_configuration_error_is_exit_2_with_a_json_error(mocker, capsys):
    mocker.patch.object(Ops, "connect", side_effect=ConfigError("GOOGLE_CLOUD_PROJECT must name"))
    assert cli.main(["--json", "health"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "GOOGLE_CLOUD_PROJECT must name"


@pytest.mark.parametrize(
    ("doc", "points", "problem"),
    [
        (None, None, "not in pointsCatalog: orders of it are dead-lettered"),
        ({"points": 40}, 40, None),
        ({"points": 0}, 0, None),
        ({"points": -5}, -5, "points is negative"),
        ({"points": "40"}, "40", "points is not an integer: str '40'"),
        ({}, None, "no points field"),
    ],
)
def test_a_catalog_entry_says_what_is_wrong_with_it(doc, points, problem):
    assert catalog.entry("gems-9", doc) == {
        "productId": "gems-9",
        "points": points,
        "problem": problem,
    }


def _product(mocker: MockerFixture, ops: Any, doc: dict[str, Any] | None) -> Any:
    ref = ops.db.collection.return_value.document.return_value
    ref.get.return_value = mocker.MagicMock(exists=doc is not None)
    ref.get.return_value.to_dict.return_value = doc
    return ref


def test_catalog_show_of_a_missing_product_exits_1(mocker, ops, capsys):
    _product(mocker, ops, None)
    assert cli.main(["catalog", "show", "gems-9", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["problem"].startswith("not in pointsCatalog")
    ops.db.collection.assert_called_with("pointsCatalog")


def test_catalog_set_writes_the_points_and_dry_run_does_not(mocker, ops, capsys):
    ref = _product(mocker, ops, None)
    assert cli.main(["catalog", "set", "gems-9", "40", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert (dry["before"], dry["after"], dry["dryRun"], dry["changed"]) == (None, 40, True, False)
    ref.set.assert_not_called()
    assert cli.main(["catalog", "set", "gems-9", "40", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["changed"] is True and "unknown_product" in done["next"]
    ref.set.assert_called_once_with({"points": 40}, merge=True)


@pytest.mark.parametrize("points", ["-1", "1.5", "forty"])
def test_catalog_set_refuses_points_that_are_not_a_non_negative_integer(ops, points, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["catalog", "set", "gems-9", points])
    assert exit_.value.code == 2
    ops.db.collection.assert_not_called()


def test_catalog_set_refuses_a_product_id_firestore_cannot_hold(ops, capsys):
    assert cli.main(["catalog", "set", "a/b", "40", "--json"]) == 2
    assert "not a product id" in json.loads(capsys.readouterr().out)["error"]
    ops.db.collection.return_value.document.assert_not_called()
