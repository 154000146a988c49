#!/usr/bin/env bash
# After a deploy: send one signed test event to the live webhook and check it was recorded.
#
#   scripts/smoke_test.sh ENV_FILE [--dry-run]
#
# The event has an event type PayNow never sends (SMOKE_TEST), so it is recorded as
# `ignored` and moves no points; its webhookEvents record expires with the TTL. Also checks
# that a bad signature is refused and that the worker and reconcile refuse a caller
# without a token. The signing secret and an access token are read with gcloud into the
# check's environment, never printed. The caller needs secretmanager.versions.access on
# the secret and datastore read access (see docs/cloud-setup.md).

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/infra/lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

function_endpoint "$WEBHOOK_FUNCTION"
webhook_url=$FN_URL
function_endpoint "$WORKER_FUNCTION"
worker_url=$FN_URL
function_endpoint "$RECONCILE_FUNCTION"
reconcile_url=$FN_URL

python=python3
[[ -x $ROOT/.venv/bin/python ]] && python=$ROOT/.venv/bin/python
show gcloud secrets versions access latest --secret="$SECRET_NAME" --project="$PROJECT"
show gcloud auth print-access-token
note "(both into the check's environment; neither is shown)"
check=("$python" "$ROOT/scripts/smoke_test.py" --project="$PROJECT" --webhook-url="$webhook_url"
  --protected-url="$worker_url" --protected-url="$reconcile_url")
show "${check[@]}"
((DRY_RUN)) && exit 0

PAYNOW_WEBHOOK_SECRET=$(gcloud secrets versions access latest --secret="$SECRET_NAME" --project="$PROJECT")
SMOKE_ACCESS_TOKEN=$(gcloud auth print-access-token)
export PAYNOW_WEBHOOK_SECRET SMOKE_ACCESS_TOKEN
exec "${check[@]}"
