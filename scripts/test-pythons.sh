#!/bin/sh
# The model, daemon and CLI tests on every supported Python (3.11, 3.12, 3.13), each in its own
# virtualenv (.venv-py3.X) with rotwatchd[dev] (LiteRT and ONNX Runtime). An interpreter that
# is not installed is skipped with one line saying so; the run fails if any present one fails.
# Interpreters: pyenv's (~/.pyenv/versions/3.X.*, newest first), else python3.X on PATH.
# Usage: sh scripts/test-pythons.sh [VERSION...] (default: 3.11 3.12 3.13)
set -eu
cd "$(dirname "$0")/.."
VERSIONS="${*:-3.11 3.12 3.13}"
TESTS="tests/unit/test_model_scene.py tests/unit/test_model_faces.py tests/unit/test_model_text.py
  tests/unit/test_model_tta.py tests/unit/test_model_adaptive.py tests/unit/test_model_fusion.py
  tests/unit/test_model_onnx.py tests/daemon/test_daemon.py tests/daemon/test_daemon_outputs.py tests/e2e/test_cli_e2e.py"
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
  # shellcheck disable=SC2086  # TESTS is a list of paths
  if "$venv/bin/python" -m pytest -q -p no:cacheprovider $TESTS; then
    echo "python $v ($("$venv/bin/python" -V 2>&1)): passed in $(( $(date +%s) - start )) s"
  else
    failed="$failed $v"
  fi
done
if [ -n "$failed" ]; then
  echo "failed on python$failed" >&2
  exit 1
fi
