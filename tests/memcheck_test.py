#!/usr/bin/env python3
"""The daemon under valgrind's memcheck: FUSE requests in the ways clients
send them, and no invalid read or write of the daemon's memory.

The unit tests run under ASan, but the daemon's FUSE layer only runs in
these integration tests, and some of its memory errors are writes made by
uninstrumented code (libpthread unlocking a mutex in freed memory), which
ASan does not see. memcheck does, and it slows the daemon enough to widen
the races behind them. Covered:

  * directory handles read by several threads while others open and close
    them (readdir's reply raced its release: the lock was let go after the
    reply, when RELEASEDIR could have freed the handle);
  * the clients test's namespace ops (create, rename, links, unlink while
    open, xattrs, a 2,000-entry readdir, punch and SEEK_DATA);
  * data through buffered and O_DIRECT opens, truncate, fsync, a remount
    that loads the cache's metadata, and the control socket (stats,
    flush).

Passes when valgrind reports 0 errors and the daemon exits 0 after a clean
unmount. Exit 77 without /dev/fuse or valgrind.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import threading

import clients_test
from testlib import (BLOCK, MIB, TIERFS, ctl, read_direct, require_fuse, stats,
                     tier, write_direct)


def directory_races(mnt):
    """Threads list a directory (readdir and readdirplus, each an
    opendir/readdir/releasedir) while the listing changes."""
    d = os.path.join(mnt, "listing")
    os.makedirs(d)
    for i in range(300):
        open(os.path.join(d, f"f{i:03d}"), "w").close()
    errors = []

    def lister(n):
        try:
            for _ in range(n):
                assert len(os.listdir(d)) >= 300
                with os.scandir(d) as it:
                    for e in it:
                        try:
                            e.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            assert e.name.startswith("churn"), e.name
        except Exception as e:  # reported by the main thread
            errors.append(e)

    def churner(n):
        try:
            for i in range(n):
                p = os.path.join(d, f"churn{i % 7}")
                open(p, "w").close()
                os.unlink(p)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=lister, args=(8,)) for _ in range(4)]
    threads.append(threading.Thread(target=churner, args=(100,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    print("directory races: ok", flush=True)


def data_ops(t):
    """Buffered and direct IO, truncate, fsync, a remount that loads the
    cache's metadata, and the control socket."""
    mnt, slow = t.mnt, t.slow
    path = os.path.join(mnt, "data.img")
    blob = os.urandom(4 * BLOCK)
    with open(path, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    assert read_direct(path, 0, 4 * BLOCK) == blob
    fresh = os.urandom(BLOCK)
    write_direct(path, BLOCK, fresh, sync=True)
    expect = blob[:BLOCK] + fresh + blob[2 * BLOCK:]
    with open(path, "rb") as f:
        assert f.read() == expect
    os.truncate(path, 3 * BLOCK + 100)
    expect = expect[:3 * BLOCK + 100]
    assert read_direct(path, 0, 4 * BLOCK)[:len(expect)] == expect
    t.remount()  # the cached blocks come back from the metadata
    assert stats(mnt)["used_blocks"] > 0
    assert read_direct(path, 0, 4 * BLOCK)[:len(expect)] == expect
    s = stats(mnt)
    assert s["read_hits"] + s["read_misses"] > 0, s
    r = ctl(mnt, "flush", "--wait")
    assert r.returncode == 0, r
    with open(os.path.join(slow, "data.img"), "rb") as f:
        assert f.read() == expect
    print("data ops: ok", flush=True)


def main():
    require_fuse()
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("SKIP: valgrind is missing")
        return 77
    # One log per daemon (%p): the remount starts a second one.
    logs = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                        f"tierfs-memcheck-{os.getpid()}")
    wrapper = [valgrind, "--tool=memcheck", "--error-exitcode=99",
               f"--log-file={logs}.%p.log"]
    try:
        with tier("tierfs-memcheck-", cache_size=f"{16 * MIB}",
                  wrapper=wrapper) as t:
            directory_races(t.mnt)
            clients_test.test_namespace(t.mnt, t.slow)
            data_ops(t)
            subprocess.run([TIERFS, "umount", t.mnt], check=True,
                           capture_output=True)
            status = t.daemon.wait(timeout=120)
            t.daemon = None
        reports = []
        for path in sorted(glob.glob(logs + ".*.log")):
            with open(path) as f:
                reports.append(f.read())
        assert len(reports) == 2, f"{len(reports)} valgrind logs, wanted 2"
        errors = 0
        for report in reports:
            m = re.search(r"ERROR SUMMARY: (\d+) errors", report)
            assert m is not None, "no valgrind summary:\n" + report[-2000:]
            errors += int(m.group(1))
            if int(m.group(1)) != 0:
                first = report.find("Invalid")
                print(report[max(first, 0):][:6000])
        assert errors == 0 and status == 0, (
            f"valgrind: {errors} errors, daemon exit status {status}")
        print(f"valgrind: 0 errors in {len(reports)} daemons, "
              f"daemon exit status {status}")
    finally:
        for path in glob.glob(logs + ".*.log"):
            os.unlink(path)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
