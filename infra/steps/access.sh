#!/usr/bin/env bash
# Bootstrap step: every permission that needs more than the CI deploy may have: project-level
# roles (custom Firestore roles included), roles on service accounts, on the secrets and on
# the DLQ archive bucket. Run by a project owner (infra/bootstrap.sh), once, and again when
# the access model changes. No primitive role (owner, editor, viewer) anywhere.
#
#   infra/steps/access.sh ENV_FILE [--dry-run | --plan]
#
# Project     webhook, worker    custom role paynowEventWriter (Firestore without delete)
#             reconcile, ledger  roles/datastore.viewer (they only read)
#             deployer           the DEPLOYER_ROLES of lib.sh, custom role paynowSmokeTest
#                                (the smoke test reads and removes its own records), and
#                                storage.objectViewer on its build's source bucket only
#             build              logging.logWriter, artifactregistry.writer, and
#                                storage.objectViewer on the functions' source buckets only
# Accounts    deployer           iam.serviceAccountUser (actAs) on the webhook, worker,
#                                reconcile, ledger, push, scheduler and build accounts only
#             Pub/Sub agent      iam.serviceAccountTokenCreator on the push account
# Secrets     webhook            secretAccessor on the signing secret
#             deployer           secretAccessor and viewer on the signing secret (smoke test;
#                                the verify step checks it has a version), secretAccessor on
#                                the settings secret (the build reads its settings)
# Bucket      Pub/Sub agent      storage.objectCreator and storage.legacyBucketReader on the
#                                DLQ archive bucket (the Cloud Storage subscription)
# The grants on what the deploy itself creates (topics, the push subscription, the
# functions) are infra/steps/iam.sh's. Each policy is read first; only what is missing is
# added.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"
export INFRA_CREATES_AGENT=1 # the Pub/Sub service agent is created here when missing

# ensure_role ID TITLE PERMISSION...: a custom role of the project with exactly these
# permissions (created, updated, or undeleted when it was deleted).
ensure_role() {
  local id=$1 title=$2
  shift 2
  if describe_role "$id" "$@"; then
    if [[ $ROLE_DELETED == True ]]; then
      plan_item update "custom role $id" "undelete"
      run gcloud iam roles undelete "$id" --project="$PROJECT" --format=none
    fi
    if [[ $ROLE_HAVE == "$ROLE_WANT" ]]; then
      [[ $ROLE_DELETED == True ]] || plan_item unchanged "custom role $id"
    else
      plan_item update "custom role $id" "permissions '$ROLE_HAVE' -> '$ROLE_WANT'"
      run gcloud iam roles update "$id" --project="$PROJECT" --permissions="$ROLE_WANT" \
        --stage=GA --quiet --format=none
    fi
  else
    plan_item create "custom role $id" "$ROLE_WANT"
    run gcloud iam roles create "$id" --project="$PROJECT" --title="$title" \
      --description="PayNow pipeline (infra/steps/access.sh)" --permissions="$ROLE_WANT" \
      --stage=GA --format=none
  fi
}

project_grant() { # ROLE MEMBER
  grant "$1" "$2" projects "$PROJECT"
}

say "Custom roles"
ensure_role "$WRITER_ROLE" "PayNow event writer (Firestore, no delete)" "${WRITER_PERMISSIONS[@]}"
ensure_role "$SMOKE_ROLE" "PayNow smoke test (read and remove its own records)" "${SMOKE_PERMISSIONS[@]}"

say "Project: Firestore access of the functions"
for sa in "$WEBHOOK_SA" "$WORKER_SA"; do
  project_grant "projects/$PROJECT/roles/$WRITER_ROLE" "serviceAccount:$sa"
done
for sa in "$RECONCILE_SA" "$LEDGER_SA"; do
  project_grant roles/datastore.viewer "serviceAccount:$sa"
done

say "Project: the CI deployer $DEPLOYER_SA"
for role in "${DEPLOYER_ROLES[@]}"; do
  project_grant "$role" "serviceAccount:$DEPLOYER_SA"
done
project_grant "projects/$PROJECT/roles/$SMOKE_ROLE" "serviceAccount:$DEPLOYER_SA"
GRANT_CONDITION="cloudbuild-source|resource.name == \"projects/_/buckets/${PROJECT}_cloudbuild\""
project_grant roles/storage.objectViewer "serviceAccount:$DEPLOYER_SA"

say "Project: the build account $BUILD_SA"
for role in "${BUILD_ROLES[@]}"; do
  project_grant "$role" "serviceAccount:$BUILD_SA"
done
GRANT_CONDITION=$BUILD_SOURCE_CONDITION
project_grant roles/storage.objectViewer "serviceAccount:$BUILD_SA"

say "Service accounts: who may act as whom"
for sa in "$WEBHOOK_SA" "$WORKER_SA" "$RECONCILE_SA" "$LEDGER_SA" "$PUSH_SA" "$SCHEDULER_SA" "$BUILD_SA"; do
  grant roles/iam.serviceAccountUser "serviceAccount:$DEPLOYER_SA" "iam service-accounts" "$sa" \
    --project="$PROJECT"
done
pubsub_agent
grant roles/iam.serviceAccountTokenCreator "serviceAccount:$PUBSUB_AGENT" "iam service-accounts" \
  "$PUSH_SA" --project="$PROJECT"

say "Secrets"
grant roles/secretmanager.secretAccessor "serviceAccount:$WEBHOOK_SA" secrets "$SECRET_NAME" --project="$PROJECT"
for role in roles/secretmanager.secretAccessor roles/secretmanager.viewer; do
  grant "$role" "serviceAccount:$DEPLOYER_SA" secrets "$SECRET_NAME" --project="$PROJECT"
done
grant roles/secretmanager.secretAccessor "serviceAccount:$DEPLOYER_SA" secrets "$DEPLOY_ENV_SECRET" \
  --project="$PROJECT"

say "DLQ archive bucket"
for role in roles/storage.objectCreator roles/storage.legacyBucketReader; do
  grant "$role" "serviceAccount:$PUBSUB_AGENT" "storage buckets" "gs://$DLQ_ARCHIVE_BUCKET" \
    --project="$PROJECT"
done
