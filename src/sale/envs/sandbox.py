"""Run model-written Python in a separate, contained process.

`run_python` writes the code to ``main.py`` in a fresh temporary directory and runs it
with this interpreter (``sys.executable -I -B``, so the venv's packages are importable
and no environment variable or user site directory leaks in). The program never runs
inside the calling process. What contains it, strongest first, where the machine
allows it (detected once per process by a probe run, then required of every run):

- a network namespace: only a loopback device that is down, so no connection leaves;
- a pid namespace with its own /proc: the program sees only its own processes, and
  when the run ends or is killed every process it started dies with it;
- a mount namespace in which the whole file system is read-only and nosuid, the run's
  directory is mounted on /tmp (fresh tmpfs on /var/tmp and /dev/shm), and directories
  an unprivileged user cannot enter (such as /root, when the interpreter lives below
  it) are covered by an empty tmpfs with only the interpreter's own path bound back;
  every scratch directory, /tmp included, is a tmpfs of bounded size and file count,
  and /run, where host services keep their Unix sockets, is hidden;
- an unprivileged uid: as root, each run gets a uid of its own from a pool
  (`UID_BASE` + slot), so RLIMIT_NPROC bounds a fork bomb and root's files stay out of
  reach; without root, a user namespace stands in and the program runs as nobody in a
  nested one, holding no capability over the mounts;
- resource limits (RLIMIT_CPU, AS, FSIZE, NPROC, NOFILE, CORE=0), a new session and
  process group that a wall-clock timeout kills with SIGKILL, no_new_privs, and a
  scrubbed environment (PATH, HOME, TMPDIR, locale, thread counts; nothing else).

`SandboxResult.isolation` says which of these were in force, and what was missing.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import logging
import math
import marshal
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

from sale.errors import ConfigError, SaleError

log = logging.getLogger(__name__)

#: The script that runs inside the sandbox (see its docstring for the process layout).
CHILD_SCRIPT = Path(__file__).with_name("_sandbox_child.py")
#: Per-run uids used when running as root: UID_BASE + slot, slot < UID_SLOTS. High
#: enough to stay clear of system, login and container ranges; never in /etc/passwd.
UID_BASE = 1_900_000_000
UID_SLOTS = 1000
#: Exit status of the sandbox script when a planned isolation step failed.
SETUP_FAILED = 125
#: What each reason means, for people reading a result.
REASONS = {
    "ok": "finished with exit status 0",
    "error": "exited with a non-zero status",
    "timeout": "ran past its wall-clock limit and was killed",
    "cpu": "used up its CPU-time limit",
    "memory": "ran out of memory (address-space limit)",
    "file_size": "tried to write a file larger than the file-size limit",
    "disk_full": "filled its scratch space (/tmp and the other scratch directories are size-limited)",
    "process_limit": "could not start another process (process-count limit)",
    "killed": "was killed by a signal",
}

# Isolation steps in the order the sandbox script takes them ("private" makes mount
# propagation private; it is a prerequisite, not reported on its own).
_ROOT_STEPS = ("netns", "mntns", "pidns", "private", "expose", "tmp", "ro", "proc",
               "uid", "nnp")
_USER_STEPS = ("userns", "netns", "mntns", "pidns", "private", "tmp", "ro", "proc",
               "uid", "nnp")
_LABELS = {"userns": "userns", "netns": "netns", "mntns": "mntns", "pidns": "pidns",
           "proc": "procfs", "expose": "masked-dirs", "hide": "hidden-paths",
           "tmp": "private-tmp", "ro": "ro-fs", "uid": "unprivileged-uid",
           "nnp": "no-new-privs"}
_PROBE_CODE = """\
import json, os
with open("probe.txt", "w") as handle:
    handle.write("written")
print("sandbox-probe-ok")
"""
_STATUS_MAX_BYTES = 1 << 16


class SandboxError(SaleError):
    """The sandbox could not run the code at all (bad input, or setup failed)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run. Each must be positive.

    - ``wall_s``: wall-clock seconds before the whole process group is killed.
    - ``cpu_s``: CPU seconds per process (RLIMIT_CPU; SIGXCPU, then SIGKILL 1 s later).
    - ``memory_mb``: address space per process (RLIMIT_AS); numpy and pandas reserve
      a few hundred MB of address space on import, so keep at least 512.
    - ``file_mb``: largest file the program may write (RLIMIT_FSIZE); each scratch
      directory (/tmp, /var/tmp, /dev/shm) holds at most ``4 * file_mb`` (16 MB or more).
    - ``nproc``: processes and threads of the sandbox's uid (RLIMIT_NPROC).
    - ``output_chars``: characters kept of stdout and of stderr each; the middle of
      longer output is replaced by a marker that says how much was cut.
    """

    wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_mb: int = 1024
    file_mb: int = 16
    nproc: int = 64
    output_chars: int = 20_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"sandbox Limits.{f.name} must be a positive number,"
                                  f" got {value!r}")

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """The (soft, hard) resource limits the sandboxed program runs under."""
        cpu = math.ceil(self.cpu_s)
        memory = int(self.memory_mb) << 20
        file_size = int(self.file_mb) << 20
        nproc = int(self.nproc)
        return {"RLIMIT_CPU": (cpu, cpu + 1), "RLIMIT_AS": (memory, memory),
                "RLIMIT_FSIZE": (file_size, file_size), "RLIMIT_NPROC": (nproc, nproc),
                "RLIMIT_NOFILE": (1024, 1024), "RLIMIT_CORE": (0, 0)}


@dataclass(frozen=True)
class SandboxResult:
    """How one run ended.

    ``exit_code`` follows `subprocess`: the exit status, or -N when signal N killed the
    program (``killed_by`` then names it). ``reason`` is one of `REASONS`.
    ``isolation`` lists the containment in force, e.g.
    ``"netns+mntns+pidns+...+rlimits+tmpdir+clean-env"``, followed by what was missing
    in parentheses. ``cpu_s`` and ``max_rss_mb`` are those of the main process (and of
    the children it waited for), when the sandbox could report them.
    """

    exit_code: int
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool
    killed_by: str | None
    reason: str
    isolation: str
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.reason == "ok"

    def summary(self) -> str:
        """One line for people: how the run ended and why."""
        if self.timed_out:
            how = f"killed after the {self.wall_s:.1f} s wall-clock limit"
        elif self.killed_by:
            how = f"killed by {self.killed_by}"
        else:
            how = f"exit status {self.exit_code}"
        return f"{how} ({self.reason}: {REASONS.get(self.reason, self.reason)})"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Plan:
    """The isolation steps this machine allows, found once by `_probe`."""

    steps: tuple[str, ...]
    expose: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def as_root(self) -> bool:
        return "uid" in self.steps and "userns" not in self.steps

    def isolation(self, steps: Iterable[str] | None = None) -> str:
        done = list(self.steps if steps is None else steps)
        parts = [label for step, label in _LABELS.items() if step in done]
        parts += ["rlimits", "tmpdir", "clean-env"]
        missing = []
        if "netns" not in done:
            missing.append("no network namespace available: the code can use the network")
        if "pidns" not in done:
            missing.append("no pid namespace: stray processes are killed by process"
                           " group only")
        if "uid" not in done and "ro" not in done:
            missing.append("no uid drop or read-only mounts: the code can write wherever"
                           " this process can")
        if "tmp" not in done:
            missing.append("/tmp is shared with the host")
        text = "+".join(parts)
        return f"{text} ({'; '.join(missing)})" if missing else text


_plan: _Plan | None = None
_slots = itertools.count((os.getpid() * 37) % UID_SLOTS)
_shared_uids: dict[str, int] = {}


def shared_directory() -> str:
    """A fresh directory for two runs to share (see `run_python`); the caller removes
    it with `remove_shared_directory`."""
    path = tempfile.mkdtemp(prefix="sale-shared-")
    os.chmod(path, 0o777)
    return path


def remove_shared_directory(path: str) -> None:
    _shared_uids.pop(path, None)
    _remove_tree(path)


def shared_path(shared: str, steps: Iterable[str] | None = None) -> str:
    """Where a shared directory appears inside the sandbox: in its private /tmp when it
    has one, else at its own path."""
    steps = _plan.steps if steps is None and _plan is not None else (steps or ())
    return f"/tmp/{os.path.basename(shared)}" if "tmp" in steps else shared


def _blocked_dirs() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Directories on the interpreter's paths that others may not enter (mode o-x),
    with the children the sandbox must reach through them."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.realpath(sys.executable), str(CHILD_SCRIPT)}
    paths.update(p for p in sys.path if os.path.isabs(p) and os.path.isdir(p))
    needed: dict[str, set[str]] = {}
    for path in paths:
        current = "/"
        for part in PurePosixPath(os.path.realpath(path)).parts[1:]:
            try:
                blocked = not os.stat(current).st_mode & 0o001
            except OSError:
                break
            if blocked and current != "/":
                needed.setdefault(current, set()).add(part)
            current = os.path.join(current, part)
    return tuple((d, tuple(sorted(c))) for d, c in
                 sorted(needed.items(), key=lambda item: (item[0].count("/"), item[0])))


def _interpreter_paths_in_tmp() -> tuple[str, ...]:
    """The interpreter's directories that live under /tmp (a virtual environment made
    there, say): the private /tmp covers them, so the sandbox binds them back, read-only."""
    paths = {sys.prefix, sys.exec_prefix, *(p for p in sys.path if os.path.isabs(p) and os.path.isdir(p))}
    inside = sorted({os.path.realpath(p) for p in paths if os.path.realpath(p).startswith("/tmp/")})
    return tuple(p for p in inside if not any(p.startswith(q + os.sep) for q in inside if q != p))


async def _probe() -> _Plan:
    """Find the strongest isolation that can still run Python here."""
    as_root = os.geteuid() == 0
    candidates = _ROOT_STEPS if as_root else _USER_STEPS
    expose = _blocked_dirs() if as_root else ()
    attempts = [candidates, tuple(s for s in candidates if s not in ("uid", "expose")),
                ("nnp",)]
    last: SandboxResult | None = None
    for steps in attempts:
        plan = _Plan(tuple(steps), expose)
        last, done = await _launch(_PROBE_CODE, plan=plan, limits=Limits(), stdin="",
                                   files=None, hide=(), probe=True)
        if last.exit_code == 0 and "sandbox-probe-ok" in last.stdout:
            return _Plan(tuple(s for s in steps if s in done), expose)
        log.warning("sandbox: Python does not run under isolation %s (%s); trying less",
                    "+".join(steps), (last.stderr.strip() or last.summary())[-500:])
    detail = (last.stderr.strip() or last.summary()) if last else "no attempt ran"
    raise SandboxError(f"cannot run {sys.executable} in a sandbox on this machine:"
                       f" {detail[-2000:]}")


async def _get_plan() -> _Plan:
    global _plan
    if _plan is None:
        _plan = await _probe()
    return _plan


async def sandbox_isolation() -> str:
    """The isolation every run on this machine gets (probes once, then cached)."""
    return (await _get_plan()).isolation()


# ---------------------------------------------------------------------------- one run


async def run_python(code: str, *, stdin: str = "", limits: Limits = Limits(),
                     files: dict[str, str | bytes] | None = None,
                     hide_paths: Sequence[str | os.PathLike[str]] = (),
                     pass_fds: Sequence[int] = (),
                     shared_dir: str | None = None) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh sandbox and report how it ended.

    ``stdin`` is fed to the program; ``files`` maps relative paths to the contents of
    files (text, or bytes as they are) written next to ``main.py`` beforehand
    (importable as modules, a compiled ``.pyc`` too). ``hide_paths``
    are covered by an empty read-only directory for this run (e.g. a data folder that
    holds reference solutions); this needs a mount namespace. The program's own
    failures are reported in the result; `SandboxError` means the sandbox itself could
    not run it.

    ``pass_fds`` are open file descriptors (pipe ends) the program inherits under the
    same numbers, e.g. to talk to another sandboxed program; this call takes them over
    and closes them in this process once the program has started (or failed to).

    ``shared_dir`` is a directory (made by `shared_directory`) that two runs share:
    it appears inside at `shared_path` (writable), and the runs that share it run as
    one uid where each has a pid namespace of its own (so neither can see, signal or
    trace the other), so that files one makes the other can open.
    """
    owned = _FdSet()
    owned.open.update(pass_fds)
    try:
        return await _run_python(code, stdin=stdin, limits=limits, files=files,
                                 hide_paths=hide_paths, pass_fds=owned, shared_dir=shared_dir)
    finally:
        owned.close_all()


async def _run_python(code: str, *, stdin: str, limits: Limits, files: dict[str, str | bytes] | None,
                      hide_paths: Sequence[str | os.PathLike[str]],
                      pass_fds: _FdSet, shared_dir: str | None) -> SandboxResult:
    plan = await _get_plan()
    if shared_dir is not None and not os.path.isdir(shared_dir):
        raise SandboxError(f"cannot share {shared_dir!r} with sandboxed code: it is not a"
                           " directory")
    hide = tuple(os.path.realpath(p) for p in hide_paths)
    for path in hide:
        if not os.path.isdir(path):
            raise SandboxError(f"cannot hide {path!r} from sandboxed code: it is not a"
                               " directory")
    if hide and "private" not in plan.steps:
        raise SandboxError("cannot hide paths from sandboxed code: no mount namespace is"
                           f" available here ({plan.isolation()})")
    result, _ = await _launch(code, plan=plan, limits=limits, stdin=stdin, files=files,
                              hide=hide, probe=False, pass_fds=pass_fds, shared=shared_dir)
    return result


def _write_files(workdir: str, code: str, files: dict[str, str | bytes] | None) -> list[str]:
    """Write the extra files and main.py; return every path created (for chown)."""
    for name in files or {}:
        rel = PurePosixPath(name)
        if rel.is_absolute() or not rel.parts or ".." in rel.parts or rel.parts == ("main.py",):
            raise SandboxError(f"sandbox file name {name!r} must be a relative path"
                               " without '..', other than main.py")
    created = []
    for name, text in {**(files or {}), "main.py": code}.items():
        target = os.path.join(workdir, *PurePosixPath(name).parts)
        missing = []
        parent = os.path.dirname(target)
        while not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            os.mkdir(directory)
            created.append(directory)
        with open(target, "wb") as handle:
            handle.write(text if isinstance(text, bytes) else text.encode("utf-8"))
        created.append(target)
    return created


def _environment(home: str) -> dict[str, str]:
    """The whole environment the program sees: nothing of the parent's is passed on."""
    bindir = os.path.dirname(sys.executable)
    return {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "HOME": home,
            "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


async def _launch(code: str, *, plan: _Plan, limits: Limits, stdin: str,
                  files: dict[str, str | bytes] | None, hide: tuple[str, ...],
                  probe: bool, pass_fds: _FdSet | None = None, shared: str | None = None
                  ) -> tuple[SandboxResult, tuple[str, ...]]:
    """Run one program under ``plan``; return its result and the steps taken."""
    steps = plan.steps + (("hide",) if hide else ())
    workdir = tempfile.mkdtemp(prefix="sale-sandbox-")
    try:
        config = _prepare(workdir, code, files, plan, steps, limits, hide, probe, shared)
        return await _execute(config, plan, steps, limits, stdin, pass_fds or _FdSet())
    finally:
        _remove_tree(workdir)


def _prepare(workdir: str, code: str, files: dict[str, str | bytes] | None, plan: _Plan,
             steps: tuple[str, ...], limits: Limits, hide: tuple[str, ...],
             probe: bool, shared: str | None = None) -> dict:
    """Write the run's files (owned by the run's uid) and build the sandbox config."""
    created = _write_files(workdir, code, files)
    uid = gid = os.getuid()
    if plan.as_root:
        if shared is not None and "pidns" in plan.steps:
            uid = gid = _shared_uids.setdefault(shared, UID_BASE + next(_slots) % UID_SLOTS)
        else:
            uid = gid = UID_BASE + next(_slots) % UID_SLOTS
        for path in (workdir, *created):
            os.chown(path, uid, gid)
    return {"mode": "probe" if probe else "run", "steps": list(steps),
            "workdir": workdir, "inner_dir": "/tmp" if "tmp" in steps else workdir,
            "uid": uid, "gid": gid,
            "expose": [[d, list(c)] for d, c in plan.expose], "hide": list(hide),
            "keep_in_tmp": list(_interpreter_paths_in_tmp()),
            "shared": shared, "shared_at": shared_path(shared, steps) if shared else None,
            "rlimits": limits.rlimits(), "backstop_s": limits.wall_s + 5,
            "scratch_mb": max(16, int(limits.file_mb) * 4)}


async def _execute(config: dict, plan: _Plan, steps: tuple[str, ...], limits: Limits,
                   stdin: str, passed: _FdSet) -> tuple[SandboxResult, tuple[str, ...]]:
    """Start the sandbox script, feed it, wait (killing it at the wall-clock limit),
    and collect its output and its status report.

    The pipes are plain file descriptors read on the event loop, not asyncio's
    subprocess pipes, so that the end of the run does not wait for a background
    process that still holds stdout open.
    """
    fds = _FdSet()
    in_r, in_w = fds.pipe()
    out_r, out_w = fds.pipe()
    err_r, err_w = fds.pipe()
    status_r, status_w = fds.pipe()
    out, err = _Capture(limits.output_chars), _Capture(limits.output_chars)
    report = bytearray()
    proc: asyncio.subprocess.Process | None = None
    tasks: list[asyncio.Task] = []
    try:
        config["status_fd"] = status_w
        config["pass_fds"] = sorted(passed.open)
        started = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-B", str(CHILD_SCRIPT),
                marshal.dumps(config).hex(), stdin=in_r, stdout=out_w, stderr=err_w,
                cwd=config["workdir"], env=_environment(config["inner_dir"]),
                start_new_session=True, pass_fds=(status_w, *sorted(passed.open)))
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox ({sys.executable}"
                               f" {CHILD_SCRIPT}): {exc}") from exc
        for fd in (in_r, out_w, err_w, status_w):  # the child's ends
            fds.close(fd)
        passed.close_all()
        tasks = [asyncio.create_task(_drain(out_r, out.feed)),
                 asyncio.create_task(_drain(err_r, err.feed)),
                 asyncio.create_task(_drain(status_r, _bounded(report, _STATUS_MAX_BYTES))),
                 asyncio.create_task(_feed(in_w, stdin.encode(), fds.close))]
        timed_out = crowded = False
        try:
            await asyncio.wait_for(proc.wait(), limits.wall_s)
        except asyncio.TimeoutError:
            timed_out = True
            crowded = _at_process_limit(proc.pid, config["uid"] if plan.as_root else None,
                                        limits)
            _kill_group(proc.pid)
            await proc.wait()
        wall = time.perf_counter() - started
        if "pidns" not in steps:
            _kill_group(proc.pid)  # background processes the program left behind
        await asyncio.wait(tasks[:3], timeout=2.0)  # what is left in the pipes
    finally:
        await _reap(proc, tasks)
        fds.close_all()
    status = _parse_status(bytes(report))
    if status and "setup_error" in status:
        raise SandboxError(f"{status['setup_error']} (isolation planned:"
                           f" {plan.isolation(steps)})")
    taken = tuple(status["steps"]) if status and "steps" in status else steps
    if status and isinstance(status.get("status"), int):
        exit_code = os.waitstatus_to_exitcode(status["status"])
    else:  # the sandbox's init did not report (it was killed): use the script's status
        exit_code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    killed_by = _signal_name(-exit_code) if exit_code < 0 else None
    stdout, cut_out = out.text()
    stderr, cut_err = err.text()
    cpu_s = status.get("cpu_s") if status else None
    rss = status.get("maxrss_kb") if status else None
    result = SandboxResult(
        exit_code=exit_code, stdout=stdout, stderr=stderr, wall_s=wall,
        timed_out=timed_out, killed_by=killed_by,
        reason=("process_limit" if timed_out and crowded else
                _reason(exit_code, killed_by, timed_out, cpu_s, limits, stderr)),
        isolation=plan.isolation(taken), cpu_s=cpu_s,
        max_rss_mb=None if rss is None else rss / 1024, truncated=cut_out or cut_err)
    return result, taken


async def _reap(proc: asyncio.subprocess.Process | None, tasks: list[asyncio.Task]) -> None:
    """Make sure the program is dead and its reader tasks are finished (also when the
    caller was cancelled mid-run)."""
    if proc is not None and proc.returncode is None:
        _kill_group(proc.pid)
        await proc.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -------------------------------------------------------------------------- plumbing


class _Capture:
    """Keeps the head and the tail of a stream, at most ``limit`` bytes in all."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.head_limit = self.limit // 2
        self.tail_limit = self.limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_limit:
                del self.tail[:-self.tail_limit]

    def text(self) -> tuple[str, bool]:
        """The captured text, and whether some was cut."""
        tail = bytes(self.tail[-self.tail_limit:]) if self.tail_limit else b""
        head = bytes(self.head)
        cut = self.total - len(head) - len(tail)
        if cut <= 0:
            return (head + bytes(self.tail)).decode("utf-8", "replace"), False
        marker = (f"\n[... {cut} bytes cut: output is limited to {self.limit}"
                  " characters ...]\n")
        return (head.decode("utf-8", "replace") + marker
                + tail.decode("utf-8", "replace")), True


class _FdSet:
    """The pipe ends this process holds for one run; each is closed exactly once."""

    def __init__(self):
        self.open: set[int] = set()

    def pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        self.open.update((read, write))
        return read, write

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self.open):
            self.close(fd)


async def _until_ready(fd: int, writable: bool = False) -> None:
    """Wait until ``fd`` can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _drain(fd: int, feed) -> None:
    """Read ``fd`` to its end, handing each chunk to ``feed``."""
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            await _until_ready(fd)
            continue
        if not chunk:
            return
        feed(chunk)


def _bounded(buffer: bytearray, limit: int):
    """A feed function that appends to ``buffer`` up to ``limit`` bytes."""
    return lambda chunk: buffer.extend(chunk[:max(0, limit - len(buffer))])


async def _feed(fd: int, data: bytes, close) -> None:
    """Write ``data`` to the program's stdin, then close it (EOF)."""
    try:
        os.set_blocking(fd, False)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                await _until_ready(fd, writable=True)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the program stopped reading; that is its business
    finally:
        close(fd)


def _at_process_limit(session: int, uid: int | None, limits: Limits) -> bool:
    """Whether a run that timed out holds as many processes as its limit allows (a
    fork bomb that kept retrying): counted by its own uid when it has one, else by its
    session, from this machine's /proc."""
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if uid is not None:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            else:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[-1].split()
                if int(fields[3]) == session:
                    count += 1
        except (OSError, ValueError, IndexError):
            continue
    return count >= max(2, int(limits.nproc) - 2)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _parse_status(data: bytes) -> dict | None:
    """Merge the sandbox's reports: one Python literal per line (parsed, never
    evaluated); ``steps`` and ``notes`` accumulate, other keys take the last value."""
    merged: dict = {}
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            report = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if not isinstance(report, dict):
            continue
        for key, value in report.items():
            if key in ("steps", "notes") and isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif "setup_error" not in merged:  # the first error is the cause
                merged[key] = value
    return merged or None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _reason(exit_code: int, killed_by: str | None, timed_out: bool,
            cpu_s: float | None, limits: Limits, stderr: str) -> str:
    """Why the run ended, from the exit status, the CPU time and the error's last lines."""
    if timed_out:
        return "timeout"
    if killed_by == "SIGXCPU" or (killed_by == "SIGKILL" and cpu_s is not None
                                  and cpu_s >= math.ceil(limits.cpu_s) - 0.05):
        return "cpu"
    if killed_by == "SIGXFSZ":
        return "file_size"
    if exit_code == 0:
        return "ok"
    last = stderr[-2000:]
    if "MemoryError" in last or "Cannot allocate memory" in last:
        return "memory"
    if "File too large" in last:
        return "file_size"
    if "No space left on device" in last:
        return "disk_full"
    if ("Resource temporarily unavailable" in last and "fork" in last.lower()) or "can't start new thread" in last:
        return "process_limit"
    return "killed" if killed_by else "error"


def _remove_tree(path: str) -> None:
    """Delete the run's directory, even where the program made parts unwritable."""

    def unlock(func, target, _exc) -> None:
        try:
            os.chmod(os.path.dirname(target), 0o700)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=unlock)
    else:
        shutil.rmtree(path, onerror=unlock)
