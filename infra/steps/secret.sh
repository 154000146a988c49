#!/usr/bin/env bash
# Step 3: the PayNow signing secret in Secret Manager.
#
#   infra/steps/secret.sh ENV_FILE [--dry-run] [--secret-stdin | --secret-file PATH]
#
# Creates the secret when absent. With --secret-stdin or --secret-file PATH, the value
# (one line) becomes a new version unless the latest version already holds it; typed at a
# terminal it is not echoed. The value is never a command argument and never printed.
# Comparing needs read access to the versions (secretAccessor): without it the step stops
# rather than add a version on every run. The webhook reads the latest version at
# run time (PAYNOW_WEBHOOK_SECRET_ID), so a new version rotates it without a deploy.
# Without a value, fails when the secret has no enabled version yet.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
parse_secret_args
load_settings "$ENV_FILE"

# read_secret: the value into SECRET_VALUE, from stdin or the file, checked. Typed at a
# terminal: one line, not echoed. From a pipe or a file: read whole.
read_secret() {
  if [[ -z $SECRET_FILE ]]; then
    if [[ -t 0 ]]; then
      printf 'PayNow signing secret (typing is not shown), then Enter: ' >&2
      IFS= read -rs SECRET_VALUE || true # end of input without a newline: keep what came
      printf '\n' >&2
    else
      SECRET_VALUE=$(cat)
    fi
  else
    SECRET_VALUE=$(<"$SECRET_FILE")
  fi
  SECRET_VALUE=${SECRET_VALUE%$'\r'}
  [[ -n ${SECRET_VALUE//[[:space:]]/} ]] || die "the secret is empty"
  [[ $SECRET_VALUE != *$'\n'* ]] || die "the secret must be a single line"
}

# latest_digest: the sha256 of the latest version into LATEST ('' when there is no readable
# latest version yet: none added, or the latest one disabled or destroyed). A caller who may
# not read versions is stopped: it cannot tell whether the value is new, and adding one on
# every run would pile up versions.
latest_digest() {
  local access=(gcloud secrets versions access latest --secret="$SECRET_NAME" --project="$PROJECT")
  local found=0
  LATEST=''
  show "${access[@]}"
  note "(only its sha256 is kept, to compare)"
  ((DRY_RUN)) && return 0
  attempt_read LATEST sha256_of "${access[@]}" || found=$?
  ((found != 0)) || return 0
  if denied <<<"$READ_ERR"; then
    printf '%s' "$READ_ERR" >&2
    die "may not read the versions of secret $SECRET_NAME, so cannot tell whether this value is new; nothing was added.
  The account running this needs roles/secretmanager.secretAccessor on the secret (or roles/secretmanager.admin):
  gcloud secrets add-iam-policy-binding $SECRET_NAME --project=$PROJECT --member=MEMBER --role=roles/secretmanager.secretAccessor
  (MEMBER: user:you@example.com, or serviceAccount:EMAIL for a deployer account)"
  fi
  if ((found == 1)) || [[ $READ_ERR == *FAILED_PRECONDITION* ]]; then
    note "no readable latest version yet"
    return 0
  fi
  printf '%s' "$READ_ERR" >&2
  die "command failed (exit $READ_RC): ${access[*]}; nothing was added"
}

# sha256_of CMD...: the sha256 of CMD's output (the value itself is never kept).
sha256_of() {
  "$@" | sha256sum
}

# add_version: SECRET_VALUE as a new version, through stdin, unless it is the latest already.
add_version() {
  local wanted
  latest_digest
  wanted=$(printf '%s' "$SECRET_VALUE" | sha256sum)
  if [[ $LATEST == "$wanted" ]]; then
    note "the latest version already holds this value; nothing added"
    return
  fi
  show gcloud secrets versions add "$SECRET_NAME" --project="$PROJECT" --data-file=-
  note "(the value goes through stdin; it is not shown)"
  ((DRY_RUN)) && return
  printf '%s' "$SECRET_VALUE" |
    gcloud secrets versions add "$SECRET_NAME" --project="$PROJECT" --data-file=- --format='value(name)' >&2
}

say "Signing secret $SECRET_NAME"
((${#SECRET_ARGS[@]} == 0)) || read_secret
if query found gcloud secrets describe "$SECRET_NAME" --project="$PROJECT" --format='value(name)'; then
  note "secret exists"
else
  run gcloud secrets create "$SECRET_NAME" --project="$PROJECT" --replication-policy=automatic
fi
if ((${#SECRET_ARGS[@]})); then
  add_version
else
  version=''
  query version gcloud secrets versions list "$SECRET_NAME" --project="$PROJECT" \
    --filter='state=ENABLED' --limit=1 --format='value(name)' || true
  if [[ -n $version ]]; then
    note "an enabled version exists"
  elif ((DRY_RUN)); then
    note "(a real run stops here unless the secret has an enabled version)"
  else
    die "secret $SECRET_NAME has no enabled version: put the value in with
  infra/steps/secret.sh $ENV_FILE --secret-stdin < FILE   (or --secret-file FILE)"
  fi
fi
