#!/bin/sh
# The model tests again, this time under tflite-runtime (the older interpreter some Raspberry Pi
# images ship) instead of ai-edge-litert: the shipped .tflite files must load and agree there
# too. Its wheels need numpy < 2, so it gets its own virtualenv without ai-edge-litert.
# Usage: sh scripts/test-tflite-runtime.sh [pytest args...]
set -eu
cd "$(dirname "$0")/.."
VENV="${ROTWATCHD_TFLITE_VENV:-.venv-tflite}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "tflite-runtime==2.14.0" "numpy<2" "pillow>=10.3" \
  "pyyaml>=6" "watchdog>=7" "psutil>=5.9" "pytest>=8" "pytest-timeout>=2.3"
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
if "$VENV/bin/python" -c "import ai_edge_litert" 2>/dev/null; then
  echo "ai-edge-litert is installed in $VENV: this run would not test tflite-runtime" >&2
  exit 1
fi
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/unit/test_model_scene.py \
  tests/unit/test_model_faces.py tests/unit/test_model_tta.py tests/unit/test_model_adaptive.py \
  tests/unit/test_model_text.py "$@"
