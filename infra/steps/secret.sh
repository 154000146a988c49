#!/usr/bin/env bash
# Bootstrap step (also the operator's rotation tool): the PayNow signing secret in Secret
# Manager, and the settings secret the CI build reads (DEPLOY_ENV_SECRET, this ENV_FILE).
#
#   infra/steps/secret.sh ENV_FILE [--dry-run | --plan] [--secret-stdin | --secret-file PATH]
#
# Creates each secret when absent. With --secret-stdin or --secret-file PATH, the signing
# secrets' value (one per line: PayNow signs each webhook subscription with its own; at most
# 32, no blank line between two) becomes a new version unless the latest version already holds
# it; typed at a terminal it is not echoed. The value is never a command argument and never
# printed. ENV_FILE itself becomes a new version of DEPLOY_ENV_SECRET the same way (it holds
# settings, no credential), so a Cloud Build deploy uses the same settings as this run.
# Comparing needs read access to the versions (secretAccessor): without it the step stops
# rather than add a version on every run. The webhook reads the latest signing-secret
# version at run time (PAYNOW_WEBHOOK_SECRET_ID), so a new version rotates it without a
# deploy (docs/runbook.md, "Rotating the signing secret"). Without a value, fails when the
# signing secret has no enabled version yet.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
parse_secret_args
load_settings "$ENV_FILE"

# read_secret: the value into SECRET_VALUE, from stdin or the file, checked. Typed at a
# terminal: one secret per line, not echoed, an empty line ends. From a pipe or a file:
# read whole. The webhook checks the format again when it reads the value.
read_secret() {
  local line lines=()
  if [[ -z $SECRET_FILE ]]; then
    if [[ -t 0 ]]; then
      printf 'PayNow signing secrets, one per line (typing is not shown), then an empty line: ' >&2
      while IFS= read -rs line && [[ -n ${line//[[:space:]]/} ]]; do
        lines+=("$line")
        printf '\n  %d read; the next, or an empty line: ' "${#lines[@]}" >&2
      done
      printf '\n' >&2
      SECRET_VALUE=$(printf '%s\n' "${lines[@]}")
    else
      SECRET_VALUE=$(cat)
    fi
  else
    SECRET_VALUE=$(<"$SECRET_FILE")
  fi
  SECRET_VALUE=${SECRET_VALUE//$'\r'/}
  [[ -n ${SECRET_VALUE//[[:space:]]/} ]] || die "the secret is empty"
  check_secret_lines "$SECRET_VALUE"
}

# check_secret_lines VALUE: one secret per line, at most 32, no blank line between two (the
# webhook's own rule); the message names a line number, never a secret.
check_secret_lines() {
  local -a all=()
  local line n=0 count=0 blank=0
  mapfile -t all <<<"$1"
  for line in "${all[@]}"; do
    n=$((n + 1))
    if [[ -z ${line//[[:space:]]/} ]]; then
      blank=$n
      continue
    fi
    ((blank == 0 || count == 0)) || die "line $blank of the secret is blank between two secrets"
    blank=0
    count=$((count + 1))
  done
  ((count <= 32)) || die "the secret holds $count secrets; at most 32"
}

# latest_digest NAME: the sha256 of secret NAME's latest version into LATEST ('' when there
# is no readable latest version yet: none added, or the latest one disabled or destroyed).
# A caller who may not read versions is stopped: it cannot tell whether the value is new,
# and adding one on every run would pile up versions.
latest_digest() {
  local name=$1 found=0
  local access=(gcloud secrets versions access latest --secret="$name" --project="$PROJECT")
  LATEST=''
  show "${access[@]}"
  note "(only its sha256 is kept, to compare)"
  ((DRY_RUN)) && return 0
  attempt_read LATEST sha256_of "${access[@]}" || found=$?
  ((found != 0)) || return 0
  if denied <<<"$READ_ERR"; then
    printf '%s' "$READ_ERR" >&2
    die "may not read the versions of secret $name, so cannot tell whether this value is new; nothing was added.
  The account running this needs roles/secretmanager.secretAccessor on the secret (or roles/secretmanager.admin):
  gcloud secrets add-iam-policy-binding $name --project=$PROJECT --member=MEMBER --role=roles/secretmanager.secretAccessor
  (MEMBER: user:you@example.com; the bootstrap is run by a project owner)"
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

# add_version NAME WHAT: stdin (read whole) as a new version of secret NAME, through stdin,
# unless it is the latest already. WHAT names the value in the plan.
add_version() {
  local name=$1 what=$2 value wanted
  value=$(
    cat
    printf x
  )
  value=${value%x}
  latest_digest "$name"
  wanted=$(printf '%s' "$value" | sha256sum)
  if [[ $LATEST == "$wanted" ]]; then
    note "the latest version already holds this value; nothing added"
    plan_item unchanged "$what"
    return
  fi
  plan_item update "$what" "a new version"
  show gcloud secrets versions add "$name" --project="$PROJECT" --data-file=-
  note "(the value goes through stdin; it is not shown)"
  ((NO_WRITES)) && return
  printf '%s' "$value" |
    gcloud secrets versions add "$name" --project="$PROJECT" --data-file=- --format='value(name)' >&2
}

# ensure_secret NAME: the secret exists (created, automatic replication, when absent).
ensure_secret() {
  if query found gcloud secrets describe "$1" --project="$PROJECT" --format='value(name)'; then
    plan_item unchanged "secret $1"
  else
    plan_item create "secret $1"
    run gcloud secrets create "$1" --project="$PROJECT" --replication-policy=automatic
  fi
}

say "Signing secret $SECRET_NAME"
((${#SECRET_ARGS[@]} == 0)) || read_secret
ensure_secret "$SECRET_NAME"
if ((${#SECRET_ARGS[@]})); then
  add_version "$SECRET_NAME" "the signing secret's value" < <(printf '%s' "$SECRET_VALUE")
else
  version=''
  query version gcloud secrets versions list "$SECRET_NAME" --project="$PROJECT" \
    --filter='state=ENABLED' --limit=1 --format='value(name)' || true
  if [[ -n $version ]]; then
    note "an enabled version exists"
  elif ((DRY_RUN)); then
    note "(a real run stops here unless the secret has an enabled version)"
  elif ((PLAN)); then
    plan_item create "the signing secret's first version" "a real run stops here: give --secret-stdin or --secret-file"
  else
    die "secret $SECRET_NAME has no enabled version: put the value in with
  infra/steps/secret.sh $ENV_FILE --secret-stdin < FILE   (or --secret-file FILE)"
  fi
fi

say "Settings secret $DEPLOY_ENV_SECRET (this settings file, for the CI build)"
ensure_secret "$DEPLOY_ENV_SECRET"
add_version "$DEPLOY_ENV_SECRET" "the settings file $ENV_FILE" <"$ENV_FILE"
