r"""Sign and send one PayNow sample event to a webhook (the local stack's by default).

    .venv/bin/python scripts/ops/send_webhook.py order_completed
    URL=$(gcloud functions describe paynow-webhook --gen2 --region REGION \
          --format='value(serviceConfig.uri)')
    .venv/bin/python scripts/ops/send_webhook.py refund --url "$URL"

The sample is re-stamped and re-signed; ``--fresh`` gives it new ids so the
same sample can be sent again without being a duplicate. The secret comes
from PAYNOW_WEBHOOK_SECRET (its first line; or the local stack's demo secret), never an
argument.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from paynow.domain import payloads
from paynow.domain.signature import parse_secrets

from scripts.local.localstack import DEMO_SECRET

# order_completed, refund, chargeback_closed, ...: PayNow's 19 event types, without "ON_"
NAMES = {t.removeprefix("ON_").lower(): t for t in payloads.EVENT_TYPES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("event", choices=NAMES, metavar="EVENT", help=", ".join(NAMES))
    parser.add_argument(
        "--url", default=os.environ.get("PAYNOW_WEBHOOK_URL", "http://127.0.0.1:8080/")
    )
    parser.add_argument("--fresh", action="store_true", help="give the event a new event id")
    parser.add_argument("--user-id", help="override checkout metadata user_id")
    args = parser.parse_args()
    doc = payloads.event(NAMES[args.event])
    if args.fresh:
        doc["event_id"] = str(uuid.uuid4().int % 10**18)  # a new flake-shaped id
    if args.user_id and isinstance(doc["body"].get("checkout"), dict):
        doc["body"]["checkout"]["metadata"] = {"user_id": args.user_id}
    secret = (parse_secrets(os.environ.get("PAYNOW_WEBHOOK_SECRET")) or (DEMO_SECRET,))[0]
    body, headers = payloads.signed(doc, secret)
    request = urllib.request.Request(args.url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            status, answer = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read()
    print(f"{status} {answer.decode('utf-8', 'replace').strip()}")
    try:
        json.loads(answer)
    except ValueError:
        return 1
    return 0 if status < 300 else 1


if __name__ == "__main__":
    raise SystemExit(main())
