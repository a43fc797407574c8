"""Crash safety: `sale run` killed with SIGKILL at random points resumes to the same end.

A deterministic scripted pool (every answer is a function of the request alone) makes
an uninterrupted run the reference. Each trial starts the same run in a subprocess,
kills it with SIGKILL at a random point (seeded: a random fraction of a call after a
random call of the run), kills the rerun too in some trials, and then lets a rerun
finish. The finished run must hold exactly the
reference's task results (same tasks, winners, bid kinds, pass values and answers),
once each, the same auction memory records, and files that read back whole: every
line of results.jsonl and ledger.jsonl parses and memory.sqlite passes SQLite's
integrity check. (test_run.py kills one run at a chosen point; here the points are
random and the end state is compared in full.)
"""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sale.jsonl import read_jsonl
from sale.memory.store import SQLiteMemory
from sale.testing.scripted import Reply, ScriptedServer, is_execution, jury_answer, prompt_text, scripted_pool_yaml
from test_run import write_tasks

N_TASKS = 10
TRIALS = 5
SEED = 20260202
_TASK = re.compile(r"landmark number (\d+)")


def deterministic(request: dict) -> Reply:
    """Answers that depend on the request only: which task, which agent, which phase.

    Even tasks: the small agent's bid is better; odd tasks: the big agent's, so the
    small agent refines from memory (and its refined bid wins on tasks 3, 7, ...).
    The small agent answers right on tasks whose number is not a multiple of 3.
    """
    text, model = prompt_text(request), request["model"]
    numbers = _TASK.findall(text)  # a refine prompt shows past tasks first, the current one last
    n = int(numbers[-1]) if numbers else -1
    delay = 0.01
    if is_execution(request):  # the executor
        city = "Paris" if model == "big" or n % 3 else "Rome"
        return Reply(f"It is in {city}.\nANSWER: {city}", delay=delay)
    if "You are a juror" in text:
        return Reply(jury_answer(text, lambda bid: int(m[1]) if (m := re.search(r"Q(\d)", bid)) else 0), delay=delay)
    if "You bid for tasks" in text:
        q = 5 if n % 4 == 3 else 2
        return Reply(f"ANALYSIS: the winner named its tools.\nREFINED STRATEGY: search, open, answer. Q{q}", delay=delay)
    q = {("small", 0): 4, ("small", 1): 2, ("big", 0): 3, ("big", 1): 4}[model, n % 2]
    return Reply(f"Search landmark {n}, open its page, answer with the city. Q{q}", delay=delay)


def state(out: Path) -> dict:
    """Everything a finished run must agree on, read from its files; checks they are whole."""
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    results = [json.loads(line) for line in lines]  # every line parses: nothing torn
    for line in (out / "ledger.jsonl").read_text(encoding="utf-8").splitlines():
        json.loads(line)
    db = sqlite3.connect(out / "memory.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT task_id FROM auctions").fetchall()
        assert len(rows) == len({r[0] for r in rows})
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == len(rows)
    finally:
        db.close()
    with SQLiteMemory(out / "memory.sqlite") as mem:
        memory = {
            r.task_id: (r.winner, r.passed, sorted((b.agent, b.kind, b.text, b.won) for b in r.bids)) for r in mem
        }
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {
        "results": [(r["task_id"], r["winner"], r["winner_kind"], r["passed"], r["reason"], r["answer"]) for r in results],
        "memory": memory,
        "summary": (summary["tasks"], summary["passed"], summary["win_share"]),
    }


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(deterministic) as srv:
        yield srv


def command(tmp: Path, server: ScriptedServer, out: Path) -> list[str]:
    pool = tmp / "pool.yaml"
    if not pool.exists():
        pool.write_text(scripted_pool_yaml(server.base_url, [("small", 0.1), ("big", 1.0)], max_retries=0))
    tasks = tmp / "tasks.jsonl"
    if not tasks.exists():
        write_tasks(tasks, N_TASKS)
    return [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]


def calls_made(ledger: Path) -> int:
    try:
        return ledger.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_after(cmd: list[str], ledger: Path, calls: int, jitter_s: float) -> None:
    """Start the run; SIGKILL it ``jitter_s`` after its ``calls``-th LLM call was recorded
    (or let it end, if it makes fewer)."""
    target = calls_made(ledger) + calls
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and calls_made(ledger) < target:
        time.sleep(0.002)
    time.sleep(jitter_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_runs_killed_at_random_points_resume_to_the_reference(server, tmp_path):
    reference = subprocess.run(command(tmp_path, server, tmp_path / "reference"), capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    want = state(tmp_path / "reference")
    assert len(want["results"]) == N_TASKS
    assert {r[2] for r in want["results"]} == {"original", "refined"}  # refinement is in play
    assert {r[3] for r in want["results"]} == {True, False}
    total_calls = calls_made(tmp_path / "reference" / "ledger.jsonl")

    rng = random.Random(SEED)
    landed = []  # how many results each killed run left
    for trial in range(TRIALS):
        out = tmp_path / f"trial-{trial}"
        cmd = command(tmp_path, server, out)
        for _ in range(1 + trial % 2):  # odd trials kill the rerun as well
            left = 1 - len(list(read_jsonl(out / "results.jsonl"))) / N_TASKS
            # a random point of the run: after a random call, plus a random fraction of a call
            kill_after(cmd, out / "ledger.jsonl", rng.randint(1, max(1, round(left * total_calls))), rng.uniform(0, 0.03))
            landed.append(len(list(read_jsonl(out / "results.jsonl"))))
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        got = state(out)
        assert got["results"] == want["results"], f"trial {trial}"
        assert got["memory"] == want["memory"], f"trial {trial}"
        assert got["summary"] == want["summary"], f"trial {trial}"
    print("results left by each killed run:", landed)
    assert sum(0 < n < N_TASKS for n in landed) >= 3, f"too few kills landed mid-run: {landed}"


# ----------------------------------------------------------------------------- llama.cpp servers


def _servers_of(parent: int) -> list[int]:
    """Pids of the llama.cpp server processes started by ``parent`` (alive or not yet reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sale.llm.local" in cmd and b"--parent-pid" in cmd and cmd[cmd.index(b"--parent-pid") + 1] == str(parent).encode():
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, waiting to be reaped


def _loading(pid: int) -> bool:
    """The server process has loaded llama.cpp's library and is not answering yet."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if "xllamacpp" not in maps:
        return False
    port = int(cmd[cmd.index(b"--port") + 1])
    import urllib.request

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.2).read()
        return False
    except OSError:
        return True


def _serving(pid: int) -> bool:
    import urllib.request

    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        port = int(cmd[cmd.index(b"--port") + 1])
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5).read()
        return True
    except (OSError, ValueError):
        return False


@pytest.mark.llama
@pytest.mark.parametrize("moment", ["spawned", "loading", "serving"])
def test_a_killed_run_leaves_no_llama_server_behind(tiny_model, tmp_path, moment):
    """kill -9 of `sale run` just after its servers were spawned, while they load the
    model, and while they serve: every server process dies with it."""
    pool = tmp_path / "pool.yaml"
    pool.write_text("agents:\n" + "".join(
        f"  - name: tiny-{k}\n    model: {tiny_model}\n    price: {{input: {k + 1}, output: {k + 1}}}\n"
        f"    context: 512\n    generation: {{max_tokens: 8}}\n" for k in range(2)
    ) + "execution: {max_steps: 2, max_output_tokens: 8}\n")  # fmt: skip
    tasks = write_tasks(tmp_path / "tasks.jsonl", 20)
    cmd = [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(tasks),
           "--out", str(tmp_path / "out"), "--no-pull"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = {"spawned": lambda pid: True, "loading": _loading, "serving": _serving}[moment]
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            servers = _servers_of(proc.pid)
            seen.update(servers)
            if servers and any(ready(pid) for pid in servers):
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert seen, "the run started no server before it was killed"
    seen.update(_servers_of(proc.pid))  # one spawned in the last instant
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(pid) for pid in seen):
        time.sleep(0.05)
    assert not [pid for pid in seen if _alive(pid)], "a llama.cpp server outlived its killed parent"
