#!/usr/bin/env python3
"""No way out of the slow dir through the mount (DESIGN.md "Security").

The daemon runs as root behind an allow_other mount; the question is
whether an unprivileged user (nobody) can make it touch anything outside
the slow dir. Symlinks are resolved by the kernel on the caller's side
(with the caller's credentials), `..` by the kernel's path walk, so the
daemon must (a) present symlinks as symlinks, never their targets, and
(b) resolve every name relative to the directory fd it already holds
(*at() + O_NOFOLLOW), never by path. Checks, as nobody unless noted:

  * every symlink (absolute, relative, to a directory, dangling) is lstat'ed
    as a symlink with its exact target text; O_NOFOLLOW open gives ELOOP;
  * reading a root-only file outside through a symlink (file or directory
    link) is refused; a relative link resolves relative to the mount, not
    to the slow dir (root gets ENOENT too);
  * creating files through symlinks to a root-only dir, or through a
    dangling symlink, is refused and creates nothing; through a symlink to
    a world-writable dir it works and the file is nobody's (the kernel
    created it, not the root daemon);
  * `..` walks the mount's tree: mnt/sub/.. is the mount root;
  * a directory swapped for a symlink to outside behind the mount's back
    while nobody (and root) holds it open: names looked up in it still come
    from the original directory, the outside secret stays unreachable;
  * lutimes / fchmodat2(AT_SYMLINK_NOFOLLOW) on a symlink nobody owns,
    pointing to a root file outside: the root file is untouched;
  * a hard link to an outside file cannot be made.
"""
import ctypes
import os
import shutil
import stat
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIERFS = os.environ.get("TIERFS_BIN", os.path.join(ROOT, "build/cli/tierfs"))
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
PY = "/usr/bin/python3"  # a python nobody may execute (not a pyenv shim)


def as_nobody(*cmd, stdin=None):
    return subprocess.run([*NOBODY, *cmd], capture_output=True, text=True,
                          input=stdin, timeout=60)


def nobody_py(code, *args):
    return as_nobody(PY, "-c", code, *args)


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    if os.geteuid() != 0 or shutil.which("setpriv") is None or \
            not os.access(PY, os.X_OK):
        print("SKIP: needs root, setpriv and /usr/bin/python3")
        return 77
    w = tempfile.mkdtemp(prefix="tierfs-escape-")
    os.chmod(w, 0o755)
    fast, slow, outside = (os.path.join(w, d) for d in
                           ("fast", "slow", "outside"))
    mnt = os.path.join(w, "m", "mnt")  # one level deeper than slow
    for d in (fast, slow, outside, mnt):
        os.makedirs(d)
    os.chmod(os.path.join(w, "m"), 0o755)
    os.chmod(slow, 0o755)
    secret = os.path.join(outside, "secret")
    with open(secret, "w") as f:
        f.write("TOPSECRET")
    os.chmod(secret, 0o600)
    os.utime(secret, (978307200, 978307200))  # 2001-01-01
    private = os.path.join(outside, "private")
    public = os.path.join(outside, "public")
    os.makedirs(private, 0o700)
    os.makedirs(public)
    os.chmod(public, 0o1777)
    links = {"abs": secret, "rel": "../outside/secret", "dirlink": outside,
             "privlink": private, "publink": public,
             "dangling": os.path.join(outside, "newfile")}
    for name, target in links.items():
        os.symlink(target, os.path.join(slow, name))
    shared = os.path.join(slow, "shared")
    os.makedirs(shared)
    os.chmod(shared, 0o1777)
    sub = os.path.join(slow, "sub")
    os.makedirs(sub)
    with open(os.path.join(sub, "f"), "w") as f:
        f.write("inside")
    is_mounted = False
    try:
        subprocess.run([TIERFS, "mount", mnt, "--fast", fast, "--slow", slow,
                        "-o", "allow_other"], check=True)
        is_mounted = True
        m = lambda *p: os.path.join(mnt, *p)

        # Symlinks are symlinks, with their own target text.
        for name, target in links.items():
            st = os.lstat(m(name))
            assert stat.S_ISLNK(st.st_mode), name
            assert os.readlink(m(name)) == target, name
            try:
                os.close(os.open(m(name), os.O_RDONLY | os.O_NOFOLLOW))
                raise AssertionError(f"{name}: O_NOFOLLOW opened a symlink")
            except OSError as e:
                assert e.errno == 40, (name, e)  # ELOOP
        print("ok: symlinks presented as symlinks; O_NOFOLLOW -> ELOOP")

        # Reading through symlinks: the kernel, as nobody, says no.
        for path in (m("abs"), m("dirlink", "secret")):
            r = as_nobody("cat", path)
            assert r.returncode != 0 and "TOPSECRET" not in r.stdout, r
            assert "Permission denied" in r.stderr, r
        r = as_nobody("cat", m("rel"))
        assert r.returncode != 0 and "No such file" in r.stderr, r
        assert not os.path.exists(m("rel")), "relative link left the mount"
        print("ok: reads through symlinks refused; relative links resolve "
              "relative to the mount")

        # Creating through symlinks.
        r = as_nobody("sh", "-c", f"echo x > {m('privlink', 'x')}")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        r = as_nobody("sh", "-c", f"echo x > {m('dangling')}")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        assert os.listdir(private) == [] and not os.path.lexists(
            links["dangling"])
        r = as_nobody("sh", "-c", f"echo x > {m('publink', 'x')}")
        assert r.returncode == 0, r
        st = os.stat(os.path.join(public, "x"))
        assert st.st_uid == 65534, st.st_uid
        print("ok: creation through symlinks only where nobody may write, "
              "as nobody")

        # `..` walks the mount's own tree.
        assert os.stat(m("sub", "..")).st_ino == os.stat(mnt).st_ino
        r = as_nobody("cat", m("sub", "..", "..", "outside", "secret"))
        assert r.returncode != 0 and "No such file" in r.stderr, r
        print("ok: .. stays in the mount's tree")

        # A directory swapped for a symlink while held open.
        holder = subprocess.Popen(
            [*NOBODY, PY, "-c", (
                "import os,sys\n"
                "d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
                "print('ready', flush=True); sys.stdin.readline()\n"
                "for n in ('secret', 'f'):\n"
                "    try:\n"
                "        fd = os.open(n, os.O_RDONLY, dir_fd=d)\n"
                "        print(n, os.read(fd, 100).decode(), flush=True)\n"
                "    except OSError as e:\n"
                "        print(n, 'error', e.errno, flush=True)\n"), m("sub")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            root_dir = os.open(m("sub"), os.O_RDONLY | os.O_DIRECTORY)
            assert holder.stdout.readline().strip() == "ready"
            os.rename(sub, sub + ".old")
            os.symlink(outside, sub)
            holder.stdin.write("go\n")
            holder.stdin.flush()
            out = holder.communicate(timeout=30)[0]
            assert "TOPSECRET" not in out, out
            assert "secret error 2" in out and "f inside" in out, out
            try:
                os.open("secret", os.O_RDONLY, dir_fd=root_dir)
                raise AssertionError("root reached outside/secret via sub")
            except FileNotFoundError:
                pass
            os.close(root_dir)
        finally:
            if holder.poll() is None:
                holder.kill()
        print("ok: names resolve in the directory held, not by path")

        # Metadata through a symlink nobody owns.
        evil = m("shared", "evil")
        r = as_nobody("ln", "-s", secret, evil)
        assert r.returncode == 0, r
        r = as_nobody("touch", "-h", "-d", "2010-01-01", evil)
        assert r.returncode == 0, r
        r = nobody_py(
            "import ctypes,os,sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "r = libc.syscall(452, -100, sys.argv[1].encode(), 0o666, 0x100)\n"
            "print(r, ctypes.get_errno())\n", evil)
        st = os.stat(secret)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert int(st.st_mtime) == 978307200, st.st_mtime
        assert os.lstat(os.path.join(shared, "evil")).st_mtime != 978307200
        print(f"ok: lutimes/fchmodat2 change the symlink, not its target "
              f"(fchmodat2 -> {r.stdout.strip()})")

        r = as_nobody("ln", secret, m("shared", "hl"))
        assert r.returncode != 0, r
        assert not os.path.exists(os.path.join(shared, "hl"))
        print("ok: no hard link to an outside file")

        subprocess.run([TIERFS, "umount", mnt], check=True)
        is_mounted = False
        print("PASS")
        return 0
    finally:
        if is_mounted or mounted(mnt):
            subprocess.run([TIERFS, "umount", mnt])
            subprocess.run(["fusermount3", "-uz", mnt],
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
