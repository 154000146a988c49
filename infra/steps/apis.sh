#!/usr/bin/env bash
# Step 1: enable the Google APIs the pipeline and its deploy use (only those not enabled yet).
#
#   infra/steps/apis.sh ENV_FILE [--dry-run]

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

readonly APIS=(
  artifactregistry.googleapis.com # function images
  cloudbuild.googleapis.com        # function builds
  cloudfunctions.googleapis.com
  cloudresourcemanager.googleapis.com # project IAM policy
  cloudscheduler.googleapis.com
  firestore.googleapis.com
  iam.googleapis.com
  pubsub.googleapis.com
  run.googleapis.com # gen2 functions run on Cloud Run
  secretmanager.googleapis.com
  storage.googleapis.com # function source upload
)

say "APIs"
enabled=''
query enabled gcloud services list --enabled --project="$PROJECT" --format='value(config.name)' || true
missing=()
for api in "${APIS[@]}"; do
  grep -qxF "$api" <<<"$enabled" || missing+=("$api")
done
if ((${#missing[@]})); then
  run gcloud services enable "${missing[@]}" --project="$PROJECT"
else
  note "all ${#APIS[@]} APIs already enabled"
fi
