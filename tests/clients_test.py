#!/usr/bin/env python3
"""Real clients through a real mount (issue 3): fio write+verify of a 256 MiB
file with O_DIRECT and buffered IO, qemu-img/qemu-io on qcow2 and raw images
(including unaligned 512-byte IO), and namespace operations that must behave
exactly like the slow dir; then the same (fio direct only) on a --no-cache
mount.
"""
import errno
import os
import shutil
import stat
import subprocess
import sys

from testlib import MIB, TIERFS, ctl, stats, tier


def sh(*cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(list(cmd), check=True, **kw)


def fio_verify(path, direct):
    sh("fio", "--name=verify", f"--filename={path}", "--size=256M",
       f"--direct={1 if direct else 0}", "--ioengine=libaio" if direct else
       "--ioengine=psync", "--iodepth=16" if direct else "--iodepth=1",
       "--rw=randwrite", "--bs=4k", "--verify=crc32c", "--verify_fatal=1",
       "--do_verify=1", "--io_size=64M", "--output-format=terse",
       "--verify_state_save=0", stdout=subprocess.DEVNULL)
    sh("fio", "--name=seq", f"--filename={path}", "--size=256M",
       f"--direct={1 if direct else 0}", "--ioengine=libaio", "--iodepth=4",
       "--rw=write", "--bs=1M", "--verify=crc32c", "--verify_fatal=1",
       "--do_verify=1", "--output-format=terse", "--verify_state_save=0",
       stdout=subprocess.DEVNULL)


def test_fio(mnt, slow, modes=(True, False)):
    if shutil.which("fio") is None:
        print("fio: skipped (not installed)")
        return
    for direct in modes:
        name = f"fio-{'direct' if direct else 'buffered'}.dat"
        fio_verify(os.path.join(mnt, name), direct)
        # Byte-identical in the slow dir once the daemon has it (writeback
        # happens on unmount at the latest; compare through the mount now
        # and the slow dir after the unmount in main()).
    print("fio verify (%s): ok" %
          ", ".join("direct" if d else "buffered" for d in modes))


def test_qemu(mnt):
    if shutil.which("qemu-img") is None or shutil.which("qemu-io") is None:
        print("qemu: skipped (not installed)")
        return
    q = os.path.join(mnt, "disk.qcow2")
    sh("qemu-img", "create", "-q", "-f", "qcow2", q, "1G")
    sh("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 4M",
       "-c", "write -P 0xcd 100M 1M", q, stdout=subprocess.DEVNULL)
    out = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0xab 0 4M",
                          "-c", "read -P 0xcd 100M 1M", q],
                         capture_output=True, text=True, check=True).stdout
    assert "Pattern verification failed" not in out, out
    sh("qemu-img", "check", "-q", q)
    raw = os.path.join(mnt, "disk.raw")
    sh("qemu-img", "create", "-q", "-f", "raw", raw, "64M")
    # -n: cache=none (O_DIRECT); 512-byte writes at odd sectors.
    cmds = []
    for i, off in enumerate((512, 4096 + 512, 65536 - 512, 3 * MIB + 1536)):
        cmds += ["-c", f"write -P {0x10 + i} {off} 512"]
    sh("qemu-io", "-n", "-f", "raw", *cmds, raw, stdout=subprocess.DEVNULL)
    cmds = []
    for i, off in enumerate((512, 4096 + 512, 65536 - 512, 3 * MIB + 1536)):
        cmds += ["-c", f"read -P {0x10 + i} {off} 512"]
    cmds += ["-c", "read -P 0 0 512", "-c", "read -P 0 1024 3072"]
    out = subprocess.run(["qemu-io", "-n", "-f", "raw", *cmds, raw],
                         capture_output=True, text=True, check=True).stdout
    assert "Pattern verification failed" not in out, out
    print("qemu-img/qemu-io: ok")


def test_namespace(mnt, slow):
    m = lambda *p: os.path.join(mnt, *p)
    s = lambda *p: os.path.join(slow, *p)
    with open(m("a.txt"), "w") as f:
        f.write("hello")
    assert open(s("a.txt")).read() == "hello"
    # truncate grow and shrink
    os.truncate(m("a.txt"), 100000)
    assert os.path.getsize(s("a.txt")) == 100000
    assert open(m("a.txt"), "rb").read()[5:] == b"\0" * (100000 - 5)
    os.truncate(m("a.txt"), 3)
    assert open(m("a.txt")).read() == "hel" == open(s("a.txt")).read()
    # rename, including over an existing file, and RENAME_NOREPLACE
    with open(m("b.txt"), "w") as f:
        f.write("bee")
    os.rename(m("a.txt"), m("c.txt"))
    assert not os.path.exists(s("a.txt")) and os.path.exists(s("c.txt"))
    os.rename(m("b.txt"), m("c.txt"))
    assert open(s("c.txt")).read() == "bee"
    with open(m("d.txt"), "w") as f:
        f.write("dee")
    r = subprocess.run(["mv", "-n", m("d.txt"), m("c.txt")])
    assert open(m("c.txt")).read() == "bee"
    # unlink while open: the open file still reads
    fd = os.open(m("c.txt"), os.O_RDONLY)
    os.unlink(m("c.txt"))
    assert not os.path.exists(s("c.txt"))
    assert os.pread(fd, 3, 0) == b"bee"
    os.close(fd)
    # hard link and symlink
    os.link(m("d.txt"), m("e.txt"))
    assert os.stat(s("d.txt")).st_ino == os.stat(s("e.txt")).st_ino
    assert os.stat(m("d.txt")).st_nlink == 2
    os.symlink("d.txt", m("sym"))
    assert os.readlink(m("sym")) == "d.txt" == os.readlink(s("sym"))
    assert open(m("sym")).read() == "dee"
    # mkdir / rmdir
    os.makedirs(m("dir", "sub"))
    try:
        os.rmdir(m("dir"))
        raise AssertionError("rmdir of a non-empty dir succeeded")
    except OSError as e:
        assert e.errno == errno.ENOTEMPTY
    os.rmdir(m("dir", "sub"))
    os.rmdir(m("dir"))
    assert not os.path.exists(s("dir"))
    # chmod / chown / utime
    os.chmod(m("d.txt"), 0o640)
    assert stat.S_IMODE(os.stat(s("d.txt")).st_mode) == 0o640
    os.chown(m("d.txt"), 1234, 5678)
    st = os.stat(s("d.txt"))
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.utime(m("d.txt"), (1000000000, 1200000000))
    assert os.stat(s("d.txt")).st_mtime == 1200000000
    # xattrs
    os.setxattr(m("d.txt"), "user.tierfs", b"value")
    assert os.getxattr(s("d.txt"), "user.tierfs") == b"value"
    assert "user.tierfs" in os.listxattr(m("d.txt"))
    os.removexattr(m("d.txt"), "user.tierfs")
    assert "user.tierfs" not in os.listxattr(s("d.txt"))
    # statfs
    assert os.statvfs(mnt).f_blocks == os.statvfs(slow).f_blocks
    # readdir of many entries
    os.makedirs(m("many"))
    for i in range(2000):
        open(m("many", f"f{i:04d}"), "w").close()
    assert sorted(os.listdir(m("many"))) == sorted(os.listdir(s("many")))
    assert len(os.listdir(m("many"))) == 2000
    # punch hole, SEEK_DATA / SEEK_HOLE, O_APPEND
    with open(m("sparse"), "wb") as f:
        f.write(os.urandom(4 * MIB))
    fd = os.open(m("sparse"), os.O_RDWR)
    os.posix_fallocate(fd, 0, 4 * MIB)
    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long,
                               ctypes.c_long]
    assert libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          MIB, 2 * MIB) == 0
    assert os.pread(fd, 2 * MIB, MIB) == b"\0" * (2 * MIB)
    assert os.lseek(fd, MIB, os.SEEK_HOLE) == MIB
    assert os.lseek(fd, MIB, os.SEEK_DATA) == 3 * MIB
    os.close(fd)
    with open(m("log"), "w") as f:
        f.write("one\n")
    with open(m("log"), "a") as f:
        f.write("two\n")
    assert open(s("log")).read() == "one\ntwo\n"
    # unaligned pwrite at odd offsets across 4k boundaries vs a shadow
    import random
    rng = random.Random(3)
    shadow = bytearray(os.urandom(300000))
    with open(m("odd"), "wb") as f:
        f.write(shadow)
    fd = os.open(m("odd"), os.O_RDWR)
    for _ in range(300):
        off = rng.randrange(0, 290000)
        data = os.urandom(rng.randrange(1, 9000))
        data = data[:len(shadow) - off]
        os.pwrite(fd, data, off)
        shadow[off:off + len(data)] = data
    assert os.pread(fd, len(shadow) + 10, 0) == bytes(shadow)
    os.close(fd)
    print("namespace ops: ok")
    # Cached (dirty) blocks reach the slow dir by unmount at the latest.
    return {"odd": bytes(shadow)}


def check_uncached(mnt):
    """A --no-cache mount still reports its IO, and refuses to cache."""
    s = stats(mnt)
    assert s["mode"] == "passthrough" and s["cache_blocks"] == 0, s
    assert s["bypassed"] > 0 and s["read_hits"] == 0, s
    r = ctl(mnt, "set", "mode", "writeback")
    assert r.returncode != 0 and "no cache" in r.stderr, r
    print("--no-cache stats and refusal: ok")


def run_mount(extra, direct_only):
    """One mount (tierfs mount ... EXTRA) through every client; then the
    slow dir alone must show what the mount showed."""
    print("+ tierfs mount", *extra, flush=True)
    with tier("tierfs-clients-", cache_size="128M", args=extra) as t:
        shown = test_namespace(t.mnt, t.slow)
        test_qemu(t.mnt)
        test_fio(t.mnt, t.slow, (True,) if direct_only else (True, False))
        if "--no-cache" in extra:
            check_uncached(t.mnt)
        for name in ("fio-direct.dat", "fio-buffered.dat"):
            if os.path.exists(os.path.join(t.mnt, name)):
                with open(os.path.join(t.mnt, name), "rb") as f:
                    shown[name] = f.read()
        # A plain umount keeps dirty blocks in the cache (they are the newest
        # data); --flush writes them back so the slow dir alone has it all.
        sh(TIERFS, "umount", "--flush", t.mnt)
        assert t.daemon.wait(timeout=60) == 0, "daemon exit status"
        t.daemon = None
        for name, data in shown.items():
            with open(os.path.join(t.slow, name), "rb") as f:
                assert f.read() == data, f"{name}: slow dir differs"


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    run_mount([], direct_only=False)
    # --no-cache: the same engine path in passthrough, every request
    # forwarded whole to the slow dir.
    print("--- tierfs mount --no-cache")
    run_mount(["--no-cache"], direct_only=True)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
