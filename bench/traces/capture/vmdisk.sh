#!/usr/bin/env bash
# A virtual machine's disk, without the virtual machine: the loop device's
# backing file is the raw disk image (ext4, no partition table), so the
# traced offsets are offsets in the image file, as tierfs would see them
# under a guest. A guest under qemu's TCG was too slow on this 2-core
# machine for the capture budget, so the guest's work runs on the host in
# a chroot on that file system, in a 256 MiB memory cgroup standing in for
# the guest's RAM: debootstrap a Debian 12 minbase root (package installs),
# apt-get install build-essential inside it, unpack the Linux source
# (linux-source-6.1), grep it twice, remove it, unpack it and grep it again.
# Writes vm-install.iolog.zst.
#   sudo bench/traces/capture/vmdisk.sh   (apt-get install debootstrap)
source "$(dirname "$0")/lib.sh"
MAX_IOS=${MAX_IOS:-500000}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

capture_setup vmdisk 8G
memcg_create vmdisk $((256 << 20))
workload_cleanup() {
  for m in proc sys dev/pts dev; do
    mountpoint -q "$MNT/$m" 2>/dev/null && umount -l "$MNT/$m"
  done
  return 0
}
trace_start "$WORK/run.trace"
log "debootstrap"
memcg_run debootstrap --variant=minbase bookworm "$MNT" "$MIRROR" \
  > "$WORK/debootstrap.log" 2>&1 || { tail "$WORK/debootstrap.log"; exit 1; }
workload_cleanup  # debootstrap may leave its mounts
cp /etc/resolv.conf "$MNT/etc/resolv.conf"
mount -t proc proc "$MNT/proc"
in_guest() { memcg_run chroot "$MNT" env DEBIAN_FRONTEND=noninteractive "$@"; }
log "apt-get install build-essential linux-source-6.1"
in_guest apt-get -q update > "$WORK/apt.log" 2>&1
in_guest apt-get -q install -y --no-install-recommends build-essential \
  linux-source-6.1 xz-utils >> "$WORK/apt.log" 2>&1 \
  || { tail "$WORK/apt.log"; exit 1; }
log "untar the kernel source, grep it twice, remove it, untar and grep again"
in_guest sh -c 'cd /usr/src && tar xf linux-source-6.1.tar.xz && \
  grep -r -l "struct bio" linux-source-6.1 | wc -l && \
  grep -r -l "spin_lock_irqsave" linux-source-6.1/drivers | wc -l && \
  rm -rf linux-source-6.1 && tar xf linux-source-6.1.tar.xz && \
  grep -r -l "struct bio" linux-source-6.1 | wc -l' >&2
trace_stop
to_iolog "$WORK/run.trace" vm-install vm.img "$MAX_IOS"
