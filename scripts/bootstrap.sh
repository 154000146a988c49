#!/usr/bin/env bash
# Creates .venv and installs the pinned requirements, once per change of requirements.
# Run by scripts/stack, scripts/test and scripts/paynow-ops, so each works on a fresh clone.
# --venv-only: skip the check for gcloud and Java (paynow-ops needs neither to start).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
stamp="$VENV/.requirements.sha256"
want="$(cat "$ROOT/requirements.txt" "$ROOT/functions/requirements.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  # One install at a time: a stack and a paynow-ops started together on a fresh clone
  # would otherwise both pip into the same .venv.
  mkdir -p "$ROOT/.local"
  exec 9>"$ROOT/.local/bootstrap.lock"
  if command -v flock >/dev/null; then flock 9; fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "installing pinned requirements into .venv (once) ..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
    echo "$want" > "$stamp"
  fi
  exec 9>&-
fi
if [[ "${1:-}" != "--venv-only" ]]; then
  for tool in gcloud java; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required (gcloud CLI with the Pub/Sub and Firestore emulators, and Java)" >&2; exit 1; }
  done
fi
