#!/usr/bin/env bash
# Creates .venv and installs the pinned requirements, once per change of requirements.
# Sourced by scripts/stack and scripts/test so both work on a fresh clone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
stamp="$VENV/.requirements.sha256"
want="$(cat "$ROOT/requirements.txt" "$ROOT/functions/requirements.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON_BIN" -m venv "$VENV"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "installing pinned requirements into .venv ..." >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
  echo "$want" > "$stamp"
fi
for tool in gcloud java; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required (gcloud CLI with the Pub/Sub and Firestore emulators, and Java)" >&2; exit 1; }
done
