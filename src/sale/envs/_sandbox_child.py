"""The sandbox's side of a run: executed as a script by `sale.envs.sandbox`, never imported.

``python -I -B _sandbox_child.py HEXCONFIG`` starts here, as the parent's user. The
config (a `marshal`-encoded dict, hex in argv) names the isolation steps to take. Three
processes follow:

- the *outer* process enters the namespaces (user, network, mount, pid) and prepares
  the mounts (private propagation, hidden directories, a private /tmp that is the run's
  work directory, the rest of the file system read-only);
- the *init* process (pid 1 of the new pid namespace, or the outer process itself when
  there is none) mounts a fresh /proc, forks the user's program, reaps every process,
  and writes the outcome (wait status, CPU seconds, peak memory, steps taken) to the
  status pipe; an alarm kills everything if the parent never does;
- the *user* process sets the resource limits, drops privileges, closes the status
  pipe and runs ``main.py`` as ``__main__``.

In ``run`` mode a step that fails stops the run (exit 125, reason on the status pipe);
in ``probe`` mode failed steps are skipped and the steps that worked are reported, so
the parent learns once what this machine allows. Only cheap standard modules are
imported, so that startup stays a few milliseconds above the interpreter's own.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` would import enum (~5 ms)
import marshal
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_MOUNT_SETATTR = 442  # the same number on x86_64 and aarch64 (Linux >= 5.12)
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SETUP_FAILED = 125  # exit status when a planned isolation step cannot be taken
SCRATCH_DIRS = ("/var/tmp", "/dev/shm")  # world-writable places besides /tmp
SCRATCH_INODES = 16384  # files and directories each scratch tmpfs may hold
# Where host services keep their Unix sockets. A network namespace does not stop a
# connection to a socket file (a world-writable one, like PostgreSQL's, takes anyone),
# so these are covered by an empty read-only tmpfs.
RUNTIME_DIRS = ("/run",)


class _Libc:
    """The few Linux calls Python 3.11's os module lacks, through ctypes."""

    def __init__(self):
        import ctypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL(None, use_errno=True)

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            err = self.ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int, what: str) -> None:
        self._check(self.lib.unshare(self.ctypes.c_int(flags)), f"unshare({what})")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None = None) -> None:
        enc = lambda s: None if s is None else s.encode()  # noqa: E731
        c = self.ctypes
        result = self.lib.mount(c.c_char_p(enc(source)), c.c_char_p(enc(target)),
                                c.c_char_p(enc(fstype)), c.c_ulong(flags),
                                c.c_char_p(enc(data)))
        self._check(result, f"mount {fstype or source} on {target}")

    def mount_setattr(self, path: str, set_: int, clear: int, recursive: bool) -> None:
        c = self.ctypes
        attr = (c.c_uint64 * 4)(set_, clear, 0, 0)  # struct mount_attr
        flags = AT_RECURSIVE if recursive else 0
        result = self.lib.syscall(c.c_long(SYS_MOUNT_SETATTR), c.c_int(AT_FDCWD),
                                  c.c_char_p(path.encode()), c.c_uint(flags),
                                  c.byref(attr), c.c_size_t(c.sizeof(attr)))
        self._check(result, f"mount_setattr {path}")

    def prctl(self, option: int, value: int, what: str) -> None:
        c = self.ctypes
        result = self.lib.prctl(c.c_int(option), c.c_ulong(value), c.c_ulong(0),
                                c.c_ulong(0), c.c_ulong(0))
        self._check(result, what)


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _map_user(inside: int, outside_uid: int, outside_gid: int) -> None:
    """Map one id of a fresh user namespace onto the caller's ids outside it."""
    _write_file("/proc/self/setgroups", "deny")
    _write_file("/proc/self/uid_map", f"{inside} {outside_uid} 1")
    _write_file("/proc/self/gid_map", f"{inside} {outside_gid} 1")


def _mount_points() -> set[str]:
    """Every mount point of this mount namespace (from /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
        points = {line.split(" ")[4] for line in handle}
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...)
    return {p.encode().decode("unicode_escape") if "\\" in p else p for p in points}


def _snapshot(root: str) -> list[tuple[str, bytes | None, int, int, int]]:
    """The directories and files under ``root``, parents first, ``root`` itself first as
    "": (relative path, content or None for a directory, mode, uid, gid)."""
    st = os.stat(root)
    entries: list[tuple[str, bytes | None, int, int, int]] = [("", None, st.st_mode & 0o7777, st.st_uid, st.st_gid)]
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = None
            if name in filenames:
                with open(path, "rb") as handle:
                    data = handle.read()
            entries.append((os.path.relpath(path, root), data, st.st_mode & 0o7777, st.st_uid, st.st_gid))
    return entries


def _restore(root: str, entries: list[tuple[str, bytes | None, int, int, int]]) -> None:
    """Recreate `_snapshot` entries under ``root`` (a fresh, empty mount)."""
    for rel, data, mode, uid, gid in entries:
        path = os.path.join(root, rel) if rel else root
        if data is None:
            if rel:
                os.mkdir(path, 0o700)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        os.chown(path, uid, gid)
        os.chmod(path, mode)


class Sandbox:
    """The steps of one run, taken in order; ``done`` lists those that took effect."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.plan = set(cfg["steps"])
        self.probe = cfg["mode"] == "probe"
        self.done: list[str] = []
        self.notes: list[str] = []
        self.status_fd: int = cfg["status_fd"]
        self._libc: _Libc | None = None

    @property
    def libc(self) -> _Libc:
        if self._libc is None:
            self._libc = _Libc()
        return self._libc

    def report(self, data: dict) -> None:
        """Write a dict to the status pipe as one line, a Python literal that the
        parent parses (the user process reports its steps, then init the outcome)."""
        try:
            os.write(self.status_fd, repr(data).encode() + b"\n")
        except OSError:
            pass  # the parent is gone; nobody is listening

    def step(self, name: str, action, *needs: str) -> bool:
        """Take step ``name`` when planned and its prerequisites were taken."""
        if name not in self.plan or any(n not in self.done for n in needs):
            return False
        try:
            action()
        except (OSError, AttributeError) as exc:  # AttributeError: no such call here
            if not self.probe:
                self.report({"setup_error": f"sandbox step '{name}' failed: {exc}"})
                os._exit(SETUP_FAILED)
            self.notes.append(f"{name}: {exc}")
            return False
        self.done.append(name)
        return True

    # ------------------------------------------------------------------ outer process

    def enter_namespaces(self) -> None:
        uid, gid = os.getuid(), os.getgid()
        libc = lambda: self.libc  # noqa: E731
        self.step("userns", lambda: (libc().unshare(CLONE_NEWUSER, "user"),
                                     _map_user(0, uid, gid)))
        self.step("netns", lambda: libc().unshare(CLONE_NEWNET, "net"))
        self.step("mntns", lambda: libc().unshare(CLONE_NEWNS, "mount"))
        self.step("pidns", lambda: libc().unshare(CLONE_NEWPID, "pid"))

    def prepare_mounts(self) -> None:
        libc = lambda: self.libc  # noqa: E731
        self.step("private", lambda: libc().mount(None, "/", None, MS_REC | MS_PRIVATE),
                  "mntns")
        self.step("expose", self._expose, "private")
        self.step("hide", self._hide, "private")
        self.step("tmp", self._private_tmp, "private")
        self.step("ro", self._read_only, "private")

    def _expose(self) -> None:
        """Cover each directory the sandbox user may not enter with an empty tmpfs, and
        bind back only the children the interpreter needs (e.g. /root -> /root/.pyenv)."""
        for parent, children in self.cfg["expose"]:
            sources = {}
            for child in children:
                path = os.path.join(parent, child)
                if os.path.lexists(path):
                    sources[child] = os.open(path, os.O_PATH | os.O_CLOEXEC)
            self.libc.mount("tmpfs", parent, "tmpfs", MS_NOSUID | MS_NODEV,
                            "mode=0755,size=1m")
            for child, fd in sources.items():
                target = os.path.join(parent, child)
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.mkdir(target, 0o755)
                else:
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
                self.libc.mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
                os.close(fd)

    def _hide(self) -> None:
        for path in self.cfg["hide"]:
            self.libc.mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY,
                            "mode=0755,size=4k")

    def _private_tmp(self) -> None:
        """Fresh tmpfs on the scratch dirs; the run's work directory becomes /tmp.

        The work directory itself is covered by a tmpfs of the same bounded size, with
        the run's files copied in, so a program cannot fill the host's disk (or its
        inode table) by writing many files, each under the file-size limit. The
        runtime directories (host services' sockets) are covered by an empty tmpfs."""
        size = f"size={self.cfg['scratch_mb']}m,nr_inodes={SCRATCH_INODES}"
        for path in SCRATCH_DIRS:
            if os.path.isdir(path):
                self.libc.mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV,
                                f"mode=1777,{size}")
        for path in RUNTIME_DIRS:
            if os.path.isdir(path) and not os.path.islink(path):
                self.libc.mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY,
                                "mode=0755,size=4k,nr_inodes=16")
        keep = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC))
                for p in self.cfg.get("keep_in_tmp", []) if os.path.isdir(p)]
        workdir = self.cfg["workdir"]
        files = _snapshot(workdir)
        shared = self.cfg.get("shared")
        shared_fd = os.open(shared, os.O_PATH | os.O_CLOEXEC) if shared else None
        self.libc.mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0700,{size}")
        _restore(workdir, files)
        if shared_fd is not None:  # a directory shared with another run, under /tmp
            inside = os.path.join(workdir, os.path.basename(shared))
            os.mkdir(inside, 0o755)
            self.libc.mount(f"/proc/self/fd/{shared_fd}", inside, None, MS_BIND | MS_REC)
            os.close(shared_fd)
        self.libc.mount(workdir, "/tmp", None, MS_BIND | MS_REC)
        for path, fd in keep:  # the interpreter's own files under /tmp (e.g. a venv)
            os.makedirs(path, 0o755, exist_ok=True)
            self.libc.mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            os.close(fd)

    def _read_only(self) -> None:
        """Make every mount read-only (and nosuid), then reopen the scratch dirs and
        /proc (its files stay guarded by their own permissions)."""
        self.libc.mount_setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, True)
        reopen = ["/proc"]
        if "tmp" in self.done:
            reopen += ["/tmp", *SCRATCH_DIRS]
            if self.cfg.get("shared_at"):
                reopen.append(self.cfg["shared_at"])
        mounted = _mount_points()
        for path in reopen:
            if path in mounted:  # else the call would reopen the mount above it
                self.libc.mount_setattr(path, 0, MOUNT_ATTR_RDONLY, False)

    # ------------------------------------------------------------------- init process

    def run_init(self) -> None:
        """Fork the user's program, reap everything, report the outcome; never returns."""
        in_pidns = "pidns" in self.done
        if in_pidns:
            self.libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "prctl(PDEATHSIG)")
        self.step("proc", lambda: self.libc.mount(
            "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC), "pidns", "private")

        def backstop(signum, frame):  # the parent should have killed us long ago
            if in_pidns:
                os.kill(-1, signal.SIGKILL)  # every other process of this pid namespace
            else:
                os.killpg(0, signal.SIGKILL)

        signal.signal(signal.SIGALRM, backstop)
        signal.alarm(int(self.cfg["backstop_s"]) + 1)
        child = os.fork()
        if child == 0:
            self.run_user()
            raise SystemExit(0)  # the program ended normally: exit as Python does
        self.close_passed()
        while True:
            pid, status, usage = os.wait4(-1, 0)
            if pid == child:
                break
        signal.alarm(0)
        self.report({"steps": self.done, "notes": self.notes, "status": status,
                     "cpu_s": usage.ru_utime + usage.ru_stime,
                     "maxrss_kb": usage.ru_maxrss})
        os._exit(0)

    def close_passed(self) -> None:
        """Close the descriptors passed on to the program (pipes to another program),
        so that their other ends see the end of them when the program exits."""
        for fd in self.cfg.get("pass_fds", ()):
            try:
                os.close(fd)
            except OSError:
                pass

    # ------------------------------------------------------------------- user process

    def run_user(self) -> None:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        self._set_limits()
        if self.plan & {"uid", "nnp"}:
            self.libc  # load ctypes while the interpreter's files are still readable
        taken = len(self.done)
        self.step("uid", self._drop_privileges)
        self.step("nnp", lambda: self.libc.prctl(PR_SET_NO_NEW_PRIVS, 1,
                                                 "prctl(NO_NEW_PRIVS)"))
        self.report({"steps": self.done[taken:], "notes": self.notes})
        os.close(self.status_fd)
        workdir = self.cfg["inner_dir"]
        os.chdir(workdir)
        _run_main(workdir)

    def _set_limits(self) -> None:
        import resource

        for name, (soft, hard) in self.cfg["rlimits"].items():
            kind = getattr(resource, name)
            _, cur_hard = resource.getrlimit(kind)
            if cur_hard != resource.RLIM_INFINITY:  # cannot raise a hard limit we lack
                hard, soft = min(hard, cur_hard), min(soft, cur_hard)
            resource.setrlimit(kind, (soft, hard))

    def _drop_privileges(self) -> None:
        if "userns" in self.done:
            # Enter one more user namespace, as nobody: the program then holds no
            # capability over the mounts prepared above and cannot undo them.
            self.libc.unshare(CLONE_NEWUSER, "user")
            _map_user(65534, 0, 0)
            return
        uid, gid = self.cfg["uid"], self.cfg["gid"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)


def _run_main(workdir: str) -> None:
    """Run ``main.py`` as the ``__main__`` module, with a traceback free of this file."""
    import builtins
    import types

    sys.stdout.reconfigure(line_buffering=True)  # keep what was printed before a kill
    sys.argv = ["main.py"]
    sys.path.insert(0, workdir)
    module = types.ModuleType("__main__")
    module.__file__ = os.path.join(workdir, "main.py")
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    with open("main.py", "rb") as handle:
        source = handle.read()
    try:
        exec(compile(source, "main.py", "exec"), module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - report like the interpreter would
        import traceback

        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb)
        sys.stderr.flush()
        raise SystemExit(1) from None


def main() -> None:
    cfg = marshal.loads(bytes.fromhex(sys.argv[1]))
    box = Sandbox(cfg)
    box.enter_namespaces()
    box.prepare_mounts()
    if "pidns" not in box.done:
        box.run_init()
    init = os.fork()  # pid 1 of the new pid namespace
    if init == 0:
        box.run_init()
    box.close_passed()
    _, status = os.waitpid(init, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)  # a signal N becomes 128 + N


if __name__ == "__main__":
    main()
