#!/usr/bin/env bash
# The rollback switch: set WEBHOOK_MODE (sync | queue) on the live webhook, nothing else.
#
#   infra/set-mode.sh ENV_FILE sync|queue [--dry-run | --plan]
#
# Updates only that variable on the webhook's Cloud Run service (same image, other
# variables kept), waits until the new revision serves all traffic, and says so. In both
# modes every event is recorded and deduplicated, and events already queued keep flowing
# through the worker, so switching either way loses and doubles nothing.
# The switch lasts: infra/deploy.sh keeps the live webhook's WEBHOOK_MODE (the settings
# file's value applies only when the webhook is first deployed).

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

function_endpoint "$WEBHOOK_FUNCTION"
SERVICE=$FN_SERVICE
say "Webhook $WEBHOOK_FUNCTION (Cloud Run service $SERVICE): WEBHOOK_MODE=$MODE"
if service_state "$SERVICE"; then
  if [[ $LIVE_MODE == "$MODE" && $REVISION == "$LATEST_CREATED" ]]; then
    note "already in $MODE mode (revision $REVISION); nothing changed"
    plan_item unchanged "Cloud Run service $SERVICE (WEBHOOK_MODE=$MODE)"
    exit 0
  fi
  note "now: WEBHOOK_MODE=$LIVE_MODE, revision $REVISION"
elif ! ((DRY_RUN)); then
  die "Cloud Run service $SERVICE not found"
fi

plan_item update "Cloud Run service $SERVICE" "WEBHOOK_MODE '${LIVE_MODE:-?}' -> '$MODE'"
run gcloud run services update "$SERVICE" --region="$REGION" --project="$PROJECT" \
  --update-env-vars="WEBHOOK_MODE=$MODE" --quiet
((NO_WRITES)) && exit 0

# `run services update` returns once the revision is ready; confirm it serves everything.
for _ in $(seq 1 30); do
  service_state "$SERVICE" || die "Cloud Run service $SERVICE not found"
  if [[ $LIVE_MODE == "$MODE" && $REVISION == "$LATEST_CREATED" &&
    $SERVING_REVISION == "$REVISION" && $SERVING_PERCENT == 100 ]]; then
    say "Done: $WEBHOOK_FUNCTION serves revision $REVISION with WEBHOOK_MODE=$MODE (100% of traffic)."
    [[ $WEBHOOK_MODE == "$MODE" ]] ||
      note "$ENV_FILE says WEBHOOK_MODE=$WEBHOOK_MODE: deploys keep the live mode ($MODE); the file's value is used only for a first deploy. Set WEBHOOK_MODE=$MODE there to keep them in step."
    exit 0
  fi
  sleep 2
done
die "revision $REVISION (WEBHOOK_MODE=$LIVE_MODE) is not serving all traffic (traffic: $SERVING_REVISION at ${SERVING_PERCENT:-?}%); inspect: gcloud run services describe $SERVICE --region=$REGION --project=$PROJECT"
