#!/bin/sh
# Set up (idempotently) a virtualenv with rotwatchd and its dev tools, then run the whole
# check suite: ruff, mypy --strict, pytest. Usage: sh scripts/test.sh [pytest args...]
set -eu
cd "$(dirname "$0")/.."
VENV="${ROTWATCHD_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
"$VENV/bin/ruff" check rotwatchd tests training bench
"$VENV/bin/mypy" rotwatchd
"$VENV/bin/lint-imports" --no-cache  # the layers in pyproject.toml [tool.importlinter]
"$VENV/bin/python" -m pytest -q "$@"
