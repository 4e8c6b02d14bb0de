#!/usr/bin/env bash
# Captures every trace of the library, one after another (each script
# cleans up after itself), or only those named: all.sh [pgbench sqlite
# vmdisk git scanhot]. Needs root, postgresql-15, debootstrap, fio and a
# clone of git.git in GIT_SOURCE. About 40 minutes on a 2-core machine.
set -uo pipefail
dir=$(dirname "$0")
status=0
for w in "${@:-pgbench sqlite vmdisk git scanhot}"; do
  for one in $w; do
    echo "=== $one"
    nice -n 10 "$dir/$one.sh" || { echo "=== $one FAILED"; status=1; }
  done
done
exit $status
