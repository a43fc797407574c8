"""The Python sandbox: real child processes, and containment that must hold.

Every containment test runs hostile code and fails if it got out. Where the machine
cannot provide a kind of isolation (no network namespace, no private /tmp), the test
for it skips and says so; the result's ``isolation`` is what tells.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from sale.envs.sandbox import (
    Limits,
    SandboxError,
    SandboxResult,
    run_python,
    sandbox_isolation,
)
from sale.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


async def _none_left(marker: str) -> list[int]:
    """Processes with ``marker`` still alive after up to a second of grace."""
    for _ in range(20):
        left = _processes_with(marker)
        if not left:
            return []
        await asyncio.sleep(0.05)
    return left


# ---------------------------------------------------------------------- plain running


async def test_output_exit_status_and_stdin():
    code = ("import sys\nname = input()\nprint('hello', name)\n"
            "print('oops', file=sys.stderr)\nsys.exit(3)")
    result = await run_python(code, stdin="sandbox\n")
    assert isinstance(result, SandboxResult)
    assert result.stdout == "hello sandbox\n"
    assert result.stderr == "oops\n"
    assert (result.exit_code, result.reason, result.timed_out) == (3, "error", False)
    assert result.killed_by is None


async def test_files_are_written_beside_main_and_importable():
    files = {"helper.py": "ANSWER = 41\n", "data/input.txt": "1\n"}
    code = "import helper\nprint(helper.ANSWER + int(open('data/input.txt').read()))"
    result = await run_python(code, files=files)
    assert result.ok, result.stderr
    assert result.stdout.strip() == "42"


async def test_a_file_given_as_bytes_is_written_as_it_is():
    import importlib.util
    import marshal

    code = compile("ANSWER = 42\n", "helper.py", "exec")
    compiled = importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code)
    files = {"helper.pyc": compiled, "raw.bin": b"\x00\xff\n"}
    result = await run_python("import helper\nprint(helper.ANSWER, open('raw.bin', 'rb').read())",
                              files=files)
    assert result.ok, result.stderr
    assert result.stdout.strip() == "42 b'\\x00\\xff\\n'"


async def test_traceback_shows_only_the_programs_frames():
    result = await run_python("def f():\n    return 1 / 0\n\nf()\n")
    assert result.reason == "error" and result.exit_code == 1
    assert 'File "main.py", line 2, in f' in result.stderr
    assert "ZeroDivisionError" in result.stderr
    assert "_sandbox_child" not in result.stderr


async def test_each_run_gets_a_fresh_directory_that_is_removed():
    marker = f"left-{uuid.uuid4().hex}.txt"
    first = await run_python(f"open({marker!r}, 'w').write('x')\nimport os\nprint(os.listdir('.'))")
    second = await run_python("import os\nprint(sorted(os.listdir('.')))")
    assert first.ok and second.ok
    assert marker in first.stdout
    # the interpreter's own folders under /tmp (a venv made there) are bound back in
    from sale.envs.sandbox import _interpreter_paths_in_tmp

    kept = {p.split("/")[2] for p in _interpreter_paths_in_tmp()}
    assert second.stdout.strip() == str(sorted({"main.py", *kept}))
    leftovers = Path(tempfile.gettempdir()).glob(f"sale-sandbox-*/{marker}")
    assert list(leftovers) == []


async def test_long_output_is_cut_in_the_middle_with_a_marker():
    code = "print('head'); print('x' * 100_000); print('tail')"
    result = await run_python(code, limits=Limits(output_chars=1000))
    assert result.ok and result.truncated
    assert result.stdout.startswith("head")
    assert result.stdout.rstrip().endswith("tail")
    assert "bytes cut" in result.stdout
    assert len(result.stdout) < 1200


async def test_concurrent_runs_do_not_mix():
    results = await asyncio.gather(*(run_python(f"print({i} * 2)") for i in range(4)))
    assert [r.stdout.strip() for r in results] == ["0", "2", "4", "6"]
    assert all(r.ok for r in results)


async def test_isolation_is_reported_and_stable():
    isolation = await sandbox_isolation()
    result = await run_python("pass")
    assert result.isolation == isolation
    assert "rlimits" in isolation and "tmpdir" in isolation


def test_limits_are_checked():
    with pytest.raises(ConfigError, match="wall_s"):
        Limits(wall_s=0)
    with pytest.raises(ConfigError, match="memory_mb"):
        Limits(memory_mb=-5)


async def test_bad_file_names_are_refused():
    for name in ("../escape.py", "/etc/passwd", "main.py"):
        with pytest.raises(SandboxError, match="relative path"):
            await run_python("pass", files={name: "x"})


# ------------------------------------------------------------------------ containment


async def test_infinite_loop_is_killed_at_the_wall_clock_limit():
    code = "print('started')\nwhile True:\n    pass\n"
    result = await run_python(code, limits=Limits(wall_s=1, cpu_s=60))
    assert result.timed_out and result.reason == "timeout"
    assert result.killed_by == "SIGKILL"
    assert result.stdout == "started\n"  # printed before the kill, not lost in a buffer


async def test_sleeping_program_is_killed_at_the_wall_clock_limit():
    result = await run_python("import time\ntime.sleep(60)", limits=Limits(wall_s=0.5))
    assert result.timed_out and result.reason == "timeout"


async def test_cpu_limit_stops_a_busy_loop():
    result = await run_python("while True:\n    pass\n", limits=Limits(cpu_s=1, wall_s=20))
    assert not result.timed_out
    assert result.reason == "cpu"
    assert result.killed_by in ("SIGXCPU", "SIGKILL")


async def test_fork_bomb_is_bounded_and_leaves_no_process():
    marker = f"31.{uuid.uuid4().int % 10**6:06d}"  # a sleep length no one else uses
    code = f"""
import os
forked = 0
for _ in range(200):  # bounded, so the machine survives even if containment fails
    try:
        pid = os.fork()
    except OSError as exc:
        print("fork refused:", exc)
        break
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "{marker}"])
    forked += 1
print("forked", forked)
"""
    limits = Limits(nproc=16, wall_s=5)
    result = await run_python(code, limits=limits)
    assert "fork refused" in result.stdout, result.stdout + result.stderr
    forked = int(result.stdout.split("forked")[-1])
    assert forked < limits.nproc
    assert await _none_left(marker) == []


async def test_processes_that_leave_the_group_die_with_the_run():
    marker = f"29.{uuid.uuid4().int % 10**6:06d}"
    code = ("import subprocess\n"
            f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
            "print('spawned')")
    isolation = await sandbox_isolation()
    if "pidns" not in isolation:
        pytest.skip(f"no pid namespace here, a new session can outlive the run: {isolation}")
    result = await run_python(code)
    assert result.ok and "spawned" in result.stdout
    assert await _none_left(marker) == []


async def test_cancelled_run_kills_the_program():
    marker = f"28.{uuid.uuid4().int % 10**6:06d}"
    code = f"import subprocess\nsubprocess.run(['sleep', '{marker}'])"
    task = asyncio.create_task(run_python(code, limits=Limits(wall_s=30)))
    for _ in range(100):  # wait until the sleep is running
        if _processes_with(marker):
            break
        await asyncio.sleep(0.05)
    assert _processes_with(marker), "the program never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _none_left(marker) == []


async def test_memory_hog_hits_the_memory_limit():
    limits = Limits(memory_mb=256)
    at_once = await run_python("block = bytearray(2 * 1024**3)", limits=limits)
    assert at_once.reason == "memory", at_once.stderr
    growing = await run_python(
        "chunks = []\nfor _ in range(200):\n    chunks.append(bytearray(10 * 1024**2))\n",
        limits=limits)
    assert growing.reason == "memory", growing.stderr
    assert "MemoryError" in growing.stderr


async def test_huge_file_write_hits_the_file_size_limit():
    code = ("with open('big.bin', 'wb') as out:\n"
            "    for _ in range(64):\n"
            "        out.write(b'x' * 1024**2)\n")
    result = await run_python(code, limits=Limits(file_mb=2))
    assert result.reason == "file_size", result.stderr
    assert "File too large" in result.stderr


async def test_cannot_modify_the_projects_files():
    isolation = await sandbox_isolation()
    if "unprivileged-uid" not in isolation and "ro-fs" not in isolation:
        pytest.skip(f"neither a uid drop nor read-only mounts are available: {isolation}")
    existing = REPO / f".sandbox-probe-{uuid.uuid4().hex}"
    new = REPO / f".sandbox-escape-{uuid.uuid4().hex}"
    existing.write_text("original\n")
    try:
        code = f"""
for path, mode in (({str(existing)!r}, "a"), ({str(new)!r}, "w")):
    try:
        with open(path, mode) as handle:
            handle.write("tampered\\n")
        print("wrote", path)
    except OSError as exc:
        print("refused", type(exc).__name__)
"""
        result = await run_python(code)
        assert result.ok, result.stderr
        assert "wrote" not in result.stdout
        assert existing.read_text() == "original\n"
        assert not new.exists()
    finally:
        existing.unlink()
        new.unlink(missing_ok=True)


async def test_writes_to_tmp_stay_inside_the_sandbox():
    isolation = await sandbox_isolation()
    if "private-tmp" not in isolation:
        pytest.skip(f"no private /tmp here: {isolation}")
    names = [f"/tmp/sale-escape-{uuid.uuid4().hex}", f"/var/tmp/sale-escape-{uuid.uuid4().hex}",
             f"/dev/shm/sale-escape-{uuid.uuid4().hex}"]
    code = "\n".join(f"open({n!r}, 'w').write('x')" for n in names) + "\nprint('done')"
    result = await run_python(code)
    assert result.ok, result.stderr
    for name in names:
        assert not os.path.exists(name), f"{name} appeared outside the sandbox"


async def test_parent_environment_is_not_visible(monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("SALE_TEST_SECRET", secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    code = f"""
import os
print(sorted(os.environ))
print(repr(dict(os.environ)))
for pid in ({os.getpid()}, os.getppid(), 1):
    try:
        print(open(f"/proc/{{pid}}/environ", "rb").read())
    except OSError as exc:
        print("cannot read", pid, type(exc).__name__)
"""
    result = await run_python(code)
    assert result.ok, result.stderr
    assert secret not in result.stdout
    assert "SALE_TEST_SECRET" not in result.stdout
    assert "OPENAI_API_KEY" not in result.stdout


async def test_network_connection_fails():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        server.setblocking(False)
        port = server.getsockname()[1]
        code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    print("connected")
except OSError as exc:
    print("no connection:", exc)
"""
        result = await run_python(code)
        if "netns" not in result.isolation:
            pytest.skip(f"no network namespace available here: {result.isolation}")
        assert result.ok, result.stderr
        assert "no connection" in result.stdout
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody got through


async def test_cannot_kill_the_parent_or_this_process():
    me = os.getpid()
    code = f"""
import os, signal
for target in (os.getppid(), {me}):
    try:
        os.kill(target, signal.SIGKILL)
        print("sent to", target)
    except OSError as exc:
        print("refused", target, type(exc).__name__)
print("still running")
"""
    result = await run_python(code)
    # Reaching this line means this process survived; the run ended on its own terms.
    assert os.getpid() == me
    assert result.ok and "still running" in result.stdout
    assert f"sent to {me}" not in result.stdout


async def test_two_runs_share_a_directory_and_a_pipe_and_nothing_else():
    from sale.envs.sandbox import remove_shared_directory, shared_directory, shared_path

    shared = shared_directory()
    read, write = os.pipe()
    try:
        await sandbox_isolation()
        inside = shared_path(shared)
        writer = run_python(f"import os\nopen({inside!r} + '/note.txt', 'w').write('hello')\n"
                            f"os.write({write}, b'written')\n"
                            "open('/tmp/private.txt', 'w').write('mine')\n",
                            shared_dir=shared, pass_fds=(write,))
        reader = run_python(f"import os\nprint(os.read({read}, 7).decode())\n"
                            f"print(open({inside!r} + '/note.txt').read())\n"
                            "print(os.path.exists('/tmp/private.txt') and 'seen' or 'private')\n",
                            shared_dir=shared, pass_fds=(read,))
        first, second = await asyncio.gather(writer, reader)
        assert first.ok and second.ok, (first.stderr, second.stderr)
        assert second.stdout.split() == ["written", "hello", "private"]
    finally:
        remove_shared_directory(shared)
    assert not os.path.exists(shared)


async def test_a_passed_pipe_ends_when_the_program_closes_it():
    # The sandbox's own processes keep no copy of a pipe passed to the program: the
    # other end sees its end while the program still runs (else both wait forever).
    data_r, data_w = os.pipe()
    back_r, back_w = os.pipe()
    limits = Limits(wall_s=8)
    writer = run_python(f"import os\nos.write({data_w}, b'data')\nos.close({data_w})\n"
                        f"print(os.read({back_r}, 3).decode())\n",
                        pass_fds=(data_w, back_r), limits=limits)
    reader = run_python(f"import os\nchunks = []\nwhile chunk := os.read({data_r}, 64):\n"
                        "    chunks.append(chunk)\n"
                        f"os.write({back_w}, b'eof')\nprint(b''.join(chunks).decode())\n",
                        pass_fds=(data_r, back_w), limits=limits)
    first, second = await asyncio.gather(writer, reader)
    assert first.ok and second.ok, (first.summary(), second.summary())
    assert (first.stdout.strip(), second.stdout.strip()) == ("eof", "data")
