#!/bin/sh
# The Ray engine's tests (fix --engine ray on a real two-node cluster started on this machine)
# in a virtualenv of their own with the [ray] extra: the default test venv stays without Ray,
# as most installs are. Usage: sh scripts/test-ray.sh [pytest args...]
set -eu
cd "$(dirname "$0")/.."
VENV="${ROTWATCHD_RAY_VENV:-.venv-ray}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[dev,ray]'
"$VENV/bin/python" -c "import ray.data" || { echo "Ray is not importable in $VENV" >&2; exit 1; }
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e/test_fix_ray.py \
  tests/unit/test_fix_record.py "$@"
