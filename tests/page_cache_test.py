#!/usr/bin/env python3
"""The kernel's page cache over tierfs (issue 19). Opens without O_DIRECT go
through it, O_DIRECT opens keep direct IO, and a file open both ways at once
stays coherent (the contract in src/fuse/page_cache.h):

  * a shared writable mmap works: its stores are seen by another process's
    mapping and by read(), reach the engine on msync and on munmap, and
    survive a remount; a write() through another fd shows in the mapping;
  * direct and buffered IO mixed on one file across two fds read back the
    right bytes: a direct write replaces cached pages, a direct read sees a
    buffered write and stores still in a shared mapping (no msync), and
    while another process reads the file buffered in a loop, every direct
    write is seen by the next buffered read;
  * a 4 KiB file read 1,000 times (open/read/close each) costs the daemon at
    most 2 reads; a change made in the slow dir behind the mount is read at
    the next open;
  * an O_DIRECT open is still direct IO (a shared mmap of it fails with
    ENODEV) with parallel direct writes: 8 threads' 4 KiB writes, each held
    200 ms at the origin (tests/slow_write_preload.cc), finish together, not
    one after another.
Exit 77 without /dev/fuse.
"""
import errno
import mmap
import os
import subprocess
import sys
import threading
import time

from testlib import (BLOCK, MIB, TIERFS, read_direct, require_fuse, stats,
                     tier, write_direct)

PRELOAD = os.environ.get(
    "TIERFS_SLOW_WRITE_PRELOAD",
    os.path.join(os.path.dirname(TIERFS), "..", "tests",
                 "slow_write_preload.so"))


def check_mmap(t):
    path = os.path.join(t.mnt, "map.bin")
    size = 3 * BLOCK + 1000  # the last page is partial
    expect = bytearray(os.urandom(size))
    with open(path, "wb") as f:
        f.write(expect)
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, size, mmap.MAP_SHARED,
                      mmap.PROT_READ | mmap.PROT_WRITE)
        for off in (0, 4095, BLOCK - 10, 2 * BLOCK + 7, size - 100):
            data = os.urandom(100)
            m[off:off + 100] = data
            expect[off:off + 100] = data
        # One page cache: another process's mapping and read() see the
        # stores before any msync.
        child = subprocess.run(
            [sys.executable, "-c",
             "import mmap, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
             "m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)\n"
             "sys.stdout.buffer.write(m[:])\n", path],
            capture_output=True, check=True)
        assert child.stdout == expect, "another process's mapping differs"
        with open(path, "rb") as f:
            assert f.read() == expect, "read() does not see mapped stores"
        m.flush()  # msync: the stores go to the engine
        assert read_direct(path, 0, size) == expect, "msync'd stores lost"
        # A write() through another fd shows in the mapping.
        with open(path, "r+b") as f:
            f.seek(BLOCK + 5)
            f.write(b"W" * 300)
        expect[BLOCK + 5:BLOCK + 305] = b"W" * 300
        assert m[:] == expect, "the mapping misses a write()"
        # Stores left to munmap and close, no msync.
        m[2 * BLOCK:2 * BLOCK + 4096] = b"u" * 4096
        expect[2 * BLOCK:2 * BLOCK + 4096] = b"u" * 4096
        m.close()
    finally:
        os.close(fd)
    assert read_direct(path, 0, size) == expect, "stores lost at munmap"
    t.remount()
    with open(path, "rb") as f:
        assert f.read() == expect, "mapped stores lost over a remount"
    print("mmap MAP_SHARED: stores seen by other mappings, read(), direct "
          "reads and after a remount")


def pwrite_direct(fd, data, offset):
    buf = mmap.mmap(-1, len(data))
    buf.write(data)
    assert os.pwritev(fd, [buf], offset) == len(data)


def pread_direct(fd, size, offset):
    buf = mmap.mmap(-1, size)
    n = os.preadv(fd, [buf], offset)
    return bytes(buf[:n])


def check_mixed(t):
    path = os.path.join(t.mnt, "mixed.img")
    size = MIB
    expect = bytearray(os.urandom(size))
    with open(path, "wb") as f:
        f.write(expect)
    buffered = os.open(path, os.O_RDWR)
    direct = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        # A direct write replaces pages the buffered fd has cached.
        assert os.pread(buffered, size, 0) == expect
        new = os.urandom(BLOCK)
        pwrite_direct(direct, new, 2 * BLOCK)
        expect[2 * BLOCK:3 * BLOCK] = new
        assert os.pread(buffered, BLOCK, 2 * BLOCK) == new, \
            "buffered read after a direct write returned old bytes"
        # A direct read sees a buffered write (unaligned).
        os.pwrite(buffered, b"b" * 5000, 3 * BLOCK + 123)
        expect[3 * BLOCK + 123:3 * BLOCK + 5123] = b"b" * 5000
        assert pread_direct(direct, BLOCK, 3 * BLOCK) == \
            expect[3 * BLOCK:4 * BLOCK], "direct read missed a buffered write"
        # ... and stores still in a shared mapping of the buffered fd.
        m = mmap.mmap(buffered, size, mmap.MAP_SHARED,
                      mmap.PROT_READ | mmap.PROT_WRITE)
        m[5 * BLOCK + 10:5 * BLOCK + 2010] = b"m" * 2000
        expect[5 * BLOCK + 10:5 * BLOCK + 2010] = b"m" * 2000
        assert pread_direct(direct, BLOCK, 5 * BLOCK) == \
            expect[5 * BLOCK:6 * BLOCK], "direct read missed mapped stores"
        m.close()

        # Another process reads the same range buffered in a loop while
        # direct writes replace it: a page it read just before a write
        # landed must not outlive the write.
        region = 8 * BLOCK
        stop = os.path.join(t.work, "stop-reader")
        reader = subprocess.Popen(
            [sys.executable, "-c",
             "import os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
             "n = 0\n"
             "while not os.path.exists(sys.argv[2]):\n"
             "    os.pread(fd, 2 * 65536, int(sys.argv[3])); n += 1\n"
             "print(n)\n", path, stop, str(region)],
            stdout=subprocess.PIPE, text=True)
        try:
            rounds = 300
            for k in range(rounds):
                data = bytes([k % 251 + 1]) * (2 * BLOCK)
                pwrite_direct(direct, data, region)
                got = os.pread(buffered, 2 * BLOCK, region)
                assert got == data, f"round {k}: stale page after a direct write"
            expect[region:region + 2 * BLOCK] = data
        finally:
            open(stop, "w").close()
            reads = int(reader.communicate(timeout=30)[0])
        assert reads > 0
        assert os.pread(buffered, size, 0) == expect
        assert pread_direct(direct, size, 0) == expect
    finally:
        os.close(buffered)
        os.close(direct)
    # A direct write while no buffered open exists: the next buffered open
    # does not keep the old pages.
    with open(path, "rb") as f:
        assert f.read() == expect
    new = os.urandom(BLOCK)
    write_direct(path, 9 * BLOCK, new)
    expect[9 * BLOCK:10 * BLOCK] = new
    with open(path, "rb") as f:
        assert f.read() == expect, "a buffered open kept pages a direct " \
            "write replaced"
    print(f"direct + buffered on one file: coherent ({rounds} direct writes "
          f"raced by {reads} buffered reads of another process)")


def daemon_reads(mnt):
    s = stats(mnt)
    return s["read_hits"] + s["read_misses"]


def check_read_count(t):
    name = "small.txt"
    data = os.urandom(4096)
    # Made behind the mount: the kernel has no page of it yet.
    with open(os.path.join(t.slow, name), "wb") as f:
        f.write(data)
    path = os.path.join(t.mnt, name)
    before = daemon_reads(t.mnt)
    for _ in range(1000):
        with open(path, "rb") as f:
            assert f.read() == data
    served = daemon_reads(t.mnt) - before
    print(f"4 KiB file read 1,000 times (open/read/close): {served} read(s) "
          f"served by the daemon")
    assert served <= 2, f"{served} daemon reads for 1,000 cached reads"
    # Changed in the slow dir (same size): the next open reads it anew.
    time.sleep(0.05)  # a new mtime even on coarse clocks
    changed = os.urandom(4096)
    with open(os.path.join(t.slow, name), "r+b") as f:
        f.write(changed)
    with open(path, "rb") as f:
        assert f.read() == changed, "an open kept pages of a changed file"
    print("a change behind the mount is read at the next open")


def rewrite_page(path, stop, done):
    fd = os.open(path, os.O_WRONLY)
    try:
        v = 0
        while not stop.is_set():
            v += 1
            os.pwrite(fd, v.to_bytes(8, "little") * 1024, 0)
            done[0] = v
    finally:
        os.close(fd)


def check_open_beside_writes(prefix, env):
    """Opens while another open writes must not drop the pages: the kernel
    unlocks a written page before the write reaches the daemon, so a read
    that misses after the drop could fetch and keep the old bytes. In
    writethrough mode every write moves the origin's times, which made each
    open drop the cache; a reader saw a page older than a write that had
    returned before its read began (PostgreSQL: a duplicate key)."""
    with tier(prefix, args=("--mode", "writethrough"), env=env) as t:
        path = os.path.join(t.mnt, "hot.img")
        with open(path, "wb") as f:
            f.write(b"\0" * (1 << 20))
        stop, done = threading.Event(), [0]
        writer = threading.Thread(target=rewrite_page, args=(path, stop, done))
        writer.start()
        stale, reads, opens = [], 0, 0
        try:
            fd = os.open(path, os.O_RDONLY)
            deadline = time.time() + 8
            while time.time() < deadline and len(stale) < 3:
                os.close(os.open(path, os.O_RDONLY))  # may drop the cache
                opens += 1
                for _ in range(20):
                    before = done[0]
                    got = int.from_bytes(os.pread(fd, 8, 0), "little")
                    reads += 1
                    if got < before:
                        stale.append((got, before))
            os.close(fd)
        finally:
            stop.set()
            writer.join()
        assert not stale, (f"read a page older than a returned write "
                           f"(got, returned): {stale}")
        print(f"opens beside a writer: {opens} opens, {reads} reads, "
              f"{done[0]} writes, no stale page")


def check_direct_open(t):
    name = "slow-write.img"
    with open(os.path.join(t.slow, name), "wb") as f:
        f.truncate(MIB)
    path = os.path.join(t.mnt, name)
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        try:
            mmap.mmap(fd, MIB, mmap.MAP_SHARED,
                      mmap.PROT_READ | mmap.PROT_WRITE)
            raise AssertionError("an O_DIRECT open is not direct IO: its "
                                 "shared mmap worked")
        except OSError as e:
            assert e.errno == errno.ENODEV, e
        # Each write misses the cache, so the origin's 200 ms pwrite holds
        # it: together ~0.2 s, one after another >= 1.6 s.
        threads = [threading.Thread(target=pwrite_direct,
                                    args=(fd, bytes([i + 1]) * 4096,
                                          i * BLOCK + 4096))
                   for i in range(8)]
        start = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        took = time.monotonic() - start
    finally:
        os.close(fd)
    for i in range(8):
        assert read_direct(path, i * BLOCK + 4096, 4096) == \
            bytes([i + 1]) * 4096
    print(f"O_DIRECT open: direct IO (shared mmap: ENODEV); 8 parallel "
          f"200 ms writes took {took:.2f} s")
    assert took < 0.8, f"direct writes ran one after another ({took:.2f} s)"


def main():
    require_fuse()
    if not os.path.exists(PRELOAD):
        print(f"SKIP: {PRELOAD} is not built")
        sys.exit(77)
    env = dict(os.environ, LD_PRELOAD=os.path.realpath(PRELOAD))
    with tier("tierfs-pagecache-", env=env) as t:
        check_read_count(t)
        check_direct_open(t)
        check_mixed(t)
        check_mmap(t)
    check_open_beside_writes("tierfs-pagecache-", env)
    print("page_cache: all checks passed")


if __name__ == "__main__":
    main()
