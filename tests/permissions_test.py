#!/usr/bin/env python3
"""Permissions through an allow_other mount (DESIGN.md "Security"): an
unprivileged user can do through the mount exactly what the slow dir's
permissions allow, and files it creates are its own in the slow dir.
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIERFS = os.environ.get("TIERFS_BIN", os.path.join(ROOT, "build/cli/tierfs"))


def as_nobody(*cmd):
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                           "--clear-groups", *cmd], capture_output=True,
                          text=True)


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        print("SKIP: needs root and setpriv")
        return 77
    nobody = pwd.getpwnam("nobody")
    work = tempfile.mkdtemp(prefix="tierfs-perm-")
    os.chmod(work, 0o755)
    fast, slow, mnt = (os.path.join(work, d) for d in ("fast", "slow", "mnt"))
    for d in (fast, slow, mnt):
        os.makedirs(d)
    os.chmod(slow, 0o755)
    secret = os.path.join(slow, "secret")
    with open(secret, "w") as f:
        f.write("root only")
    os.chmod(secret, 0o600)
    public = os.path.join(slow, "public")
    with open(public, "w") as f:
        f.write("everyone reads")
    os.chmod(public, 0o644)
    shared = os.path.join(slow, "shared")
    os.makedirs(shared)
    os.chmod(shared, 0o1777)
    mounted = False
    try:
        subprocess.run([TIERFS, "mount", mnt, "--fast", fast, "--slow", slow,
                        "-o", "allow_other"], check=True)
        mounted = True
        m = lambda *p: os.path.join(mnt, *p)
        r = as_nobody("cat", m("secret"))
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        r = as_nobody("cat", m("public"))
        assert r.returncode == 0 and r.stdout == "everyone reads", r
        r = as_nobody("sh", "-c", f"echo x >> {m('public')}")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        r = as_nobody("touch", m("new-in-root-dir"))
        assert r.returncode != 0, r
        assert not os.path.exists(os.path.join(slow, "new-in-root-dir"))
        r = as_nobody("sh", "-c", f"echo mine > {m('shared', 'mine')} && "
                      f"mkdir {m('shared', 'dir')}")
        assert r.returncode == 0, r
        for name in ("mine", "dir"):
            st = os.stat(os.path.join(shared, name))
            assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), (
                name, st.st_uid, st.st_gid)
        r = as_nobody("rm", "-f", m("secret"))
        assert r.returncode != 0 and os.path.exists(secret), r
        print("PASS")
        return 0
    finally:
        if mounted:
            subprocess.run([TIERFS, "umount", mnt])
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
