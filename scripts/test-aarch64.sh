#!/bin/sh
# rotwatchd on aarch64 (Raspberry Pi OS 64-bit = Debian bookworm arm64, Python 3.11), under
# qemu user emulation on an x86 machine: a bookworm arm64 root built with debootstrap, rotwatchd
# installed there from aarch64 wheels only, then a daemon smoke test (three turned or
# EXIF-tagged photos dropped into an inbox must come out upright) and the model tests.
# Emulation is ~170x slower than native, so this is not part of every CI run.
#
# Needs root, apt (Debian), network to the Debian mirror and to the package registry.
# Exit 0: passed; 1: a check failed; 2: this machine cannot run it.
# The root is cached in $ROTWATCHD_ARM64_CACHE (default /var/cache/rotwatchd-arm64): a rerun
# skips debootstrap. binfmt_misc is left as it was found (qemu-aarch64 disabled again), and
# every mount this script makes is undone, also on failure.
# Usage: sh scripts/test-aarch64.sh [pytest args...]   (default: the model tests below)
#   ROTWATCHD_ARM64_SMOKE=0 skips the daemon smoke test, ROTWATCHD_ARM64_TESTS=0 the pytest run.
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
CACHE="${ROTWATCHD_ARM64_CACHE:-/var/cache/rotwatchd-arm64}"
ROOT="$CACHE/root"
SUITE=bookworm
GUEST_SRC=/opt/rotwatchd-src
GUEST_VENV=/opt/rotwatchd-venv
SMOKE_DEADLINE="${ROTWATCHD_ARM64_SMOKE_DEADLINE:-900}"
# The model tests less the two slowest kinds, 22 of their native 27 s (~1 h emulated): the
# four variant comparisons and the compression-traces test (the held-out accuracy test again,
# over three JPEG re-encodes). Name tests as arguments to run them too.
DEFAULT_TESTS="tests/unit/test_model_faces.py tests/unit/test_model_text.py tests/unit/test_model_scene.py"
DEFAULT_K="not variants_agree and not compression_traces"

T0=$(date +%s)
PHASE=""
PHASE_T=0
phase() {
  phase_end
  PHASE="$1"
  PHASE_T=$(date +%s)
  echo "== aarch64: $PHASE" >&2
}
phase_end() {
  if [ -n "$PHASE" ]; then
    echo "-- aarch64: $PHASE: $(( $(date +%s) - PHASE_T )) s" >&2
  fi
  PHASE=""
}
cannot() { echo "aarch64: cannot run here: $*" >&2; exit 2; }
failed() { echo "aarch64: FAILED: $*" >&2; exit 1; }

# --- cleanup: daemon, mounts (reverse order), binfmt as found ---------------------------------
MOUNTS=""
DAEMON_PID=""
BINFMT_MOUNTED=0
BINFMT_ENABLED=0
cleanup() {
  rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -KILL "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
  fi
  for m in $MOUNTS; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "aarch64: could not unmount $m" >&2
  done
  if [ "$BINFMT_ENABLED" = 1 ]; then
    update-binfmts --disable qemu-aarch64 >/dev/null 2>&1 \
      || echo "aarch64: could not disable binfmt qemu-aarch64" >&2
  fi
  if [ "$BINFMT_MOUNTED" = 1 ]; then
    umount /proc/sys/fs/binfmt_misc 2>/dev/null || echo "aarch64: binfmt_misc stays mounted" >&2
  fi
  echo "== aarch64: total $(( $(date +%s) - T0 )) s, exit $rc" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

guest_mount() {  # guest_mount TARGET mount-args...: mount and remember it (unmounted first)
  target="$1"
  shift
  mount "$@" "$target" || failed "mount $* $target"
  MOUNTS="$target $MOUNTS"
}

# Run a command inside the root with a clean environment (the host's PIP_* settings point at
# paths that do not exist there). guest_exec replaces the calling (sub)shell, so that a
# background job's $! is the guest process itself.
guest() { (guest_exec "$@"); }
guest_exec() {
  exec chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TZ=UTC PIP_CERT=/etc/rotwatchd-host-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 PIP_NO_INPUT=1 "$@"
}

# --- 0: can this machine do it ------------------------------------------------------------------
phase "preflight"
[ "$(id -u)" = 0 ] || cannot "needs root (debootstrap, chroot, mount, binfmt_misc)"
command -v apt-get >/dev/null 2>&1 || cannot "no apt-get (a Debian-like host is needed)"
case "$(uname -m)" in
  x86_64|amd64) ;;
  *) cannot "host is $(uname -m); this script emulates aarch64 on x86_64" ;;
esac
[ -d /proc/sys/fs/binfmt_misc ] || cannot "kernel without binfmt_misc"
MIRROR=""
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  MIRROR=$(sed -n -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
    -e 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\2/p' "$f" \
    | grep -v -e security -e '^$' | head -n 1)
  [ -n "$MIRROR" ] && break
done
MIRROR="${ROTWATCHD_ARM64_MIRROR:-${MIRROR:-http://deb.debian.org/debian}}"
echo "mirror: $MIRROR" >&2
HOST_CA=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  [ -f "$f" ] && { HOST_CA="$f"; break; }
done
[ -n "$HOST_CA" ] || cannot "no CA bundle on this machine"
if ! curl -sS -o /dev/null --max-time 30 "$MIRROR/dists/$SUITE/Release" 2>/dev/null; then
  cannot "Debian mirror $MIRROR not reachable"
fi
if ! curl -sS -o /dev/null --max-time 30 --cacert "$HOST_CA" https://pypi.org/simple/pip/ 2>/dev/null; then
  cannot "package registry (pypi.org) not reachable"
fi

# --- 1: qemu, binfmt, debootstrap on the host ---------------------------------------------------
phase "host tools"
if ! command -v qemu-aarch64-static >/dev/null 2>&1 || ! command -v update-binfmts >/dev/null 2>&1 \
    || ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq >/dev/null || cannot "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support debootstrap \
    >/dev/null || cannot "cannot install qemu-user-static binfmt-support debootstrap"
fi
qemu-aarch64-static --version | head -n 1 >&2

phase "binfmt"
if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || cannot "cannot mount binfmt_misc"
  BINFMT_MOUNTED=1
fi
if ! head -n 1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null | grep -qx enabled; then
  BINFMT_ENABLED=1
  update-binfmts --enable qemu-aarch64 || cannot "update-binfmts --enable qemu-aarch64 failed"
fi
head -n 1 /proc/sys/fs/binfmt_misc/qemu-aarch64 | grep -qx enabled || cannot "qemu-aarch64 not enabled"

# --- 2: the bookworm arm64 root (cached) --------------------------------------------------------
if grep -q " $ROOT/" /proc/mounts; then
  cannot "something is still mounted under $ROOT (an earlier run killed hard?): $(grep " $ROOT/" /proc/mounts | cut -d' ' -f2 | tr '\n' ' ')"
fi
phase "bookworm arm64 root in $ROOT"
mkdir -p "$CACHE"
[ -f "$ROOT/.rotwatchd-python" ] && echo "cached: no debootstrap" >&2
if [ ! -f "$ROOT/.rotwatchd-stage1" ]; then
  phase "debootstrap first stage ($SUITE arm64 minbase)"
  rm -rf "$ROOT"
  nice -n 5 debootstrap --arch=arm64 --foreign --variant=minbase "$SUITE" "$ROOT" "$MIRROR" \
    >"$CACHE/debootstrap-1.log" 2>&1 || cannot "debootstrap first stage failed, see $CACHE/debootstrap-1.log"
  touch "$ROOT/.rotwatchd-stage1"
fi
if [ ! -f "$ROOT/.rotwatchd-stage2" ]; then
  phase "debootstrap second stage (emulated)"
  if ! nice -n 5 chroot "$ROOT" /debootstrap/debootstrap --second-stage >"$CACHE/debootstrap-2.log" 2>&1; then
    rm -f "$ROOT/.rotwatchd-stage1"  # start over next time
    cannot "debootstrap second stage failed, see $CACHE/debootstrap-2.log"
  fi
  touch "$ROOT/.rotwatchd-stage2"
fi
# name resolution and the proxy's CA (the fresh root does not trust it) for pip
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" || failed "copying resolv.conf into the root"
cp "$HOST_CA" "$ROOT/etc/rotwatchd-host-ca.crt" || failed "copying the CA bundle into the root"
printf '[global]\ncert = /etc/rotwatchd-host-ca.crt\n' >"$ROOT/etc/pip.conf"
if [ ! -f "$ROOT/.rotwatchd-python" ] || [ ! -x "$ROOT/usr/bin/jpegtran" ]; then
  phase "python3, venv, pip, jpegtran in the root (emulated apt)"
  guest sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends python3 python3-venv python3-pip ca-certificates libjpeg-turbo-progs' \
    >"$CACHE/apt-python.log" 2>&1 || cannot "apt-get install python3 in the root failed, see $CACHE/apt-python.log"
  touch "$ROOT/.rotwatchd-python"
fi

# --- 3: mounts: /proc with a Raspberry Pi 4 cpuinfo over the host's x86 one --------------------
# Under bookworm's qemu 7.2 both ML runtimes die with "uncaught target signal 11" when they
# read the host's x86 /proc/cpuinfo; a real ARM cpuinfo avoids it.
phase "mounts"
CPUINFO="$CACHE/cpuinfo-rpi4"
{
  for cpu in 0 1 2 3; do  # four Cortex-A72 cores, as /proc/cpuinfo lists them on a Pi 4
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$cpu"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
    printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done
  printf 'Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000a1b2c3d4\n'
  printf 'Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n'
} >"$CPUINFO"
guest_mount "$ROOT/proc" -t proc proc
guest_mount "$ROOT/proc/cpuinfo" --bind "$CPUINFO"
guest_mount "$ROOT/dev" --bind /dev
# No sysfs in the root: the daemon's power code would see (and switch) the host's governors.
# XNNPACK's CPU probe then reports that it cannot read /sys/devices/system/cpu/possible; with
# a Pi-like 0-3 list there, the turned photo took >160 s instead of 27 s in one measurement.
rm -rf "$ROOT/sys/devices"
guest grep -q 'Raspberry Pi 4' /proc/cpuinfo || failed "the guest does not see the Pi 4 cpuinfo"
[ "$(guest uname -m)" = aarch64 ] || failed "the guest is not aarch64: $(guest uname -m)"

# --- 4: rotwatchd into the root, wheels only -----------------------------------------------------
phase "install rotwatchd (aarch64 wheels only, emulated pip)"
rm -rf "$ROOT$GUEST_SRC"
mkdir -p "$ROOT$GUEST_SRC"
# the working tree as it is (committed or not), without ignored files (.venv, caches)
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
  | (cd "$REPO" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
  | tar -C "$REPO" --null -T - -cf - | tar -C "$ROOT$GUEST_SRC" -xf - \
  || failed "copying the working tree into the root"
[ -x "$ROOT$GUEST_VENV/bin/python" ] || guest python3 -m venv "$GUEST_VENV" || failed "python3 -m venv"
# runtime dependencies + pytest only: the dev extra's jpeglib has no aarch64 wheel
guest "$GUEST_VENV/bin/pip" install -q --only-binary :all: -e "$GUEST_SRC" "pytest>=8" \
  "pytest-timeout>=2.3" >"$CACHE/pip.log" 2>&1 || { tail -n 20 "$CACHE/pip.log" >&2; failed "pip install in the root, see $CACHE/pip.log"; }
guest "$GUEST_VENV/bin/python" -c 'import platform, sys, ai_edge_litert, numpy, PIL, pillow_heif
print("guest:", platform.machine(), "Python", sys.version.split()[0], "numpy", numpy.__version__,
      "pillow", PIL.__version__)' >&2 || failed "imports in the root"
guest "$GUEST_VENV/bin/python" -c 'import platform, sys
sys.exit(0 if platform.machine() == "aarch64" and sys.version_info[:2] == (3, 11) else 1)' \
  || failed "the root's Python is not aarch64 / 3.11"

# --- 5: daemon smoke test -------------------------------------------------------------------------
if [ "${ROTWATCHD_ARM64_SMOKE:-1}" != 0 ]; then
  phase "daemon smoke test (rotwatchd run, three photos)"
  SM=/tmp/rotwatchd-smoke
  rm -rf "$ROOT$SM"
  mkdir -p "$ROOT$SM/inbox" "$ROOT$SM/outbox" "$ROOT$SM/state" "$ROOT$SM/src"
  cat >"$ROOT$SM/rotwatchd.yaml" <<'EOF'
inboxes:
  - path: ./inbox
    output: ./outbox
state_dir: ./state
watch:
  quiet_period: 1s
adapt:
  enabled: false
web:
  listen: null
EOF
  # three upright fixtures, stored turned: two with an EXIF Orientation that says so, one with
  # only its pixels turned (the model must find it)
  guest "$GUEST_VENV/bin/python" - "$GUEST_SRC/tests/fixtures/orientation" "$SM/src" <<'EOF' || failed "making the smoke photos"
import sys
from pathlib import Path
from PIL import Image
fx, out = Path(sys.argv[1]), Path(sys.argv[2])
cases = [  # fixture, PIL transpose applied to the stored pixels, EXIF orientation (None = no tag)
    ("kphotoalbum/kphotoalbum-00020.jpg", Image.Transpose.ROTATE_90, 6),
    ("gcompris-qt-data/explore_monuments-00242.jpg", Image.Transpose.ROTATE_180, 3),
    ("gcompris-qt-data/explore_farm_animals-00229.jpg", Image.Transpose.ROTATE_270, None),
]
for i, (name, turn, tag) in enumerate(cases):
    up = Image.open(fx / name).convert("RGB")
    up.save(out / f"upright-{i}.png")
    exif = Image.Exif()
    if tag:
        exif[0x0112] = tag
    up.transpose(turn).save(out / f"photo-{i}.jpg", quality=95, exif=exif.tobytes())
EOF
  (guest_exec sh -c "cd $SM && exec $GUEST_VENV/bin/rotwatchd run -c $SM/rotwatchd.yaml") \
    >"$CACHE/daemon.log" 2>&1 &
  DAEMON_PID=$!
  start=$(date +%s)
  until grep -q "running:" "$CACHE/daemon.log"; do
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$CACHE/daemon.log" >&2; failed "the daemon exited while starting"; }
    [ $(( $(date +%s) - start )) -lt "$SMOKE_DEADLINE" ] || failed "the daemon did not start in ${SMOKE_DEADLINE}s"
    sleep 1
  done
  echo "daemon ready after $(( $(date +%s) - start )) s (model load under emulation)" >&2
  drop=$(date +%s)
  for i in 0 1 2; do  # written aside, renamed in: the inbox sees complete files
    cp "$ROOT$SM/src/photo-$i.jpg" "$ROOT$SM/inbox/.photo-$i.jpg.part"
    mv "$ROOT$SM/inbox/.photo-$i.jpg.part" "$ROOT$SM/inbox/photo-$i.jpg"
  done
  seen=""
  while :; do
    for i in 0 1 2; do
      case " $seen " in *" $i "*) continue ;; esac
      if [ -f "$ROOT$SM/outbox/photo-$i.jpg" ]; then
        seen="$seen $i"
        echo "photo-$i.jpg upright copy after $(( $(date +%s) - drop )) s" >&2
      fi
    done
    [ "$(echo $seen | wc -w)" -ge 3 ] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$CACHE/daemon.log" >&2; failed "the daemon died"; }
    if [ $(( $(date +%s) - drop )) -ge "$SMOKE_DEADLINE" ]; then
      cat "$CACHE/daemon.log" >&2
      ls -R "$ROOT$SM" >&2
      failed "not three upright copies within ${SMOKE_DEADLINE}s (have:$seen)"
    fi
    sleep 1
  done
  echo "three copies in $(( $(date +%s) - drop )) s from the drop" >&2
  grep ' rotwatchd.service.processor: ' "$CACHE/daemon.log" | sed 's/^.* rotwatchd.service.processor: /daemon: /' >&2
  kill -TERM "$DAEMON_PID"
  stop=$(date +%s)
  while kill -0 "$DAEMON_PID" 2>/dev/null; do
    [ $(( $(date +%s) - stop )) -lt 120 ] || failed "the daemon did not stop within 120 s of SIGTERM"
    sleep 1
  done
  wait "$DAEMON_PID"
  drc=$?
  DAEMON_PID=""
  [ "$drc" = 0 ] || { cat "$CACHE/daemon.log" >&2; failed "the daemon exited $drc after SIGTERM"; }
  guest "$GUEST_VENV/bin/python" - "$SM" <<'EOF' || { cat "$CACHE/daemon.log" >&2; failed "the upright copies"; }
import sys
from pathlib import Path
import numpy as np
from PIL import Image
sm = Path(sys.argv[1])
bad = 0
for i in range(3):
    up = np.asarray(Image.open(sm / "src" / f"upright-{i}.png").convert("RGB"), dtype=np.float32)
    with Image.open(sm / "outbox" / f"photo-{i}.jpg") as im:
        tag = im.getexif().get(0x0112, 1)
        out = np.asarray(im.convert("RGB"), dtype=np.float32)
    if out.shape != up.shape:
        print(f"photo-{i}: {out.shape[1]}x{out.shape[0]}, upright is {up.shape[1]}x{up.shape[0]}")
        bad += 1
        continue
    diff = float(np.abs(out - up).mean())
    # a re-encoded JPEG differs by a few levels; a wrong turn of the same photo by tens
    ok = diff < 6 and tag == 1
    print(f"photo-{i}.jpg: orientation tag {tag}, mean |difference| from upright {diff:.2f}:",
          "upright" if ok else "NOT upright")
    bad += not ok
sys.exit(1 if bad else 0)
EOF
fi

# --- 6: model tests ---------------------------------------------------------------------------------
if [ "${ROTWATCHD_ARM64_TESTS:-1}" != 0 ]; then
  phase "model tests (emulated pytest)"
  if [ $# -gt 0 ]; then
    set -- -x -q -p no:cacheprovider -o timeout=0 "$@"
  else
    # shellcheck disable=SC2086
    set -- -x -q -p no:cacheprovider -o timeout=0 -k "$DEFAULT_K" $DEFAULT_TESTS
  fi
  guest sh -c 'cd "$0" && exec "$@"' "$GUEST_SRC" "$GUEST_VENV/bin/python" -m pytest "$@" \
    || failed "pytest in the aarch64 root"
fi
phase_end
echo "aarch64: passed" >&2
exit 0
