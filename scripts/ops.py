"""``scripts/paynow-ops``: the operator's CLI, against real GCP or the emulators.

It reads the project and emulator hosts from the same variables as the
functions (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST,
PUBSUB_TOPIC, PUBSUB_DLQ_TOPIC), uses application default credentials on
GCP, prints tables (``--json``, before or after the command, for scripts) and
exits 1 when what it checks does not hold, 2 when it cannot run (a bad
configuration or argument, an unexpected error: one line, never a traceback).

    scripts/paynow-ops health [--strict] [--stuck-after SECONDS]
    scripts/paynow-ops mode [--env-file infra/env/ENV.env]
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
from typing import Any

from scripts.paynow_ops import clients
from scripts.paynow_ops import paynow as paynow_api
from scripts.paynow_ops.catalog import catalog_set, catalog_show
from scripts.paynow_ops.clients import Ops, UsageError
from scripts.paynow_ops.dead_letters import PAGE_SIZE
from scripts.paynow_ops.dlq import dlq_discard, dlq_list, dlq_replay
from scripts.paynow_ops.event_list import STATUSES, an_id, event_type, events_list
from scripts.paynow_ops.events import event_show, reconcile
from scripts.paynow_ops.health import STUCK_AFTER_SECONDS, health
from scripts.paynow_ops.ledger import ledger_verify, user_show
from scripts.paynow_ops.mode import webhook_mode
from scripts.paynow_ops.timespan import since

Command = Callable[[Ops, argparse.Namespace], tuple[dict[str, Any], bool]]


def _print_table(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{key}:")
            columns = list(value[0])
            widths = [max(len(c), *(len(str(row.get(c))) for row in value)) for c in columns]
            print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
            for row in value:
                cells = (str(row.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True))
                print("  " + "  ".join(cells))
        else:
            print(f"{key:<26} {value}")


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
    """The command line, and the function behind each (area, verb)."""
    parser = argparse.ArgumentParser(prog="paynow-ops", description="Operate the PayNow pipeline.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # Every command takes --json after its name too; SUPPRESS keeps the one given first.
    late = argparse.ArgumentParser(add_help=False)
    late.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    area = parser.add_subparsers(dest="area", required=True)
    commands: dict[tuple[str, str | None], Command] = {}

    def command(
        parent: Any, name: str, run: Command | None, key: tuple[str, str | None], **kw: Any
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[late], **kw)
        if run is not None:
            commands[key] = run
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
        paynow, "backfill", paynow_api.backfill, ("paynow", "backfill"), help="ingest them here"
    )
    _deliveries(p)
    p.add_argument("--dry-run", action="store_true", help="say what it would do; change nothing")
    p.add_argument("--yes", action="store_true", help="no confirmation on a cloud project")
    p = command(paynow, "resend", paynow_api.resend, ("paynow", "resend"), help="deliver again")
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
    p = command(catalog, "set", catalog_set, ("catalog", "set"), help="set a product's points")
    p.add_argument("product")
    p.add_argument("points", type=_count(0, 2**63 - 1), help="points per unit (an integer >= 0)")
    p.add_argument("--dry-run", action="store_true", help="say what it would write, write nothing")

    dlq = verbs("dlq", "the dead-letter subscription")
    p = command(dlq, "list", dlq_list, ("dlq", "list"), help="by error code, nothing consumed")
    _page_size(p)
    p = command(dlq, "replay", dlq_replay, ("dlq", "replay"), help="reopen, republish, then ack")
    _dlq_selection(p, "replay")
    p = command(dlq, "discard", dlq_discard, ("dlq", "discard"), help="ack without a replay")
    _dlq_selection(p, "discard")

    p = command(area, "reconcile", reconcile, ("reconcile", None), help="one reconcile pass now")
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

    p = command(area, "mode", None, ("mode", None), help="WEBHOOK_MODE and how to switch it")
    p.add_argument("--env-file", help="infra settings file: read the deployed webhook's mode")
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit 0 when what it checks holds, 1 when not, 2 when it cannot run."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    try:
        if args.area == "mode":  # no Firestore or Pub/Sub client needed
            result, ok = webhook_mode(args)
        else:
            run = commands[args.area, getattr(args, "verb", None)]
            ops = Ops.connect()
            with contextlib.redirect_stdout(sys.stderr):  # the library's JSON logs stay off stdout
                result, ok = run(ops, args)
    except (clients.ConfigError, UsageError) as exc:
        return _cannot_run(args, str(exc))
    except Exception as exc:
        return _cannot_run(args, f"unexpected error: {clients.problem(exc)}")
    if args.json:
        print(json.dumps(result, default=str, indent=2))
    else:
        _print_table(result)
    return 0 if ok else 1


def _cannot_run(args: argparse.Namespace, error: str) -> int:
    """One line on stderr (and, with --json, ``{"ok": false, "error": ...}`` on stdout); 2."""
    print(f"paynow-ops: {error}", file=sys.stderr)
    if args.json:
        print(json.dumps({"ok": False, "error": error}))
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
