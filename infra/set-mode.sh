#!/usr/bin/env bash
# The rollback switch: set WEBHOOK_MODE (sync | queue) on the live webhook, nothing else.
#
#   infra/set-mode.sh ENV_FILE sync|queue [--dry-run]
#
# Updates only that variable on the webhook's Cloud Run service (same image, other
# variables kept), waits until the new revision serves all traffic, and says so. In both
# modes every event is recorded and deduplicated, and events already queued keep flowing
# through the worker, so switching either way loses and doubles nothing.
# The next infra/deploy.sh that changes the webhook applies WEBHOOK_MODE from ENV_FILE
# again: set it there too.

set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "$@"
((${#ARGS[@]} == 1)) || {
  usage
  die "give exactly one mode: sync or queue"
}
MODE=${ARGS[0]}
ARGS=()
[[ $MODE == sync || $MODE == queue ]] || die "mode must be sync or queue, got '$MODE'"
load_settings "$ENV_FILE"

# live_state SERVICE: sets LIVE_MODE (sync when unset, as the code defaults), REVISION
# (latest ready), LATEST_CREATED, and SERVING_REVISION / SERVING_PERCENT (first traffic target).
live_state() {
  local out names values name i=0
  query out gcloud run services describe "$1" --region="$REGION" --project="$PROJECT" \
    --format='value[separator="|"](spec.template.spec.containers[0].env[].name.join(","),spec.template.spec.containers[0].env[].value.join(","),status.latestReadyRevisionName,status.latestCreatedRevisionName,status.traffic[0].revisionName,status.traffic[0].percent)' ||
    return 1
  IFS='|' read -r names values REVISION LATEST_CREATED SERVING_REVISION SERVING_PERCENT <<<"$out"
  IFS=, read -r -a names <<<"$names"
  IFS=, read -r -a values <<<"$values"
  LIVE_MODE=sync
  for name in "${names[@]}"; do
    [[ $name == WEBHOOK_MODE ]] && LIVE_MODE=${values[i]}
    i=$((i + 1))
  done
  return 0
}

function_endpoint "$WEBHOOK_FUNCTION"
SERVICE=$FN_SERVICE
say "Webhook $WEBHOOK_FUNCTION (Cloud Run service $SERVICE): WEBHOOK_MODE=$MODE"
if live_state "$SERVICE"; then
  if [[ $LIVE_MODE == "$MODE" && $REVISION == "$LATEST_CREATED" ]]; then
    note "already in $MODE mode (revision $REVISION); nothing changed"
    exit 0
  fi
  note "now: WEBHOOK_MODE=$LIVE_MODE, revision $REVISION"
elif ! ((DRY_RUN)); then
  die "Cloud Run service $SERVICE not found"
fi

run gcloud run services update "$SERVICE" --region="$REGION" --project="$PROJECT" \
  --update-env-vars="WEBHOOK_MODE=$MODE" --quiet
((DRY_RUN)) && exit 0

# `run services update` returns once the revision is ready; confirm it serves everything.
for _ in $(seq 1 30); do
  live_state "$SERVICE" || die "Cloud Run service $SERVICE not found"
  if [[ $LIVE_MODE == "$MODE" && $REVISION == "$LATEST_CREATED" &&
    $SERVING_REVISION == "$REVISION" && $SERVING_PERCENT == 100 ]]; then
    say "Done: $WEBHOOK_FUNCTION serves revision $REVISION with WEBHOOK_MODE=$MODE (100% of traffic)."
    [[ $WEBHOOK_MODE == "$MODE" ]] ||
      note "Set WEBHOOK_MODE=$MODE in $ENV_FILE too, or the next deploy of the webhook switches it back."
    exit 0
  fi
  sleep 2
done
die "revision $REVISION (WEBHOOK_MODE=$LIVE_MODE) is not serving all traffic (traffic: $SERVING_REVISION at ${SERVING_PERCENT:-?}%); inspect: gcloud run services describe $SERVICE --region=$REGION --project=$PROJECT"
