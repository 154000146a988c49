#!/usr/bin/env bash
# Step 8: the Cloud Scheduler job that calls paynow_reconcile (every 5 minutes by default),
# with an OIDC token of the scheduler service account whose audience is reconcile's URL.
#
#   infra/steps/scheduler.sh ENV_FILE [--dry-run]
#
# A job that drifted from the settings is updated; a paused job stays paused (say so).

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

function_endpoint "$RECONCILE_FUNCTION"
url=$FN_URL
deadline="${RECONCILE_TIMEOUT_SECONDS}s"
settings=(
  --location="$SCHEDULER_LOCATION" --project="$PROJECT"
  --schedule="$RECONCILE_SCHEDULE" --time-zone="$RECONCILE_TIME_ZONE"
  --uri="$url" --http-method=POST --message-body='{}'
  --oidc-service-account-email="$SCHEDULER_SA" --oidc-token-audience="$url"
  --attempt-deadline="$deadline"
)
want="$RECONCILE_SCHEDULE|$RECONCILE_TIME_ZONE|$url|POST|$SCHEDULER_SA|$url|$deadline"

say "Scheduler job $SCHEDULER_JOB -> $url"
current=''
if query current gcloud scheduler jobs describe "$SCHEDULER_JOB" \
  --location="$SCHEDULER_LOCATION" --project="$PROJECT" \
  --format='value[separator="|"](schedule,timeZone,httpTarget.uri,httpTarget.httpMethod,httpTarget.oidcToken.serviceAccountEmail,httpTarget.oidcToken.audience,attemptDeadline,state)'; then
  [[ ${current##*|} == PAUSED ]] && warn "job $SCHEDULER_JOB is paused: resume it with gcloud scheduler jobs resume $SCHEDULER_JOB --location=$SCHEDULER_LOCATION --project=$PROJECT"
  if [[ ${current%|*} == "$want" ]]; then
    note "job is up to date"
  else
    note "job drifted: '${current%|*}', wanted '$want'"
    run gcloud scheduler jobs update http "$SCHEDULER_JOB" "${settings[@]}" \
      --update-headers=Content-Type=application/json
  fi
else
  run gcloud scheduler jobs create http "$SCHEDULER_JOB" "${settings[@]}" \
    --headers=Content-Type=application/json \
    --description='PayNow: republish events stuck in received (paynow_reconcile)'
fi
