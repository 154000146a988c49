#!/usr/bin/env bash
# Deploy step: the Cloud Scheduler jobs, each calling its function with an OIDC token of the
# scheduler service account whose audience is the function's URL: reconcile (every 5
# minutes by default) and the ledger check (once a day by default).
#
#   infra/steps/scheduler.sh ENV_FILE [--dry-run | --plan]
#
# A job that drifted from the settings is updated; a paused job stays paused (say so).
# The functions' ingress is internal-only: Cloud Scheduler of the same project reaches
# them at their run.app URL (docs/security.md).

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

readonly JOB_FORMAT='value[separator="|"](schedule,timeZone,httpTarget.uri,httpTarget.httpMethod,httpTarget.oidcToken.serviceAccountEmail,httpTarget.oidcToken.audience,attemptDeadline,state)'
readonly JOB_FIELDS=(schedule timeZone uri httpMethod oidcServiceAccount oidcAudience attemptDeadline)

# ensure_job JOB FUNCTION SCHEDULE TIMEOUT_SECONDS DESCRIPTION
ensure_job() {
  local job=$1 function=$2 schedule=$3 deadline="${4}s" description=$5 current url i changes=()
  function_endpoint "$function"
  url=$FN_URL
  local settings=(
    --location="$SCHEDULER_LOCATION" --project="$PROJECT"
    --schedule="$schedule" --time-zone="$RECONCILE_TIME_ZONE"
    --uri="$url" --http-method=POST --message-body='{}'
    --oidc-service-account-email="$SCHEDULER_SA" --oidc-token-audience="$url"
    --attempt-deadline="$deadline"
  )
  local want=("$schedule" "$RECONCILE_TIME_ZONE" "$url" POST "$SCHEDULER_SA" "$url" "$deadline")
  say "Scheduler job $job -> $url"
  if query current gcloud scheduler jobs describe "$job" --location="$SCHEDULER_LOCATION" \
    --project="$PROJECT" --format="$JOB_FORMAT"; then
    local have
    IFS='|' read -r -a have <<<"$current|"
    [[ ${have[7]:-} == PAUSED ]] && warn "job $job is paused: resume it with gcloud scheduler jobs resume $job --location=$SCHEDULER_LOCATION --project=$PROJECT"
    for i in "${!JOB_FIELDS[@]}"; do
      [[ ${have[i]:-} == "${want[i]}" ]] || changes+=("${JOB_FIELDS[i]} '${have[i]:-}' -> '${want[i]}'")
    done
    if ((${#changes[@]} == 0)); then
      note "job is up to date"
      plan_item unchanged "scheduler job $job"
    else
      plan_item update "scheduler job $job" "$(IFS=';'; printf '%s' "${changes[*]}")"
      run gcloud scheduler jobs update http "$job" "${settings[@]}" \
        --update-headers=Content-Type=application/json
    fi
  else
    plan_item create "scheduler job $job" "$schedule -> $function"
    run gcloud scheduler jobs create http "$job" "${settings[@]}" \
      --headers=Content-Type=application/json --description="$description"
  fi
}

ensure_job "$SCHEDULER_JOB" "$RECONCILE_FUNCTION" "$RECONCILE_SCHEDULE" "$RECONCILE_TIMEOUT_SECONDS" \
  'PayNow: republish events stuck in received (paynow_reconcile)'
ensure_job "$LEDGER_VERIFY_JOB" "$LEDGER_FUNCTION" "$LEDGER_VERIFY_SCHEDULE" "$LEDGER_TIMEOUT_SECONDS" \
  'PayNow: check every balance against its ledger (paynow-ops ledger verify)'
