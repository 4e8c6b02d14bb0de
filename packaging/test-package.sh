#!/usr/bin/env bash
# The package test: builds the tierfs .deb, lints it, installs it on this
# machine, mounts a tier the way an administrator would (mount -t fuse.tierfs,
# an fstab line), writes and reads through it, unmounts with umount(8), checks
# the systemd unit and the man pages, and purges the package again.
#
#   packaging/test-package.sh
#
# Needs root, /dev/fuse, dpkg-dev; installs debhelper and lintian with apt-get
# when they are missing. Exits 77 (skip) and says why when something it needs
# is unavailable. TIERFS_DEB=path/to/tierfs.deb tests that package instead of
# building one. Everything it creates (mounts, daemon, package, temp dirs) is
# removed on exit, also on failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

skip() {
  echo "SKIP: $*"
  exit 77
}

passed=0
failed=0
pass() {
  echo "ok: $*"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}

# --- what this test needs --------------------------------------------------

[[ $(id -u) -eq 0 ]] || skip "needs root (installs a package and mounts)"
[[ -c /dev/fuse ]] || skip "/dev/fuse is missing"
for tool in dpkg dpkg-buildpackage mount umount; do
  command -v "$tool" >/dev/null || skip "$tool not found"
done

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "$@" >/dev/null 2>&1 && return 0
  apt-get update -qq >/dev/null 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "$@" >/dev/null 2>&1
}
need_package() {  # need_package COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  echo "installing $2 (for $1)"
  apt_install "$2" || skip "$1 not found and apt-get install $2 failed"
}
need_package dh debhelper
need_package lintian lintian
if [[ -z ${TIERFS_DEB:-} ]] && ! (cd "$here" && dpkg-checkbuilddeps debian/control) \
    >/dev/null 2>&1; then
  skip "build dependencies missing: $(cd "$here" && dpkg-checkbuilddeps debian/control 2>&1)"
fi
if dpkg-query -W -f='${Status}' tierfs 2>/dev/null | grep -q 'ok installed'; then
  skip "the tierfs package is already installed; not replacing it"
fi
for f in /usr/sbin/tierfs /usr/sbin/tierfs-ctl /usr/sbin/mount.fuse.tierfs; do
  [[ -e $f ]] && skip "$f exists outside the package (meson install?); not overwriting it"
done

# --- clean-up, whatever happens ---------------------------------------------

work=$(mktemp -d /tmp/tierfs-pkgtest.XXXXXX)
installed=no
daemon_pid=""
cleanup() {
  local mnt
  for mnt in "$work/mnt" "$work/mnt2"; do
    if grep -qs " $mnt fuse.tierfs " /proc/self/mounts; then
      umount -l "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null
    fi
  done
  if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon_pid" 2>/dev/null
  fi
  if [[ $installed == yes ]]; then
    dpkg --purge tierfs >/dev/null 2>&1 || echo "WARNING: dpkg --purge tierfs failed"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build and lint ---------------------------------------------------------

if [[ -n ${TIERFS_DEB:-} ]]; then
  deb=$TIERFS_DEB
else
  echo "building the package (this compiles tierfs)..."
  if deb=$("$here/build-deb" "$work/out" 2>"$work/build.log" | tail -n 1) && [[ -f $deb ]]; then
    pass "dpkg-buildpackage built $(basename "$deb")"
  else
    tail -n 40 "$work/build.log"
    fail "dpkg-buildpackage failed (log above)"
    echo "$passed passed, $failed failed"
    exit 1
  fi
fi

lintian --no-tag-display-limit "$deb" >"$work/lintian.log" 2>&1
if grep -q '^E: ' "$work/lintian.log"; then
  fail "lintian reports errors:"
  grep '^E: ' "$work/lintian.log"
else
  pass "lintian: no errors"
fi
if grep -q '^W: ' "$work/lintian.log"; then
  echo "lintian warnings:"
  grep '^W: ' "$work/lintian.log"
fi

contents=$(dpkg-deb -c "$deb")
for path in ./usr/sbin/tierfs ./usr/sbin/tierfs-ctl ./usr/sbin/mount.fuse.tierfs \
    ./usr/share/man/man8/tierfs.8.gz ./usr/share/man/man8/tierfs-ctl.8.gz \
    ./usr/share/man/man8/mount.fuse.tierfs.8.gz ./usr/share/man/man5/tierfs.5.gz \
    ./usr/lib/systemd/system/tierfs@.service \
    ./usr/share/bash-completion/completions/tierfs \
    ./usr/share/bash-completion/completions/tierfs-ctl; do
  if grep -q " $path\$" <<<"$contents"; then
    pass "package ships ${path#.}"
  else
    fail "package does not ship ${path#.}"
  fi
done

# --- install ----------------------------------------------------------------

if dpkg -i "$deb" >"$work/dpkg.log" 2>&1; then
  installed=yes
  pass "dpkg -i installed the package"
else
  installed=yes  # half-installed counts: purge it
  cat "$work/dpkg.log"
  fail "dpkg -i failed"
  echo "$passed passed, $failed failed"
  exit 1
fi
if [[ $(stat -c %a /usr/sbin/mount.fuse.tierfs) == 755 ]]; then
  pass "mount.fuse.tierfs is executable (755)"
else
  fail "mount.fuse.tierfs has mode $(stat -c %a /usr/sbin/mount.fuse.tierfs)"
fi
if tierfs --version | grep -q "^tierfs $(dpkg-query -W -f='${Version}' tierfs)"; then
  pass "tierfs --version matches the package version"
else
  fail "tierfs --version: '$(tierfs --version)' vs package $(dpkg-query -W -f='${Version}' tierfs)"
fi

# --- mount(8) with fuse.tierfs ----------------------------------------------

fast=$work/fast slow=$work/slow mnt=$work/mnt
mkdir -p "$fast" "$slow" "$mnt"

if mount -t fuse.tierfs -o "slow=$slow" none "$mnt" 2>"$work/err"; then
  fail "mount without fast= succeeded"
elif grep -q "missing option fast=" "$work/err"; then
  pass "mount without fast= fails and says why: $(head -n 1 "$work/err")"
else
  fail "mount without fast= gave no clear error: $(cat "$work/err")"
fi

state_of() {  # state_of MOUNTPOINT KEY: a value from the daemon's state file
  local file
  file=/run/tierfs/$(systemd-escape --path "$1" 2>/dev/null || echo "${1#/}" | tr / -).mount
  sed -n "s/^$2=//p" "$file" 2>/dev/null
}

wait_for_exit() {  # wait_for_exit PID SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

# The options an fstab line typically carries, mount(8)-only ones included.
if mount -t fuse.tierfs \
    -o "fast=$fast,slow=$slow,cache_size=64M,block_size=64K,mode=writeback,allow_other,nofail,_netdev,x-systemd.requires-mounts-for=$fast" \
    none "$mnt" 2>"$work/err"; then
  pass "mount -t fuse.tierfs -o fast=...,slow=...,nofail,x-systemd.* ... none MNT"
else
  fail "mount -t fuse.tierfs failed: $(cat "$work/err")"
fi

if grep -qs " $mnt fuse.tierfs " /proc/self/mounts; then
  pass "$mnt is a fuse.tierfs mount"
  daemon_pid=$(state_of "$mnt" pid)
  if grep -qs " $mnt fuse.tierfs .*allow_other" /proc/self/mounts; then
    pass "allow_other reached the kernel"
  else
    fail "allow_other missing: $(grep " $mnt " /proc/self/mounts)"
  fi
  if [[ -f $fast/tierfs/cache.data && $(stat -c %s "$fast/tierfs/cache.data") -eq $((64 << 20)) ]]; then
    pass "cache_size=64M made a 64 MiB fast/tierfs/cache.data"
  else
    fail "fast/tierfs/cache.data missing or wrong size: $(ls -l "$fast/tierfs" 2>&1)"
  fi

  head -c $((4 << 20)) /dev/urandom >"$work/data"
  echo "hello from tierfs" >"$work/small"
  if cp "$work/data" "$mnt/vm.img" && cp "$work/small" "$mnt/small.txt" && sync &&
      cmp -s "$work/data" "$mnt/vm.img" && cmp -s "$work/small" "$mnt/small.txt"; then
    pass "files written through the mount read back unchanged"
  else
    fail "write/read back through the mount"
  fi
  if [[ -f $slow/vm.img && -f $slow/small.txt ]]; then
    pass "the files are in the slow dir"
  else
    fail "the files are not in the slow dir: $(ls -l "$slow")"
  fi
  if tierfs-ctl -m "$mnt" stats --json >"$work/stats.json" 2>"$work/err" &&
      python3 - "$work/stats.json" <<'EOF'
import json, sys
stats = json.load(open(sys.argv[1]))
stable = ("read_hits read_misses write_hits write_misses promotions demotions "
          "writebacks dirty_blocks cache_blocks used_blocks block_size mode "
          "policy read_only needs_check volumes").split()
missing = [k for k in stable if k not in stats]
if missing:
    sys.exit("missing keys: " + " ".join(missing))
if stats["block_size"] != 65536 or stats["cache_blocks"] != 1024:
    sys.exit("block_size/cache_blocks %s/%s" % (stats["block_size"], stats["cache_blocks"]))
EOF
  then
    pass "tierfs-ctl stats --json has the documented keys and the mount options' values"
  else
    fail "tierfs-ctl stats --json: $(cat "$work/err")"
  fi

  if umount "$mnt" 2>"$work/err"; then
    pass "umount(8) unmounted the tier"
  else
    fail "umount: $(cat "$work/err")"
  fi
  if [[ -z $daemon_pid ]]; then
    fail "no daemon pid in the state file"
  elif wait_for_exit "$daemon_pid" 120; then
    pass "the daemon exited after umount"
    daemon_pid=""
  else
    fail "the daemon (pid $daemon_pid) still runs 120 s after umount"
  fi
  if cmp -s "$work/data" "$slow/vm.img" && cmp -s "$work/small" "$slow/small.txt"; then
    pass "after unmount the slow dir holds the data written"
  else
    fail "the slow dir's copy differs from what was written"
  fi
else
  fail "$mnt is not mounted"
fi

# --- an fstab line -----------------------------------------------------------

# mount -T reads another fstab, so /etc/fstab stays untouched.
mnt2=$work/mnt2
mkdir -p "$mnt2"
printf 'none %s fuse.tierfs fast=%s,slow=%s,nofail,x-systemd.requires-mounts-for=%s,x-systemd.requires-mounts-for=%s 0 0\n' \
  "$mnt2" "$fast" "$slow" "$fast" "$slow" >"$work/fstab"
if mount -T "$work/fstab" "$mnt2" 2>"$work/err" &&
    grep -qs " $mnt2 fuse.tierfs " /proc/self/mounts; then
  daemon_pid=$(state_of "$mnt2" pid)
  if cmp -s "$work/data" "$mnt2/vm.img"; then
    pass "the fstab line mounts the tier and the data is there"
  else
    fail "the fstab line mounted, but vm.img differs"
  fi
  umount "$mnt2" && [[ -n $daemon_pid ]] && wait_for_exit "$daemon_pid" 120 && daemon_pid=""
  if [[ -z $daemon_pid ]] && ! grep -qs " $mnt2 " /proc/self/mounts; then
    pass "umount of the fstab mount, daemon gone"
  else
    fail "umount of the fstab mount"
  fi
else
  fail "mount -T fstab: $(cat "$work/err")"
fi

# --- systemd unit -------------------------------------------------------------

unit=/usr/lib/systemd/system/tierfs@.service
if command -v systemd-analyze >/dev/null; then
  # Verify an instance, as systemctl would load it.
  mkdir -p "$work/units"
  cp "$unit" "$work/units/tierfs@mnt-tier.service"
  if systemd-analyze verify "$work/units/tierfs@mnt-tier.service" >"$work/verify.log" 2>&1 &&
      [[ ! -s $work/verify.log ]]; then
    pass "systemd-analyze verify tierfs@mnt-tier.service"
  else
    fail "systemd-analyze verify: $(cat "$work/verify.log")"
  fi
else
  echo "skip: systemd-analyze not found; the unit was not verified"
fi

# --- man pages ----------------------------------------------------------------

for page in tierfs.8 tierfs-ctl.8 tierfs.5 mount.fuse.tierfs.8; do
  name=${page%.*} section=${page##*.}
  if MANWIDTH=80 man --warnings "$section" "$name" 2>"$work/err" >"$work/page" &&
      [[ ! -s $work/err ]] && grep -q . "$work/page"; then
    pass "man $section $name renders without warnings"
  else
    fail "man $section $name: $(head -n 5 "$work/err")"
  fi
done

# --- bash completion ------------------------------------------------------------

if [[ -f /usr/share/bash-completion/bash_completion ]]; then
  if bash -c 'source /usr/share/bash-completion/bash_completion
      source /usr/share/bash-completion/completions/tierfs
      source /usr/share/bash-completion/completions/tierfs-ctl
      complete -p tierfs && complete -p tierfs-ctl' >/dev/null 2>&1; then
    pass "bash completion loads for tierfs and tierfs-ctl"
  else
    fail "bash completion does not load"
  fi
else
  echo "skip: bash-completion not installed; completion not loaded"
fi

echo "$passed passed, $failed failed"
((failed == 0))
