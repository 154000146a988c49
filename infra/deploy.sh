#!/usr/bin/env bash
# The CI deploy: functions, Pub/Sub, their grants, the scheduler jobs and monitoring, every
# step in order; safe to run again (a second run changes nothing). Runs as the deployer
# (cloudbuild.yaml: paynow-deployer), which holds no IAM admin role and no secret admin:
# what needs those is infra/bootstrap.sh's, run once by a project owner. The first step
# verifies, read-only, that the bootstrap's part is in place, and says exactly what is missing.
#
#   infra/deploy.sh ENV_FILE [--dry-run | --plan]
#
# ENV_FILE   a copy of infra/env/example.env (in Cloud Build: the settings secret's copy).
# --plan     the live plan: every read runs against the project, nothing is changed; each
#            resource is listed as create, update (with the fields that differ) or
#            unchanged, and what the verify step misses as missing (exit 1 then).
# --dry-run  the offline plan: no command runs at all, not even a read; reads find nothing,
#            so it shows what a deploy into an empty project would run.
# Steps (infra/steps/): verify, functions, pubsub, iam, scheduler, monitoring.

set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "$@"
for arg in "${ARGS[@]}"; do
  [[ $arg != --secret-* ]] ||
    die "the deploy never handles the signing secret: put it in with infra/bootstrap.sh ENV_FILE $arg (or infra/steps/secret.sh), as a project owner"
done
no_more_args
load_settings "$ENV_FILE"

started=$SECONDS
run_steps verify functions pubsub iam scheduler monitoring

function_endpoint "$WEBHOOK_FUNCTION"
if ((DRY_RUN)); then
  say "Dry run done: nothing was read or changed."
elif ((PLAN)); then
  say "Plan done: nothing was changed."
  ((PLAN_MISSING == 0)) || exit 1
else
  mode=$WEBHOOK_MODE
  if service_state "$FN_SERVICE"; then mode=$LIVE_MODE; fi
  say "Deployed to $PROJECT in $((SECONDS - started)) s. The webhook runs WEBHOOK_MODE=$mode."
fi
say "PayNow webhook URL: $FN_URL"
