#!/usr/bin/env bash
# Step 3: the PayNow signing secret in Secret Manager.
#
#   infra/steps/secret.sh ENV_FILE [--dry-run] [--secret-stdin | --secret-file PATH]
#
# Creates the secret when absent. With --secret-stdin or --secret-file PATH, the value
# (one line) becomes a new version unless the latest version already holds it. The value
# is never a command argument and never printed. The webhook reads the latest version at
# run time (PAYNOW_WEBHOOK_SECRET_ID), so a new version rotates it without a deploy.
# Without a value, fails when the secret has no enabled version yet.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
SOURCE=''
set -- "${ARGS[@]}"
ARGS=()
while (($#)); do
  case $1 in
    --secret-stdin) SOURCE=- ;;
    --secret-file)
      (($# > 1)) || die "--secret-file needs a path"
      SOURCE=$2
      shift
      ;;
    --secret-file=*) SOURCE=${1#--secret-file=} ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
no_more_args
load_settings "$ENV_FILE"

# read_secret: the value into SECRET_VALUE, from stdin or the file, checked.
read_secret() {
  if [[ $SOURCE == - ]]; then
    [[ -t 0 ]] && note "type the signing secret, then press Ctrl-D"
    SECRET_VALUE=$(cat)
  else
    [[ -r $SOURCE ]] || die "cannot read the secret file $SOURCE"
    SECRET_VALUE=$(<"$SOURCE")
  fi
  SECRET_VALUE=${SECRET_VALUE%$'\r'}
  [[ -n ${SECRET_VALUE//[[:space:]]/} ]] || die "the secret is empty"
  [[ $SECRET_VALUE != *$'\n'* ]] || die "the secret must be a single line"
}

# add_version: SECRET_VALUE as a new version, through stdin, unless it is the latest already.
add_version() {
  local latest wanted
  show gcloud secrets versions access latest --secret="$SECRET_NAME" --project="$PROJECT"
  note "(only its sha256 is kept, to compare)"
  if ((DRY_RUN)); then
    latest=''
  else
    latest=$({ gcloud secrets versions access latest --secret="$SECRET_NAME" \
      --project="$PROJECT" 2>/dev/null || true; } | sha256sum)
  fi
  wanted=$(printf '%s' "$SECRET_VALUE" | sha256sum)
  if [[ $latest == "$wanted" ]]; then
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
[[ -z $SOURCE ]] || read_secret
if query found gcloud secrets describe "$SECRET_NAME" --project="$PROJECT" --format='value(name)'; then
  note "secret exists"
else
  run gcloud secrets create "$SECRET_NAME" --project="$PROJECT" --replication-policy=automatic
fi
if [[ -n $SOURCE ]]; then
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
