#!/usr/bin/env bash
# SQLite: the app-like mix of sqlite_app.py on a ~1.6 GB database, the
# process in a 128 MiB memory cgroup (SQLite's own cache is its default
# 2 MB), traced from a cold page cache. Writes sqlite-app.iolog.zst.
#   sudo bench/traces/capture/sqlite.sh
source "$(dirname "$0")/lib.sh"
SECONDS_PER_RUN=${SECONDS_PER_RUN:-240}
MAX_IOS=${MAX_IOS:-500000}

capture_setup sqlite 6G
memcg_create sqlite $((128 << 20))
log "loading the database"
python3 "$CAPTURE_DIR/sqlite_app.py" load "$MNT/app.db"
ls -l "$MNT" >&2
sync
# The load ran outside the cgroup: unmount and mount again for a cold cache.
umount "$MNT"
mount -o noatime "$LOOP_DEV" "$MNT"
trace_start "$WORK/run.trace"
memcg_run python3 "$CAPTURE_DIR/sqlite_app.py" run "$MNT/app.db" \
  "$SECONDS_PER_RUN"
trace_stop
to_iolog "$WORK/run.trace" sqlite-app sqlite-app.db "$MAX_IOS"
