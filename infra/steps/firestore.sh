#!/usr/bin/env bash
# Bootstrap step: the Firestore database (native mode), its TTL policies and the composite index.
#
#   infra/steps/firestore.sh ENV_FILE [--dry-run | --plan]
#
# TTL on expireAt of webhookEvents and rejectedPayloads (the functions set it EVENT_TTL_DAYS
# ahead; Firestore deletes expired documents within about a day). Composite indexes on
# webhookEvents: (status ASC, receivedAt ASC) for health's oldest received event,
# (status ASC, republishedAt ASC) for reconcile (status == received, republishedAt < cutoff,
# oldest first), and (F ASC, receivedAt DESC) for each filter F of paynow-ops events list;
# the worker's customerId + status query uses equalities only, which Firestore serves from
# single-field indexes. TTL policies and indexes build in the background (--async): check with
#   gcloud firestore indexes composite list --project=PROJECT

set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
parse_args "$@"
no_more_args
load_settings "$ENV_FILE"

say "Firestore database $FIRESTORE_DATABASE"
type=''
if query type gcloud firestore databases describe --database="$FIRESTORE_DATABASE" \
  --project="$PROJECT" --format='value(type)'; then
  [[ $type == FIRESTORE_NATIVE ]] ||
    die "the project's $FIRESTORE_DATABASE database is in $type mode; the pipeline needs Firestore native mode"
  plan_item unchanged "Firestore database $FIRESTORE_DATABASE (native mode)"
else
  plan_item create "Firestore database $FIRESTORE_DATABASE" "native mode in $FIRESTORE_LOCATION"
  run gcloud firestore databases create --database="$FIRESTORE_DATABASE" \
    --location="$FIRESTORE_LOCATION" --type=firestore-native --project="$PROJECT"
fi

say "TTL policies on $TTL_FIELD"
ttls=''
query ttls gcloud firestore fields ttls list --project="$PROJECT" \
  --format='value[separator="|"](name.segment(-3),name.basename(),ttlConfig.state)' || true
for group in "$EVENTS_COLLECTION" "$REJECTIONS_COLLECTION"; do
  if grep -qE "^${group}[|]${TTL_FIELD}[|](ACTIVE|CREATING)$" <<<"$ttls"; then
    plan_item unchanged "TTL policy $group.$TTL_FIELD"
  else
    plan_item create "TTL policy $group.$TTL_FIELD"
    run gcloud firestore fields ttls update "$TTL_FIELD" --collection-group="$group" \
      --database="$FIRESTORE_DATABASE" --enable-ttl --async --project="$PROJECT"
  fi
done

say "Composite index $EVENTS_COLLECTION (status ASC, receivedAt ASC)"
indexes=''
query indexes gcloud firestore indexes composite list --database="$FIRESTORE_DATABASE" \
  --project="$PROJECT" \
  --format='value[separator="|"](name.segment(-3),queryScope,fields[].fieldPath.join(","),fields[].order.join(","))' ||
  true
# Firestore may append __name__ to an index's fields; the index serves the query either way.
if grep -qE "^${EVENTS_COLLECTION}[|]COLLECTION[|]status,receivedAt(,__name__)?[|]ASCENDING,ASCENDING(,ASCENDING)?$" <<<"$indexes"; then
  plan_item unchanged "index $EVENTS_COLLECTION (status, receivedAt)"
else
  plan_item create "index $EVENTS_COLLECTION (status, receivedAt)"
  run gcloud firestore indexes composite create --collection-group="$EVENTS_COLLECTION" \
    --database="$FIRESTORE_DATABASE" --query-scope=collection \
    --field-config=field-path=status,order=ascending \
    --field-config=field-path=receivedAt,order=ascending \
    --async --project="$PROJECT"
fi

# Reconcile's and the events list's (COMPOSITE_INDEXES in functions/paynow/adapters/firestore_store.py).
for spec in status:ascending,republishedAt:ascending status:ascending,receivedAt:descending \
  eventType:ascending,receivedAt:descending userId:ascending,receivedAt:descending \
  customerId:ascending,receivedAt:descending; do
  first=${spec%%,*} second=${spec#*,}
  f1=${first%%:*} o1=${first#*:} f2=${second%%:*} o2=${second#*:}
  say "Composite index $EVENTS_COLLECTION ($f1 ${o1^^}, $f2 ${o2^^})"
  if grep -qE "^${EVENTS_COLLECTION}[|]COLLECTION[|]${f1},${f2}(,__name__)?[|]${o1^^},${o2^^}(,[A-Z]+)?$" <<<"$indexes"; then
    note "index exists"
  else
    run gcloud firestore indexes composite create --collection-group="$EVENTS_COLLECTION" \
      --database="$FIRESTORE_DATABASE" --query-scope=collection \
      --field-config="field-path=$f1,order=$o1" --field-config="field-path=$f2,order=$o2" \
      --async --project="$PROJECT"
  fi
done
