# shellcheck shell=bash disable=SC2034
# Sourced by every infra script, never run: the contract's fixed names, the
# settings file, the run/dry-run wrapper and reads that tell "absent" from "broken".
#
# Conventions: every gcloud call names --project explicitly; every command is
# printed ("+ gcloud ...") on stderr before it runs; with --dry-run it is only
# printed, and reads behave as if nothing existed yet (the plan for an empty project).

# --- names fixed by the contract (docs: ARCHITECTURE.md); not settings --------
readonly TOPIC=paynow-events
readonly DLQ_TOPIC=paynow-events-dlq
readonly PUSH_SUBSCRIPTION=paynow-events-push
readonly DLQ_SUBSCRIPTION=paynow-events-dlq-sub
readonly WEBHOOK_TARGET=paynow_webhook
readonly WORKER_TARGET=paynow_worker
readonly RECONCILE_TARGET=paynow_reconcile
readonly EVENTS_COLLECTION=webhookEvents
readonly REJECTIONS_COLLECTION=rejectedPayloads
readonly TTL_FIELD=expireAt
readonly RUNTIME=python311
readonly FIRESTORE_DATABASE='(default)'
readonly DLQ_ACK_DEADLINE_SECONDS=60
readonly PRIMITIVE_ROLES='roles/owner roles/editor roles/viewer'

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$INFRA_DIR/.." && pwd)"
readonly INFRA_DIR ROOT_DIR
DRY_RUN=0
ENV_FILE=''
ARGS=()

# Every setting the file may hold, with its default ('' = required or optional, see validate).
readonly SETTINGS=(
  PROJECT REGION FIRESTORE_LOCATION SCHEDULER_LOCATION WEBHOOK_MODE
  WEBHOOK_FUNCTION WORKER_FUNCTION RECONCILE_FUNCTION
  WEBHOOK_SA_NAME WORKER_SA_NAME RECONCILE_SA_NAME PUSH_SA_NAME SCHEDULER_SA_NAME
  SECRET_NAME SCHEDULER_JOB RECONCILE_SCHEDULE RECONCILE_TIME_ZONE
  FUNCTION_MEMORY WEBHOOK_TIMEOUT_SECONDS WORKER_TIMEOUT_SECONDS RECONCILE_TIMEOUT_SECONDS
  WEBHOOK_MAX_INSTANCES WORKER_MAX_INSTANCES RECONCILE_MAX_INSTANCES
  ACK_DEADLINE_SECONDS MIN_RETRY_DELAY_SECONDS MAX_RETRY_DELAY_SECONDS
  PUBSUB_MAX_DELIVERY_ATTEMPTS MAX_DELIVERY_ATTEMPTS DLQ_RETENTION_DAYS EVENT_TTL_DAYS
  PAYNOW_USER_ID_KEY
  BUILD_SERVICE_ACCOUNT
  NOTIFICATION_CHANNELS
)
declare -A DEFAULTS=(
  [WEBHOOK_MODE]=sync
  [WEBHOOK_FUNCTION]=paynow-webhook [WORKER_FUNCTION]=paynow-worker
  [RECONCILE_FUNCTION]=paynow-reconcile
  [WEBHOOK_SA_NAME]=paynow-webhook [WORKER_SA_NAME]=paynow-worker
  [RECONCILE_SA_NAME]=paynow-reconcile [PUSH_SA_NAME]=paynow-push
  [SCHEDULER_SA_NAME]=paynow-scheduler
  [SECRET_NAME]=paynow-webhook-secret [SCHEDULER_JOB]=paynow-reconcile
  [RECONCILE_SCHEDULE]='*/5 * * * *' [RECONCILE_TIME_ZONE]=Etc/UTC
  [FUNCTION_MEMORY]=512Mi
  [WEBHOOK_TIMEOUT_SECONDS]=60 [WORKER_TIMEOUT_SECONDS]=60 [RECONCILE_TIMEOUT_SECONDS]=120
  [WEBHOOK_MAX_INSTANCES]=20 [WORKER_MAX_INSTANCES]=20 [RECONCILE_MAX_INSTANCES]=1
  [ACK_DEADLINE_SECONDS]=90 [MIN_RETRY_DELAY_SECONDS]=10 [MAX_RETRY_DELAY_SECONDS]=600
  [PUBSUB_MAX_DELIVERY_ATTEMPTS]=15 [MAX_DELIVERY_ATTEMPTS]=10 [DLQ_RETENTION_DAYS]=7
  [EVENT_TTL_DAYS]=30
  [PAYNOW_USER_ID_KEY]=user_id
)

# --- messages -------------------------------------------------------------------
say() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# usage: the script's header comment (from line 2 to the first blank line).
usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
}

# --- arguments ------------------------------------------------------------------
# parse_args "$@": ENV_FILE is the first positional argument; --dry-run anywhere;
# everything else is left in ARGS for the script.
parse_args() {
  ARGS=()
  while (($#)); do
    case $1 in
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        if [[ -z $ENV_FILE && $1 != -* ]]; then ENV_FILE=$1; else ARGS+=("$1"); fi
        ;;
    esac
    shift
  done
  if [[ -z $ENV_FILE ]]; then
    usage
    die "the settings file is required (start from infra/env/example.env)"
  fi
  return 0
}

# no_more_args: fail on anything the script did not consume from ARGS.
no_more_args() {
  ((${#ARGS[@]} == 0)) || die "unexpected argument(s): ${ARGS[*]}"
}

# parse_secret_args: the secret options in ARGS, and nothing else (see no_more_args):
# --secret-stdin, --secret-file PATH or --secret-file=PATH, at most one of them, the path
# not empty and the file readable. Sets SECRET_ARGS to () or the one option, as
# (--secret-stdin) or (--secret-file=PATH), to pass on; SECRET_FILE to the path ('' else).
parse_secret_args() {
  local rest=()
  SECRET_ARGS=()
  SECRET_FILE=''
  set -- "${ARGS[@]}"
  while (($#)); do
    case $1 in
      --secret-stdin) SECRET_ARGS+=("$1") ;;
      --secret-file)
        [[ -n ${2:-} ]] || die "--secret-file needs a path"
        SECRET_ARGS+=("$1=$2")
        shift
        ;;
      --secret-file=*)
        [[ -n ${1#--secret-file=} ]] || die "--secret-file needs a path"
        SECRET_ARGS+=("$1")
        ;;
      *) rest+=("$1") ;;
    esac
    shift
  done
  ARGS=("${rest[@]}")
  no_more_args
  ((${#SECRET_ARGS[@]} <= 1)) || die "give the secret once: --secret-stdin or --secret-file PATH"
  if [[ ${SECRET_ARGS[0]:-} == --secret-file=* ]]; then
    SECRET_FILE=${SECRET_ARGS[0]#--secret-file=}
    [[ -r $SECRET_FILE ]] || die "cannot read the secret file $SECRET_FILE"
  fi
  return 0
}

# --- settings -------------------------------------------------------------------
# load_settings FILE: KEY=value lines only (no shell is run), known keys only,
# later lines win; then defaults, validation and derived names.
load_settings() {
  local file=$1 line key value n=0
  [[ -f $file ]] || die "settings file not found: $file"
  for key in "${SETTINGS[@]}"; do printf -v "$key" '%s' ''; done
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
    [[ $line =~ ^([A-Z][A-Z0-9_]*)=(.*)$ ]] || die "$file:$n: expected KEY=value"
    key=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
    [[ " ${SETTINGS[*]} " == *" $key "* ]] || die "$file:$n: unknown setting $key"
    printf -v "$key" '%s' "$value"
  done <"$file"
  for key in "${!DEFAULTS[@]}"; do
    [[ -n ${!key} ]] || printf -v "$key" '%s' "${DEFAULTS[$key]}"
  done
  [[ -n $SCHEDULER_LOCATION ]] || SCHEDULER_LOCATION=$REGION
  validate_settings "$file"
  WEBHOOK_SA="$WEBHOOK_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  WORKER_SA="$WORKER_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  RECONCILE_SA="$RECONCILE_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  PUSH_SA="$PUSH_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  SCHEDULER_SA="$SCHEDULER_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  SECRET_ID="projects/$PROJECT/secrets/$SECRET_NAME"
  DLQ_TOPIC_PATH="projects/$PROJECT/topics/$DLQ_TOPIC"
  if ((DRY_RUN)) && [[ -z ${INFRA_STEP_OF_DEPLOY:-} ]]; then
    say "DRY RUN ($file): commands are printed, none is run; reads find nothing"
  fi
}

# _expect KEY REGEX WHAT / _between KEY LOW HIGH: one setting's check (file name in $_FILE).
_expect() {
  [[ ${!1} =~ $2 ]] || die "$_FILE: $1 must be $3, got '${!1}'"
}
_between() {
  _expect "$1" '^(0|[1-9][0-9]*)$' 'a whole number'
  ((${!1} >= $2 && ${!1} <= $3)) || die "$_FILE: $1 must be between $2 and $3, got ${!1}"
}

validate_settings() {
  local key
  _FILE=$1
  _expect PROJECT '^[a-z][a-z0-9-]{4,28}[a-z0-9]$' 'a Google Cloud project id'
  _expect REGION '^[a-z]+-[a-z]+[0-9]+$' 'a region such as europe-west1'
  _expect SCHEDULER_LOCATION '^[a-z]+-[a-z]+[0-9]+$' 'a region such as europe-west1'
  _expect FIRESTORE_LOCATION '^[a-z0-9-]+$' 'a Firestore location such as eur3 or europe-west1'
  _expect WEBHOOK_MODE '^(sync|queue)$' 'sync or queue'
  for key in WEBHOOK_FUNCTION WORKER_FUNCTION RECONCILE_FUNCTION SCHEDULER_JOB SECRET_NAME; do
    _expect "$key" '^[a-z][a-z0-9-]{0,48}[a-z0-9]$' 'lowercase letters, digits and hyphens'
  done
  for key in WEBHOOK_SA_NAME WORKER_SA_NAME RECONCILE_SA_NAME PUSH_SA_NAME SCHEDULER_SA_NAME; do
    _expect "$key" '^[a-z][a-z0-9-]{4,28}[a-z0-9]$' 'a service account id (6-30 characters)'
  done
  _expect RECONCILE_SCHEDULE '^[0-9*/,-]+( [0-9*/,A-Za-z-]+){4}$' 'a cron schedule'
  _expect RECONCILE_TIME_ZONE '^[A-Za-z_]+(/[A-Za-z_+-]+)*$' 'a time zone such as Etc/UTC'
  _expect FUNCTION_MEMORY '^[0-9]+(Mi|Gi)$' 'a size such as 512Mi'
  _expect PAYNOW_USER_ID_KEY '^[A-Za-z0-9_.-]+$' 'a checkout metadata key'
  _expect BUILD_SERVICE_ACCOUNT '^([a-z0-9-]+@[a-z0-9.-]+[.]iam[.]gserviceaccount[.]com)?$' \
    'empty or a service account email'
  _expect NOTIFICATION_CHANNELS \
    '^(projects/[a-z0-9-]+/notificationChannels/[0-9]+(,projects/[a-z0-9-]+/notificationChannels/[0-9]+)*)?$' \
    'empty or comma-separated channel names projects/P/notificationChannels/ID'
  _between WEBHOOK_TIMEOUT_SECONDS 1 3600
  _between WORKER_TIMEOUT_SECONDS 1 590
  _between RECONCILE_TIMEOUT_SECONDS 15 1800
  _between WEBHOOK_MAX_INSTANCES 1 1000
  _between WORKER_MAX_INSTANCES 1 1000
  _between RECONCILE_MAX_INSTANCES 1 10
  _between ACK_DEADLINE_SECONDS 10 600
  _between MIN_RETRY_DELAY_SECONDS 0 600
  _between MAX_RETRY_DELAY_SECONDS 0 600
  _between PUBSUB_MAX_DELIVERY_ATTEMPTS 5 100
  _between MAX_DELIVERY_ATTEMPTS 1 100
  _between DLQ_RETENTION_DAYS 1 31
  _between EVENT_TTL_DAYS 1 3650
  ((ACK_DEADLINE_SECONDS > WORKER_TIMEOUT_SECONDS)) ||
    die "$_FILE: ACK_DEADLINE_SECONDS ($ACK_DEADLINE_SECONDS) must exceed WORKER_TIMEOUT_SECONDS ($WORKER_TIMEOUT_SECONDS): Pub/Sub must not redeliver a message the worker is still processing"
  ((MIN_RETRY_DELAY_SECONDS <= MAX_RETRY_DELAY_SECONDS)) ||
    die "$_FILE: MIN_RETRY_DELAY_SECONDS must not exceed MAX_RETRY_DELAY_SECONDS"
  ((PUBSUB_MAX_DELIVERY_ATTEMPTS > MAX_DELIVERY_ATTEMPTS)) ||
    die "$_FILE: PUBSUB_MAX_DELIVERY_ATTEMPTS ($PUBSUB_MAX_DELIVERY_ATTEMPTS) must exceed MAX_DELIVERY_ATTEMPTS ($MAX_DELIVERY_ATTEMPTS): the worker dead-letters first, with the reason; Pub/Sub's dead-lettering is the backstop"
}

# --- running commands ----------------------------------------------------------
# show CMD...: print a command as a shell could run it again.
show() {
  local arg line='+'
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      line+=" $arg"
    else
      line+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  printf '%s\n' "$line" >&2
}

# run CMD...: print, then run unless --dry-run.
run() {
  show "$@"
  ((DRY_RUN)) && return 0
  "$@"
}

# absent < ERRORS: whether a failed read's error output says the resource does not exist.
# gcloud words it per service: NOT_FOUND (most), status=[404] (functions), "Cannot find
# service" (run). Anything else (permission, quota, network) is a real failure.
absent() {
  grep -qE 'NOT_FOUND|status=\[404\]|Cannot find service \[' -
}

# denied < ERRORS: whether a failed call's error output says the caller lacks a permission.
denied() {
  grep -qE 'PERMISSION_DENIED|status=\[403\]' -
}

# attempt_read VAR CMD...: run a read, unprinted (the caller shows it), its stdout into VAR
# ('' unless it succeeds). Returns 0 when it succeeded, 1 when the resource is absent, 2 on
# any other failure; after a failure READ_ERR holds its error output, READ_RC its exit code.
attempt_read() {
  local __var=$1 __out __err __rc=0
  shift
  printf -v "$__var" '%s' ''
  READ_ERR='' READ_RC=0
  __err=$(mktemp)
  __out=$("$@" 2>"$__err") || __rc=$?
  if ((__rc == 0)); then
    rm -f "$__err"
    printf -v "$__var" '%s' "$__out"
    return 0
  fi
  READ_ERR=$(
    cat "$__err"
    printf x
  )
  READ_ERR=${READ_ERR%x} # every byte, trailing newlines too
  READ_RC=$__rc
  rm -f "$__err"
  if absent <<<"$READ_ERR"; then return 1; fi
  return 2
}

# query VAR CMD...: a read. Its stdout goes into VAR; returns 0 when found, 1 when the
# resource is absent (or under --dry-run); any other failure stops the script.
query() {
  local __found=0
  show "${@:2}"
  printf -v "$1" '%s' ''
  ((DRY_RUN)) && return 1
  attempt_read "$@" || __found=$?
  if ((__found == 2)); then
    printf '%s' "$READ_ERR" >&2
    die "command failed (exit $READ_RC): ${*:2}"
  fi
  return "$__found"
}

# --- shared reads ---------------------------------------------------------------
# describe_function NAME: sets FN_STATE FN_HASH FN_URL FN_SERVICE; returns 1 when absent.
describe_function() {
  local out
  FN_STATE='' FN_HASH='' FN_URL='' FN_SERVICE=''
  query out gcloud functions describe "$1" --gen2 --region="$REGION" --project="$PROJECT" \
    --format='value[separator="|"](state,labels.deploy-hash,serviceConfig.uri,serviceConfig.service.basename())' ||
    return 1
  IFS='|' read -r FN_STATE FN_HASH FN_URL FN_SERVICE <<<"$out"
  return 0
}

# function_endpoint NAME: sets FN_URL and FN_SERVICE of a deployed function (placeholders
# under --dry-run); stops the script when it is not deployed.
function_endpoint() {
  if describe_function "$1"; then
    [[ -n $FN_URL && -n $FN_SERVICE ]] || die "function $1 has no URL yet (state ${FN_STATE:-unknown}); run infra/steps/functions.sh"
  elif ((DRY_RUN)); then
    FN_URL="https://dry-run.invalid/$1"
    FN_SERVICE=$1
  else
    die "function $1 is not deployed; run infra/steps/functions.sh first"
  fi
}

# project_number: the project's number (a placeholder under --dry-run).
project_number() {
  local number
  if query number gcloud projects describe "$PROJECT" --format='value(projectNumber)'; then
    printf '%s' "$number"
  elif ((DRY_RUN)); then
    printf '%s' PROJECT_NUMBER
  else
    die "project $PROJECT not found"
  fi
}

# service_state SERVICE: what a Cloud Run service runs now; returns 1 when it is absent (or
# under --dry-run). Sets LIVE_MODE (its WEBHOOK_MODE; sync when unset, as the code defaults),
# REVISION (latest ready), LATEST_CREATED, and SERVING_REVISION / SERVING_PERCENT (first
# traffic target).
service_state() {
  local out names values name i=0
  query out gcloud run services describe "$1" --region="$REGION" --project="$PROJECT" \
    --format='value[separator="|"](spec.template.spec.containers[0].env[].name.join(","),spec.template.spec.containers[0].env[].value.join(","),status.latestReadyRevisionName,status.latestCreatedRevisionName,status.traffic[0].revisionName,status.traffic[0].percent)' ||
    return 1
  IFS='|' read -r names values REVISION LATEST_CREATED SERVING_REVISION SERVING_PERCENT <<<"$out"
  IFS=, read -r -a names <<<"$names"
  IFS=, read -r -a values <<<"$values"
  LIVE_MODE=sync
  for name in "${names[@]}"; do
    [[ $name == WEBHOOK_MODE ]] && LIVE_MODE=${values[i]}
    i=$((i + 1))
  done
  return 0
}
