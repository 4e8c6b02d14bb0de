#!/usr/bin/env bash
# Captures every trace of the library, one after another (each script
# cleans up after itself), or only those named: all.sh [pgbench sqlite
# vmdisk qemu git scanhot]. Needs root, postgresql-15, debootstrap, fio,
# qemu-system-x86 and linux-image-amd64 (for qemu.sh) and a clone of
# git.git in GIT_SOURCE. About an hour on a 2-core machine. All at nice 10
# but qemu.sh: a TCG guest at nice 10 on a loaded machine crawls.
set -uo pipefail
dir=$(dirname "$0")
status=0
for w in "${@:-pgbench sqlite vmdisk qemu git scanhot}"; do
  for one in $w; do
    echo "=== $one"
    prio=10
    [[ $one == qemu ]] && prio=0
    nice -n $prio "$dir/$one.sh" || { echo "=== $one FAILED"; status=1; }
  done
done
exit $status
