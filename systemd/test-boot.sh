#!/bin/sh
# Boot rotwatchd under a real systemd and check what systemd-analyze cannot (systemd 252, Debian
# bookworm, booted with systemd-nspawn): READY=1 only once the inbox is watched, an EXIF-turned
# photo written upright, `systemctl reload` with a valid and an invalid YAML, the watchdog
# restarting a SIGSTOPped daemon, the sandbox (writes, network, syscalls) against an unsandboxed
# control, governors switched through the tmpfiles rule and restored at stop, a member of the
# rotwatchd group managing the outputs, and the web page through rotwatchd.socket (review page,
# /metrics, a review item settled, the README's LAN setup with a token). The checks themselves
# are systemd/boot_checks.py.
#
#   sh systemd/test-boot.sh
#
# Needs root, systemd-nspawn (Debian: systemd-container) and debootstrap, and network access for
# the first build and for `pip install .`. Environment:
#   ROTWATCHD_BOOT_CACHE   cache for the bookworm root and pip downloads
#                          (default /var/cache/rotwatchd-boot; the root is built once, ~1-2 min)
#   ROTWATCHD_BOOT_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   ROTWATCHD_BOOT_BREAK   readwrite: a drop-in drops the unit's ReadWritePaths=-/srv/rotwatchd
#                          (as a careless `systemctl edit` would); the checks must then fail
# Exit status: 0 every check passed, 1 a check failed, 2 this machine cannot run the test (not
# root, tools missing, no network for debootstrap, or no container boots here).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
say() { echo "test-boot: $*"; }
cannot() { say "cannot run: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || cannot "needs root (debootstrap, systemd-nspawn)"
for tool in systemd-nspawn debootstrap nsenter flock; do
  command -v "$tool" >/dev/null 2>&1 ||
    cannot "$tool not found (apt-get install systemd-container debootstrap)"
done
break_mode=${ROTWATCHD_BOOT_BREAK:-}
case "$break_mode" in ""|readwrite) ;; *) cannot "unknown ROTWATCHD_BOOT_BREAK=$break_mode (known: readwrite)" ;; esac
cache=${ROTWATCHD_BOOT_CACHE:-/var/cache/rotwatchd-boot}
mirror=${ROTWATCHD_BOOT_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache/pip"
exec 9>"$cache/lock"
flock -w 1800 9 || cannot "another test-boot.sh holds $cache/lock"
started=$(date +%s)

# 1. A Debian bookworm root as a plain host would have it (procps gives ExecReload its
#    /bin/kill; libjpeg-turbo-progs is the recommended jpegtran). Built once per package list.
packages=systemd,systemd-sysv,dbus,procps,python3,python3-venv,ca-certificates,libjpeg-turbo-progs
root="$cache/bookworm-$(printf '%s\n' "$packages" | sha256sum | cut -c1-12)"
if [ ! -d "$root" ]; then
  say "building $root with debootstrap from $mirror (once; 1-2 min)"
  rm -rf "$root.partial"
  debootstrap --variant=minbase --include="$packages" bookworm "$root.partial" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || {
    tail -20 "$cache/debootstrap.log" >&2; cannot "debootstrap failed (network, mirror?)"; }
  mv "$root.partial" "$root"
fi
say "root $root ($(($(date +%s) - started)) s)"

# 2. The README's install steps, verbatim: the two that need the network (venv, pip) run in the
#    cached root, the rest inside the booted system. Package traffic may pass a proxy whose CA
#    the fresh root does not know: pip gets this machine's bundle.
readme_install=$(awk '/^## Install/ {on = 1} on && /^```sh/ {code = 1; next}
                      code && /^```/ {exit} code' "$here/README.md")
network_steps=$(printf '%s\n' "$readme_install" | grep -E '^python3 -m venv|/pip install')
system_steps=$(printf '%s\n' "$readme_install" | grep -vE '^python3 -m venv|/pip install')
case "$system_steps" in *"systemctl enable --now rotwatchd"*) ;;
  *) say "FAIL systemd/README.md: no install block with 'systemctl enable --now rotwatchd'"; exit 1 ;;
esac
ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
pip_cert=""
if [ -f "$ca" ]; then
  cp "$ca" "$root/etc/ssl/certs/rotwatchd-boot-host-ca.crt"
  pip_cert=--setenv=PIP_CERT=/etc/ssl/certs/rotwatchd-boot-host-ca.crt
fi
systemd-nspawn --quiet --register=no --keep-unit -D "$root" \
  --bind-ro="$repo:/src" --bind="$cache/pip:/root/.cache/pip" --chdir=/src $pip_cert \
  --setenv=PIP_DISABLE_PIP_VERSION_CHECK=1 --setenv=PIP_ROOT_USER_ACTION=ignore \
  ${PIP_INDEX_URL:+--setenv=PIP_INDEX_URL="$PIP_INDEX_URL"} \
  sh -euc "$network_steps" >"$cache/pip.log" 2>&1 || { tail -20 "$cache/pip.log" >&2; exit 1; }
say "pip install . into /opt/rotwatchd/venv ($(($(date +%s) - started)) s)"

# 3. Boot it: a throwaway tmpfs overlay over the cached root (--volatile=overlay), so every run
#    starts from the same state. The sandbox needs what a real host has: its own network
#    namespace, the unified cgroup hierarchy with BPF (IPAddressDeny=, DevicePolicy=), and a
#    writable /sys for the governor files.
run=$(mktemp -d /tmp/rotwatchd-boot.XXXXXX)
nspawn=""
finish() {
  status=$?
  if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
    kill -TERM "$nspawn" 2>/dev/null || true  # nspawn asks the container's systemd to halt
    i=0; while kill -0 "$nspawn" 2>/dev/null && [ $i -lt 150 ]; do i=$((i + 1)); sleep 0.2; done
    kill -KILL "$nspawn" 2>/dev/null || true
  fi
  [ "$status" = 0 ] || { echo "--- container console ---"; tail -30 "$run/console.log"; } >&2
  rm -rf "$run"
  exit "$status"
}
trap finish EXIT
trap 'exit 1' INT TERM
# This machine may have no cpufreq: a fake tree in the kernel's layout (two policies at
# schedutil) is mounted at /sys/devices/system/cpu/cpufreq once the container runs.
for policy in 0 1; do
  mkdir -p "$run/cpufreq/policy$policy"
  echo schedutil >"$run/cpufreq/policy$policy/scaling_governor"
  echo "performance powersave schedutil" >"$run/cpufreq/policy$policy/scaling_available_governors"
  chmod 644 "$run/cpufreq/policy$policy/scaling_governor"
done
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 \
  systemd-nspawn --quiet --boot --keep-unit --register=no --volatile=overlay -D "$root" \
  --private-network --capability=CAP_BPF,CAP_PERFMON --system-call-filter=bpf \
  --bind-ro="$repo:/src" --bind="$run/cpufreq:/run/fake-cpufreq" --console=pipe \
  </dev/null >"$run/console.log" 2>&1 &
nspawn=$!
# The container's PID 1 is the child of systemd-nspawn that is PID 1 in its own namespace
# (nspawn forks short-lived helpers too).
container_init() {
  for pid in $(ps -o pid= --ppid "$nspawn"); do
    sed -n 's/^NSpid:.*[[:space:]]1$/x/p' "/proc/$pid/status" 2>/dev/null | grep -q x &&
      { echo "$pid"; return; }
  done
}
deadline=$(($(date +%s) + 120))
leader=""
until leader=$(container_init) && [ -n "$leader" ]; do
  kill -0 "$nspawn" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ] ||
    { cat "$run/console.log" >&2; cannot "systemd-nspawn started no container"; }
  sleep 0.2
done
inside() { nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
until state=$(inside systemctl is-system-running --wait 2>"$run/boot.err"); do
  case "$state" in degraded) break ;; esac
  [ "$(date +%s)" -lt "$deadline" ] ||
    { cat "$run/boot.err" >&2; cannot "the container did not boot within 120 s: '$state'"; }
  sleep 0.5
done
if [ "$state" != running ]; then
  inside systemctl --failed --no-pager >&2
  cannot "the container booted '$state', not 'running' (before anything of rotwatchd's ran)"
fi
say "booted systemd $(inside systemctl --version | sed -n '1s/systemd \([0-9]*\).*/\1/p') as PID 1 ($(($(date +%s) - started)) s)"
inside mount --bind /run/fake-cpufreq /sys/devices/system/cpu/cpufreq

if [ "$break_mode" = readwrite ]; then
  say "ROTWATCHD_BOOT_BREAK=readwrite: a drop-in resets ReadWritePaths= to the cpufreq files only"
  inside sh -c 'mkdir -p /etc/systemd/system/rotwatchd.service.d &&
    printf "[Service]\nReadWritePaths=\nReadWritePaths=-/sys/devices/system/cpu\n" \
      >/etc/systemd/system/rotwatchd.service.d/break.conf'
fi
inside sh -euc "cd /src; $system_steps" >"$run/install.log" 2>&1 || {
  cat "$run/install.log" >&2
  inside journalctl -u rotwatchd --no-pager -n 30 >&2
  say "FAIL the README's install steps failed inside the booted system"; exit 1; }
say "README install steps ran; systemctl enable --now rotwatchd returned"
inside useradd --create-home --groups rotwatchd alice
inside /opt/rotwatchd/venv/bin/python /src/systemd/boot_checks.py
say "all checks passed ($(($(date +%s) - started)) s)"
