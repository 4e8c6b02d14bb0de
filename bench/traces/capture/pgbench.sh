#!/usr/bin/env bash
# PostgreSQL 15 pgbench at scale $SCALE (100: ~1.5 GB of tables and
# indexes): TPC-B-like (default script) and select-only (-S), each traced
# from a cold start. The server runs in a 256 MiB memory cgroup with
# shared_buffers=16MB, so its reads and writes reach the device.
# Writes pgbench-tpcb.iolog.zst and pgbench-select.iolog.zst.
#   sudo bench/traces/capture/pgbench.sh   (apt-get install postgresql-15)
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-100}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-240}
MAX_IOS=${MAX_IOS:-500000}
PGBIN=/usr/lib/postgresql/15/bin
PORT=5499

capture_setup pgbench 8G
memcg_create pgbench $((256 << 20))
DATA=$MNT/pgdata
SOCK=$WORK/sock
mkdir -p "$DATA" "$SOCK" "$WORK/log"
chown postgres: "$DATA" "$SOCK" "$WORK/log"
as_pg() { runuser -u postgres -- "$@"; }

workload_cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
}

as_pg "$PGBIN/initdb" -D "$DATA" -A trust >/dev/null
cat >> "$DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
shared_buffers = 16MB
checkpoint_timeout = 2min
max_wal_size = 2GB
CONF
start_server() {
  memcg_run runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" \
    -l "$WORK/log/server.log" -w start >/dev/null
}
stop_server() { as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; }
pgb() { as_pg pgbench -h "$SOCK" -p $PORT "$@" postgres; }

start_server
log "pgbench -i -s $SCALE"
pgb -i -q -s "$SCALE" 2>&1 | tail -1 >&2
as_pg psql -h "$SOCK" -p $PORT -qc checkpoint postgres

for run in tpcb select; do
  stop_server
  sync
  echo 0 > "$MEMCG/memory.force_empty"  # cold page cache for the run
  start_server
  trace_start "$WORK/$run.trace"
  if [[ $run == tpcb ]]; then
    pgb -n -M prepared -c 4 -j 2 -T "$SECONDS_PER_RUN" 2>&1 | grep tps >&2
  else
    pgb -n -S -M prepared -c 4 -j 2 -T "$SECONDS_PER_RUN" 2>&1 | grep tps >&2
  fi
  trace_stop
  to_iolog "$WORK/$run.trace" "pgbench-$run" pgbench.img "$MAX_IOS"
done
