#!/usr/bin/env bash
# Step 2: one service account per identity; their permissions are granted by infra/steps/iam.sh.
#
#   infra/steps/service-accounts.sh ENV_FILE [--dry-run]
#
# webhook   runs paynow_webhook          worker     runs paynow_worker
# reconcile runs paynow_reconcile        push       signs Pub/Sub's push tokens to the worker
# scheduler signs Cloud Scheduler's tokens to paynow_reconcile

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

ensure_service_account() { # NAME EMAIL DESCRIPTION
  if query found gcloud iam service-accounts describe "$2" --project="$PROJECT" --format='value(email)'; then
    note "service account $2 exists"
  else
    run gcloud iam service-accounts create "$1" --project="$PROJECT" \
      --display-name="PayNow $1" --description="$3"
  fi
}

say "Service accounts"
ensure_service_account "$WEBHOOK_SA_NAME" "$WEBHOOK_SA" "Runs paynow_webhook"
ensure_service_account "$WORKER_SA_NAME" "$WORKER_SA" "Runs paynow_worker"
ensure_service_account "$RECONCILE_SA_NAME" "$RECONCILE_SA" "Runs paynow_reconcile"
ensure_service_account "$PUSH_SA_NAME" "$PUSH_SA" "Identity of the paynow-events-push OIDC tokens"
ensure_service_account "$SCHEDULER_SA_NAME" "$SCHEDULER_SA" "Identity of the reconcile job's OIDC tokens"
