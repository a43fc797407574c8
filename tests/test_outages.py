"""A run that tells an outage from a failure.

The infrastructure fails on purpose here (an endpoint stopped mid-run, an endpoint
that fails only execution calls, a bad or dead URL, a prompt larger than the context,
a full disk, two runs on one folder, a spent budget), and each time the run must say
so: the tasks it hit are errored (kept apart, left out of the memory and pass@1, and
retried by the next run), the terminal names the error, and the exit code tells it
from a run whose tasks were graded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sale.cli import main as cli
from sale.jsonl import read_jsonl
from sale.llm.local import free_port
from sale.memory.store import SQLiteMemory
from sale.testing.scripted import Reply, ScriptedServer, is_execution, prompt_text, scripted_pool_yaml
from test_run import responder, write_tasks

_TASK = re.compile(r"landmark number (\d+) in")


def tasks_asked(requests: list[dict]) -> set[int]:
    """The task numbers the requests were about (bids, jury and execution alike)."""
    return {int(n) for r in requests for n in _TASK.findall(prompt_text(r))[-1:]}


def memory_tasks(out: Path) -> list[str]:
    with SQLiteMemory(out / "memory.sqlite") as mem:
        return sorted(r.task_id for r in mem)


def latest(out: Path) -> dict[str, dict]:
    return {r["task_id"]: r for r in read_jsonl(out / "results.jsonl")}


def run_cli(pool: Path, tasks: Path, out: Path, *args: str) -> int:
    return cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), *args])


def write_pool(path: Path, base_url: str, extra: str = "") -> Path:
    path.write_text(scripted_pool_yaml(base_url, [("small", 0.1), ("big", 1.0)], max_retries=0) + extra)
    return path


# ----------------------------------------------------------------------------- the endpoint goes down


def test_an_endpoint_stopped_mid_run_errors_tasks_stops_early_and_a_rerun_retries_them(tmp_path, capsys):
    honest = responder()
    srv = ScriptedServer().start()
    port = srv.port

    def answer(request):
        if "landmark number 3 in" in prompt_text(request):  # the 4th task: the endpoint dies now
            threading.Thread(target=srv.stop, daemon=True).start()
            return Reply(hang=True)
        return honest(request)

    srv.responder = answer
    pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 10)
    out = tmp_path / "out"
    try:
        assert run_cli(pool, tasks, out) == 5  # stopped early: the same error repeated
    finally:
        srv.stop()
    shown = capsys.readouterr().out
    results = latest(out)
    assert [results[f"q{i}"]["outcome"] for i in range(3)] == ["passed"] * 3
    errored = [t for t, r in results.items() if r["outcome"] == "errored"]
    assert errored == ["q3", "q4", "q5"]  # three in a row, then the run stopped
    assert all(results[t]["error_kind"] == "endpoint" for t in errored)
    assert memory_tasks(out) == ["q0", "q1", "q2"]  # the outage taught the memory nothing
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errored"] == 3 and summary["graded"] == 3 and summary["pass_at_1"] == 1.0
    assert summary["stop"]["reason"] == "repeated_error" and summary["stop"]["not_started"] == 4
    assert summary["exit_code"] == 5
    assert "errored (endpoint): 3 task(s); first: " in shown and "stopped early: 3 tasks in a row errored" in shown
    assert "7 task(s) left to run" in shown and "resume with: sale run" in shown and "exit code 5" in shown

    # The endpoint is back: the rerun runs exactly the errored and the unstarted tasks.
    with ScriptedServer(honest, port=port) as back:
        assert run_cli(pool, tasks, out) == 0
        assert tasks_asked(back.requests) == set(range(3, 10))
    results = latest(out)
    assert all(r["outcome"] == "passed" for r in results.values()) and len(results) == 10
    assert memory_tasks(out) == [f"q{i}" for i in range(10)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errored"] == 0 and summary["tasks"] == 10 and summary["exit_code"] == 0


def test_an_endpoint_failing_only_execution_calls_is_an_outage_not_a_failure(scripted, tmp_path, capsys):
    honest = responder()

    def answer(request):
        if is_execution(request):  # the executor
            return Reply("internal error", status=500)
        return honest(request)

    scripted.responder = answer
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 5)
    out = tmp_path / "out"
    assert run_cli(pool, tasks, out) == 5
    shown = capsys.readouterr().out
    results = list(read_jsonl(out / "results.jsonl"))
    assert [r["task_id"] for r in results] == ["q0", "q1", "q2"]
    for r in results:
        assert r["outcome"] == "errored" and r["error_kind"] == "endpoint" and not r["passed"]
        assert "HTTP 500" in r["error"] and r["winner"]  # the auction ran; its winner's calls failed
    assert memory_tasks(out) == []  # no plan is recorded as failed for an outage
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass_at_1"] is None and summary["graded"] == 0 and summary["errored"] == 3
    assert summary["errored_by_kind"]["endpoint"]["tasks"] == 3
    assert "HTTP 500" in summary["errored_by_kind"]["endpoint"]["first"]
    assert "errored (endpoint): 3 task(s)" in shown

    # Skipping the errored tasks on purpose: only the two not started run now.
    scripted.responder = honest
    asked = len(scripted.requests)
    assert run_cli(pool, tasks, out, "--skip-errored") == 3  # errored tasks remain in the folder
    assert tasks_asked(scripted.requests[asked:]) == {3, 4}
    assert [latest(out)[f"q{i}"]["outcome"] for i in range(5)] == ["errored"] * 3 + ["passed"] * 2
    # and without the flag, the next run retries them
    asked = len(scripted.requests)
    assert run_cli(pool, tasks, out) == 0
    assert tasks_asked(scripted.requests[asked:]) == {0, 1, 2}


# ----------------------------------------------------------------------------- checks before work


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("url, why", [("http://", "host"), ("http://bad host/v1", "host"),
                                      ("http://127.0.0.1:99999/v1", "port")])
def test_a_malformed_endpoint_url_is_refused_before_the_folder_is_made(tmp_path, capsys, url, why):
    pool = write_pool(tmp_path / "pool.yaml", url)
    out = tmp_path / "out"
    assert run_cli(pool, write_tasks(tmp_path / "t.jsonl", 1), out) == 2
    err = one_line_error(capsys)
    assert "base_url" in err and why in err and str(pool) in err
    assert not out.exists()


def test_an_unreachable_endpoint_is_refused_before_the_folder_is_made(tmp_path, capsys):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    pool = write_pool(tmp_path / "pool.yaml", dead)
    out = tmp_path / "out"
    assert run_cli(pool, write_tasks(tmp_path / "t.jsonl", 1), out) == 2
    err = one_line_error(capsys)
    assert dead in err and "unreachable" in err and "'small'" in err and "--no-probe" in err
    assert not out.exists()


@pytest.mark.parametrize("problem", ["task file", "auction section", "execution section", "not a gguf"])
def test_bad_pool_and_task_files_are_refused_before_the_folder_is_made(scripted, tmp_path, capsys, problem):
    tasks = write_tasks(tmp_path / "t.jsonl", 2)
    extra = ""
    if problem == "task file":
        tasks.write_text(tasks.read_text() + '{"id": "broken"\n')
    elif problem == "auction section":
        extra = "auction: {jury: sometimes}\n"
    elif problem == "execution section":
        extra = "execution: {max_steps: -1}\n"
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url, extra)
    if problem == "not a gguf":
        fake = tmp_path / "model.gguf"
        fake.write_text("this is not a model")
        pool.write_text(pool.read_text() + f"  - name: local\n    model: {fake}\n    price: {{input: 0, output: 0}}\n")
    out = tmp_path / "out"
    assert run_cli(pool, tasks, out) == 2
    err = one_line_error(capsys)
    assert {"task file": str(tasks), "auction section": "auction", "execution section": "max_steps",
            "not a gguf": "not a GGUF file"}[problem] in err
    assert not out.exists()


def test_a_prompt_that_does_not_fit_one_agent_goes_to_the_others(scripted, tmp_path):
    honest = responder()

    def answer(request):
        if request["model"] == "small" and len(prompt_text(request)) > 20_000:
            return Reply("This model's maximum context length is 4096 tokens. However, you requested 9000 tokens.",
                         status=400)
        return honest(request)

    scripted.responder = answer
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    tasks = write_tasks(tmp_path / "t.jsonl", 2)
    lines = tasks.read_text().splitlines()
    big = json.loads(lines[1])
    big["prompt"] += " Background: " + "lorem ipsum " * 2500
    tasks.write_text(lines[0] + "\n" + json.dumps(big) + "\n")
    out = tmp_path / "out"
    assert run_cli(pool, tasks, out) == 0
    results = latest(out)
    assert results["q1"]["outcome"] == "passed" and results["q1"]["winner"] == "big"
    auction = json.loads((out / results["q1"]["auction"]).read_text())
    dropped = {(d["agent"], d["role"]): d["reason"] for d in auction["dropped"]}
    assert "context overflow" in dropped["small", "bidder"] and "maximum context length" in dropped["small", "bidder"]


def test_a_prompt_no_agent_can_hold_is_errored_as_context(scripted, tmp_path, capsys):
    honest = responder()

    def answer(request):
        if len(prompt_text(request)) > 20_000:
            return Reply("request (9000 tokens) exceeds the available context size (4096 tokens)", status=400)
        return honest(request)

    scripted.responder = answer
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    tasks = write_tasks(tmp_path / "t.jsonl", 5)
    rows = [json.loads(line) for line in tasks.read_text().splitlines()]
    for row in rows[:4]:  # four overflowing tasks in a row: not an outage, the run goes on
        row["prompt"] += " " + "lorem ipsum " * 2500
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert run_cli(pool, tasks, out) == 3
    shown = capsys.readouterr().out
    results = latest(out)
    assert [results[f"q{i}"]["error_kind"] for i in range(5)] == ["context"] * 4 + [""]
    assert results["q4"]["outcome"] == "passed"
    assert "errored (context): 4 task(s); first: " in shown and "exceeds the available context size" in shown
    assert "exit code 3" in shown


@pytest.mark.llama
def test_a_prompt_larger_than_a_local_agents_context_is_refused_for_that_agent(tiny_model, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text(f"""
agents:
  - name: narrow
    model: {tiny_model}
    price: {{input: 0.01, output: 0.01}}
    context: 512
    generation: {{max_tokens: 8}}
  - name: wide
    model: {tiny_model}
    price: {{input: 0.05, output: 0.05}}
    context: 8192
    generation: {{max_tokens: 8}}
auction: {{bid_max_tokens: 8, refine_max_tokens: 8}}
execution: {{max_steps: 1, max_output_tokens: 8}}
""")
    tasks = write_tasks(tmp_path / "t.jsonl", 1)
    row = json.loads(tasks.read_text())
    row["prompt"] += " Background: " + "the old stone bridge crosses the river " * 150
    tasks.write_text(json.dumps(row) + "\n")
    out = tmp_path / "out"
    assert run_cli(pool, tasks, out, "--no-pull") in (0, 3)
    rec = latest(out)["q0"]
    auction = json.loads((out / rec["auction"]).read_text())
    dropped = {(d["agent"], d["role"]): d["reason"] for d in auction["dropped"]}
    assert "context overflow" in dropped["narrow", "bidder"] and "context size" in dropped["narrow", "bidder"]
    assert rec["winner"] == "wide"


# ----------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs at tmp_path/disk (needs the right to mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()[:200]}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_is_a_one_line_error_and_loses_nothing(scripted, tmp_path, small_disk):
    scripted.responder = responder()
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 30)
    out = small_disk / "out"
    cmd = [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]
    filler = small_disk / "filler"
    free = os.statvfs(small_disk)
    filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 160 * 1024))  # leave 160 KiB
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()[-1]
    assert err.startswith("error: no space left on device: ") and str(small_disk) in err, done.stderr
    assert "Traceback" not in done.stderr
    first = list(read_jsonl(out / "results.jsonl"))  # a line torn by the full disk is cut off by the next run
    graded = [r for r in first if r["outcome"] != "errored"]
    assert 0 < len(graded) < 30 and all(r["outcome"] == "passed" for r in graded)
    assert all(r["error_kind"] == "disk" for r in first[len(graded):])  # the task the disk stopped, if written

    filler.unlink()  # space again: the rerun finishes, every task once
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = latest(out)
    assert len(results) == 30 and all(r["outcome"] == "passed" for r in results.values())
    assert memory_tasks(out) == sorted(results)


# ----------------------------------------------------------------------------- one run per folder


def test_a_second_run_on_the_same_folder_is_refused_naming_the_first(tmp_path, capsys):
    with ScriptedServer(responder(delay=0.05)) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        tasks = write_tasks(tmp_path / "tasks.jsonl", 6)
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (out / "ledger.jsonl").exists() and time.monotonic() < deadline and first.poll() is None:
                time.sleep(0.02)
            assert first.poll() is None, "the first run ended before the second started"
            assert run_cli(pool, tasks, out) == 2
            err = one_line_error(capsys)
            assert f"pid {first.pid}" in err and "in use by another run" in err
            first.send_signal(signal.SIGKILL)  # kill -9: its lock dies with it
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert run_cli(pool, tasks, out) == 0
    ids = [r["task_id"] for r in read_jsonl(out / "results.jsonl")]
    assert sorted(ids) == [f"q{i}" for i in range(6)]  # each task once: no second writer


# ----------------------------------------------------------------------------- the summary


def comparable(summary: dict) -> dict:
    """The summary without what depends on the clock."""
    if isinstance(summary, dict):
        return {k: comparable(v) for k, v in summary.items() if k not in ("wall_share", "latency_s")}
    if isinstance(summary, float):  # sums of the same figures, added in another order
        return float(f"{summary:.10g}")
    return summary


def test_a_run_resumed_reports_what_a_straight_run_reports(scripted, tmp_path):
    scripted.responder = responder()
    # --limit reads fewer tasks, so fewer of their documents: one retrieved document per
    # direct answer keeps each prompt the same in the short runs and the straight one
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url, "execution:\n  retrieve_k: 1\n")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 6)
    assert run_cli(pool, tasks, tmp_path / "straight") == 0
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())

    resumed = tmp_path / "resumed"
    assert run_cli(pool, tasks, resumed, "--limit", "2") == 0  # stopped after two tasks
    part = json.loads((resumed / "summary.json").read_text())
    assert part["tasks"] == 2
    assert run_cli(pool, tasks, resumed, "--limit", "4") == 0
    assert run_cli(pool, tasks, resumed) == 0
    again = json.loads((resumed / "summary.json").read_text())
    assert comparable(again) == comparable(straight)
    # the ledger section covers the whole ledger file, not only the last process
    entries = [json.loads(line) for line in (resumed / "ledger.jsonl").read_text().splitlines()]
    assert again["ledger"]["calls"] == len(entries) > sum(t["calls"] for t in part["ledger"]["by_agent"].values())
    assert again["ledger"]["dollars"] == pytest.approx(sum(e["dollars"] for e in entries))


def test_the_summary_is_rewritten_after_every_task(tmp_path):
    """kill -9 mid-run: summary.json is there, whole, and agrees with results.jsonl."""
    with ScriptedServer(responder(delay=0.02)) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(read_jsonl(out / "results.jsonl"))) < 3:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        results = list(read_jsonl(out / "results.jsonl"))
        summary = json.loads((out / "summary.json").read_text())
        assert 3 <= len(results) < 8
        assert summary["tasks"] in (len(results), len(results) - 1)  # the kill may land between the two writes
        assert summary["dollars"] == pytest.approx(sum(r["dollars"]["total"] for r in results[: summary["tasks"]]))
        assert subprocess.run(cmd, capture_output=True).returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    entries = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert summary["tasks"] == 8 and summary["ledger"]["calls"] == len(entries)


# ----------------------------------------------------------------------------- budgets that speak


def test_a_budget_stop_says_what_spent_and_not_started_and_holds_on_rerun(scripted, tmp_path, capsys):
    from test_budget import honest, pool_text

    scripted.responder = honest
    pool = tmp_path / "pool.yaml"
    pool.write_text(pool_text(scripted.base_url, {"per_run": 1.5}))
    tasks = write_tasks(tmp_path / "tasks.jsonl", 6)
    out = tmp_path / "out"
    assert run_cli(pool, tasks, out) == 4
    shown = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    left = summary["stop"]["not_started"]
    assert left >= 1 and summary["stop"]["to_run"] == left + 1  # the stopped task is run again later
    assert f"stopped by the per-run budget ($1.5): ${summary['budget']['spent']:.6f} spent, {left} task(s) not started" in shown
    assert "per-run budget $1.5 would be exceeded" in shown and "raise budget.per_run" in shown
    assert "errored (budget): 1 task(s)" in shown and "exit code 4 (budget stop)" in shown
    asked = len(scripted.requests)
    assert run_cli(pool, tasks, out) == 4
    assert len(scripted.requests) == asked  # no task started, no call made
    assert f"{left + 1} task(s) not started" in capsys.readouterr().out  # now the stopped one as well


# ----------------------------------------------------------------------------- one-line errors


def test_out_that_is_a_file_is_a_one_line_error(scripted, tmp_path, capsys):
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    out = tmp_path / "results.txt"
    out.write_text("not a folder")
    assert run_cli(pool, write_tasks(tmp_path / "t.jsonl", 1), out) == 2
    err = one_line_error(capsys)
    assert str(out) in err and "not a folder" in err
    assert out.read_text() == "not a folder"


def test_out_in_a_read_only_folder_is_a_one_line_error(scripted, tmp_path, capsys):
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes into any folder: a read-only file system stops it
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(locked)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"as root, only a read-only mount makes a folder read-only, and mounting failed: {done.stderr[:200]}")
    else:
        locked.chmod(0o500)
    try:
        assert run_cli(pool, write_tasks(tmp_path / "t.jsonl", 1), locked / "out") == 2
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(locked)], capture_output=True)
        else:
            locked.chmod(0o700)
    err = one_line_error(capsys)
    assert str(locked) in err and "not writable" in err


def test_debug_shows_the_traceback(scripted, tmp_path):
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    out = tmp_path / "file"
    out.write_text("x")
    cmd = [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks",
           str(write_tasks(tmp_path / "t.jsonl", 1)), "--out", str(out)]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run([*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True)
    assert "Traceback" in debug.stderr and "not a folder" in debug.stderr


def test_an_interrupt_during_imports_is_one_line(tmp_path):
    """SIGINT while the command line imports its heavy modules (numpy is loading)."""
    proc = subprocess.Popen([sys.executable, "-m", "sale.cli", "run", "--tasks", "x", "--out", str(tmp_path / "o")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if "numpy" in maps.read_text():
                break
        except OSError:
            pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == 130 and err.strip().startswith("interrupted"), err


def test_a_conversation_the_agent_grew_past_the_context_is_its_failure(scripted, tmp_path):
    """Only a prompt that does not fit from the start is an outage: an overflow after the
    agent's own steps ends its run, graded (context_full)."""
    honest = responder()

    def answer(request):
        if is_execution(request):  # the executor
            if len(request["messages"]) > 2:  # its second reply
                return Reply("request (5000 tokens) exceeds the available context size (4096 tokens)", status=400)
            return Reply("I look it up first.\nsearch: landmark")
        return honest(request)

    scripted.responder = answer
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url, "execution:\n  start: loop\n")  # the loop's own steps
    out = tmp_path / "out"
    assert run_cli(pool, write_tasks(tmp_path / "t.jsonl", 2), out) == 0
    for r in latest(out).values():
        assert r["reason"] == "context_full" and r["outcome"] == "failed" and not r["error"]
    assert memory_tasks(out) == ["q0", "q1"]
