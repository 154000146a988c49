#!/usr/bin/env bash
# Deploy the whole pipeline into one project, every step in order; safe to run again
# (a second run changes nothing).
#
#   infra/deploy.sh ENV_FILE [--dry-run] [--secret-stdin | --secret-file PATH]
#
# ENV_FILE: a copy of infra/env/example.env. --dry-run prints every gcloud command and runs
# none (as for an empty project). --secret-stdin / --secret-file put the PayNow signing
# secret in Secret Manager (needed on the first deploy; see infra/steps/secret.sh).
# Steps: apis, service-accounts, secret, firestore, functions, pubsub, iam, scheduler,
# monitoring (log-based metrics, alert policies and the dashboard of infra/monitoring/).

set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "$@"
# Every argument is checked here, before any step runs: at most one secret source.
parse_secret_args
load_settings "$ENV_FILE"

export INFRA_STEP_OF_DEPLOY=1
common=("$ENV_FILE")
((DRY_RUN)) && common+=(--dry-run)
started=$SECONDS
for step in apis service-accounts secret firestore functions pubsub iam scheduler monitoring; do
  printf '\n### %s\n' "$step" >&2
  if [[ $step == secret ]]; then
    bash "$INFRA_DIR/steps/$step.sh" "${common[@]}" "${SECRET_ARGS[@]}"
  else # stdin may carry the secret: no other step may read it
    bash "$INFRA_DIR/steps/$step.sh" "${common[@]}" </dev/null
  fi
done

printf '\n' >&2
function_endpoint "$WEBHOOK_FUNCTION"
if ((DRY_RUN)); then
  say "Dry run done: nothing was changed."
else
  mode=$WEBHOOK_MODE
  if service_state "$FN_SERVICE"; then mode=$LIVE_MODE; fi
  say "Deployed to $PROJECT in $((SECONDS - started)) s. The webhook runs WEBHOOK_MODE=$mode."
fi
say "PayNow webhook URL: $FN_URL"
