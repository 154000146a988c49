"""``scripts/paynow-ops``: the operator's CLI, against real GCP or the emulators.

The target is ``--project P`` (a cloud project), else the environment
(GOOGLE_CLOUD_PROJECT, with FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST for
emulators), else the running local stack (``.local/stack.env``); every command prints
it on stderr (``scripts/ops/target.py``). A command that changes data in a cloud
project asks first, unless ``--yes``. It uses application default credentials on GCP,
prints tables (``--json``, before or after the command, for scripts) and exits 1 when
what it checks does not hold, 2 when it cannot run (a bad configuration or argument, no
target, no confirmation, an unexpected error: one line, never a traceback).

    scripts/paynow-ops [--project P] [--yes] [--json] COMMAND ...
    scripts/paynow-ops health [--strict] [--stuck-after SECONDS]
    scripts/paynow-ops mode [--region R] [--env-file infra/env/ENV.env]
    scripts/paynow-ops event show EVENT_ID
    scripts/paynow-ops user show USER_ID
    scripts/paynow-ops ledger verify [--user USER_ID]
    scripts/paynow-ops catalog show [PRODUCT]
    scripts/paynow-ops catalog set PRODUCT POINTS [--dry-run]
    scripts/paynow-ops dlq list [--page-size N]
    scripts/paynow-ops dlq replay (--event-id ID | --error-code CODE | --all) [--dry-run]
    scripts/paynow-ops dlq discard (--event-id ID | --error-code CODE | --all) [--dry-run]
    scripts/paynow-ops reconcile [--stamp-legacy]
    scripts/paynow-ops events list [--status S] [--type T] [--user U] [--customer C]
                                   [--since 24h] [--limit N]
    scripts/paynow-ops paynow webhooks
    scripts/paynow-ops paynow failed [--since 24h] [--state failed|pending|all]
    scripts/paynow-ops paynow backfill [--since 24h] [--dry-run] [--yes]
    scripts/paynow-ops paynow resend DELIVERY_ID
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.ops import clients
from scripts.ops import paynow as paynow_api
from scripts.ops.catalog import catalog_set, catalog_show
from scripts.ops.clients import Ops, UsageError
from scripts.ops.dead_letters import PAGE_SIZE
from scripts.ops.dlq import dlq_discard, dlq_list, dlq_replay
from scripts.ops.event_list import STATUSES, an_id, event_type, events_list
from scripts.ops.events import event_show, reconcile
from scripts.ops.health import STUCK_AFTER_SECONDS, health
from scripts.ops.ledger import ledger_verify, user_show
from scripts.ops.mode import deployed_project, webhook_mode
from scripts.ops.output import print_result
from scripts.ops.target import Target, confirm, resolve
from scripts.ops.timespan import since

Run = Callable[[Ops, argparse.Namespace], tuple[dict[str, Any], bool]]


@dataclass(frozen=True)
class Command:
    """One command: what runs it, and whether this run of it changes data (then a cloud
    project asks first)."""

    name: str
    run: Run | None  # None: ``mode``, which needs no Firestore or Pub/Sub client
    changes: Callable[[argparse.Namespace], bool] = lambda args: False


def _unless_dry_run(args: argparse.Namespace) -> bool:
    return not args.dry_run


def _page_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--page-size",
        type=_count(1, 1000),
        default=PAGE_SIZE,
        metavar="N",
        help=f"messages per pull (default {PAGE_SIZE})",
    )


def _dlq_selection(p: argparse.ArgumentParser, verb: str) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--event-id", help=f"{verb} this event's messages")
    which.add_argument("--error-code", help=f"{verb} the messages with this errorCode")
    which.add_argument("--all", action="store_true", help=f"{verb} every message waiting")
    p.add_argument(
        "--dry-run", action="store_true", help=f"say what {verb} would do; change nothing"
    )
    _page_size(p)


def _deliveries(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=since, default="24h", help="created since (default 24h)")
    p.add_argument("--webhook", help="only this webhook subscription (paynow webhooks)")


def _count(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def _parser() -> tuple[argparse.ArgumentParser, dict[tuple[str, str | None], Command]]:
    """The command line, and the command behind each (area, verb)."""
    parser = argparse.ArgumentParser(prog="paynow-ops", description="Operate the PayNow pipeline.")
    # The options every command takes go before the command or after it; SUPPRESS keeps
    # the one given first.
    common: tuple[tuple[str, dict[str, Any]], ...] = (
        ("--json", {"action": "store_true", "help": "print JSON instead of tables"}),
        ("--project", {"metavar": "P", "help": "a cloud project (default: see the target)"}),
        ("--yes", {"action": "store_true", "help": "change cloud data without asking"}),
    )
    late = argparse.ArgumentParser(add_help=False)
    for flag, options in common:
        parser.add_argument(flag, **options)
        late.add_argument(flag, **options, default=argparse.SUPPRESS)
    area = parser.add_subparsers(dest="area", required=True)
    commands: dict[tuple[str, str | None], Command] = {}

    def command(
        parent: Any,
        name: str,
        run: Run | None,
        key: tuple[str, str | None],
        changes: Callable[[argparse.Namespace], bool] | None = None,
        **kw: Any,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[late], **kw)
        label = " ".join(k for k in key if k)
        commands[key] = Command(label, run, changes or Command.changes)
        return p

    def verbs(name: str, help_text: str) -> Any:
        return area.add_parser(name, help=help_text).add_subparsers(dest="verb", required=True)

    event = verbs("event", "one event's state")
    p = command(event, "show", event_show, ("event", "show"), help="status, ledger, DLQ")
    p.add_argument("event_id")

    events = verbs("events", "webhookEvents, filtered, newest first")
    p = command(events, "list", events_list, ("events", "list"), help="by status, type, user, time")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--type", type=event_type, help="a PayNow event type (ON_ORDER_COMPLETED)")
    p.add_argument("--user", type=an_id, help="the app's user id")
    p.add_argument("--customer", type=an_id, help="the PayNow customer id")
    p.add_argument("--since", type=since, help="received since (24h, 30m, 7d or ISO-8601)")
    p.add_argument("--limit", type=_count(1, 1000), default=50, help="events shown (default 50)")

    paynow = verbs("paynow", "PayNow's Management API: deliveries it could not complete")
    command(paynow, "webhooks", paynow_api.webhooks, ("paynow", "webhooks"), help="subscriptions")
    p = command(paynow, "failed", paynow_api.failed, ("paynow", "failed"), help="not delivered")
    _deliveries(p)
    p.add_argument("--state", choices=("failed", "pending", "all"), help="default: both first")
    p = command(
        paynow,
        "backfill",
        paynow_api.backfill,
        ("paynow", "backfill"),
        _unless_dry_run,
        help="ingest them here",
    )
    _deliveries(p)
    p.add_argument("--dry-run", action="store_true", help="say what it would do; change nothing")
    p = command(
        paynow,
        "resend",
        paynow_api.resend,
        ("paynow", "resend"),
        lambda args: True,  # PayNow delivers it again, to the deployed webhook
        help="deliver again",
    )
    p.add_argument("delivery_id", help="a delivery id (paynow failed)")

    user = verbs("user", "one user's balance")
    p = command(user, "show", user_show, ("user", "show"), help="balance, ledger, consistency")
    p.add_argument("user_id")
    p.add_argument("--limit", type=_count(1, 1000), default=20, help="ledger entries shown")

    ledger = verbs("ledger", "balances against ledgers")
    p = command(ledger, "verify", ledger_verify, ("ledger", "verify"), help="every user, or one")
    p.add_argument("--user", help="only this user (its own ledger)")

    catalog = verbs("catalog", "points per product (pointsCatalog)")
    p = command(catalog, "show", catalog_show, ("catalog", "show"), help="one product, or all")
    p.add_argument("product", nargs="?", help="a product id (default: the whole catalog)")
    p = command(
        catalog,
        "set",
        catalog_set,
        ("catalog", "set"),
        _unless_dry_run,
        help="set a product's points",
    )
    p.add_argument("product")
    p.add_argument("points", type=_count(0, 2**63 - 1), help="points per unit (an integer >= 0)")
    p.add_argument("--dry-run", action="store_true", help="say what it would write, write nothing")

    dlq = verbs("dlq", "the dead-letter subscription")
    p = command(dlq, "list", dlq_list, ("dlq", "list"), help="by error code, nothing consumed")
    _page_size(p)
    p = command(
        dlq,
        "replay",
        dlq_replay,
        ("dlq", "replay"),
        _unless_dry_run,
        help="reopen, republish, then ack",
    )
    _dlq_selection(p, "replay")
    p = command(
        dlq,
        "discard",
        dlq_discard,
        ("dlq", "discard"),
        _unless_dry_run,
        help="ack without a replay",
    )
    _dlq_selection(p, "discard")

    p = command(
        area,
        "reconcile",
        reconcile,
        ("reconcile", None),
        lambda args: True,  # republishes, and stamps what it republished
        help="one reconcile pass now",
    )
    p.add_argument(
        "--stamp-legacy",
        action="store_true",
        help="first stamp received records older than republishedAt (once, after upgrading)",
    )

    p = command(
        area, "health", health, ("health", None), help="Firestore, Pub/Sub, DLQ, stuck events"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument(
        "--stuck-after",
        type=int,
        default=STUCK_AFTER_SECONDS,
        metavar="SECONDS",
        help=f"a received event older than this is stuck (default {STUCK_AFTER_SECONDS})",
    )

    p = command(
        area, "mode", None, ("mode", None), help="the webhook's WEBHOOK_MODE, how to switch"
    )
    p.add_argument("--env-file", help="infra settings file: read the deployed webhook's mode")
    p.add_argument("--region", help="the deployed webhook's region (a cloud project)")
    p.add_argument("--service", help="its Cloud Run service (default paynow-webhook)")
    return parser, commands


def _target(args: argparse.Namespace) -> Target:
    """This run's target (``mode --env-file`` names its project too), said on stderr."""
    project = args.project
    if getattr(args, "env_file", None):
        named, _, _ = deployed_project(Path(args.env_file))
        if project and project != named:
            raise UsageError(f"--project {project} and {args.env_file} (PROJECT={named}) differ")
        project = named
    target = resolve(project)
    print(f"paynow-ops: target: {target.describe()}", file=sys.stderr, flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit 0 when what it checks holds, 1 when not, 2 when it cannot run."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    command = commands[args.area, getattr(args, "verb", None)]
    try:
        target = _target(args)
        if command.changes(args):
            confirm(target, command.name, yes=args.yes)
        with target.applied():
            if command.run is None:
                result, ok = webhook_mode(args, target)
            else:
                ops = Ops.connect()
                with contextlib.redirect_stdout(sys.stderr):  # the library's JSON logs
                    result, ok = command.run(ops, args)
    except (clients.ConfigError, UsageError) as exc:
        return _cannot_run(args, str(exc))
    except Exception as exc:
        return _cannot_run(args, f"unexpected error: {clients.problem(exc)}")
    if args.json:
        print(json.dumps(result, default=str, indent=2))
    else:
        print_result(result)
    return 0 if ok else 1


def _cannot_run(args: argparse.Namespace, error: str) -> int:
    """One line on stderr (and, with --json, ``{"ok": false, "error": ...}`` on stdout); 2."""
    print(f"paynow-ops: {error}", file=sys.stderr)
    if args.json:
        print(json.dumps({"ok": False, "error": error}))
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
