#!/usr/bin/env bash
# Step 5: deploy paynow_webhook, paynow_worker and paynow_reconcile (Cloud Functions gen2,
# python311) from functions/, each as its own service account.
#
#   infra/steps/functions.sh ENV_FILE [--dry-run]
#
# The webhook is public: PayNow authenticates with its HMAC signature. The worker and
# reconcile are not (--no-allow-unauthenticated): Cloud Run admits only callers holding
# run.invoker (granted by infra/steps/iam.sh) and the code checks the token's audience and email.
# A function whose source and settings are unchanged is not deployed again: each deploy
# records a digest of both in the function's label deploy-hash.
# WEBHOOK_MODE from the settings file applies to the webhook's first deploy only. Later
# deploys keep the live webhook's mode (set by infra/set-mode.sh), and say so when the file
# differs: a redeploy never undoes a rollback.
# The worker's and reconcile's token audience is their own URL (PUSH_AUDIENCE,
# RECONCILE_AUDIENCE), known only once they exist: a first deploy uses a placeholder
# audience (every token is refused), reads the URL, and deploys again with it.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

readonly SOURCE_DIR="$ROOT_DIR/functions"
readonly PENDING_AUDIENCE=https://audience-pending-first-deploy.invalid
[[ -f $SOURCE_DIR/main.py && -f $SOURCE_DIR/requirements.txt ]] ||
  die "$SOURCE_DIR must hold main.py and requirements.txt"
SOURCE_DIGEST=$(cd "$SOURCE_DIR" &&
  find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
  xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
readonly SOURCE_DIGEST

# deploy_if_changed NAME TARGET SA ACCESS TIMEOUT MAX_INSTANCES ENV...: deploy unless the
# function is ACTIVE with the same digest (FN_STATE/FN_HASH from the last describe). A
# WEBHOOK_MODE=MODE in ENV becomes what webhook_mode MODE decides (FN_SERVICE, same describe).
deploy_if_changed() {
  local name=$1 target=$2 sa=$3 access=$4 timeout=$5 max=$6 digest var env=() kept=()
  shift 6
  # WEBHOOK_MODE is not part of the digest: once the webhook exists it is infra/set-mode.sh's
  # to change, so a switch alone never makes the function look out of date.
  for var in "$@"; do
    if [[ $var == WEBHOOK_MODE=* ]]; then
      webhook_mode "${var#WEBHOOK_MODE=}"
      var=WEBHOOK_MODE=$DEPLOY_MODE
    else
      kept+=("$var")
    fi
    [[ $var != *,* ]] || die "environment value with a comma cannot be passed: ${var%%=*}"
    env+=("$var")
  done
  set -- "${env[@]}"
  local spec=(
    --gen2 --region="$REGION" --project="$PROJECT" --runtime="$RUNTIME"
    --entry-point="$target" --trigger-http "$access" --service-account="$sa"
    --ingress-settings=all --timeout="${timeout}s" --memory="$FUNCTION_MEMORY"
    --max-instances="$max" --set-env-vars="$(IFS=,; printf '%s' "$*")"
  )
  if [[ -n $BUILD_SERVICE_ACCOUNT ]]; then
    spec+=(--build-service-account="projects/$PROJECT/serviceAccounts/$BUILD_SERVICE_ACCOUNT")
  fi
  local hashed=() arg
  for arg in "${spec[@]}"; do
    [[ $arg == --set-env-vars=* ]] && arg="--set-env-vars=$(IFS=,; printf '%s' "${kept[*]}")"
    hashed+=("$arg")
  done
  digest=$(printf '%s\n' "$SOURCE_DIGEST" "${hashed[@]}" | sha256sum | cut -c1-40)
  if [[ $FN_STATE == ACTIVE && $FN_HASH == "$digest" ]]; then
    note "$name is up to date (deploy-hash $digest)"
    return
  fi
  [[ -z $FN_STATE || $FN_STATE == ACTIVE ]] || note "$name is $FN_STATE: deploying again"
  run gcloud functions deploy "$name" "${spec[@]}" --source="$SOURCE_DIR" \
    --update-labels="deploy-hash=$digest" --quiet
}

# deploy_function NAME TARGET SA ACCESS TIMEOUT MAX_INSTANCES AUDIENCE_VAR ENV...:
# AUDIENCE_VAR (or '') is set to the function's own URL.
deploy_function() {
  local name=$1 audience_var=$7 args=("${@:1:6}")
  shift 7
  say "Function $name (${args[1]})"
  describe_function "$name" || true
  if [[ -n $audience_var ]]; then
    if [[ -z $FN_URL ]]; then
      note "first deploy: $audience_var is a placeholder until the URL exists"
      deploy_if_changed "${args[@]}" "$@" "$audience_var=$PENDING_AUDIENCE"
      function_endpoint "$name"
    fi
    set -- "$@" "$audience_var=$FN_URL"
  fi
  deploy_if_changed "${args[@]}" "$@"
}

common_env=(
  "GOOGLE_CLOUD_PROJECT=$PROJECT" "PUBSUB_TOPIC=$TOPIC" "PUBSUB_DLQ_TOPIC=$DLQ_TOPIC"
  "MAX_DELIVERY_ATTEMPTS=$MAX_DELIVERY_ATTEMPTS" "EVENT_TTL_DAYS=$EVENT_TTL_DAYS"
  "PAYNOW_USER_ID_KEY=$PAYNOW_USER_ID_KEY"
)
# webhook_mode MODE: the WEBHOOK_MODE to deploy the webhook with, into DEPLOY_MODE. Once the
# webhook's Cloud Run service exists (FN_SERVICE, from deploy_function's describe), its live
# value: infra/set-mode.sh owns it from then on. MODE, the settings file's value, applies to
# the first deploy only.
webhook_mode() {
  local wanted=$1
  DEPLOY_MODE=$wanted
  [[ -n $FN_SERVICE ]] || return 0
  service_state "$FN_SERVICE" || return 0
  if [[ $LIVE_MODE != sync && $LIVE_MODE != queue ]]; then
    warn "the live webhook has WEBHOOK_MODE='$LIVE_MODE' (not sync or queue): deploying it with $wanted from $ENV_FILE"
    return 0
  fi
  DEPLOY_MODE=$LIVE_MODE
  if [[ $LIVE_MODE != "$wanted" ]]; then
    note "$ENV_FILE says WEBHOOK_MODE=$wanted, the live webhook runs $LIVE_MODE: mode stays $LIVE_MODE; use infra/set-mode.sh to change it"
  fi
}

# The public webhook goes last: the functions it hands work to are updated first.
deploy_function "$WORKER_FUNCTION" "$WORKER_TARGET" "$WORKER_SA" --no-allow-unauthenticated \
  "$WORKER_TIMEOUT_SECONDS" "$WORKER_MAX_INSTANCES" PUSH_AUDIENCE \
  "${common_env[@]}" PUSH_AUTH=oidc "PUSH_SERVICE_ACCOUNT=$PUSH_SA"
deploy_function "$RECONCILE_FUNCTION" "$RECONCILE_TARGET" "$RECONCILE_SA" --no-allow-unauthenticated \
  "$RECONCILE_TIMEOUT_SECONDS" "$RECONCILE_MAX_INSTANCES" RECONCILE_AUDIENCE \
  "${common_env[@]}" PUSH_AUTH=oidc "SCHEDULER_SERVICE_ACCOUNT=$SCHEDULER_SA"
deploy_function "$WEBHOOK_FUNCTION" "$WEBHOOK_TARGET" "$WEBHOOK_SA" --allow-unauthenticated \
  "$WEBHOOK_TIMEOUT_SECONDS" "$WEBHOOK_MAX_INSTANCES" '' \
  "${common_env[@]}" "WEBHOOK_MODE=$WEBHOOK_MODE" "PAYNOW_WEBHOOK_SECRET_ID=$SECRET_ID"
