#!/bin/sh
# Check the systemd files the way CI does; exits nonzero on any failure.
#   sh systemd/verify.sh [UNIT_FILE [SOCKET_FILE]]
#   (defaults: systemd/rotwatchd.service, systemd/rotwatchd.socket)
# 1. `systemd-analyze verify` on the service and its socket, byte for byte, inside a throwaway
#    root that mirrors an installed system: the host's unit directory, /bin/kill, and a
#    placeholder at the ExecStart path (verify only checks that the binary exists and is
#    executable; it never runs it). Any message (even a warning such as an unknown key) counts
#    as a failure.
# 2. `systemd-analyze security --offline=true --threshold=30`: overall exposure must be <= 3.0.
# 3. sysusers.d + tmpfiles.d applied to the same throwaway root with a fake cpufreq tree: the
#    rotwatchd group must end up with write access to scaling_governor (needs root; skipped
#    with a notice otherwise).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
unit=${1:-$here/rotwatchd.service}
socket=${2:-$here/rotwatchd.socket}
name=rotwatchd.service
for tool in systemd-analyze systemd-tmpfiles systemd-sysusers; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "verify.sh: $tool not found (apt-get install systemd)" >&2; exit 2; }
done
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT INT TERM

mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$unit" "$root/etc/systemd/system/$name"
cp "$socket" "$root/etc/systemd/system/rotwatchd.socket"
for cmd in $(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^ ]*\).*/\1/p' "$unit"); do
  mkdir -p "$root$(dirname "$cmd")"
  if [ -x "$cmd" ] && [ "$cmd" != "${cmd#/bin/}" ]; then cp "$cmd" "$root$cmd"
  else printf '#!/bin/sh\n# placeholder for systemd-analyze verify\nexit 1\n' > "$root$cmd"; fi
  chmod 755 "$root$cmd"
done
status=0
out=$(systemd-analyze verify --root="$root" "$name" rotwatchd.socket 2>&1) || status=$?
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
  echo "verify.sh: FAIL systemd-analyze verify (exit $status)" >&2; exit 1
fi
echo "verify.sh: ok   systemd-analyze verify $name rotwatchd.socket"

status=0
out=$(systemd-analyze security --offline=true --threshold=30 "$unit" 2>&1) || status=$?
level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [ "$status" -ne 0 ]; then
  printf '%s\n' "$out" | grep -E '✗|Overall' >&2 || printf '%s\n' "$out" >&2
  echo "verify.sh: FAIL systemd-analyze security: exposure ${level:-?} > 3.0" >&2; exit 1
fi
echo "verify.sh: ok   systemd-analyze security --offline=true: exposure $level (<= 3.0)"

if [ "$(id -u)" != 0 ]; then
  echo "verify.sh: skip sysusers/tmpfiles check (needs root to chown in the throwaway root)"
  exit 0
fi
cpu="$root/sys/devices/system/cpu"
mkdir -p "$cpu/cpufreq/policy0" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
echo schedutil > "$cpu/cpufreq/policy0/scaling_governor"
chmod 644 "$cpu/cpufreq/policy0/scaling_governor"
cp "$here/rotwatchd.sysusers" "$root/usr/lib/sysusers.d/rotwatchd.conf"
cp "$here/rotwatchd.tmpfiles" "$root/usr/lib/tmpfiles.d/rotwatchd.conf"
systemd-sysusers --root="$root" rotwatchd.conf >/dev/null 2>&1
systemd-tmpfiles --create --root="$root" rotwatchd.conf
gid=$(sed -n 's/^rotwatchd:x:\([0-9]*\):.*/\1/p' "$root/etc/group")
got=$(stat -c '%a %g' "$cpu/cpufreq/policy0/scaling_governor")
if [ -z "$gid" ] || [ "$got" != "664 $gid" ]; then
  echo "verify.sh: FAIL tmpfiles rule: scaling_governor is '$got', want '664 $gid'" >&2; exit 1
fi
for dir in inbox outbox review; do
  [ -d "$root/srv/rotwatchd/$dir" ] || { echo "verify.sh: FAIL no /srv/rotwatchd/$dir" >&2; exit 1; }
done
echo "verify.sh: ok   sysusers.d + tmpfiles.d: scaling_governor 0664 group rotwatchd ($gid)"
