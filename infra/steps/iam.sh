#!/usr/bin/env bash
# Deploy step: the grants on what the deploy itself creates, each on the one resource it
# concerns: the topics, the push subscription and the functions' Cloud Run services. What
# needs more (project roles, service accounts, secrets, the archive bucket) is the
# bootstrap's (infra/steps/access.sh); the deploy only verifies it (infra/steps/verify.sh).
#
#   infra/steps/iam.sh ENV_FILE [--dry-run | --plan]
#
# webhook SA     pubsub.publisher on paynow-events, and on paynow-events-dlq (it dead-letters
#                unreadable bodies, and terminal failures in sync mode)
# worker SA      pubsub.publisher on paynow-events-dlq
# reconcile SA   pubsub.publisher on paynow-events
# push SA        run.invoker on the worker
# scheduler SA   run.invoker on reconcile and on the ledger check
# Pub/Sub agent  pubsub.publisher on paynow-events-dlq and pubsub.subscriber on
#                paynow-events-push (Pub/Sub's own dead-lettering)
# allUsers       run.invoker on the webhook only; removed from the others if found
# Each policy is read first; only missing bindings are added.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

# private SERVICE: no allUsers / allAuthenticatedUsers invoker on a Cloud Run service.
private() {
  local public
  policy_of "run services" "$1" --region="$REGION" --project="$PROJECT"
  for public in allUsers allAuthenticatedUsers; do
    if grep -q "^roles/run.invoker|$public|" <<<"$POLICY"; then
      warn "$1 was callable by $public; removing that binding"
      plan_item remove "roles/run.invoker for $public on run services $1"
      run gcloud run services remove-iam-policy-binding "$1" --region="$REGION" \
        --project="$PROJECT" --member="$public" --role=roles/run.invoker --format=none
    fi
  done
}

pubsub_agent
function_endpoint "$WEBHOOK_FUNCTION"
WEBHOOK_SERVICE=$FN_SERVICE
function_endpoint "$WORKER_FUNCTION"
WORKER_SERVICE=$FN_SERVICE
function_endpoint "$RECONCILE_FUNCTION"
RECONCILE_SERVICE=$FN_SERVICE
function_endpoint "$LEDGER_FUNCTION"
LEDGER_SERVICE=$FN_SERVICE

say "Topics and subscription"
grant roles/pubsub.publisher "serviceAccount:$WEBHOOK_SA" "pubsub topics" "$TOPIC" --project="$PROJECT"
grant roles/pubsub.publisher "serviceAccount:$RECONCILE_SA" "pubsub topics" "$TOPIC" --project="$PROJECT"
for sa in "$WEBHOOK_SA" "$WORKER_SA" "$PUBSUB_AGENT"; do
  grant roles/pubsub.publisher "serviceAccount:$sa" "pubsub topics" "$DLQ_TOPIC" --project="$PROJECT"
done
grant roles/pubsub.subscriber "serviceAccount:$PUBSUB_AGENT" "pubsub subscriptions" \
  "$PUSH_SUBSCRIPTION" --project="$PROJECT"

say "Who may call which function"
grant roles/run.invoker allUsers "run services" "$WEBHOOK_SERVICE" --region="$REGION" --project="$PROJECT"
grant roles/run.invoker "serviceAccount:$PUSH_SA" "run services" "$WORKER_SERVICE" \
  --region="$REGION" --project="$PROJECT"
for service in "$RECONCILE_SERVICE" "$LEDGER_SERVICE"; do
  grant roles/run.invoker "serviceAccount:$SCHEDULER_SA" "run services" "$service" \
    --region="$REGION" --project="$PROJECT"
done
for service in "$WORKER_SERVICE" "$RECONCILE_SERVICE" "$LEDGER_SERVICE"; do
  private "$service"
done
