#!/usr/bin/env bash
# Deploy step: monitoring, from the definitions committed in infra/monitoring/: the log-based
# metrics (metrics/NAME.yaml), the alert policies (alerts/NAME.json) and the dashboard
# (dashboard.json).
#
#   infra/steps/monitoring.sh ENV_FILE [--dry-run | --plan]
#
# The Logging and Monitoring APIs are the bootstrap's to enable (infra/steps/apis.sh); metrics
# come before the policies that chart them. An alert file may name the functions' Cloud Run
# services as @WEBHOOK_SERVICE@, @WORKER_SERVICE@, @RECONCILE_SERVICE@, @LEDGER_SERVICE@
# (the function names of the settings file). Each resource carries a digest of the
# definition it was made from, so an unchanged one is left alone, a changed one updated in
# place and a missing one created:
#   metric     NAME = the file's name; digest at the end of its description ("[config D]")
#   policy     found by its user label paynow_alert = the file's name; digest in the user
#              label paynow_config (covering NOTIFICATION_CHANNELS, which every policy gets)
#   dashboard  found by its displayName; digest in its label paynow_config
# Metrics, policies and the dashboard are applied from rendered copies (the digest, the
# service names), written to a temporary directory removed when the step ends: nothing is
# written in the repository, with or without --dry-run. MONITORING_RENDER_DIR=DIR (or
# INFRA_RENDER_DIR=DIR, into DIR/monitoring) writes them there instead and keeps them (for
# the tests, which hand the commands to the real gcloud afterwards).
# Alert policies need the gcloud alpha component (gcloud alpha monitoring policies).
# Monitoring may take up to 10 minutes to know a log-based metric just created: creating a
# policy on it is retried until then. Not changed in place: a metric's kind or value type
# (delete it: gcloud logging metrics delete NAME --project=PROJECT, and run again).
# A policy with a paynow_alert label whose file is gone is reported, not deleted.

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

readonly MONITORING_DIR="$ROOT_DIR/infra/monitoring"
if [[ -n ${MONITORING_RENDER_DIR:-} ]]; then
  RENDER_DIR=$MONITORING_RENDER_DIR
else
  render_dir monitoring
  RENDER_DIR=$RENDERED
fi
readonly RENDER_DIR
# Waiting for a new metric: RETRIES attempts, RETRY_SECONDS apart (an environment knob for tests).
readonly RETRY_SECONDS=${MONITORING_RETRY_SECONDS:-30}
readonly RETRIES=21

# digest FILE [VALUE...]: 16 hex characters over the file's bytes and the values.
digest() {
  local file=$1
  shift
  { cat "$file" && printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

# write_file PATH: stdin into PATH (mode from the umask: gcloud, as this user, reads it).
write_file() {
  mkdir -p "$(dirname "$1")"
  cat >"$1"
}

# render_metric FILE DIGEST OUT: the metric with " [config DIGEST]" after its description.
render_metric() {
  (($(grep -c '^description: ' "$1") == 1)) ||
    die "$1 must hold one top-level 'description: TEXT' line (plain text, on one line)"
  sed "s/^description: .*\$/& [config $2]/" "$1" | write_file "$3"
}

# render_dashboard FILE DIGEST OUT: the dashboard with the label paynow_config=DIGEST.
render_dashboard() {
  local content
  content=$(<"$1")
  [[ $content == '{'* ]] || die "$1 must be a JSON object"
  ! grep -qE '"labels"[[:space:]]*:' "$1" || die "$1 must not set labels: this step sets them"
  printf '{\n  "labels": {"paynow_config": "%s"},%s\n' "$2" "${content#\{}" | write_file "$3"
}

# apply_policy ARGS...: gcloud ARGS (a policy create or update), retried while Monitoring
# does not know a log-based metric it refers to yet.
apply_policy() {
  local attempt err
  show gcloud "$@"
  ((NO_WRITES)) && return 0
  for ((attempt = 1; ; attempt++)); do
    if err=$(gcloud "$@" 2>&1 >/dev/null); then
      return 0
    fi
    if [[ $err == *"Cannot find metric"* || $err == *"metric referenced by the provided filter is unknown"* ]] &&
      ((attempt < RETRIES)); then
      note "Monitoring does not know a new log-based metric yet; retrying in ${RETRY_SECONDS} s ($attempt/$((RETRIES - 1)))"
      sleep "$RETRY_SECONDS"
      continue
    fi
    printf '%s\n' "$err" >&2
    die "command failed: gcloud $*"
  done
}

# render_alert FILE OUT: the policy with the functions' service names in place.
render_alert() {
  sed -e "s/@WEBHOOK_SERVICE@/$WEBHOOK_FUNCTION/g" -e "s/@WORKER_SERVICE@/$WORKER_FUNCTION/g" \
    -e "s/@RECONCILE_SERVICE@/$RECONCILE_FUNCTION/g" -e "s/@LEDGER_SERVICE@/$LEDGER_FUNCTION/g" \
    "$1" | write_file "$2"
  ! grep -q '@[A-Z_]*_SERVICE@' "$2" || die "$1 names a service this step does not know"
}

say "Log-based metrics ($MONITORING_DIR/metrics)"
metrics=''
query metrics gcloud logging metrics list --project="$PROJECT" \
  --format='value[separator="|"](name,description)' || true
for file in "$MONITORING_DIR"/metrics/*.yaml; do
  name=$(basename "$file" .yaml)
  [[ $name =~ ^[a-z][a-z0-9_]{0,99}$ ]] || die "$file: a metric's file name is its name: lowercase letters, digits, _"
  sum=$(digest "$file")
  rendered="$RENDER_DIR/metrics/$name.yaml"
  render_metric "$file" "$sum" "$rendered"
  current=$(grep -E "^${name}[|]" <<<"$metrics" || true)
  if [[ -z $current ]]; then
    plan_item create "log-based metric $name"
    run gcloud logging metrics create "$name" --project="$PROJECT" \
      --config-from-file="$rendered" --format=none
  elif [[ $current == *"[config $sum]" ]]; then
    note "metric $name is up to date"
    plan_item unchanged "log-based metric $name"
  else
    plan_item update "log-based metric $name" "definition (metrics/$name.yaml)"
    run gcloud logging metrics update "$name" --project="$PROJECT" \
      --config-from-file="$rendered" --format=none
  fi
done

say "Alert policies ($MONITORING_DIR/alerts)"
[[ -n $NOTIFICATION_CHANNELS ]] || note "NOTIFICATION_CHANNELS is empty: incidents show in the console only"
policies=''
query policies gcloud alpha monitoring policies list --project="$PROJECT" \
  --format='value[separator="|"](name.basename(),userLabels.paynow_alert,userLabels.paynow_config)' ||
  true
declare -A ALERTS=()
for file in "$MONITORING_DIR"/alerts/*.json; do
  alert=$(basename "$file" .json)
  [[ $alert =~ ^[a-z][a-z0-9-]{0,62}$ ]] || die "$file: an alert's file name is a label value: lowercase letters, digits, -"
  ALERTS[$alert]=1
  rendered="$RENDER_DIR/alerts/$alert.json"
  render_alert "$file" "$rendered"
  sum=$(digest "$rendered" "$NOTIFICATION_CHANNELS")
  labels="paynow_alert=$alert,paynow_config=$sum"
  matches=$(grep -E "^[^|]*[|]${alert}[|]" <<<"$policies" || true)
  if [[ -z $matches ]]; then
    plan_item create "alert policy $alert"
    args=(--project="$PROJECT" --policy-from-file="$rendered" --user-labels="$labels" --format=none)
    [[ -z $NOTIFICATION_CHANNELS ]] || args+=(--notification-channels="$NOTIFICATION_CHANNELS")
    apply_policy alpha monitoring policies create "${args[@]}"
    continue
  fi
  IFS='|' read -r id _ current <<<"${matches%%$'\n'*}"
  [[ $matches != *$'\n'* ]] ||
    warn "several policies carry paynow_alert=$alert; only $id is kept in step with $file"
  if [[ $current == "$sum" ]]; then
    note "policy $alert is up to date ($id)"
    plan_item unchanged "alert policy $alert"
    continue
  fi
  plan_item update "alert policy $alert" "definition (alerts/$alert.json) or NOTIFICATION_CHANNELS"
  args=("$id" --project="$PROJECT" --policy-from-file="$rendered" --update-user-labels="$labels" --format=none)
  [[ -z $NOTIFICATION_CHANNELS ]] || args+=(--set-notification-channels="$NOTIFICATION_CHANNELS")
  apply_policy alpha monitoring policies update "${args[@]}"
done
while IFS='|' read -r id alert _; do
  if [[ -n $alert && -z ${ALERTS[$alert]+set} ]]; then
    warn "policy $id (paynow_alert=$alert) has no file in infra/monitoring/alerts; if it is retired: gcloud alpha monitoring policies delete $id --project=$PROJECT"
  fi
done <<<"$policies"

file="$MONITORING_DIR/dashboard.json"
titles=$(grep -oE '"displayName"[[:space:]]*:[[:space:]]*"[^"]*"' "$file" || true)
[[ -n $titles && $titles != *$'\n'* ]] || die "$file must hold exactly one displayName (the dashboard's)"
title=${titles%\"}
title=${title##*\"}
say "Dashboard \"$title\""
sum=$(digest "$file")
rendered="$RENDER_DIR/dashboard.json"
render_dashboard "$file" "$sum" "$rendered"
dashboards=''
query dashboards gcloud monitoring dashboards list --project="$PROJECT" \
  --format='value[separator="|"](name.basename(),labels.paynow_config,displayName)' || true
found='' current='' count=0
while IFS='|' read -r id label name; do
  [[ -n $id && $name == "$title" ]] || continue
  count=$((count + 1))
  if [[ -z $found ]]; then
    found=$id
    current=$label
  fi
done <<<"$dashboards"
((count < 2)) || warn "$count dashboards are named \"$title\"; only $found is kept in step with $file"
if [[ -z $found ]]; then
  plan_item create "dashboard \"$title\""
  run gcloud monitoring dashboards create --project="$PROJECT" --config-from-file="$rendered" \
    --format=none
elif [[ $current == "$sum" ]]; then
  note "dashboard is up to date ($found)"
  plan_item unchanged "dashboard \"$title\""
else
  plan_item update "dashboard \"$title\"" "definition (dashboard.json)"
  run gcloud monitoring dashboards update "$found" --project="$PROJECT" \
    --config-from-file="$rendered" --format=none
fi
