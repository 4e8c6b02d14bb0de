#!/usr/bin/env python3
"""A VM-style end-to-end run (issue 7): a raw disk image on the mount gets an
ext4 filesystem and files through a loop device, the way a guest would fill
its disk; tierfs is unmounted and mounted again; e2fsck -fn is clean and every
file's checksum matches.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIERFS = os.environ.get("TIERFS_BIN", os.path.join(ROOT, "build/cli/tierfs"))
MIB = 1 << 20


def sh(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, **kw)


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    for tool in ("mkfs.ext4", "e2fsck", "losetup"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} is not installed")
            return 77
    work = tempfile.mkdtemp(prefix="tierfs-vm-")
    fast, slow, mnt, guest = (os.path.join(work, d)
                              for d in ("fast", "slow", "mnt", "guest"))
    for d in (fast, slow, mnt, guest):
        os.makedirs(d)
    mount = [TIERFS, "mount", mnt, "--fast", fast, "--slow", slow,
             "--cache-size", "64M"]
    mounted = loop = guest_mounted = None
    try:
        sh(*mount)
        mounted = True
        image = os.path.join(mnt, "vm1.img")
        sh("truncate", "-s", "256M", image)
        sh("mkfs.ext4", "-q", "-F", image)
        r = subprocess.run(["losetup", "--find", "--show", "--direct-io=on",
                            image], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"SKIP: no loop device: {r.stderr.strip()}")
            return 77
        loop = r.stdout.strip()
        sh("mount", loop, guest)
        guest_mounted = True
        sums = {}
        for i in range(40):
            data = os.urandom((i % 7 + 1) * 256 * 1024 + i * 513)
            name = f"file{i:02d}.bin"
            with open(os.path.join(guest, name), "wb") as f:
                f.write(data)
            sums[name] = hashlib.sha256(data).hexdigest()
        os.makedirs(os.path.join(guest, "dir/sub"))
        with open(os.path.join(guest, "dir/sub/note.txt"), "w") as f:
            f.write("hello from the guest\n")
        sh("umount", guest)
        guest_mounted = False
        sh("losetup", "-d", loop)
        loop = None
        sh(TIERFS, "umount", mnt)
        mounted = False
        sh(*mount)
        mounted = True
        sh("e2fsck", "-fn", image)
        r = subprocess.run(["losetup", "--find", "--show", "-r", image],
                           capture_output=True, text=True, check=True)
        loop = r.stdout.strip()
        sh("mount", "-o", "ro", loop, guest)
        guest_mounted = True
        for name, digest in sums.items():
            with open(os.path.join(guest, name), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == digest, name
        with open(os.path.join(guest, "dir/sub/note.txt")) as f:
            assert f.read() == "hello from the guest\n"
        print(f"PASS: e2fsck clean, {len(sums)} checksums match after remount")
        return 0
    finally:
        if guest_mounted:
            subprocess.run(["umount", "-l", guest])
        if loop:
            subprocess.run(["losetup", "-d", loop])
        if mounted:
            subprocess.run([TIERFS, "umount", mnt])
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
