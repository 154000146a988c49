# shellcheck shell=bash disable=SC2034
# Sourced by every infra script, never run: the contract's fixed names, the
# settings file, the run/dry-run wrapper and reads that tell "absent" from "broken".
#
# Conventions: every gcloud call names --project explicitly; every command is
# printed ("+ gcloud ...") on stderr before it runs. Three modes:
#   (default)  reads and writes run;
#   --plan     reads run against the live project, writes are only printed: the plan of
#              what a real run would create, update (which fields) or leave unchanged;
#   --dry-run  nothing runs, not even reads, which behave as if nothing existed yet: the
#              offline plan for an empty project.
# Every resource a step looks at gets one plan line (plan_item), in every mode.

# --- names fixed by the contract (docs/contract.md); not settings --------
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
# The APIs the pipeline, its deploy and its monitoring use: the bootstrap enables them, the
# deploy checks them.
readonly PIPELINE_APIS=(
  artifactregistry.googleapis.com     # function images
  cloudbuild.googleapis.com           # function builds
  cloudfunctions.googleapis.com       # the four functions
  cloudresourcemanager.googleapis.com # project IAM policy, testIamPermissions
  cloudscheduler.googleapis.com       # reconcile and ledger-verify jobs
  firestore.googleapis.com
  iam.googleapis.com                  # service accounts, custom roles
  logging.googleapis.com              # log-based metrics
  monitoring.googleapis.com           # alert policies, dashboard
  pubsub.googleapis.com
  run.googleapis.com                  # gen2 functions run on Cloud Run
  secretmanager.googleapis.com
  storage.googleapis.com              # function sources, the DLQ archive
)
# Not in the contract, named here once: the DLQ's archive (a Cloud Storage subscription),
# the ledger check's entry point, and the custom Firestore roles of infra/steps/access.sh.
readonly ARCHIVE_SUBSCRIPTION=paynow-events-dlq-archive
readonly LEDGER_TARGET=ledger_verify
readonly WRITER_ROLE=paynowEventWriter
readonly SMOKE_ROLE=paynowSmokeTest
# Firestore's permissions per API call (docs/cloud-setup.md cites Google's table): get and
# batchGet need entities.get, a query entities.list, a transaction databases.get, a create
# entities.create, an update entities.update, a set (no precondition) both; nothing the
# functions do deletes. The smoke test reads its records and deletes them.
readonly WRITER_PERMISSIONS=(
  datastore.databases.get datastore.databases.getMetadata datastore.entities.create
  datastore.entities.get datastore.entities.list datastore.entities.update
)
readonly SMOKE_PERMISSIONS=(datastore.entities.delete datastore.entities.get)
# What the CI deploy (DEPLOYER_SA) holds on the project; docs/cloud-setup.md says why each.
readonly DEPLOYER_ROLES=(
  roles/cloudfunctions.developer roles/run.admin roles/pubsub.admin roles/cloudscheduler.admin
  roles/logging.configWriter roles/monitoring.alertPolicyEditor roles/monitoring.dashboardEditor
  roles/serviceusage.serviceUsageViewer roles/browser roles/iam.securityReviewer
  roles/logging.logWriter
)
# What the build service account holds on the project (Google's list for a custom build
# account of Cloud Run functions); its source read is narrowed to the functions' buckets.
readonly BUILD_ROLES=(roles/logging.logWriter roles/artifactregistry.writer)
readonly BUILD_SOURCE_CONDITION='gcf-sources|resource.name.startsWith("projects/_/buckets/gcf-v2-")'

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$INFRA_DIR/.." && pwd)"
readonly INFRA_DIR ROOT_DIR
DRY_RUN=0
PLAN=0
NO_WRITES=0 # --dry-run or --plan: nothing is changed
ENV_FILE=''
ARGS=()

# Every setting the file may hold, with its default ('' = required or optional, see validate).
readonly SETTINGS=(
  PROJECT REGION FIRESTORE_LOCATION SCHEDULER_LOCATION WEBHOOK_MODE
  WEBHOOK_FUNCTION WORKER_FUNCTION RECONCILE_FUNCTION
  WEBHOOK_SA_NAME WORKER_SA_NAME RECONCILE_SA_NAME PUSH_SA_NAME SCHEDULER_SA_NAME
  LEDGER_FUNCTION LEDGER_SA_NAME DEPLOYER_SA_NAME
  SECRET_NAME WEBHOOK_SECRET_PREVIOUS_VERSION WEBHOOK_SECRET_PREVIOUS_UNTIL DEPLOY_ENV_SECRET
  SCHEDULER_JOB RECONCILE_SCHEDULE RECONCILE_TIME_ZONE
  LEDGER_VERIFY_JOB LEDGER_VERIFY_SCHEDULE
  WEBHOOK_TIMEOUT_SECONDS WORKER_TIMEOUT_SECONDS RECONCILE_TIMEOUT_SECONDS
  LEDGER_TIMEOUT_SECONDS
  WEBHOOK_MAX_INSTANCES WORKER_MAX_INSTANCES RECONCILE_MAX_INSTANCES
  ACK_DEADLINE_SECONDS MIN_RETRY_DELAY_SECONDS MAX_RETRY_DELAY_SECONDS
  PUBSUB_MAX_DELIVERY_ATTEMPTS MAX_DELIVERY_ATTEMPTS DLQ_RETENTION_DAYS EVENT_TTL_DAYS
  DLQ_ARCHIVE_BUCKET DLQ_ARCHIVE_DAYS
  PAYNOW_USER_ID_KEY
  BUILD_SERVICE_ACCOUNT
  NOTIFICATION_CHANNELS
)
# Settings that were, and are now ignored with a warning (the reason after the name).
declare -A RETIRED=(
  [FUNCTION_MEMORY]="each function's memory, CPU and concurrency are in infra/sizing.sh"
)
declare -A DEFAULTS=(
  [WEBHOOK_MODE]=sync
  [WEBHOOK_FUNCTION]=paynow-webhook [WORKER_FUNCTION]=paynow-worker
  [RECONCILE_FUNCTION]=paynow-reconcile
  [WEBHOOK_SA_NAME]=paynow-webhook [WORKER_SA_NAME]=paynow-worker
  [RECONCILE_SA_NAME]=paynow-reconcile [PUSH_SA_NAME]=paynow-push
  [SCHEDULER_SA_NAME]=paynow-scheduler
  [LEDGER_FUNCTION]=paynow-ledger-verify [LEDGER_SA_NAME]=paynow-ledger-verify
  [DEPLOYER_SA_NAME]=paynow-deployer
  [SECRET_NAME]=paynow-webhook-secret [DEPLOY_ENV_SECRET]=paynow-deploy-env
  [SCHEDULER_JOB]=paynow-reconcile
  [RECONCILE_SCHEDULE]='*/5 * * * *' [RECONCILE_TIME_ZONE]=Etc/UTC
  [LEDGER_VERIFY_JOB]=paynow-ledger-verify [LEDGER_VERIFY_SCHEDULE]='17 3 * * *'
  [WEBHOOK_TIMEOUT_SECONDS]=60 [WORKER_TIMEOUT_SECONDS]=60 [RECONCILE_TIMEOUT_SECONDS]=120
  [LEDGER_TIMEOUT_SECONDS]=1800
  [WEBHOOK_MAX_INSTANCES]=20 [WORKER_MAX_INSTANCES]=20 [RECONCILE_MAX_INSTANCES]=1
  [ACK_DEADLINE_SECONDS]=90 [MIN_RETRY_DELAY_SECONDS]=10 [MAX_RETRY_DELAY_SECONDS]=600
  [PUBSUB_MAX_DELIVERY_ATTEMPTS]=15 [MAX_DELIVERY_ATTEMPTS]=10 [DLQ_RETENTION_DAYS]=31
  [EVENT_TTL_DAYS]=30 [DLQ_ARCHIVE_DAYS]=365
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
# parse_args "$@": ENV_FILE is the first positional argument; --dry-run or --plan anywhere
# (not both); everything else is left in ARGS for the script.
parse_args() {
  ARGS=()
  while (($#)); do
    case $1 in
      --dry-run) DRY_RUN=1 ;;
      --plan) PLAN=1 ;;
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
  ((!(DRY_RUN && PLAN))) || die "give --dry-run (offline, nothing read) or --plan (live reads), not both"
  NO_WRITES=$((DRY_RUN || PLAN))
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
    if [[ -n ${RETIRED[$key]+set} ]]; then
      [[ -n ${INFRA_STEP_OF_DEPLOY:-} ]] || warn "$file:$n: $key is no longer a setting (ignored): ${RETIRED[$key]}"
      continue
    fi
    [[ " ${SETTINGS[*]} " == *" $key "* ]] || die "$file:$n: unknown setting $key"
    printf -v "$key" '%s' "$value"
  done <"$file"
  for key in "${!DEFAULTS[@]}"; do
    [[ -n ${!key} ]] || printf -v "$key" '%s' "${DEFAULTS[$key]}"
  done
  [[ -n $SCHEDULER_LOCATION ]] || SCHEDULER_LOCATION=$REGION
  [[ -n $BUILD_SERVICE_ACCOUNT ]] || BUILD_SERVICE_ACCOUNT="paynow-build@$PROJECT.iam.gserviceaccount.com"
  [[ -n $DLQ_ARCHIVE_BUCKET ]] || DLQ_ARCHIVE_BUCKET="$PROJECT-paynow-dlq-archive"
  validate_settings "$file"
  WEBHOOK_SA="$WEBHOOK_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  WORKER_SA="$WORKER_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  RECONCILE_SA="$RECONCILE_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  PUSH_SA="$PUSH_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  SCHEDULER_SA="$SCHEDULER_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  LEDGER_SA="$LEDGER_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  DEPLOYER_SA="$DEPLOYER_SA_NAME@$PROJECT.iam.gserviceaccount.com"
  BUILD_SA=$BUILD_SERVICE_ACCOUNT
  SECRET_ID="projects/$PROJECT/secrets/$SECRET_NAME"
  DLQ_TOPIC_PATH="projects/$PROJECT/topics/$DLQ_TOPIC"
  if [[ -z ${INFRA_STEP_OF_DEPLOY:-} ]]; then
    if ((DRY_RUN)); then
      say "DRY RUN ($file): commands are printed, none is run; reads find nothing"
    elif ((PLAN)); then
      say "PLAN ($file): reads run against project $PROJECT, changes are only printed"
    fi
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
  for key in WEBHOOK_FUNCTION WORKER_FUNCTION RECONCILE_FUNCTION LEDGER_FUNCTION SCHEDULER_JOB \
    LEDGER_VERIFY_JOB SECRET_NAME DEPLOY_ENV_SECRET; do
    _expect "$key" '^[a-z][a-z0-9-]{0,48}[a-z0-9]$' 'lowercase letters, digits and hyphens'
  done
  for key in WEBHOOK_SA_NAME WORKER_SA_NAME RECONCILE_SA_NAME PUSH_SA_NAME SCHEDULER_SA_NAME \
    LEDGER_SA_NAME DEPLOYER_SA_NAME; do
    _expect "$key" '^[a-z][a-z0-9-]{4,28}[a-z0-9]$' 'a service account id (6-30 characters)'
  done
  for key in RECONCILE_SCHEDULE LEDGER_VERIFY_SCHEDULE; do
    _expect "$key" '^[0-9*/,-]+( [0-9*/,A-Za-z-]+){4}$' 'a cron schedule'
  done
  _expect RECONCILE_TIME_ZONE '^[A-Za-z_]+(/[A-Za-z_+-]+)*$' 'a time zone such as Etc/UTC'
  _expect PAYNOW_USER_ID_KEY '^[A-Za-z0-9_.-]+$' 'a checkout metadata key'
  _expect BUILD_SERVICE_ACCOUNT '^[a-z0-9-]+@[a-z0-9.-]+[.]iam[.]gserviceaccount[.]com$' \
    'empty or a service account email'
  _expect DLQ_ARCHIVE_BUCKET '^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$' 'a bucket name (3-63 lowercase letters, digits, - and _)'
  _expect WEBHOOK_SECRET_PREVIOUS_VERSION '^([1-9][0-9]*)?$' 'empty or a version number of the signing secret'
  _expect WEBHOOK_SECRET_PREVIOUS_UNTIL '^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?Z)?$' \
    'empty or a UTC time such as 2026-12-24T12:00:00Z'
  [[ -n $WEBHOOK_SECRET_PREVIOUS_VERSION || -z $WEBHOOK_SECRET_PREVIOUS_UNTIL ]] ||
    die "$_FILE: WEBHOOK_SECRET_PREVIOUS_UNTIL needs WEBHOOK_SECRET_PREVIOUS_VERSION (the version it ends)"
  _expect NOTIFICATION_CHANNELS \
    '^(projects/[a-z0-9-]+/notificationChannels/[0-9]+(,projects/[a-z0-9-]+/notificationChannels/[0-9]+)*)?$' \
    'empty or comma-separated channel names projects/P/notificationChannels/ID'
  _between WEBHOOK_TIMEOUT_SECONDS 1 3600
  _between WORKER_TIMEOUT_SECONDS 1 590
  _between RECONCILE_TIMEOUT_SECONDS 15 1800
  _between WEBHOOK_MAX_INSTANCES 1 1000
  _between WORKER_MAX_INSTANCES 1 1000
  _between RECONCILE_MAX_INSTANCES 1 10
  _between LEDGER_TIMEOUT_SECONDS 60 1800
  _between ACK_DEADLINE_SECONDS 10 600
  _between MIN_RETRY_DELAY_SECONDS 0 600
  _between MAX_RETRY_DELAY_SECONDS 0 600
  _between PUBSUB_MAX_DELIVERY_ATTEMPTS 5 100
  _between MAX_DELIVERY_ATTEMPTS 1 100
  _between DLQ_RETENTION_DAYS 1 31
  _between EVENT_TTL_DAYS 1 3650
  _between DLQ_ARCHIVE_DAYS 32 3650
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

# run CMD...: print, then run unless --dry-run or --plan (a write: only printed then).
run() {
  show "$@"
  ((NO_WRITES)) && return 0
  "$@"
}

# plan_item ACTION WHAT [DETAIL]: one line of the plan, in every mode: ACTION is create,
# update (DETAIL: which fields), unchanged, remove, or missing (what the deploy needs and
# may not create: infra/steps/verify.sh). deploy.sh and bootstrap.sh sum them
# up at the end (INFRA_PLAN_LOG, one tab-separated line each).
plan_item() {
  local mark
  case $1 in
    create) mark='+' ;;
    update) mark='~' ;;
    remove) mark='-' ;;
    unchanged) mark='=' ;;
    missing) mark='!' ;;
    *) die "plan_item: unknown action $1" ;;
  esac
  printf '  %s %-9s %s%s\n' "$mark" "$1" "$2" "${3:+: $3}" >&2
  if [[ -n ${INFRA_PLAN_LOG:-} ]]; then
    printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$INFRA_PLAN_LOG"
  fi
}

# plan_summary LOG: the totals of a run's plan lines, and every line that is not unchanged.
plan_summary() {
  local action what detail creates=0 updates=0 removes=0 same=0
  PLAN_MISSING=0
  while IFS=$'\t' read -r action what detail; do
    case $action in
      create) creates=$((creates + 1)) ;;
      update) updates=$((updates + 1)) ;;
      remove) removes=$((removes + 1)) ;;
      unchanged) same=$((same + 1)) ;;
      missing) PLAN_MISSING=$((PLAN_MISSING + 1)) ;;
    esac
    [[ $action == unchanged ]] || note "$action $what${detail:+: $detail}"
  done <"$1"
  local tail=''
  ((PLAN_MISSING == 0)) || tail=", $PLAN_MISSING missing (a deploy stops at its verify step until infra/bootstrap.sh provides them)"
  say "Plan: $creates to create, $updates to update, $removes to remove, $same unchanged$tail"
}

# absent < ERRORS: whether a failed read's error output says the resource does not exist.
# gcloud words it per service: NOT_FOUND (most), status=[404] (functions), "Cannot find
# service" (run), "gs://B not found: 404" (storage). Anything else (permission, quota,
# network) is a real failure.
absent() {
  grep -qE 'NOT_FOUND|status=\[404\]|Cannot find service \[|not found: 404' -
}

# denied < ERRORS: whether a failed call's error output says the caller lacks a permission.
denied() {
  grep -qE 'PERMISSION_DENIED|status=\[403\]|does not have permission to access' -
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

# query VAR CMD...: a read (run under --plan too). Its stdout goes into VAR; returns 0 when
# found, 1 when the resource is absent (or under --dry-run); any other failure stops the
# script.
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
# The live settings of a function a plan compares (FN_LIVE, in this order) and where the
# Cloud Functions API keeps them.
readonly FUNCTION_FIELDS=(source runtime entryPoint buildServiceAccount serviceAccount ingress
  memory cpu concurrency minInstances maxInstances timeout environment secrets)
readonly FUNCTION_FORMAT='value[separator="|"](state,labels.deploy-hash,serviceConfig.uri,serviceConfig.service.basename(),labels.deploy-source,buildConfig.runtime,buildConfig.entryPoint,buildConfig.serviceAccount,serviceConfig.serviceAccountEmail,serviceConfig.ingressSettings,serviceConfig.availableMemory,serviceConfig.availableCpu,serviceConfig.maxInstanceRequestConcurrency,serviceConfig.minInstanceCount,serviceConfig.maxInstanceCount,serviceConfig.timeoutSeconds,serviceConfig.environmentVariables.list(),serviceConfig.secretEnvironmentVariables.map().format("{0}={1}:{2}",key,secret,version).list())'

# describe_role ID PERMISSION...: the project's custom role ID against the permissions it
# should hold; sets ROLE_WANT (those, sorted, comma-separated), ROLE_HAVE (its own, the same
# way) and ROLE_DELETED (True when deleted); returns 1 when absent (as query does).
describe_role() {
  local id=$1 out perms
  shift
  ROLE_WANT=$(printf '%s\n' "$@" | LC_ALL=C sort | paste -sd, -)
  ROLE_HAVE='' ROLE_DELETED=''
  query out gcloud iam roles describe "$id" --project="$PROJECT" \
    --format='value[separator="|"](includedPermissions.join(","),deleted)' || return 1
  IFS='|' read -r perms ROLE_DELETED <<<"$out"
  ROLE_HAVE=$(tr , '\n' <<<"$perms" | LC_ALL=C sort | paste -sd, -)
}

# describe_function NAME: sets FN_STATE FN_HASH FN_URL FN_SERVICE, and FN_LIVE (the
# FUNCTION_FIELDS); returns 1 when absent.
describe_function() {
  local out fields
  FN_STATE='' FN_HASH='' FN_URL='' FN_SERVICE='' FN_LIVE=()
  query out gcloud functions describe "$1" --gen2 --region="$REGION" --project="$PROJECT" \
    --format="$FUNCTION_FORMAT" || return 1
  IFS='|' read -r -a fields <<<"$out|"
  FN_STATE=${fields[0]:-} FN_HASH=${fields[1]:-} FN_URL=${fields[2]:-} FN_SERVICE=${fields[3]:-}
  FN_LIVE=("${fields[@]:4:${#FUNCTION_FIELDS[@]}}")
  # Cloud Functions adds LOG_EXECUTION_ID itself; an unset minimum is 0.
  FN_LIVE[12]=$(tr , '\n' <<<"${FN_LIVE[12]:-}" | grep -v '^LOG_EXECUTION_ID=' | paste -sd, - || true)
  [[ -n ${FN_LIVE[9]:-} ]] || FN_LIVE[9]=0
  return 0
}

# function_endpoint NAME: sets FN_URL and FN_SERVICE of a deployed function (placeholders
# under --dry-run, and under --plan while it is not deployed yet); stops the script when it
# is not deployed.
function_endpoint() {
  if describe_function "$1"; then
    [[ -n $FN_URL && -n $FN_SERVICE ]] || die "function $1 has no URL yet (state ${FN_STATE:-unknown}); run infra/steps/functions.sh"
  elif ((DRY_RUN)); then
    FN_URL="https://dry-run.invalid/$1"
    FN_SERVICE=$1
  elif ((PLAN)); then
    FN_URL="https://not-deployed-yet.invalid/$1"
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

# --- IAM policies -----------------------------------------------------------------
# The pipeline's bindings are each on the one resource they concern. A policy is read once
# per script (policy_of); grant adds a binding only when it is missing. A read that finds
# nothing (the resource does not exist yet, or --dry-run) counts as an empty policy.
readonly POLICY_FORMAT='value[separator="|"](bindings.role,bindings.members,bindings.condition.title)'
declare -A POLICIES=() # policies read so far, with the bindings added since
AGENT_READY=0
GRANT_CONDITION='' # "TITLE|EXPRESSION": the next project-level grant's IAM condition

# policy_of GROUP RESOURCE [FLAGS...]: "role|member|condition title" lines of a resource's
# policy, into POLICY. GROUP is the gcloud command group ("pubsub topics").
policy_of() {
  local group key="$*" lines=''
  if [[ -z ${POLICIES[$key]+set} ]]; then
    read -r -a group <<<"$1"
    shift
    query lines gcloud "${group[@]}" get-iam-policy "$@" --flatten='bindings[].members' \
      --format="$POLICY_FORMAT" || true
    POLICIES[$key]=$lines
  fi
  POLICY=${POLICIES[$key]}
}

# has_binding ROLE MEMBER [CONDITION_TITLE]: whether POLICY holds it.
has_binding() {
  grep -qxF "$1|$2|${3:-}" <<<"$POLICY"
}

# grant ROLE MEMBER GROUP RESOURCE [FLAGS...]: the binding, unless it is there already (with
# the same condition: none, or GRANT_CONDITION's title, which is cleared after the grant).
grant() {
  local role=$1 member=$2 group attempt err extra=() title='' expression=''
  read -r -a group <<<"$3"
  shift 3
  if [[ -n $GRANT_CONDITION ]]; then
    IFS='|' read -r title expression <<<"$GRANT_CONDITION"
    GRANT_CONDITION=''
  fi
  policy_of "${group[*]}" "$@"
  local what="$role for ${member#*:} on ${group[*]} $1${title:+ (condition: $title)}"
  if has_binding "$role" "$member" "$title"; then
    plan_item unchanged "$what"
    return
  fi
  plan_item create "$what"
  if [[ $member == "serviceAccount:service-"*"@gcp-sa-pubsub.iam.gserviceaccount.com" ]] &&
    ((!AGENT_READY)) && [[ ${INFRA_CREATES_AGENT:-} == 1 ]]; then
    run gcloud beta services identity create --service=pubsub.googleapis.com \
      --project="$PROJECT" --format=none
    AGENT_READY=1
  fi
  if [[ ${group[0]} == projects ]]; then
    if [[ -n $title ]]; then
      extra=(--condition="expression=$expression,title=$title")
    else
      extra=(--condition=None)
    fi
  fi
  POLICIES["${group[*]} $*"]+=$'\n'"$role|$member|$title"
  show gcloud "${group[@]}" add-iam-policy-binding "$@" --member="$member" --role="$role" \
    "${extra[@]}" --format=none
  ((NO_WRITES)) && return
  # A service account created moments ago can take a little while to be visible to IAM.
  for attempt in 1 2 3 4 5 6; do
    if err=$(gcloud "${group[@]}" add-iam-policy-binding "$@" --member="$member" \
      --role="$role" "${extra[@]}" --format=none 2>&1); then
      return
    fi
    [[ $err == *"does not exist"* && $attempt -lt 6 ]] || die "$err"
    note "${member#*:} is not visible to IAM yet; retrying in 10 s"
    sleep 10
  done
}

# pubsub_agent: the Pub/Sub service agent's email into PUBSUB_AGENT (it writes dead letters,
# mints the push tokens and writes the DLQ archive).
pubsub_agent() {
  [[ -n ${PUBSUB_AGENT:-} ]] || PUBSUB_AGENT="service-$(project_number)@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# render_dir NAME: a directory for the files a step generates (a lifecycle rule, rendered
# monitoring definitions, the ledger check's staged source), into RENDERED. Nothing is
# written in the repository. INFRA_RENDER_DIR=DIR keeps them in DIR/NAME (the tests hand the
# printed commands to the real gcloud afterwards); else a temporary directory, removed when
# the script ends. Call it once per script.
render_dir() {
  if [[ -n ${INFRA_RENDER_DIR:-} ]]; then
    RENDERED="$INFRA_RENDER_DIR/$1"
    rm -rf "$RENDERED"
    mkdir -p "$RENDERED"
  else
    RENDERED=$(mktemp -d "${TMPDIR:-/tmp}/paynow-$1.XXXXXX")
    # shellcheck disable=SC2064 # the path is fixed now, on purpose
    trap "rm -rf '$RENDERED'" EXIT
  fi
}

# --- Google REST calls gcloud has no command for (testIamPermissions) --------------------
# api_base API HOST: the API's base URL, honouring gcloud's own endpoint override
# (CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>), so whatever answers gcloud answers these too.
api_base() {
  local var="CLOUDSDK_API_ENDPOINT_OVERRIDES_$1"
  local base=${!var:-https://$2/}
  printf '%s' "${base%/}/"
}

# held_permissions URL PERMISSION...: which of the permissions the caller holds on the
# resource of URL (its testIamPermissions method, read-only), one a line, into HELD. Returns
# 1 when the resource does not exist; any other failure stops the script. The access token
# goes in a header read from a file descriptor, never in an argument.
held_permissions() {
  local url=$1 body out code
  shift
  body=$(printf '"%s",' "$@")
  body="{\"permissions\": [${body%,}]}"
  show curl -sS -X POST "$url" -H 'Authorization: Bearer (gcloud auth print-access-token)' --data "$body"
  HELD=''
  ((DRY_RUN)) && return 0
  if [[ -z ${ACCESS_TOKEN:-} ]]; then
    ACCESS_TOKEN=$(gcloud auth print-access-token) ||
      die "gcloud auth print-access-token failed: log in (gcloud auth login)"
  fi
  out=$(curl -sS -w '\n%{http_code}' -X POST "$url" --data "$body" \
    -H @<(printf 'Authorization: Bearer %s\nContent-Type: application/json\n' "$ACCESS_TOKEN")) ||
    die "could not reach $url"
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  case $code in
    200) HELD=$(grep -oE '"[a-z][a-zA-Z0-9_]*([.][a-zA-Z0-9_]+)+"' <<<"$out" | tr -d '"' || true) ;;
    404) return 1 ;;
    *) die "testIamPermissions at $url answered HTTP $code: ${out:0:300}" ;;
  esac
  return 0
}

# run_steps STEP...: infra/steps/STEP.sh in order, each with ENV_FILE and the mode
# (--dry-run / --plan), stdin closed; the secret step alone gets SECRET_ARGS and stdin (it
# may carry the secret). Their plan lines are summed up at the end (plan_summary).
run_steps() {
  local step common=("$ENV_FILE")
  ((DRY_RUN)) && common+=(--dry-run)
  ((PLAN)) && common+=(--plan)
  export INFRA_STEP_OF_DEPLOY=1
  INFRA_PLAN_LOG=$(mktemp "${TMPDIR:-/tmp}/paynow-plan.XXXXXX")
  export INFRA_PLAN_LOG
  # shellcheck disable=SC2064 # the path is fixed now, on purpose
  trap "rm -f '$INFRA_PLAN_LOG'" EXIT
  for step in "$@"; do
    printf '\n### %s\n' "$step" >&2
    if [[ $step == secret ]]; then
      bash "$INFRA_DIR/steps/$step.sh" "${common[@]}" "${SECRET_ARGS[@]}"
    else
      bash "$INFRA_DIR/steps/$step.sh" "${common[@]}" </dev/null
    fi
  done
  printf '\n' >&2
  plan_summary "$INFRA_PLAN_LOG"
}
