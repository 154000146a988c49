#!/usr/bin/env bash
# Bootstrap step: the bucket that archives every dead letter (DLQ_ARCHIVE_BUCKET).
#
#   infra/steps/archive.sh ENV_FILE [--dry-run | --plan]
#
# The DLQ subscription keeps a message DLQ_RETENTION_DAYS (Pub/Sub's maximum, 31 days); a
# Cloud Storage subscription of the DLQ topic (paynow-events-dlq-archive, created by the
# deploy's infra/steps/pubsub.sh) writes each one here as well, with its attributes, so a
# dead letter nobody replayed in time is still there afterwards. Some hold a raw signed
# body (invalid_payload, event_mismatch), which may carry a payer's personal data: the
# bucket is private (uniform access, public access prevention enforced), only the Pub/Sub
# service agent may write to it (infra/steps/access.sh) and objects are deleted
# DLQ_ARCHIVE_DAYS after they were written. Location: REGION.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

render_dir archive
LIFECYCLE="$RENDERED/lifecycle.json"
printf '{"rule": [{"action": {"type": "Delete"}, "condition": {"age": %d}}]}\n' \
  "$DLQ_ARCHIVE_DAYS" >"$LIFECYCLE"
bucket="gs://$DLQ_ARCHIVE_BUCKET"

say "DLQ archive bucket $bucket"
current=''
if query current gcloud storage buckets describe "$bucket" --project="$PROJECT" \
  --format='value[separator="|"](location,uniform_bucket_level_access,public_access_prevention,lifecycle_config.rule[0].action.type,lifecycle_config.rule[0].condition.age)'; then
  IFS='|' read -r location uniform prevention action age <<<"$current"
  [[ ${location,,} == "${REGION,,}" ]] ||
    die "bucket $bucket is in $location, not $REGION; a bucket's location cannot change: choose another DLQ_ARCHIVE_BUCKET, or move it yourself"
  drift=()
  [[ $uniform == True ]] || drift+=("uniform access '$uniform' -> True")
  [[ $prevention == enforced ]] || drift+=("public access prevention '$prevention' -> enforced")
  [[ $action == Delete && $age == "$DLQ_ARCHIVE_DAYS" ]] || drift+=("lifecycle '${action:-none} ${age:-}' -> Delete after $DLQ_ARCHIVE_DAYS days")
  if ((${#drift[@]})); then
    plan_item update "bucket $bucket" "$(IFS=';'; printf '%s' "${drift[*]}")"
    run gcloud storage buckets update "$bucket" --project="$PROJECT" \
      --uniform-bucket-level-access --public-access-prevention --lifecycle-file="$LIFECYCLE"
  else
    plan_item unchanged "bucket $bucket"
  fi
else
  plan_item create "bucket $bucket" "private, in $REGION, objects deleted after $DLQ_ARCHIVE_DAYS days"
  run gcloud storage buckets create "$bucket" --project="$PROJECT" --location="$REGION" \
    --uniform-bucket-level-access --public-access-prevention --lifecycle-file="$LIFECYCLE"
fi
