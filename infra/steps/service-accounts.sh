#!/usr/bin/env bash
# Bootstrap step: one service account per identity; their permissions are granted by
# infra/steps/access.sh (project, accounts, secrets, bucket) and infra/steps/iam.sh (the
# topics, subscription and functions the deploy creates).
#
#   infra/steps/service-accounts.sh ENV_FILE [--dry-run | --plan]
#
# webhook    runs paynow_webhook          worker     runs paynow_worker
# reconcile  runs paynow_reconcile        ledger     runs the daily ledger check
# push       signs Pub/Sub's push tokens to the worker
# scheduler  signs Cloud Scheduler's tokens to reconcile and the ledger check
# deployer   the CI deploy (cloudbuild.yaml, infra/deploy.sh)
# build      builds the functions' images (BUILD_SERVICE_ACCOUNT; created here when it is
#            in this project, else it must exist)

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

ensure_service_account() { # EMAIL DESCRIPTION
  local email=$1 name=${1%%@*}
  if query found gcloud iam service-accounts describe "$email" --project="$PROJECT" --format='value(email)'; then
    plan_item unchanged "service account $email"
  elif [[ $email != *"@$PROJECT.iam.gserviceaccount.com" ]]; then
    die "service account $email (BUILD_SERVICE_ACCOUNT) is not in project $PROJECT and was not found: create it, or leave BUILD_SERVICE_ACCOUNT empty"
  else
    plan_item create "service account $email"
    run gcloud iam service-accounts create "$name" --project="$PROJECT" \
      --display-name="PayNow $name" --description="$2"
  fi
}

say "Service accounts"
ensure_service_account "$WEBHOOK_SA" "Runs paynow_webhook"
ensure_service_account "$WORKER_SA" "Runs paynow_worker"
ensure_service_account "$RECONCILE_SA" "Runs paynow_reconcile"
ensure_service_account "$LEDGER_SA" "Runs the daily ledger check (paynow-ops ledger verify)"
ensure_service_account "$PUSH_SA" "Identity of the paynow-events-push OIDC tokens"
ensure_service_account "$SCHEDULER_SA" "Identity of the reconcile and ledger-check jobs' OIDC tokens"
ensure_service_account "$DEPLOYER_SA" "The CI deploy (cloudbuild.yaml, infra/deploy.sh)"
ensure_service_account "$BUILD_SA" "Builds the functions' images"
