#!/usr/bin/env python3
"""SQLite in WAL mode on a tierfs mount, with the real sqlite3 client
(issue 19: WAL needs a shared writable mmap of the -shm file, which direct-IO
opens refused, so every WAL transaction failed with "disk I/O error").

  * 2 writer and 4 reader processes at once, 10,000 write transactions in
    all; each transaction adds two rows (parts 0 and 1). Every reader query
    (its own snapshot) sees each writer's last 10 transactions whole and
    without a gap, and no writer's last transaction ever goes back.
    Afterwards (and after a full checkpoint) integrity_check is ok, the
    table has 20,000 rows, and each writer's 5,000 transactions are there.
  * kill -9 of a writer in the middle of a large transaction that has
    already spilled pages into the WAL, while another writer, which had
    committed before, waits for the lock: that writer goes on and commits
    more transactions, integrity_check is ok, nothing of
    the killed transaction is visible, and every committed row is there.
synchronous=NORMAL (WAL's usual setting: commits are not fsynced one by
one, checkpoints are) keeps the run short; the kill -9 is of the client, so
the data it wrote is in the daemon whatever the fsyncs.

The fast and slow dirs are on /dev/shm (tmpfs, where the stores fall back to
buffered IO) when it exists: what is tested is the FUSE path, and on this
VM's disk each small write costs the engine an O_DIRECT read-modify-write
(about 0.25 ms), so 10,000 transactions take ~30 s instead of ~5 s. `--disk`
runs it in $TMPDIR instead (by hand).
Exit 77 without /dev/fuse or sqlite3 (scripts/install-deps installs it).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from testlib import require_fuse, tier, wait_for

TRANSACTIONS = 10_000
WRITERS = 2
READERS = 4


def sqlite(db, script, check=True):
    r = subprocess.run(["sqlite3", "-bail", db], input=script,
                       capture_output=True, text=True)
    if check:
        assert r.returncode == 0, (script[:200], r.returncode, r.stderr)
    return r.stdout


class Client:
    """A sqlite3 process fed `script` on stdin from a thread of its own;
    its output is kept in memory, its stderr in a temp file, so no pipe
    ever fills up."""

    def __init__(self, db, script=None):
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(["sqlite3", "-bail", db],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        self.out = []
        self.drain = threading.Thread(target=self._drain)
        self.drain.start()
        if script is not None:
            self.feeder = threading.Thread(target=self.feed, args=(script,))
            self.feeder.start()

    def _drain(self):
        for line in self.proc.stdout:
            self.out.append(line)

    def feed(self, script, close=True):
        try:
            self.proc.stdin.write(script)
            self.proc.stdin.flush()
            if close:
                self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # the client failed: wait() reports it

    def wait(self, timeout=120):
        self.proc.wait(timeout=timeout)
        self.drain.join()
        self.err.seek(0)
        return self.proc.returncode, self.err.read()


# Two rows per transaction in one table: both land in the same page most of
# the time, so a transaction costs the WAL about one frame (two writes).
SCHEMA = ("PRAGMA journal_mode=WAL;\n"
          "CREATE TABLE t(w INTEGER, i INTEGER, part INTEGER, pad BLOB, "
          "PRIMARY KEY(w, i, part)) WITHOUT ROWID;\n")


# Checkpoints every 4,000 frames (16 MiB of WAL) instead of 1,000: a few
# still run during the test, each copying fewer pages written twice.
WRITER_SETUP = (".timeout 30000\nPRAGMA synchronous=NORMAL;\n"
                "PRAGMA wal_autocheckpoint=4000;\n")


def transaction(w, i):
    return (f"BEGIN IMMEDIATE; INSERT INTO t VALUES({w}, {i}, 0, "
            f"randomblob(150)); INSERT INTO t VALUES({w}, {i}, 1, "
            f"randomblob(150)); COMMIT;\n")


def writer_script(w, first, count):
    return WRITER_SETUP + "".join(transaction(w, i)
                                  for i in range(first, first + count))


# One statement, one snapshot: each writer's last transaction, and how many
# rows its last 10 transactions have (a few index probes, no table scan).
READER_QUERY = ("SELECT m0, (SELECT count(*) FROM t WHERE w = 0 AND i > m0 - 10), "
                "m1, (SELECT count(*) FROM t WHERE w = 1 AND i > m1 - 10) "
                "FROM (SELECT "
                "(SELECT coalesce(max(i), -1) FROM t WHERE w = 0) AS m0, "
                "(SELECT coalesce(max(i), -1) FROM t WHERE w = 1) AS m1);\n")


class Reader:
    """A sqlite3 client fed one query every `period` seconds until
    finish(); checks what each query saw."""

    def __init__(self, db, period):
        self.client = Client(db)
        self.client.feed(".timeout 30000\n", close=False)
        self.period = period
        self.stop = threading.Event()
        self.feeder = threading.Thread(target=self._feed)
        self.feeder.start()

    def _feed(self):
        while not self.stop.wait(self.period):
            self.client.feed(READER_QUERY, close=False)
        self.client.feed("", close=True)

    def finish(self):
        self.stop.set()
        self.feeder.join()
        rc, err = self.client.wait(timeout=60)
        assert rc == 0, err
        last = [-1, -1]
        rows = [tuple(map(int, line.split("|"))) for line in self.client.out]
        for row in rows:
            for w in range(WRITERS):
                m, n = row[2 * w], row[2 * w + 1]
                assert n == 2 * min(10, m + 1), \
                    f"writer {w}: {n} rows in its last 10 transactions up " \
                    f"to {m} (half a transaction, or a gap)"
                assert m >= last[w], \
                    f"writer {w}'s last transaction went back: {last[w]} -> {m}"
                last[w] = m
        return rows


def check_concurrent(db):
    sqlite(db, SCHEMA)
    assert sqlite(db, "PRAGMA journal_mode;").strip() == "wal"
    start = time.monotonic()
    readers = [Reader(db, 0.01) for _ in range(READERS)]
    try:
        per_writer = TRANSACTIONS // WRITERS
        writers = [Client(db, writer_script(w, 0, per_writer))
                   for w in range(WRITERS)]
        for c in writers:
            rc, err = c.wait()
            assert rc == 0, err
    finally:
        seen = [r.finish() for r in readers]
    took = time.monotonic() - start
    queries = sum(len(s) for s in seen)
    during = sum(1 for s in seen for row in s
                 if 0 <= row[0] < TRANSACTIONS // WRITERS - 1)
    assert during > 0, "no reader query ran while the writers wrote"
    # Every transaction whole, and each writer's without a gap.
    out = sqlite(db, "PRAGMA wal_checkpoint(TRUNCATE);\n"
                     "PRAGMA integrity_check;\n"
                     "SELECT count(*), total(part) FROM t;\n"
                     "SELECT w, count(DISTINCT i), max(i) FROM t "
                     "GROUP BY w;\n").split("\n", 1)[1]
    per_writer = TRANSACTIONS // WRITERS
    assert out.split() == ["ok", f"{2 * TRANSACTIONS}|{TRANSACTIONS}.0"] + [
        f"{w}|{per_writer}|{per_writer - 1}" for w in range(WRITERS)], out
    print(f"WAL: {WRITERS} writers x {TRANSACTIONS // WRITERS} transactions "
          f"with {READERS} readers ({queries} queries, {during} during the "
          f"writes) in {took:.1f} s; integrity_check ok, "
          f"{2 * TRANSACTIONS} rows")


class PacedWriter:
    """A sqlite3 client committing one transaction of writer `w` every
    `period` seconds until stop()."""

    def __init__(self, db, w, first, period):
        self.client = Client(db)
        self.client.feed(WRITER_SETUP, close=False)
        self.w, self.first, self.period = w, first, period
        self.sent = 0
        self.stopping = threading.Event()
        self.feeder = threading.Thread(target=self._feed)
        self.feeder.start()

    def _feed(self):
        while not self.stopping.wait(self.period):
            self.client.feed(transaction(self.w, self.first + self.sent),
                             close=False)
            self.sent += 1

    def stop(self):
        """Returns (exit status, stderr) of the client."""
        self.stopping.set()
        self.feeder.join()
        self.client.feed("", close=True)
        return self.client.wait()


def check_writer_crash(db, wal):
    start = time.monotonic()
    sqlite(db, "CREATE TABLE c(x INTEGER, pad BLOB);\n")
    first = TRANSACTIONS  # writer 1's transactions from here on
    # .timeout: a WAL reader may meet a checkpoint's lock (SQLITE_BUSY).
    committed = lambda: int(sqlite(db, f".timeout 30000\nSELECT count(*) "
                                       f"FROM t WHERE w = 1 AND i >= {first};"
                                       )) // 2
    small = PacedWriter(db, 1, first, 0.005)
    try:
        wait_for(lambda: committed() >= 20, 30, "the small writer's commits")
        size0 = os.path.getsize(wal)
        # A transaction far larger than a 40-page cache spills pages into
        # the WAL long before it commits; meanwhile the small writer waits
        # for the lock.
        big = Client(db, ".timeout 30000\nPRAGMA cache_size=40;\nBEGIN;\n"
                         "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL "
                         "SELECT x + 1 FROM n WHERE x < 5000000) "
                         "INSERT INTO c SELECT x, randomblob(300) FROM n;\n"
                         "COMMIT;\n")
        try:
            wait_for(lambda: os.path.getsize(wal) > size0 + (4 << 20), 20,
                     "the big transaction to spill into the WAL")
            assert big.proc.poll() is None, "the big transaction ended"
            spilled = os.path.getsize(wal)
            big.proc.send_signal(signal.SIGKILL)
        finally:
            if big.proc.poll() is None:
                big.proc.kill()
            big.wait()
        at_kill = committed()
        wait_for(lambda: committed() >= at_kill + 20, 30,
                 "the small writer to go on after the kill")
    finally:
        rc, err = small.stop()
    assert rc == 0, err
    out = sqlite(db, "PRAGMA integrity_check;\nSELECT count(*) FROM c;\n"
                     f"SELECT count(*), count(DISTINCT i), "
                     f"coalesce(max(i) + 1, {first}) - {first} "
                     f"FROM t WHERE w = 1 AND i >= {first};\n")
    lines = out.split()
    assert lines[0] == "ok", out
    assert lines[1] == "0", f"{lines[1]} rows of the killed transaction"
    n = small.sent
    assert lines[2] == f"{2 * n}|{n}|{n}", (out, n)
    print(f"kill -9 of a writer inside a transaction spilled into the WAL "
          f"(WAL {spilled >> 20} MiB) while another waited for the lock: "
          f"recovered, integrity_check ok, nothing of it visible, all {n} "
          f"transactions of the other writer there ({at_kill} before the "
          f"kill) ({time.monotonic() - start:.1f} s)")


def main():
    require_fuse()
    if shutil.which("sqlite3") is None:
        print("SKIP: sqlite3 is not installed (scripts/install-deps)")
        sys.exit(77)
    base = None
    if "--disk" not in sys.argv[1:] and os.path.isdir("/dev/shm") and \
            os.access("/dev/shm", os.W_OK):
        base = "/dev/shm"
    with tier("tierfs-sqlite-", cache_size="64M", base_dir=base) as t:
        db = os.path.join(t.mnt, "t.db")
        check_concurrent(db)
        check_writer_crash(db, db + "-wal")
    print("sqlite: all checks passed")


if __name__ == "__main__":
    main()
