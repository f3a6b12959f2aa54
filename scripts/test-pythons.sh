#!/bin/sh
# The whole test suite on every supported Python (3.11, 3.12, 3.13), each in its own
# virtualenv (.venv-py3.X) with rotwatchd[dev]: mypy --strict checking for that version, then
# every pytest test scripts/test.sh runs, with the same skips (Ray, torch: their own venvs),
# less tests/e2e/test_systemd_boot.py, which boots a Debian root and installs rotwatchd there
# under that root's own Python: the interpreter running pytest only starts the script, so CI
# runs it once, with python3's version (scripts/test.sh). ruff does not depend on the
# interpreter (target-version is py311), so it is not repeated. An interpreter that is not
# installed is skipped with one line saying so; the run fails if any present one fails.
# Interpreters: pyenv's (~/.pyenv/versions/3.X.*, newest first), else python3.X on PATH.
# Usage: sh scripts/test-pythons.sh [VERSION...] (default: 3.11 3.12 3.13)
set -eu
cd "$(dirname "$0")/.."
VERSIONS="${*:-3.11 3.12 3.13}"
failed=""
for v in $VERSIONS; do
  py=""
  # pyenv's shims exist for versions that are not selected and then fail: try each candidate
  for cand in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" \
                  2>/dev/null | sort -V -r) $(command -v "python$v" || true); do
    if "$cand" -c "import ensurepip, venv" >/dev/null 2>&1; then py="$cand"; break; fi
  done
  if [ -z "$py" ]; then
    echo "python $v: not installed here (or without venv: apt install python3-venv), skipped"
    continue
  fi
  venv=".venv-py$v"
  start=$(date +%s)
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  if ! "$venv/bin/python" -m pip install --quiet -e '.[dev]'; then
    echo "python $v: rotwatchd[dev] does not install (a dependency has no wheel?)"
    failed="$failed $v"
    continue
  fi
  installed=$(date +%s)
  if ! "$venv/bin/mypy" --python-version "$v" rotwatchd; then
    failed="$failed $v"
    continue
  fi
  checked=$(date +%s)
  if "$venv/bin/python" -m pytest -q -p no:cacheprovider --ignore tests/e2e/test_systemd_boot.py
  then
    end=$(date +%s)
    echo "python $v ($("$venv/bin/python" -V 2>&1)): passed in $((end - start)) s" \
         "(install $((installed - start)) s, mypy $((checked - installed)) s," \
         "pytest $((end - checked)) s)"
  else
    failed="$failed $v"
  fi
done
if [ -n "$failed" ]; then
  echo "failed on python$failed" >&2
  exit 1
fi
