#!/usr/bin/env bash
# Synthetic scan-plus-hot mix with fio (O_DIRECT, libaio) on ext4:
#  hot   random 4-8 KiB reads and writes (30% writes), zipf 1.1 over a
#        1 GiB file, 800 IOPS;
#  scan  sequential 128 KiB reads over a 4 GiB file, 300 IOPS (a pass
#        every ~110 s);
#  batch random 64 KiB reads over the 4 GiB file (uniform), 40 IOPS.
# Writes scan-hot.iolog.zst.
#   sudo bench/traces/capture/scanhot.sh   (apt-get install fio)
source "$(dirname "$0")/lib.sh"
SECONDS_PER_RUN=${SECONDS_PER_RUN:-360}
MAX_IOS=${MAX_IOS:-500000}

capture_setup scanhot 8G
log "laying out the files"
fio --output=/dev/null --name=lay --directory="$MNT" --ioengine=libaio \
  --direct=1 --rw=write --bs=1M --iodepth=4 \
  --filename=hot.dat:cold.dat --size=5G
trace_start "$WORK/run.trace"
fio --output="$WORK/fio.out" --directory="$MNT" --ioengine=libaio \
  --direct=1 --time_based --runtime="$SECONDS_PER_RUN" --randseed=17 \
  --name=hot --filename=hot.dat --size=1G --rw=randrw --rwmixwrite=30 \
  --bssplit=4k/50:8k/50 --random_distribution=zipf:1.1 --iodepth=4 \
  --rate_iops=800 \
  --name=scan --filename=cold.dat --size=4G --rw=read --bs=128k \
  --iodepth=2 --rate_iops=300 \
  --name=batch --filename=cold.dat --size=4G --rw=randread --bs=64k \
  --iodepth=1 --rate_iops=40
trace_stop
to_iolog "$WORK/run.trace" scan-hot scan-hot.img "$MAX_IOS"
