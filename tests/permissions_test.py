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


def mode_of(path):
    """The mode bits as `stat -c %a` sees them: a statx for the mode alone,
    answered from the kernel's attribute cache while it is valid."""
    r = subprocess.run(["stat", "-c", "%a", path], capture_output=True,
                       text=True, check=True)
    return int(r.stdout, 8)


def check_setid_cleared(m, shared):
    """A write or truncate by a user without CAP_FSETID clears S_ISUID, and
    S_ISGID when group-executable or the writer is not in the file's group,
    as the kernel does on a local disk (chmod/12.t); root's write keeps
    them. For a buffered write the kernel clears S_ISUID, and S_ISGID if
    group-executable (FUSE's rule); the rest, and everything for a direct
    (O_DIRECT) write, is the daemon's (ClearSetIdOnWrite)."""
    direct = "dd if=/dev/zero of={} bs=4096 count=1 oflag=direct " \
             "conv=notrunc status=none"
    cases = [  # name, mode, command run by nobody (None: root appends)
        ("setid-write", 0o6777, "printf x >> {}", 0o777),
        ("setgid-nogroup-x", 0o2767, "printf x >> {}", 0o767),
        ("setid-direct-write", 0o6777, direct, 0o777),
        ("setgid-nogroup-x-direct", 0o2767, direct, 0o767),
        ("setid-truncate", 0o6777, "truncate -s 0 {}", 0o777),
        ("setid-root-write", 0o6777, None, 0o6777),
    ]
    for name, mode, cmd, want in cases:
        path = m("shared", name)
        with open(path, "w") as f:
            f.write("data")
        os.chmod(path, mode)
        assert mode_of(path) == mode, name
        if cmd is None:
            with open(path, "a") as f:
                f.write("root")
        else:
            r = as_nobody("sh", "-c", cmd.format(path))
            assert r.returncode == 0, (name, r)
        got = mode_of(path)
        assert got == want, f"{name}: mode {got:o} through the mount, " \
                            f"want {want:o}"
        got = os.stat(os.path.join(shared, name)).st_mode & 0o7777
        assert got == want, f"{name}: mode {got:o} in the slow dir"


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
        check_setid_cleared(m, shared)
        print("PASS")
        return 0
    finally:
        if mounted:
            subprocess.run([TIERFS, "umount", mnt])
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
