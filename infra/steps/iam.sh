#!/usr/bin/env bash
# Step 7: every permission the pipeline's identities hold, each on the one resource it
# concerns; no primitive role (owner, editor, viewer) anywhere.
#
#   infra/steps/iam.sh ENV_FILE [--dry-run]
#
# webhook SA     datastore.user (project); pubsub.publisher on paynow-events and on
#                paynow-events-dlq (it dead-letters unreadable bodies, and terminal failures
#                in sync mode); secretmanager.secretAccessor on the signing secret
# worker SA      datastore.user (project); pubsub.publisher on paynow-events-dlq
# reconcile SA   datastore.user (project); pubsub.publisher on paynow-events
# push SA        run.invoker on the worker
# scheduler SA   run.invoker on reconcile
# Pub/Sub agent  pubsub.publisher on paynow-events-dlq and pubsub.subscriber on
#                paynow-events-push (Pub/Sub's own dead-lettering); iam.serviceAccountTokenCreator
#                on the push SA (it mints the push OIDC tokens)
# allUsers       run.invoker on the webhook only; removed from worker and reconcile if found
# Each policy is read first; only missing bindings are added.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

readonly POLICY_FORMAT='value[separator="|"](bindings.role,bindings.members,bindings.condition.title)'
AGENT_READY=0

declare -A POLICIES=() # policies read so far, with the bindings added since

# policy_of GROUP RESOURCE [FLAGS...]: "role|member|condition" lines of a resource's policy,
# into POLICY.
policy_of() {
  local group key="$*" lines=''
  if [[ -z ${POLICIES[$key]+set} ]]; then
    read -r -a group <<<"$1"
    shift
    query lines gcloud "${group[@]}" get-iam-policy "$@" --flatten='bindings[].members' \
      --format="$POLICY_FORMAT" || true
    POLICIES[$key]=$lines
  fi
  POLICY=${POLICIES[$key]}
}

# grant ROLE MEMBER GROUP RESOURCE [FLAGS...]: GROUP is the gcloud command group
# ("pubsub topics"); the binding is added unless it is there without a condition.
grant() {
  local role=$1 member=$2 group attempt err extra=()
  read -r -a group <<<"$3"
  shift 3
  policy_of "${group[*]}" "$@"
  if grep -qxF "$role|$member|" <<<"$POLICY"; then
    note "${member#*:} has $role on $1"
    return
  fi
  if [[ $member == "serviceAccount:$PUBSUB_AGENT" ]] && ((!AGENT_READY)); then
    run gcloud beta services identity create --service=pubsub.googleapis.com \
      --project="$PROJECT" --format=none
    AGENT_READY=1
  fi
  [[ ${group[0]} == projects ]] && extra=(--condition=None)
  POLICIES["${group[*]} $*"]+=$'\n'"$role|$member|"
  show gcloud "${group[@]}" add-iam-policy-binding "$@" --member="$member" --role="$role" \
    "${extra[@]}" --format=none
  ((DRY_RUN)) && return
  # A service account created moments ago can take a little while to be visible to IAM.
  for attempt in 1 2 3 4 5 6; do
    if err=$(gcloud "${group[@]}" add-iam-policy-binding "$@" --member="$member" \
      --role="$role" "${extra[@]}" --format=none 2>&1); then
      return
    fi
    [[ $err == *"does not exist"* && $attempt -lt 6 ]] || die "$err"
    note "${member#*:} is not visible to IAM yet; retrying in 10 s"
    sleep 10
  done
}

# private SERVICE: no allUsers / allAuthenticatedUsers invoker on a Cloud Run service.
private() {
  local public
  policy_of "run services" "$1" --region="$REGION" --project="$PROJECT"
  for public in allUsers allAuthenticatedUsers; do
    if grep -q "^roles/run.invoker|$public|" <<<"$POLICY"; then
      warn "$1 was callable by $public; removing that binding"
      run gcloud run services remove-iam-policy-binding "$1" --region="$REGION" \
        --project="$PROJECT" --member="$public" --role=roles/run.invoker --format=none
    fi
  done
}

PUBSUB_AGENT="service-$(project_number)@gcp-sa-pubsub.iam.gserviceaccount.com"
function_endpoint "$WEBHOOK_FUNCTION"
WEBHOOK_SERVICE=$FN_SERVICE
function_endpoint "$WORKER_FUNCTION"
WORKER_SERVICE=$FN_SERVICE
function_endpoint "$RECONCILE_FUNCTION"
RECONCILE_SERVICE=$FN_SERVICE

say "Project: Firestore access"
for sa in "$WEBHOOK_SA" "$WORKER_SA" "$RECONCILE_SA"; do
  grant roles/datastore.user "serviceAccount:$sa" projects "$PROJECT"
done

say "Topics and subscription"
grant roles/pubsub.publisher "serviceAccount:$WEBHOOK_SA" "pubsub topics" "$TOPIC" --project="$PROJECT"
grant roles/pubsub.publisher "serviceAccount:$RECONCILE_SA" "pubsub topics" "$TOPIC" --project="$PROJECT"
for sa in "$WEBHOOK_SA" "$WORKER_SA" "$PUBSUB_AGENT"; do
  grant roles/pubsub.publisher "serviceAccount:$sa" "pubsub topics" "$DLQ_TOPIC" --project="$PROJECT"
done
grant roles/pubsub.subscriber "serviceAccount:$PUBSUB_AGENT" "pubsub subscriptions" \
  "$PUSH_SUBSCRIPTION" --project="$PROJECT"

say "Signing secret"
grant roles/secretmanager.secretAccessor "serviceAccount:$WEBHOOK_SA" secrets "$SECRET_NAME" \
  --project="$PROJECT"

say "Push tokens"
grant roles/iam.serviceAccountTokenCreator "serviceAccount:$PUBSUB_AGENT" "iam service-accounts" \
  "$PUSH_SA" --project="$PROJECT"

say "Who may call the functions"
grant roles/run.invoker allUsers "run services" "$WEBHOOK_SERVICE" --region="$REGION" --project="$PROJECT"
grant roles/run.invoker "serviceAccount:$PUSH_SA" "run services" "$WORKER_SERVICE" \
  --region="$REGION" --project="$PROJECT"
grant roles/run.invoker "serviceAccount:$SCHEDULER_SA" "run services" "$RECONCILE_SERVICE" \
  --region="$REGION" --project="$PROJECT"
private "$WORKER_SERVICE"
private "$RECONCILE_SERVICE"

say "Audit: primitive roles held by the pipeline's service accounts"
policy_of projects "$PROJECT"
clean=1
for sa in "$WEBHOOK_SA" "$WORKER_SA" "$RECONCILE_SA" "$PUSH_SA" "$SCHEDULER_SA"; do
  for role in $PRIMITIVE_ROLES; do
    if grep -q "^$role|serviceAccount:$sa|" <<<"$POLICY"; then
      warn "$sa holds $role on the project; remove it: gcloud projects remove-iam-policy-binding $PROJECT --member=serviceAccount:$sa --role=$role"
      clean=0
    fi
  done
done
if ((clean)); then note "none"; fi
