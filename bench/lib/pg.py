"""A throwaway PostgreSQL 15 cluster for the benchmarks: initdb, a server
started under a command prefix (cgroups), pgbench runs parsed into numbers,
and PostgreSQL's own IO timing (pg_stat_wal, pg_stat_bgwriter,
pg_stat_database). PostgreSQL refuses to run as root: everything runs as
the `postgres` user (runuser), so its directories must be reachable by it.

    with Cluster(data, sock, log) as pg:   # stopped on exit, even on error
        pg.start(prefix=memcg.run_prefix)
        pg.pgbench(["-i", "-q", "-s", "30"])
"""
import os
import re
import shutil
import subprocess

import benchlib as bl

PGBIN = "/usr/lib/postgresql/15/bin"
USER = "postgres"


def as_pg(cmd):
    return ["runuser", "-u", USER, "--"] + list(cmd)


def chown_pg(path):
    shutil.chown(path, USER, USER)


class Cluster:
    """One data directory and the server serving it on a unix socket only."""

    def __init__(self, data, sock, log, port=5499):
        self.data, self.sock, self.log, self.port = data, sock, log, port
        self.running = False

    def initdb(self, settings):
        """Creates the cluster (trust auth) and appends `settings` (a dict)
        to postgresql.conf."""
        os.makedirs(self.data, mode=0o700, exist_ok=True)
        chown_pg(self.data)
        bl.sh(as_pg([f"{PGBIN}/initdb", "-D", self.data, "-A", "trust"]),
              stdout=subprocess.DEVNULL)
        self.configure(settings)

    def configure(self, settings):
        conf = {"listen_addresses": "''", "port": self.port,
                "unix_socket_directories": f"'{self.sock}'"}
        conf.update(settings)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# bench/lib/pg.py\n")
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")

    def start(self, prefix=()):
        """Starts the server under `prefix` (e.g. a cgroup's run_prefix: the
        postmaster and every backend inherit it) and waits until it
        accepts connections."""
        bl.sh(list(prefix) + as_pg([f"{PGBIN}/pg_ctl", "-D", self.data,
                                    "-l", self.log, "-w", "-t", "300",
                                    "start"]),
              stdout=subprocess.DEVNULL)
        self.running = True

    def stop(self):
        """Fast shutdown (includes a checkpoint); immediate if that fails.
        Never raises."""
        if not self.running:
            return
        for mode in ("fast", "immediate"):
            r = subprocess.run(as_pg([f"{PGBIN}/pg_ctl", "-D", self.data,
                                      "-m", mode, "-w", "-t", "300", "stop"]),
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                break
        self.running = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def sql(self, query):
        """Runs one query; returns its rows as lists of strings."""
        r = subprocess.run(as_pg(["psql", "-h", self.sock, "-p",
                                  str(self.port), "-XAtq", "-F", "\t",
                                  "-c", query, "postgres"]),
                           check=True, capture_output=True, text=True)
        return [l.split("\t") for l in r.stdout.splitlines() if l]

    def pgbench(self, args):
        """Runs pgbench with args; returns {"tps", "latency_ms",
        "transactions", "progress": [(seconds, tps)]} (the last only with
        -P)."""
        r = subprocess.run(as_pg(["pgbench", "-h", self.sock, "-p",
                                  str(self.port)] + list(args) + ["postgres"]),
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pgbench {' '.join(args)} failed "
                               f"({r.returncode}): {r.stderr.strip()[-2000:]}")
        text = r.stdout + r.stderr

        def num(pattern):
            m = re.search(pattern, text)
            return float(m.group(1)) if m else None
        progress = [(float(m.group(1)), float(m.group(2))) for m in
                    re.finditer(r"progress: ([\d.]+) s, ([\d.]+) tps", text)]
        return {"tps": num(r"tps = ([\d.]+) \(without initial"),
                "latency_ms": num(r"latency average = ([\d.]+) ms"),
                "transactions": num(r"number of transactions actually "
                                    r"processed: (\d+)"),
                "progress": progress}

    def reset_io_stats(self):
        self.sql("SELECT pg_stat_reset_shared('wal'), "
                 "pg_stat_reset_shared('bgwriter'), pg_stat_reset()")

    def io_stats(self):
        """PostgreSQL's view of where its IO time went since
        reset_io_stats (needs track_io_timing and track_wal_io_timing):
        WAL writes and syncs, checkpoints, reads of relation blocks."""
        wal = self.sql("SELECT wal_records, wal_fpi, wal_bytes, wal_write, "
                       "wal_sync, wal_write_time, wal_sync_time "
                       "FROM pg_stat_wal")[0]
        bgw = self.sql("SELECT checkpoints_timed, checkpoints_req, "
                       "checkpoint_write_time, checkpoint_sync_time, "
                       "buffers_checkpoint, buffers_clean, buffers_backend, "
                       "buffers_backend_fsync FROM pg_stat_bgwriter")[0]
        db = self.sql("SELECT blks_read, blks_hit, blk_read_time, "
                      "blk_write_time FROM pg_stat_database "
                      "WHERE datname = 'postgres'")[0]
        names = (["wal_records", "wal_fpi", "wal_bytes", "wal_write",
                  "wal_sync", "wal_write_ms", "wal_sync_ms"] +
                 ["checkpoints_timed", "checkpoints_req",
                  "checkpoint_write_ms", "checkpoint_sync_ms",
                  "buffers_checkpoint", "buffers_clean", "buffers_backend",
                  "buffers_backend_fsync"] +
                 ["blks_read", "blks_hit", "blk_read_ms", "blk_write_ms"])
        return {k: float(v) for k, v in zip(names, wal + bgw + db)}
