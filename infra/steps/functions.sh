#!/usr/bin/env bash
# shellcheck disable=SC2153 # the settings (WORKER_MAX_INSTANCES, ...) come from lib.sh
# Deploy step: paynow_worker, paynow_reconcile, the daily ledger check and paynow_webhook
# (Cloud Functions gen2, python311), each as its own service account, sized by
# infra/sizing.sh, built by the build service account (BUILD_SERVICE_ACCOUNT).
#
#   infra/steps/functions.sh ENV_FILE [--dry-run | --plan]
#
# The webhook is public (--allow-unauthenticated, ingress all): PayNow authenticates with its
# HMAC signature. The others are private twice: ingress internal-only (only Google services
# of this project reach them: Pub/Sub's push, Cloud Scheduler; docs/security.md cites
# Google's documentation) and --no-allow-unauthenticated (Cloud Run admits only callers
# holding run.invoker, granted by infra/steps/iam.sh; the worker and reconcile also check
# the token's audience and email).
# A function whose source and settings are unchanged is not deployed again: each deploy
# records a digest of both in the function's label deploy-hash (and of the source alone in
# deploy-source, so a plan can say what changed).
# WEBHOOK_MODE from the settings file applies to the webhook's first deploy only. Later
# deploys keep the live webhook's mode (set by infra/set-mode.sh), and say so when the file
# differs: a redeploy never undoes a rollback.
# WEBHOOK_SECRET_PREVIOUS_VERSION / _UNTIL: during a rotation, that version of the signing
# secret is injected as PAYNOW_WEBHOOK_SECRET_PREVIOUS, accepted until the time given
# (PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL); empty: no previous secret (docs/runbook.md).
# The worker's and reconcile's token audience is their own URL (PUSH_AUDIENCE,
# RECONCILE_AUDIENCE), known only once they exist: a first deploy uses a placeholder
# audience (every token is refused), reads the URL, and deploys again with it.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=../sizing.sh
source "$INFRA_DIR/sizing.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"
for prefix in WEBHOOK WORKER RECONCILE LEDGER; do check_sizing "$prefix"; done

readonly SOURCE_DIR="$ROOT_DIR/functions"
readonly PENDING_AUDIENCE=https://audience-pending-first-deploy.invalid
[[ -f $SOURCE_DIR/main.py && -f $SOURCE_DIR/requirements.txt ]] ||
  die "$SOURCE_DIR must hold main.py and requirements.txt"
render_dir ledger-verify
readonly LEDGER_SOURCE=$RENDERED
bash "$INFRA_DIR/ledger_verify/stage.sh" "$LEDGER_SOURCE"

# source_digest DIR: sha256 over every file of DIR (names and bytes), caches left out.
source_digest() {
  (cd "$1" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum | sha256sum | cut -c1-40)
}
declare -A DIGESTS=(
  [$SOURCE_DIR]=$(source_digest "$SOURCE_DIR")
  [$LEDGER_SOURCE]=$(source_digest "$LEDGER_SOURCE")
)

# changed_fields: the FUNCTION_FIELDS whose live value (FN_LIVE, from the last describe)
# differs from WANT, each with both values.
changed_fields() {
  local i out=()
  for i in "${!FUNCTION_FIELDS[@]}"; do
    [[ ${FN_LIVE[i]:-} == "${WANT[i]}" ]] || out+=("${FUNCTION_FIELDS[i]} '${FN_LIVE[i]:-}' -> '${WANT[i]}'")
  done
  (IFS=';'; printf '%s' "${out[*]}")
}

# deploy_if_changed PREFIX NAME TARGET SA ACCESS INGRESS TIMEOUT MAX SOURCE ENV...: deploy
# unless the function is ACTIVE with the same digest (FN_STATE/FN_HASH from the last
# describe). PREFIX names its sizes in infra/sizing.sh. A WEBHOOK_MODE=MODE in ENV becomes
# what webhook_mode MODE decides (FN_SERVICE, same describe).
deploy_if_changed() {
  local prefix=$1 name=$2 target=$3 sa=$4 access=$5 ingress=$6 timeout=$7 max=$8 source=$9
  shift 9
  local cpu="${prefix}_CPU" memory="${prefix}_MEMORY" concurrency="${prefix}_CONCURRENCY"
  local min="${prefix}_MIN_INSTANCES" digest var env=() kept=() secrets=()
  # WEBHOOK_MODE is not part of the digest: once the webhook exists it is infra/set-mode.sh's
  # to change, so a switch alone never makes the function look out of date.
  for var in "$@" "THREADS=${!concurrency}"; do
    if [[ $var == WEBHOOK_MODE=* ]]; then
      webhook_mode "${var#WEBHOOK_MODE=}"
      var=WEBHOOK_MODE=$DEPLOY_MODE
    elif [[ $var == SECRET:* ]]; then
      secrets+=("${var#SECRET:}")
      continue
    else
      kept+=("$var")
    fi
    [[ $var != *,* ]] || die "environment value with a comma cannot be passed: ${var%%=*}"
    env+=("$var")
  done
  local spec=(
    --gen2 --region="$REGION" --project="$PROJECT" --runtime="$RUNTIME"
    --entry-point="$target" --trigger-http "$access" --service-account="$sa"
    --build-service-account="projects/$PROJECT/serviceAccounts/$BUILD_SA"
    --ingress-settings="$ingress" --timeout="${timeout}s"
    --memory="${!memory}" --cpu="${!cpu}" --concurrency="${!concurrency}"
    --min-instances="${!min}" --max-instances="$max"
    --set-env-vars="$(IFS=,; printf '%s' "${env[*]}")"
  )
  if ((${#secrets[@]})); then
    spec+=(--set-secrets="$(IFS=,; printf '%s' "${secrets[*]}")")
  elif [[ -n $FN_STATE ]]; then
    spec+=(--clear-secrets) # an update: none left from an earlier rotation
  fi
  local hashed=() arg
  for arg in "${spec[@]}"; do
    [[ $arg == --clear-secrets ]] && continue # "no secret", as on the first deploy
    [[ $arg == --set-env-vars=* ]] && arg="--set-env-vars=$(IFS=,; printf '%s' "${kept[*]}")"
    hashed+=("$arg")
  done
  digest=$(printf '%s\n' "${DIGESTS[$source]}" "${hashed[@]}" | sha256sum | cut -c1-40)
  local ingress_api
  ingress_api=$(printf 'ALLOW_%s' "${ingress^^}" | tr - _)
  WANT=(
    "${DIGESTS[$source]}" "$RUNTIME" "$target" "projects/$PROJECT/serviceAccounts/$BUILD_SA" "$sa"
    "$ingress_api" "${!memory}" "${!cpu}" "${!concurrency}" "${!min}" "$max" "$timeout"
    "$(printf '%s\n' "${env[@]}" | LC_ALL=C sort | paste -sd, -)"
    "$(printf '%s\n' "${secrets[@]}" | LC_ALL=C sort | paste -sd, -)"
  )
  if [[ $FN_STATE == ACTIVE && $FN_HASH == "$digest" ]]; then
    note "$name is up to date (deploy-hash $digest)"
    plan_item unchanged "function $name"
    return
  fi
  if ((PLACEHOLDER && NO_WRITES)); then
    : # the first of a first deploy's two: the plan line is the second's
  elif [[ -z $FN_STATE ]]; then
    plan_item create "function $name" "$target, ${!cpu} vCPU, ${!memory}, concurrency ${!concurrency}, ingress $ingress"
  else
    [[ $FN_STATE == ACTIVE ]] || note "$name is $FN_STATE: deploying again"
    local changes
    changes=$(changed_fields)
    plan_item update "function $name" "${changes:-state $FN_STATE or deploy settings}"
  fi
  run gcloud functions deploy "$name" "${spec[@]}" --source="$source" \
    --update-labels="deploy-hash=$digest,deploy-source=${DIGESTS[$source]}" --quiet
}

# deploy_function PREFIX NAME TARGET SA ACCESS INGRESS TIMEOUT MAX SOURCE AUDIENCE_VAR ENV...:
# AUDIENCE_VAR (or '') is set to the function's own URL.
deploy_function() {
  local name=$2 audience_var=${10} args=("${@:1:9}")
  shift 10
  say "Function $name (${args[2]})"
  describe_function "$name" || true
  if [[ -n $audience_var ]]; then
    if [[ -z $FN_URL ]]; then
      note "first deploy: $audience_var is a placeholder until the URL exists"
      PLACEHOLDER=1
      deploy_if_changed "${args[@]}" "$@" "$audience_var=$PENDING_AUDIENCE"
      PLACEHOLDER=0
      function_endpoint "$name"
    fi
    set -- "$@" "$audience_var=$FN_URL"
  fi
  deploy_if_changed "${args[@]}" "$@"
}

PLACEHOLDER=0
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

webhook_env=("${common_env[@]}" "WEBHOOK_MODE=$WEBHOOK_MODE" "PAYNOW_WEBHOOK_SECRET_ID=$SECRET_ID")
if [[ -n $WEBHOOK_SECRET_PREVIOUS_VERSION ]]; then
  webhook_env+=("SECRET:PAYNOW_WEBHOOK_SECRET_PREVIOUS=$SECRET_NAME:$WEBHOOK_SECRET_PREVIOUS_VERSION")
  [[ -z $WEBHOOK_SECRET_PREVIOUS_UNTIL ]] ||
    webhook_env+=("PAYNOW_WEBHOOK_SECRET_PREVIOUS_UNTIL=$WEBHOOK_SECRET_PREVIOUS_UNTIL")
fi

# The public webhook goes last: the functions it hands work to are updated first.
deploy_function WORKER "$WORKER_FUNCTION" "$WORKER_TARGET" "$WORKER_SA" --no-allow-unauthenticated \
  internal-only "$WORKER_TIMEOUT_SECONDS" "$WORKER_MAX_INSTANCES" "$SOURCE_DIR" PUSH_AUDIENCE \
  "${common_env[@]}" PUSH_AUTH=oidc "PUSH_SERVICE_ACCOUNT=$PUSH_SA"
deploy_function RECONCILE "$RECONCILE_FUNCTION" "$RECONCILE_TARGET" "$RECONCILE_SA" \
  --no-allow-unauthenticated internal-only "$RECONCILE_TIMEOUT_SECONDS" "$RECONCILE_MAX_INSTANCES" \
  "$SOURCE_DIR" RECONCILE_AUDIENCE \
  "${common_env[@]}" PUSH_AUTH=oidc "SCHEDULER_SERVICE_ACCOUNT=$SCHEDULER_SA"
deploy_function LEDGER "$LEDGER_FUNCTION" "$LEDGER_TARGET" "$LEDGER_SA" --no-allow-unauthenticated \
  internal-only "$LEDGER_TIMEOUT_SECONDS" 1 "$LEDGER_SOURCE" '' \
  "GOOGLE_CLOUD_PROJECT=$PROJECT" "PUBSUB_TOPIC=$TOPIC" "PUBSUB_DLQ_TOPIC=$DLQ_TOPIC"
deploy_function WEBHOOK "$WEBHOOK_FUNCTION" "$WEBHOOK_TARGET" "$WEBHOOK_SA" --allow-unauthenticated \
  all "$WEBHOOK_TIMEOUT_SECONDS" "$WEBHOOK_MAX_INSTANCES" "$SOURCE_DIR" '' "${webhook_env[@]}"
