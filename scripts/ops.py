"""``scripts/paynow-ops``: the operator's CLI, against real GCP or the emulators.

It reads the project and emulator hosts from the same variables as the
functions (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST,
PUBSUB_TOPIC, PUBSUB_DLQ_TOPIC), uses application default credentials on
GCP, prints tables (``--json`` for scripts) and exits 1 when what it checks
does not hold (2 for a configuration it cannot run with).

    scripts/paynow-ops health [--strict] [--stuck-after SECONDS]
    scripts/paynow-ops mode [--env-file infra/env/ENV.env]
    scripts/paynow-ops event show EVENT_ID
    scripts/paynow-ops user show USER_ID
    scripts/paynow-ops ledger verify [--user USER_ID]
    scripts/paynow-ops dlq list [--page-size N]
    scripts/paynow-ops dlq replay (--event-id ID | --error-code CODE | --all) [--dry-run]
    scripts/paynow-ops dlq discard (--event-id ID | --error-code CODE | --all) [--dry-run]
    scripts/paynow-ops reconcile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any

from scripts.paynow_ops import clients
from scripts.paynow_ops.clients import Ops, UsageError
from scripts.paynow_ops.dead_letters import PAGE_SIZE
from scripts.paynow_ops.dlq import dlq_discard, dlq_list, dlq_replay
from scripts.paynow_ops.events import event_show, reconcile
from scripts.paynow_ops.health import STUCK_AFTER_SECONDS, health
from scripts.paynow_ops.ledger import ledger_verify, user_show
from scripts.paynow_ops.mode import webhook_mode


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paynow-ops", description="Operate the PayNow pipeline.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    area = parser.add_subparsers(dest="area", required=True)
    commands: dict[tuple[str, str | None], Callable[[Ops, argparse.Namespace], Any]] = {}

    event = area.add_parser("event").add_subparsers(dest="verb", required=True)
    p = event.add_parser("show")
    p.add_argument("event_id")
    commands["event", "show"] = event_show

    user = area.add_parser("user").add_subparsers(dest="verb", required=True)
    p = user.add_parser("show")
    p.add_argument("user_id")
    p.add_argument("--limit", type=int, default=20)
    commands["user", "show"] = user_show

    ledger = area.add_parser("ledger").add_subparsers(dest="verb", required=True)
    p = ledger.add_parser("verify")
    p.add_argument("--user")
    commands["ledger", "verify"] = ledger_verify

    dlq = area.add_parser("dlq").add_subparsers(dest="verb", required=True)
    p = dlq.add_parser("list", help="what waits in the DLQ, by error code (nothing consumed)")
    _page_size(p)
    commands["dlq", "list"] = dlq_list
    p = dlq.add_parser("replay", help="reopen, republish, then acknowledge the chosen messages")
    _dlq_selection(p, "replay")
    commands["dlq", "replay"] = dlq_replay
    p = dlq.add_parser("discard", help="acknowledge the chosen messages without a replay")
    _dlq_selection(p, "discard")
    commands["dlq", "discard"] = dlq_discard

    area.add_parser("reconcile")
    commands["reconcile", None] = reconcile

    p = area.add_parser("health", help="check Firestore, topics, subscriptions, DLQ, stuck events")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument(
        "--stuck-after",
        type=int,
        default=STUCK_AFTER_SECONDS,
        metavar="SECONDS",
        help=f"a received event older than this is stuck (default {STUCK_AFTER_SECONDS})",
    )
    commands["health", None] = health

    p = area.add_parser("mode", help="the webhook's WEBHOOK_MODE and how to switch it")
    p.add_argument("--env-file", help="infra settings file: read the deployed webhook's mode")

    args = parser.parse_args(argv)
    try:
        if args.area == "mode":  # no Firestore or Pub/Sub client needed
            result, ok = webhook_mode(args)
        else:
            command = commands[args.area, getattr(args, "verb", None)]
            ops = Ops.connect()
            with contextlib.redirect_stdout(sys.stderr):  # the library's JSON logs stay off stdout
                result, ok = command(ops, args)
    except (clients.ConfigError, UsageError) as exc:
        print(f"paynow-ops: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=str, indent=2))
    else:
        _print_table(result)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
