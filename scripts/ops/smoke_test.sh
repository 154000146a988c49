#!/usr/bin/env bash
# After a deploy: signed test events to the live webhook, checked end to end, then removed.
#
#   scripts/ops/smoke_test.sh ENV_FILE [--dry-run]
#
# Always: an event type PayNow never sends (SMOKE_TEST), recorded as `ignored` (no points);
# a bad signature refused; the worker, reconcile and the ledger check refusing a caller
# without a token (Cloud Run's ingress answers 404 from outside the project). When the live
# webhook runs queue mode, also the queue path: a cancellation of a smoke subscription
# (no points, no catalog entry), published, pushed to the worker with Pub/Sub's OIDC token,
# processed. The documents it wrote are deleted afterwards (scripts/ops/smoke_test.py).
# The signing secret and an access token are read with gcloud into the check's
# environment, never printed. The caller needs secretmanager.versions.access on the secret
# and the custom role paynowSmokeTest (read and delete documents; the deployer holds both,
# docs/cloud-setup.md).

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/infra/lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

function_endpoint "$WEBHOOK_FUNCTION"
webhook_url=$FN_URL
webhook_service=$FN_SERVICE
function_endpoint "$WORKER_FUNCTION"
worker_url=$FN_URL
function_endpoint "$RECONCILE_FUNCTION"
reconcile_url=$FN_URL
function_endpoint "$LEDGER_FUNCTION"
ledger_url=$FN_URL
mode=$WEBHOOK_MODE
if service_state "$webhook_service"; then mode=$LIVE_MODE; fi
[[ $mode == queue ]] || mode=sync
note "the live webhook runs $mode mode: $([[ $mode == queue ]] && echo 'the queue path is checked too' || echo 'the queue path is not checked (switch to queue mode first)')"

python=python3
[[ -x $ROOT/.venv/bin/python ]] && python=$ROOT/.venv/bin/python
show gcloud secrets versions access latest --secret="$SECRET_NAME" --project="$PROJECT"
show gcloud auth print-access-token
note "(both into the check's environment; neither is shown)"
check=("$python" "$ROOT/scripts/ops/smoke_test.py" --project="$PROJECT" --webhook-url="$webhook_url"
  --protected-url="$worker_url" --protected-url="$reconcile_url" --protected-url="$ledger_url"
  --mode="$mode")
show "${check[@]}"
((NO_WRITES)) && exit 0 # a plan sends nothing either

PAYNOW_WEBHOOK_SECRET=$(gcloud secrets versions access latest --secret="$SECRET_NAME" --project="$PROJECT")
SMOKE_ACCESS_TOKEN=$(gcloud auth print-access-token)
export PAYNOW_WEBHOOK_SECRET SMOKE_ACCESS_TOKEN
exec "${check[@]}"
