#!/bin/sh
# The release artefacts as a user gets them: build the sdist and the wheel (python -m build:
# the wheel is built from the sdist, so both must carry the models), install the wheel in a
# fresh virtualenv (optionally with an extra), and run `rotwatchd check` there, from outside
# the source tree, on a fixture image whose right answer is known; then the same through
# `pipx install` (pipx from PyPI in the tools venv). Usage: sh scripts/test-wheel.sh [EXTRA]
# (EXTRA e.g. onnx: the wheel with that extra, and `check` on ONNX Runtime too)
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
EXTRA="${1:-}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet --upgrade pip build pipx
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; exit 1; }
WHEEL="$(ls "$WORK"/dist/rotwatchd-*.whl)"
SDIST="$(ls "$WORK"/dist/rotwatchd-*.tar.gz)"
tar -tzf "$SDIST" > "$WORK/sdist.txt"
"$WORK/tools/bin/python" -m zipfile -l "$WHEEL" > "$WORK/wheel.txt"
for f in orientation.tflite orientation.onnx text/text.tflite text/text.onnx \
         faces/face_detection_short_range.tflite faces/face_detection_short_range.onnx; do
  grep -q "/models/$f\$" "$WORK/sdist.txt" || { echo "sdist lacks models/$f" >&2; exit 1; }
  grep -q "rotwatchd/_models/$f " "$WORK/wheel.txt" \
    || { echo "wheel lacks rotwatchd/_models/$f" >&2; exit 1; }
done
echo "built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB) and $(basename "$SDIST")"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip
"$WORK/venv/bin/python" -m pip install --quiet "$WHEEL${EXTRA:+[$EXTRA]}"
FIX="$PWD/tests/fixtures/orientation/kphotoalbum"
IMAGE="$(ls "$FIX"/*.jpg | head -1)"
cd "$WORK"  # nothing of the source tree on sys.path
"$WORK/venv/bin/python" - "$IMAGE" <<'PY'
import sys
from PIL import Image
with Image.open(sys.argv[1]) as im:
    im.convert("RGB").rotate(90, expand=True).save("turned.jpg", quality=92)  # needs 90 cw
PY
check() {
  out="$("$@" check --json turned.jpg)"
  echo "$out"
  echo "$out" | grep -q '"correction": 90' || { echo "wrong answer: $out" >&2; exit 1; }
}
check "$WORK/venv/bin/rotwatchd"
"$WORK/venv/bin/python" -c "import rotwatchd; assert '/venv/' in rotwatchd.__file__, rotwatchd"
if [ "$EXTRA" = onnx ]; then
  mkdir -p in out
  printf 'inboxes: [{path: in, output: out}]\nmodel: {runtime: onnxruntime}\n' > onnx.yaml
  out="$("$WORK/venv/bin/rotwatchd" check --json -c onnx.yaml turned.jpg)"
  echo "onnxruntime: $out"
  echo "$out" | grep -q '"correction": 90' || { echo "wrong answer: $out" >&2; exit 1; }
fi
PIPX_HOME="$WORK/pipx" PIPX_BIN_DIR="$WORK/pipx/bin" PIPX_MAN_DIR="$WORK/pipx/man" \
  "$WORK/tools/bin/pipx" install --quiet "$WHEEL" >/dev/null
check "$WORK/pipx/bin/rotwatchd"
echo "wheel OK (venv and pipx)"
