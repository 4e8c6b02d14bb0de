# Shared by the capture scripts (source it; needs root).
#
# A capture runs an application on an ext4 file system of its own on a loop
# device, so the device holds only that application's data, and records
# every request the block layer issues to the device (tracefs event
# block:block_rq_issue, filtered on the device's dev_t, in a tracefs
# instance of its own). blk2iolog.py turns the records into a fio iolog v2.
# Optional: a memory cgroup (v1) that limits the application, page cache
# included, so its IO reaches the disk instead of staying in host memory.
#
# Everything started here (mount, loop device, tracefs instance, cgroup,
# trace reader) is undone by capture_cleanup, which the EXIT trap runs even
# on failure or Ctrl-C.
set -euo pipefail

CAPTURE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TRACES_DIR=$(dirname "$CAPTURE_DIR")
TRACEFS=/sys/kernel/tracing
: "${CAPTURE_WORK:=/var/tmp/tierfs-capture}"

LOOP_DEV=""
MNT=""
TRACE_INSTANCE=""
TRACE_READER_PID=""
TRACEFS_MOUNTED_HERE=0
MEMCG=""

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# capture_setup NAME SIZE: a sparse image of SIZE (e.g. 8G) on a loop device
# (direct IO, so the image is not cached twice), ext4, mounted at $MNT.
capture_setup() {
  local name=$1 size=$2
  WORK=$CAPTURE_WORK/$name
  mkdir -p "$WORK"
  trap capture_cleanup EXIT
  trap 'exit 130' INT TERM
  truncate -s "$size" "$WORK/disk.img"
  LOOP_DEV=$(losetup --direct-io=on --find --show "$WORK/disk.img")
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP_DEV"
  MNT=$WORK/mnt
  mkdir -p "$MNT"
  mount -o noatime "$LOOP_DEV" "$MNT"
  log "$name: $LOOP_DEV ($size) on $MNT"
}

# memcg_create NAME LIMIT_BYTES: a v1 memory cgroup; memcg_enter PID puts a
# process (and so its future children) in it.
memcg_create() {
  MEMCG=/sys/fs/cgroup/memory/tierfs-capture-$1
  mkdir -p "$MEMCG"
  echo "$2" > "$MEMCG/memory.limit_in_bytes"
}
memcg_enter() { echo "$1" > "$MEMCG/cgroup.procs"; }
# memcg_run CMD...: runs CMD inside the cgroup.
memcg_run() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$MEMCG" "$@"; }

# trace_start OUT: records block_rq_issue of $LOOP_DEV into OUT (text).
trace_start() {
  local out=$1
  if ! mountpoint -q "$TRACEFS"; then
    mount -t tracefs nodev "$TRACEFS"
    TRACEFS_MOUNTED_HERE=1
  fi
  TRACE_INSTANCE=$TRACEFS/instances/tierfs-capture-$$
  mkdir "$TRACE_INSTANCE"
  local majmin major minor
  majmin=$(lsblk -ndo MAJ:MIN "$LOOP_DEV" | tr -d ' ')
  major=${majmin%:*}
  minor=${majmin#*:}
  echo 65536 > "$TRACE_INSTANCE/buffer_size_kb"
  echo "dev == $(((major << 20) | minor))" \
    > "$TRACE_INSTANCE/events/block/block_rq_issue/filter"
  echo 1 > "$TRACE_INSTANCE/events/block/block_rq_issue/enable"
  nice -n 10 cat "$TRACE_INSTANCE/trace_pipe" > "$out" &
  TRACE_READER_PID=$!
  log "tracing $LOOP_DEV ($majmin) into $out"
}

trace_stop() {
  [[ -n $TRACE_INSTANCE ]] || return 0
  echo 0 > "$TRACE_INSTANCE/events/block/block_rq_issue/enable" || true
  sleep 1  # let the reader drain the buffer
  if [[ -n $TRACE_READER_PID ]]; then
    kill "$TRACE_READER_PID" 2>/dev/null || true
    wait "$TRACE_READER_PID" 2>/dev/null || true
    TRACE_READER_PID=""
  fi
  local lost
  lost=$(awk '/overrun|dropped/ {s += $NF} END {print s + 0}' \
    "$TRACE_INSTANCE"/per_cpu/cpu*/stats 2>/dev/null || echo 0)
  [[ $lost == 0 ]] || log "WARNING: tracefs lost $lost events"
  rmdir "$TRACE_INSTANCE" || true
  TRACE_INSTANCE=""
}

# to_iolog RAW NAME FILE MAX_IOS: writes $TRACES_DIR/NAME.iolog.zst.
to_iolog() {
  local raw=$1 name=$2 file=$3 max=$4
  nice -n 10 python3 "$CAPTURE_DIR/blk2iolog.py" --file "$file" \
    --max-ios "$max" "$raw" \
    | nice -n 10 zstd -q -19 -f -o "$TRACES_DIR/$name.iolog.zst"
  log "$name: $(ls -l "$TRACES_DIR/$name.iolog.zst" | awk '{print $5}') bytes"
}

# drop_caches: so the next phase starts from disk, as after a reboot.
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

capture_cleanup() {
  local rc=$?
  set +e
  trace_stop
  if declare -F workload_cleanup >/dev/null; then workload_cleanup; fi
  if [[ -n $MEMCG && -d $MEMCG ]]; then
    # The workload's processes are all in the cgroup: stop them before the
    # unmount (an interrupted capture leaves them running).
    local procs
    procs=$(cat "$MEMCG/cgroup.procs")
    if [[ -n $procs ]]; then
      kill -TERM $procs 2>/dev/null
      sleep 2
      kill -KILL $(cat "$MEMCG/cgroup.procs") 2>/dev/null
    fi
  fi
  if [[ -n $MNT ]] && mountpoint -q "$MNT"; then
    umount "$MNT" || { sleep 2; umount "$MNT"; }
  fi
  [[ -n $LOOP_DEV ]] && losetup -d "$LOOP_DEV"
  [[ -n $MEMCG && -d $MEMCG ]] && rmdir "$MEMCG"
  if ((TRACEFS_MOUNTED_HERE)); then umount "$TRACEFS" 2>/dev/null; fi
  if [[ -z ${KEEP_WORK:-} ]]; then
    rm -rf "${WORK:?}"
    rmdir "$CAPTURE_WORK" 2>/dev/null  # if no other capture uses it
  fi
  exit $rc
}
