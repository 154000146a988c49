# shellcheck shell=bash disable=SC2034
# Sourced by infra/steps/functions.sh: every function's CPU, memory, concurrency and minimum
# instances, in this one place, each with the measurement it rests on. The figures come from
# docs/benchmarks/ (latency, throughput by concurrency, the webhook's profile, cold starts)
# and docs/load.md (memory under 180 s of sustained load), measured on the emulators on two
# shared cores; revisit them when those are measured again. Timeouts and maximum instances
# are settings of each environment (infra/env/example.env), not sizes.
#
# Rules Cloud Run (which runs gen2 functions) enforces, checked by check_sizing below:
# a concurrency above 1 needs at least 1 vCPU; below 1 vCPU the concurrency must be 1.
#
# THREADS: functions-framework starts one gunicorn worker with THREADS threads (4 per CPU
# it sees unless THREADS is set); functions.sh sets THREADS to the concurrency. For the
# worker and reconcile (WSGI functions) they are the request threads, so an instance serves
# exactly as many requests at once as Cloud Run sends it. The webhook is an ASGI function
# (uvicorn's event loop in that worker, which does not use THREADS): its queue-mode requests
# share the loop and need no thread, and the webhook's own code reads THREADS for its pool
# for the rest (sync mode, refusals, secret re-reads), so that path never queues behind
# busy threads either.

# --- paynow_webhook -------------------------------------------------------------
# Its time is waiting: in queue mode it awaits a Firestore create and a Publish together on
# the event loop, a few ms on the emulators and 20-40 ms in the cloud, and spends 1.4-1.6 ms
# of the server's CPU a request (its served floor 1.2-1.4; docs/benchmarks/results.md, under
# load, the last two full runs). One vCPU therefore serves about 600-700 requests/s; 16 at
# once over 20-40 ms send it 400-800, about what that CPU allows, so a higher concurrency
# would queue on the CPU, and a lower one would leave it idle while the answers travel. On
# the two shared cores here it answered 572-634 and 640-666 requests/s at 16 and 64 clients
# (0.82-0.92x and 1.00x of the raw floor).
# Sync mode (the rollback) runs each request on one of the THREADS threads, 16 here, which
# with WSGI's threads measured best of 8/16/32 for this function. So: 16 per instance ...
WEBHOOK_CONCURRENCY=16
# ... on 1 vCPU, which Cloud Run requires for any concurrency above 1. Two processes
# (functions-framework's WORKERS=2) served 638 and 718 requests/s at 16 and 64 clients on
# the two cores here against 592 and 609 with one, in the same run (python -m
# scripts.proof.bench.alternatives): a second process uses a second core. On 1 vCPU it only
# shares the same CPU, and with 2 vCPUs it is about the same rate per vCPU at twice the
# memory, so one worker on 1 vCPU is kept.
WEBHOOK_CPU=1
# The worker process peaked at 85 MiB under 64 concurrent clients (the bench's load rounds)
# and held 80-81 MiB for 180 s at 16 (docs/load.md), the arbiter about 30 MiB: ~115 MiB.
# 512Mi (the second-generation minimum) leaves four times that for bodies (up to 1 MiB
# each, 16 at once) and library growth.
WEBHOOK_MEMORY=512Mi
# One warm instance: PayNow waits for this answer, and a cold start costs the client
# libraries' import before the first answer (430-460 ms here on a whole core, import of
# main plus the first answer; more on a cold Cloud Run instance). An idle instance is billed
# at the idle rate; the others scale from zero.
WEBHOOK_MIN_INSTANCES=1

# --- paynow_worker --------------------------------------------------------------
# Also I/O-bound: three round trips an event (its record read beside the transaction's
# begin, one batch read, one commit), a few ms each on the emulator. Ordering serializes
# one customer's events, so concurrency comes from different customers; Pub/Sub push
# raises the deliveries in flight as acknowledgements come fast. The server spent 5.4 ms
# of CPU an event (python -m scripts.proof.bench.profile --target worker), so one vCPU
# serves about 185 events/s; 8 at once over three cloud round trips of 10-20 ms each send
# it 130-270, so 8 keep one vCPU busy without queueing in gunicorn ...
WORKER_CONCURRENCY=8
# ... on 1 vCPU (required above concurrency 1).
WORKER_CPU=1
# 77-79 MiB under load (docs/load.md), as the webhook: the same 512Mi.
WORKER_MEMORY=512Mi
# Pub/Sub retries and nobody waits on the answer: a cold start only delays processing.
WORKER_MIN_INSTANCES=0

# --- paynow_reconcile -----------------------------------------------------------
# One run every few minutes, at most RECONCILE_MAX_INSTANCES (1) instance: concurrency 1 so
# that two runs never overlap (a second call is refused with 429 and the scheduler retries).
RECONCILE_CONCURRENCY=1
# 1 vCPU so a cold start's import (about 400 ms bare import of the client libraries on a whole
# core) is not stretched threefold by a third of a CPU; it is billed only while it runs.
RECONCILE_CPU=1
# It holds at most RECONCILE_BATCH_SIZE (200) ids-only messages: the webhook's 512Mi is ample.
RECONCILE_MEMORY=512Mi
# Every 5 minutes keeps an instance warm anyway (Cloud Run keeps idle ones a while).
RECONCILE_MIN_INSTANCES=0

# --- ledger_verify (infra/ledger_verify/) ---------------------------------------
# Once a day, one run at a time.
LEDGER_CONCURRENCY=1
# A whole vCPU: it runs the CLI in a child process, whose import costs as reconcile's.
LEDGER_CPU=1
# `paynow-ops ledger verify` holds every balance and ledger entry it reads (a few hundred
# bytes each) to compare them: 1Gi holds a few million entries.
LEDGER_MEMORY=1Gi
# Nobody waits for it.
LEDGER_MIN_INSTANCES=0

# check_sizing PREFIX: the rules above for PREFIX_CPU / _CONCURRENCY / _MEMORY /
# _MIN_INSTANCES (PREFIX one of WEBHOOK WORKER RECONCILE LEDGER); stops with the reason.
check_sizing() {
  local cpu="${1}_CPU" concurrency="${1}_CONCURRENCY" memory="${1}_MEMORY" min="${1}_MIN_INSTANCES"
  [[ ${!cpu} =~ ^(0[.][0-9]+|[1-8])$ ]] || die "infra/sizing.sh: $cpu must be a fraction below 1 (0.5) or 1-8 vCPUs, got '${!cpu}'"
  [[ ${!concurrency} =~ ^[1-9][0-9]{0,2}$ && ${!concurrency} -le 1000 ]] ||
    die "infra/sizing.sh: $concurrency must be 1-1000, got '${!concurrency}'"
  [[ ${!memory} =~ ^[1-9][0-9]*(Mi|Gi)$ ]] || die "infra/sizing.sh: $memory must be a size such as 512Mi, got '${!memory}'"
  [[ ${!min} =~ ^(0|[1-9][0-9]*)$ ]] || die "infra/sizing.sh: $min must be a whole number, got '${!min}'"
  if ((${!concurrency} > 1)) && [[ ${!cpu} == 0.* ]]; then
    die "infra/sizing.sh: $concurrency=${!concurrency} needs $cpu of at least 1 (Cloud Run serves more than one request at once only with a whole vCPU), got ${!cpu}"
  fi
}
