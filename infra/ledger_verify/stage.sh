#!/usr/bin/env bash
# The source of the daily ledger check's function, staged into DIR (created or emptied):
# this directory's main.py, the operator CLI (scripts/ops/, and the local stack's settings it
# knows of, scripts/local/localstack.py) and the
# pipeline package it uses (functions/paynow/), with the functions' pinned requirements.
# infra/steps/functions.sh deploys DIR; the tests serve DIR with functions-framework.
#
#   infra/ledger_verify/stage.sh DIR
#
# LEDGER_EXTRA_REQUIREMENTS below: packages of the root requirements.txt that the CLI needs
# beyond the functions' (rich, for its output, and what rich needs); their pinned lines are
# added to DIR/requirements.txt.

set -euo pipefail
(($# == 1)) || {
  echo "usage: infra/ledger_verify/stage.sh DIR" >&2
  exit 2
}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
readonly LEDGER_EXTRA_REQUIREMENTS=(rich markdown-it-py mdurl Pygments)
dir=$1

rm -rf "$dir"
mkdir -p "$dir/scripts/local"
copy() { # SRC DEST: a tree without caches
  tar -C "$(dirname "$1")" --exclude=__pycache__ --exclude='*.pyc' -cf - "$(basename "$1")" |
    tar -C "$2" -xf -
}
copy "$ROOT/functions/paynow" "$dir"
copy "$ROOT/scripts/ops" "$dir/scripts"
cp "$ROOT/scripts/__init__.py" "$dir/scripts/"
cp "$ROOT/scripts/local/__init__.py" "$ROOT/scripts/local/localstack.py" "$dir/scripts/local/"
cp "$HERE/main.py" "$dir/main.py"
{
  cat "$ROOT/functions/requirements.txt"
  for name in "${LEDGER_EXTRA_REQUIREMENTS[@]}"; do
    grep -iE "^${name}==" "$ROOT/requirements.txt" ||
      { echo "error: $name is not pinned in requirements.txt" >&2 && exit 1; }
  done
} >"$dir/requirements.txt"
