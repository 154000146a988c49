#!/usr/bin/env bash
# Deploy step: topics paynow-events and paynow-events-dlq, the worker's push subscription
# paynow-events-push, the DLQ's pull subscription paynow-events-dlq-sub and its archive
# paynow-events-dlq-archive (a Cloud Storage subscription into DLQ_ARCHIVE_BUCKET).
#
#   infra/steps/pubsub.sh ENV_FILE [--dry-run | --plan] [--push-endpoint URL]
#
# The DLQ keeps what it must: the topic retains every message DLQ_RETENTION_DAYS (31 days,
# Pub/Sub's maximum for topics and subscriptions), the pull subscription keeps unacked ones
# as long, and the archive subscription writes each one, with its attributes (Avro with
# metadata), to the bucket, where it stays DLQ_ARCHIVE_DAYS (infra/steps/archive.sh). The
# bucket and the Pub/Sub service agent's right to write to it come from the bootstrap.
#
# The push endpoint and token audience are the worker's URL (read from the deployed
# function unless --push-endpoint is given). Only the settings that drifted are updated,
# in place; those Pub/Sub cannot change (topic, message ordering) stop the script with
# what to do. Works against the Pub/Sub emulator too (which keeps a subscription's
# messages at most 7 days: DLQ_RETENTION_DAYS=7 there):
#   CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=http://localhost:8085/ CLOUDSDK_AUTH_ACCESS_TOKEN=x

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
ENDPOINT=''
set -- "${ARGS[@]}"
ARGS=()
while (($#)); do
  case $1 in
    --push-endpoint)
      (($# > 1)) || die "--push-endpoint needs a URL"
      ENDPOINT=$2
      shift
      ;;
    --push-endpoint=*) ENDPOINT=${1#--push-endpoint=} ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
no_more_args
load_settings "$ENV_FILE"
if [[ -z $ENDPOINT ]]; then
  function_endpoint "$WORKER_FUNCTION"
  ENDPOINT=$FN_URL
fi
[[ $ENDPOINT =~ ^https?://[^,[:space:]]+$ ]] || die "the push endpoint must be an http(s) URL, got '$ENDPOINT'"

# ensure_topic NAME [RETENTION_DAYS]: the topic, retaining its messages that long if given.
ensure_topic() {
  local name=$1 days=${2:-} out flags=()
  [[ -z $days ]] || flags=(--message-retention-duration="${days}d")
  if query out gcloud pubsub topics describe "$name" --project="$PROJECT" \
    --format='value(messageRetentionDuration)'; then
    if [[ -z $days || $out == "$((days * 86400))s" ]]; then
      plan_item unchanged "topic $name"
    else
      plan_item update "topic $name" "messageRetentionDuration '$out' -> '$((days * 86400))s'"
      run gcloud pubsub topics update "$name" --project="$PROJECT" "${flags[@]}"
    fi
  else
    plan_item create "topic $name${days:+ (retains ${days} days)}"
    run gcloud pubsub topics create "$name" --project="$PROJECT" "${flags[@]}"
  fi
}

# ensure_subscription NAME TOPIC CREATE_FLAGS... -- CHECK...: create it, or compare it.
# Each CHECK is "FIELD|WANT|FLAGS" (FLAGS empty = immutable): the subscription's FIELD
# (a gcloud format key) must print as WANT, else FLAGS (comma-separated) are updated.
ensure_subscription() {
  local name=$1 topic=$2 create=() checks=() fields=() current=() flags=() fixes=() i field want fix
  shift 2
  while [[ $1 != -- ]]; do
    create+=("$1")
    shift
  done
  shift
  checks=("$@")
  for i in "${!checks[@]}"; do fields+=("${checks[i]%%|*}"); done
  local format
  format="value[separator=\"|\"](topic,$(IFS=,; printf '%s' "${fields[*]}"))"
  local out
  if ! query out gcloud pubsub subscriptions describe "$name" --project="$PROJECT" --format="$format"; then
    plan_item create "subscription $name" "of topic $topic"
    run gcloud pubsub subscriptions create "$name" --topic="$topic" --project="$PROJECT" "${create[@]}"
    return
  fi
  IFS='|' read -r -a current <<<"$out|"
  [[ ${current[0]} == "projects/$PROJECT/topics/$topic" ]] ||
    die "subscription $name is attached to ${current[0]}, not $topic; delete it (gcloud pubsub subscriptions delete $name --project=$PROJECT) and run again"
  local changed=()
  for i in "${!checks[@]}"; do
    IFS='|' read -r field want fix <<<"${checks[i]}"
    [[ ${current[i + 1]} == "$want" ]] && continue
    changed+=("$field '${current[i + 1]}' -> '$want'")
    [[ -n $fix ]] || die "subscription $name has $field=${current[i + 1]:-unset}, wanted '$want', which this script does not change in place; delete it (gcloud pubsub subscriptions delete $name --project=$PROJECT) and run again. The messages it holds go with it (for $PUSH_SUBSCRIPTION their events stay received in Firestore and the reconcile job publishes them again)"
    note "$name: $field is '${current[i + 1]}', wanted '$want'"
    IFS=, read -r -a fixes <<<"$fix"
    for want in "${fixes[@]}"; do
      [[ " ${flags[*]} " == *" $want "* ]] || flags+=("$want")
    done
  done
  if ((${#flags[@]})); then
    plan_item update "subscription $name" "$(IFS=';'; printf '%s' "${changed[*]}")"
    run gcloud pubsub subscriptions update "$name" --project="$PROJECT" "${flags[@]}"
  else
    note "subscription $name is up to date"
    plan_item unchanged "subscription $name"
  fi
}

say "Topics"
ensure_topic "$TOPIC"
ensure_topic "$DLQ_TOPIC" "$DLQ_RETENTION_DAYS"

say "Push subscription $PUSH_SUBSCRIPTION -> $ENDPOINT"
push_flags="--push-endpoint=$ENDPOINT,--push-auth-service-account=$PUSH_SA,--push-auth-token-audience=$ENDPOINT"
retry_flags="--min-retry-delay=${MIN_RETRY_DELAY_SECONDS}s,--max-retry-delay=${MAX_RETRY_DELAY_SECONDS}s"
dead_letter_flags="--dead-letter-topic=$DLQ_TOPIC,--max-delivery-attempts=$PUBSUB_MAX_DELIVERY_ATTEMPTS"
ensure_subscription "$PUSH_SUBSCRIPTION" "$TOPIC" \
  --enable-message-ordering \
  --push-endpoint="$ENDPOINT" --push-auth-service-account="$PUSH_SA" \
  --push-auth-token-audience="$ENDPOINT" \
  --ack-deadline="$ACK_DEADLINE_SECONDS" \
  --min-retry-delay="${MIN_RETRY_DELAY_SECONDS}s" --max-retry-delay="${MAX_RETRY_DELAY_SECONDS}s" \
  --dead-letter-topic="$DLQ_TOPIC" --max-delivery-attempts="$PUBSUB_MAX_DELIVERY_ATTEMPTS" \
  --expiration-period=never \
  -- \
  "enableMessageOrdering|True|" \
  "pushConfig.pushEndpoint|$ENDPOINT|$push_flags" \
  "pushConfig.oidcToken.serviceAccountEmail|$PUSH_SA|$push_flags" \
  "pushConfig.oidcToken.audience|$ENDPOINT|$push_flags" \
  "ackDeadlineSeconds|$ACK_DEADLINE_SECONDS|--ack-deadline=$ACK_DEADLINE_SECONDS" \
  "retryPolicy.minimumBackoff|${MIN_RETRY_DELAY_SECONDS}s|$retry_flags" \
  "retryPolicy.maximumBackoff|${MAX_RETRY_DELAY_SECONDS}s|$retry_flags" \
  "deadLetterPolicy.deadLetterTopic|$DLQ_TOPIC_PATH|$dead_letter_flags" \
  "deadLetterPolicy.maxDeliveryAttempts|$PUBSUB_MAX_DELIVERY_ATTEMPTS|$dead_letter_flags" \
  "expirationPolicy.ttl||--expiration-period=never"

say "DLQ subscription $DLQ_SUBSCRIPTION (pull)"
ensure_subscription "$DLQ_SUBSCRIPTION" "$DLQ_TOPIC" \
  --ack-deadline="$DLQ_ACK_DEADLINE_SECONDS" --message-retention-duration="${DLQ_RETENTION_DAYS}d" \
  --expiration-period=never \
  -- \
  "pushConfig.pushEndpoint||" \
  "ackDeadlineSeconds|$DLQ_ACK_DEADLINE_SECONDS|--ack-deadline=$DLQ_ACK_DEADLINE_SECONDS" \
  "messageRetentionDuration|$((DLQ_RETENTION_DAYS * 86400))s|--message-retention-duration=${DLQ_RETENTION_DAYS}d" \
  "expirationPolicy.ttl||--expiration-period=never"

say "DLQ archive $ARCHIVE_SUBSCRIPTION -> gs://$DLQ_ARCHIVE_BUCKET"
# Every field of the storage config is given on an update: gcloud takes them as one group.
storage_flags="--cloud-storage-bucket=$DLQ_ARCHIVE_BUCKET,--cloud-storage-file-prefix=dlq/"
storage_flags+=",--cloud-storage-output-format=avro,--cloud-storage-write-metadata"
storage_flags+=",--cloud-storage-max-duration=10m"
IFS=, read -r -a storage_create <<<"$storage_flags"
ensure_subscription "$ARCHIVE_SUBSCRIPTION" "$DLQ_TOPIC" \
  "${storage_create[@]}" \
  --message-retention-duration="${DLQ_RETENTION_DAYS}d" --expiration-period=never \
  -- \
  "cloudStorageConfig.bucket|$DLQ_ARCHIVE_BUCKET|$storage_flags" \
  "cloudStorageConfig.filenamePrefix|dlq/|$storage_flags" \
  "cloudStorageConfig.avroConfig.writeMetadata|True|$storage_flags" \
  "cloudStorageConfig.maxDuration|600s|$storage_flags" \
  "messageRetentionDuration|$((DLQ_RETENTION_DAYS * 86400))s|--message-retention-duration=${DLQ_RETENTION_DAYS}d" \
  "expirationPolicy.ttl||--expiration-period=never"
