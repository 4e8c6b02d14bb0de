#!/usr/bin/env bash
# A qemu guest's virtual disk, traced under the guest. The loop device's
# backing file is the guest's raw disk image (ext4, no partition table)
# and qemu opens the loop device itself (cache=none), so the traced
# offsets are offsets in the image file, as tierfs would see them holding
# the image.
# Image preparation, not traced: debootstrap a Debian 12 minbase root with
# systemd, apt-get update and download (only) build-essential into the
# image's apt cache, a unit that runs the workload at boot; the Linux
# source (linux-source-6.1) unpacked to a plain tar on a second drive.
# Traced: qemu (TCG, as KVM does not work here; 256 MiB of RAM, one vCPU)
# boots Debian's kernel and initrd from the host's /boot, root on the
# virtio disk, systemd to multi-user; the workload apt-get installs
# build-essential from the downloaded .debs, unpacks the kernel source
# from the second drive (an untraced stream, like a download), greps it
# twice, removes it, unpacks it and greps it again, syncs and powers the
# guest off. Writes qemu-guest.iolog.zst. About 20 minutes here; qemu
# runs at the script's priority (under TCG one busy thread; at nice 10 on
# a loaded machine the guest crawls).
#   sudo bench/traces/capture/qemu.sh
#   (apt-get install qemu-system-x86 linux-image-amd64 debootstrap)
source "$(dirname "$0")/lib.sh"
MAX_IOS=${MAX_IOS:-500000}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
GUEST_MEM=${GUEST_MEM:-256M}
GUEST_CPUS=${GUEST_CPUS:-1}  # two vCPUs on two shared cores: lock stalls
TIMEOUT=${TIMEOUT:-2700}  # seconds for boot and workload
KVER=${KVER:-$(find /boot -name 'vmlinuz-*' -printf '%f\n' \
  | sed 's/^vmlinuz-//' | sort -V | tail -1)}
if [[ -z $KVER || ! -f /boot/vmlinuz-$KVER || ! -f /boot/initrd.img-$KVER ]]
then
  echo "no kernel and initrd in /boot: apt-get install linux-image-amd64" >&2
  exit 1
fi
command -v qemu-system-x86_64 > /dev/null \
  || { echo "apt-get install qemu-system-x86" >&2; exit 1; }

capture_setup qemu 8G
QEMU_PID=""
workload_cleanup() {
  if [[ -n $QEMU_PID ]]; then
    kill "$QEMU_PID" 2>/dev/null
    wait "$QEMU_PID" 2>/dev/null
    QEMU_PID=""
  fi
  for m in proc sys dev/pts dev; do
    mountpoint -q "$MNT/$m" 2>/dev/null && umount -l "$MNT/$m"
  done
  return 0
}

log "prepare the guest image (not traced): debootstrap, download packages"
debootstrap --variant=minbase --include=systemd-sysv,udev bookworm "$MNT" \
  "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
  || { tail "$WORK/debootstrap.log"; exit 1; }
workload_cleanup  # debootstrap may leave its mounts
cp /etc/resolv.conf "$MNT/etc/resolv.conf"
mount -t proc proc "$MNT/proc"
chroot "$MNT" env DEBIAN_FRONTEND=noninteractive sh -c 'apt-get -q update &&
  apt-get -q install -y --download-only --no-install-recommends \
  build-essential linux-source-6.1' > "$WORK/apt.log" 2>&1 \
  || { tail "$WORK/apt.log"; exit 1; }
umount "$MNT/proc"
# The kernel source leaves the image: a plain tar on the second drive
# (xz under TCG would take ~10 minutes an unpack).
mv "$MNT"/var/cache/apt/archives/linux-source-6.1_*.deb "$WORK/"
dpkg-deb --fsys-tarfile "$WORK"/linux-source-6.1_*.deb \
  | tar -xO --wildcards '*/linux-source-6.1.tar.xz' \
  | nice -n 10 xz -dc > "$WORK/src.tar"
rm "$WORK"/linux-source-6.1_*.deb
echo '/dev/vda / ext4 noatime,errors=remount-ro 0 0' > "$MNT/etc/fstab"
echo tierfs-guest > "$MNT/etc/hostname"
cat > "$MNT/usr/local/sbin/workload" <<'EOF'
#!/bin/sh
# Runs once at boot (workload.service), which then powers the guest off.
exec > /dev/ttyS0 2>&1
set -e
t() { echo "WORKLOAD $(cut -d' ' -f1 /proc/uptime)s $*"; }
untar() { dd if=/dev/vdb iflag=direct bs=1M status=none | tar -x -f -; }
t "booted; apt-get install build-essential"
DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-download \
  --no-install-recommends build-essential > /var/log/workload-apt.log 2>&1 \
  || { tail /var/log/workload-apt.log; exit 1; }
mkdir -p /usr/src && cd /usr/src
t "untar"; untar
t "grep 1: $(grep -r -l 'struct bio' linux-source-6.1 | wc -l) files"
t "grep 2: $(grep -r -l spin_lock_irqsave linux-source-6.1/drivers | wc -l) files"
t "rm"; rm -rf linux-source-6.1
t "untar"; untar
t "grep 3: $(grep -r -l 'struct bio' linux-source-6.1 | wc -l) files"
sync
t "synced; vda stat: $(cat /sys/block/vda/stat)"
echo WORKLOAD-DONE
EOF
chmod +x "$MNT/usr/local/sbin/workload"
cat > "$MNT/etc/systemd/system/workload.service" <<'EOF'
[Unit]
Description=tierfs trace workload
After=multi-user.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/workload
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/workload.service \
  "$MNT/etc/systemd/system/multi-user.target.wants/workload.service"
# No login prompt on the serial console: agetty's vhangup() of ttyS0 would
# hang up the workload's output there, and SIGHUP kill it.
ln -s /dev/null "$MNT/etc/systemd/system/serial-getty@ttyS0.service"
umount "$MNT"
drop_caches

trace_start "$WORK/run.trace"
log "qemu (TCG, $GUEST_MEM, $GUEST_CPUS vCPU), kernel $KVER, disk $LOOP_DEV"
# The guest powers itself off when the workload ends (or fails);
# panic=-1 with -no-reboot turns a guest panic into qemu exiting.
# mitigations=off: page-table isolation's address-space switches flush
# TCG's soft TLB at every system call; init_on_alloc=0: Debian zeroes every
# page it allocates, slow under TCG; nowatchdog: TCG's stalls are no lockups.
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max \
  -m "$GUEST_MEM" -smp "$GUEST_CPUS" -nodefaults -display none \
  -no-reboot -nic none -serial "file:$WORK/console.log" \
  -kernel "/boot/vmlinuz-$KVER" -initrd "/boot/initrd.img-$KVER" \
  -append "root=/dev/vda rw console=ttyS0 panic=-1 quiet mitigations=off \
init_on_alloc=0 nowatchdog" \
  -drive "file=$LOOP_DEV,format=raw,if=virtio,cache=none,aio=threads" \
  -drive "file=$WORK/src.tar,format=raw,if=virtio,readonly=on,cache=none,aio=threads" \
  > "$WORK/qemu.log" 2>&1 &
QEMU_PID=$!
seen=0
while kill -0 "$QEMU_PID" 2>/dev/null; do
  sleep 5
  n=$(grep -ac '^WORKLOAD' "$WORK/console.log" 2>/dev/null || true)
  if ((n > seen)); then
    grep -a '^WORKLOAD' "$WORK/console.log" | tail -n $((n - seen)) >&2
    seen=$n
  fi
done
rc=0
wait "$QEMU_PID" || rc=$?
QEMU_PID=""
trace_stop
if ((rc != 0)) || ! grep -aq '^WORKLOAD-DONE' "$WORK/console.log"; then
  log "qemu exited with $rc, the workload did not finish:"
  tail -n 30 "$WORK/qemu.log" "$WORK/console.log" >&2
  exit 1
fi
to_iolog "$WORK/run.trace" qemu-guest guest.img "$MAX_IOS"
