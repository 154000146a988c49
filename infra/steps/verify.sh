#!/usr/bin/env bash
# Deploy step 1, read-only: everything the deploy needs and may not create itself, which the
# bootstrap (infra/bootstrap.sh, run once by a project owner) provides. Reports every gap at
# once, each with what is missing exactly and who provides it; a real deploy stops here
# before it changes anything. It needs no IAM admin role: the deploying account's own
# permissions are asked of the APIs' testIamPermissions methods (which any caller may ask
# about itself), the other identities' bindings are read (roles/browser and
# roles/iam.securityReviewer: reading policies, never changing them).
#
#   infra/steps/verify.sh ENV_FILE [--dry-run | --plan]
#
# Checked: the APIs are enabled; the deploying account holds every permission the deploy
# uses on the project (with the role of docs/cloud-setup.md that grants it), may act as each
# identity it deploys or configures, may read the signing secret (the smoke test), which has
# an enabled version; the functions' Firestore roles, the custom roles' permissions, the
# webhook's access to the secret, the Pub/Sub service agent's roles on the push account and
# the archive bucket, the build account's roles. Primitive roles of the pipeline's
# identities are reported as warnings.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

readonly BOOTSTRAP="infra/bootstrap.sh $ENV_FILE (a project owner, once)"
# "PERMISSION ROLE": what the deploy does on the project, and the role that grants it.
readonly PROJECT_NEEDS=(
  "cloudfunctions.functions.get roles/cloudfunctions.developer"
  "cloudfunctions.functions.create roles/cloudfunctions.developer"
  "cloudfunctions.functions.update roles/cloudfunctions.developer"
  "cloudfunctions.operations.get roles/cloudfunctions.developer"
  "run.services.get roles/run.admin"
  "run.services.update roles/run.admin"
  "run.services.getIamPolicy roles/run.admin"
  "run.services.setIamPolicy roles/run.admin"
  "pubsub.topics.get roles/pubsub.admin"
  "pubsub.topics.create roles/pubsub.admin"
  "pubsub.topics.update roles/pubsub.admin"
  "pubsub.topics.attachSubscription roles/pubsub.admin"
  "pubsub.topics.getIamPolicy roles/pubsub.admin"
  "pubsub.topics.setIamPolicy roles/pubsub.admin"
  "pubsub.subscriptions.get roles/pubsub.admin"
  "pubsub.subscriptions.create roles/pubsub.admin"
  "pubsub.subscriptions.update roles/pubsub.admin"
  "pubsub.subscriptions.getIamPolicy roles/pubsub.admin"
  "pubsub.subscriptions.setIamPolicy roles/pubsub.admin"
  "cloudscheduler.jobs.get roles/cloudscheduler.admin"
  "cloudscheduler.jobs.create roles/cloudscheduler.admin"
  "cloudscheduler.jobs.update roles/cloudscheduler.admin"
  "logging.logMetrics.list roles/logging.configWriter"
  "logging.logMetrics.create roles/logging.configWriter"
  "logging.logMetrics.update roles/logging.configWriter"
  "monitoring.alertPolicies.list roles/monitoring.alertPolicyEditor"
  "monitoring.alertPolicies.create roles/monitoring.alertPolicyEditor"
  "monitoring.alertPolicies.update roles/monitoring.alertPolicyEditor"
  "monitoring.dashboards.list roles/monitoring.dashboardEditor"
  "monitoring.dashboards.create roles/monitoring.dashboardEditor"
  "monitoring.dashboards.update roles/monitoring.dashboardEditor"
  "serviceusage.services.list roles/serviceusage.serviceUsageViewer"
  "resourcemanager.projects.get roles/browser"
  "resourcemanager.projects.getIamPolicy roles/browser"
  "iam.roles.get roles/iam.securityReviewer"
  "logging.logEntries.create roles/logging.logWriter"
  "datastore.entities.get projects/$PROJECT/roles/$SMOKE_ROLE"
  "datastore.entities.delete projects/$PROJECT/roles/$SMOKE_ROLE"
)
MISSING=()

# missing WHAT DETAIL: one gap (reported together at the end).
missing() {
  MISSING+=("$1: $2")
  plan_item missing "$1" "$2"
}

# judge: whether reads give a verdict (not under --dry-run, which reads nothing).
judge() {
  ((!DRY_RUN))
}

account=''
if ((DRY_RUN)); then
  show gcloud config get account
  account='the deploying account'
else
  account=$(gcloud config get account 2>/dev/null || true)
  [[ -n $account ]] || account='the deploying account'
fi
say "IAM and prerequisites for $account (read-only)"

say "APIs"
enabled=''
query enabled gcloud services list --enabled --project="$PROJECT" --format='value(config.name)' || true
if judge; then
  for api in "${PIPELINE_APIS[@]}"; do
    grep -qxF "$api" <<<"$enabled" || missing "API $api" "not enabled; $BOOTSTRAP enables it"
  done
fi

say "Permissions of $account on project $PROJECT"
permissions=()
for need in "${PROJECT_NEEDS[@]}"; do permissions+=("${need%% *}"); done
crm=$(api_base CLOUDRESOURCEMANAGER cloudresourcemanager.googleapis.com)
held_permissions "${crm}v1/projects/$PROJECT:testIamPermissions" "${permissions[@]}" ||
  die "project $PROJECT not found"
if judge; then
  declare -A lacking=()
  for need in "${PROJECT_NEEDS[@]}"; do
    permission=${need%% *} role=${need#* }
    grep -qxF "$permission" <<<"$HELD" || lacking[$role]+="${lacking[$role]:+, }$permission"
  done
  for role in "${!lacking[@]}"; do
    missing "$role for $account on project $PROJECT" \
      "lacks ${lacking[$role]}; $BOOTSTRAP grants $role to $DEPLOYER_SA"
  done
fi

say "Identities $account acts as (iam.serviceAccounts.actAs)"
iam=$(api_base IAM iam.googleapis.com)
for sa in "$WEBHOOK_SA" "$WORKER_SA" "$RECONCILE_SA" "$LEDGER_SA" "$PUSH_SA" "$SCHEDULER_SA" "$BUILD_SA"; do
  if ! held_permissions "${iam}v1/projects/-/serviceAccounts/$sa:testIamPermissions" \
    iam.serviceAccounts.actAs; then
    missing "service account $sa" "does not exist; $BOOTSTRAP creates it"
  elif judge && [[ $HELD != *iam.serviceAccounts.actAs* ]]; then
    missing "roles/iam.serviceAccountUser for $account on service account $sa" \
      "lacks iam.serviceAccounts.actAs (needed to deploy or configure what runs as it); $BOOTSTRAP grants it to $DEPLOYER_SA"
  fi
done

say "Signing secret $SECRET_NAME"
sm=$(api_base SECRETMANAGER secretmanager.googleapis.com)
if ! held_permissions "${sm}v1/projects/$PROJECT/secrets/$SECRET_NAME:testIamPermissions" \
  secretmanager.versions.access secretmanager.versions.list; then
  missing "secret $SECRET_NAME" "does not exist; $BOOTSTRAP creates it (with --secret-file or --secret-stdin for its value)"
else
  if judge; then
    for pair in "secretmanager.versions.access roles/secretmanager.secretAccessor" \
      "secretmanager.versions.list roles/secretmanager.viewer"; do
      grep -qxF "${pair%% *}" <<<"$HELD" ||
        missing "${pair#* } for $account on secret $SECRET_NAME" "lacks ${pair%% *}; $BOOTSTRAP grants it to $DEPLOYER_SA"
    done
  fi
  version=''
  if [[ $HELD == *secretmanager.versions.list* ]] || ((DRY_RUN)); then
    query version gcloud secrets versions list "$SECRET_NAME" --project="$PROJECT" \
      --filter='state=ENABLED' --limit=1 --format='value(name)' || true
    judge && [[ -z $version ]] && missing "a version of secret $SECRET_NAME" \
      "none enabled: put the signing secret in with infra/steps/secret.sh $ENV_FILE --secret-file FILE"
  fi
fi

say "What the bootstrap granted the other identities"
pubsub_agent
# expect GROUP RESOURCE ROLE MEMBER CONDITION_TITLE [FLAGS...]: a binding that must be there
# (CONDITION_TITLE '' for an unconditional one).
expect() {
  local kind=$1 resource=$2 role=$3 member=$4 title=$5
  shift 5
  policy_of "$kind" "$resource" "$@"
  judge || return 0
  has_binding "$role" "$member" "$title" ||
    missing "$role for ${member#*:} on $kind $resource${title:+ (condition $title)}" "not granted; $BOOTSTRAP grants it"
}
for sa in "$WEBHOOK_SA" "$WORKER_SA"; do
  expect projects "$PROJECT" "projects/$PROJECT/roles/$WRITER_ROLE" "serviceAccount:$sa" ''
done
for sa in "$RECONCILE_SA" "$LEDGER_SA"; do
  expect projects "$PROJECT" roles/datastore.viewer "serviceAccount:$sa" ''
done
for role in "${BUILD_ROLES[@]}"; do
  expect projects "$PROJECT" "$role" "serviceAccount:$BUILD_SA" ''
done
expect projects "$PROJECT" roles/storage.objectViewer "serviceAccount:$BUILD_SA" "${BUILD_SOURCE_CONDITION%%|*}"
expect secrets "$SECRET_NAME" roles/secretmanager.secretAccessor "serviceAccount:$WEBHOOK_SA" '' --project="$PROJECT"
expect "iam service-accounts" "$PUSH_SA" roles/iam.serviceAccountTokenCreator "serviceAccount:$PUBSUB_AGENT" '' --project="$PROJECT"
for role in roles/storage.objectCreator roles/storage.legacyBucketReader; do
  expect "storage buckets" "gs://$DLQ_ARCHIVE_BUCKET" "$role" "serviceAccount:$PUBSUB_AGENT" '' --project="$PROJECT"
done

# check_role ID PERMISSION...: the custom role exists, is not deleted, and has exactly these.
check_role() {
  local id=$1
  shift
  if describe_role "$id" "$@"; then
    if [[ $ROLE_DELETED == True ]]; then
      missing "custom role $id" "deleted; $BOOTSTRAP undeletes it"
    elif [[ $ROLE_HAVE != "$ROLE_WANT" ]]; then
      missing "custom role $id" "has '$ROLE_HAVE', needs '$ROLE_WANT'; $BOOTSTRAP updates it"
    fi
  elif judge; then
    missing "custom role $id" "does not exist; $BOOTSTRAP creates it"
  fi
}
check_role "$WRITER_ROLE" "${WRITER_PERMISSIONS[@]}"
check_role "$SMOKE_ROLE" "${SMOKE_PERMISSIONS[@]}"

say "Audit: primitive roles held by the pipeline's service accounts"
policy_of projects "$PROJECT"
clean=1
for sa in "$WEBHOOK_SA" "$WORKER_SA" "$RECONCILE_SA" "$LEDGER_SA" "$PUSH_SA" "$SCHEDULER_SA" "$DEPLOYER_SA" "$BUILD_SA"; do
  for role in $PRIMITIVE_ROLES; do
    if grep -q "^$role|serviceAccount:$sa|" <<<"$POLICY"; then
      warn "$sa holds $role on the project; remove it: gcloud projects remove-iam-policy-binding $PROJECT --member=serviceAccount:$sa --role=$role"
      clean=0
    fi
  done
done
if ((clean)); then note "none"; fi

if ((DRY_RUN)); then
  note "(a dry run reads nothing: the checks above are printed, not judged)"
elif ((${#MISSING[@]})); then
  if ((PLAN)); then
    warn "${#MISSING[@]} prerequisite(s) missing: a real deploy stops here (the plan goes on)"
  else
    printf 'error: %d prerequisite(s) of the deploy are missing; nothing was changed:\n' "${#MISSING[@]}" >&2
    printf '  - %s\n' "${MISSING[@]}" >&2
    die "fix them with $BOOTSTRAP, then deploy again (docs/cloud-setup.md lists every role and why)"
  fi
else
  say "Everything the deploy needs is in place"
fi
