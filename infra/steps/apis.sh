#!/usr/bin/env bash
# Bootstrap step: enable the Google APIs the pipeline, its deploy and its monitoring use
# (only those not enabled yet). The CI deploy only checks them (infra/steps/verify.sh).
#
#   infra/steps/apis.sh ENV_FILE [--dry-run | --plan]

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

say "APIs"
enabled=''
query enabled gcloud services list --enabled --project="$PROJECT" --format='value(config.name)' || true
missing=()
for api in "${PIPELINE_APIS[@]}"; do
  if grep -qxF "$api" <<<"$enabled"; then
    plan_item unchanged "API $api"
  else
    plan_item create "API $api" "enable"
    missing+=("$api")
  fi
done
if ((${#missing[@]})); then
  run gcloud services enable "${missing[@]}" --project="$PROJECT"
fi
