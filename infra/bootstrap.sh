#!/usr/bin/env bash
# The one-time set-up of a project, by a project owner: the APIs, the service accounts, the
# secrets, the Firestore database, the DLQ archive bucket and every grant the CI deploy may
# not make itself. Safe to run again (a second run changes nothing); run it again when the
# access model changes. Then the deploy (infra/deploy.sh, or cloudbuild.yaml) does the rest.
#
#   infra/bootstrap.sh ENV_FILE [--dry-run | --plan] [--secret-stdin | --secret-file PATH]
#
# --secret-stdin / --secret-file PATH put the PayNow signing secret in Secret Manager (needed
# the first time; see infra/steps/secret.sh). ENV_FILE itself is stored as the settings
# secret DEPLOY_ENV_SECRET, which the Cloud Build deploy reads.
# --plan and --dry-run as for infra/deploy.sh: live reads and no writes, or nothing at all.
# Steps (infra/steps/): apis, service-accounts, secret, firestore, archive, access.

set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "$@"
# Every argument is checked here, before any step runs: at most one secret source.
parse_secret_args
load_settings "$ENV_FILE"

run_steps apis service-accounts secret firestore archive access
if ((NO_WRITES)); then
  say "Nothing was changed."
else
  say "Bootstrap of $PROJECT done. Deploy with infra/deploy.sh $ENV_FILE (as $DEPLOYER_SA, or from Cloud Build)."
fi
