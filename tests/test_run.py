"""`sale run` end to end: files written with the documented fields, and resumption after a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sale.cli import main as cli
from sale.jsonl import read_jsonl
from sale.testing.scripted import Reply, is_execution, prompt_text, scripted_pool_yaml

RESULT_FIELDS = {"task_id", "tier", "tier_name", "winner", "passed", "dollars", "tokens", "wall_s",
                 "trajectory", "auction"}


def write_tasks(path: Path, n: int) -> Path:
    lines = []
    for i in range(n):
        lines.append(json.dumps({
            "id": f"q{i}", "domain": "search", "prompt": f"Which city is landmark number {i} in?",
            "tier": 1 + i % 2, "tier_name": f"search/{1 + i % 2}",
            "grading": {"answers": ["Paris"]},
            "documents": [{"id": f"d{i}", "title": f"Landmark {i}", "text": f"Landmark {i} stands in Paris."}],
        }))
    path.write_text("\n".join(lines) + "\n")
    return path


def responder(delay: float = 0.0):
    def answer(req):
        text = prompt_text(req)
        if "SCORE" in text or "BID 1" in text:  # a juror
            return Reply("BID 1: 4\nBID 2: 3\nSCORE: 4", delay=delay)
        if "ANSWER:" in text or is_execution(req):  # the executor
            return Reply("It is in Paris.\nANSWER: Paris", delay=delay)
        return Reply("Search the landmark, read its page, answer with the city.", delay=delay)
    return answer


@pytest.fixture
def pool_file(scripted, tmp_path):
    p = tmp_path / "pool.yaml"
    p.write_text(scripted_pool_yaml(scripted.base_url, [("small", 0.1), ("big", 1.0)]))
    return p


def test_run_writes_results_summary_memory_and_ledger(scripted, pool_file, tmp_path):
    scripted.responder = responder()
    tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
    out = tmp_path / "out"
    assert cli(["run", "--pool", str(pool_file), "--tasks", str(tasks), "--out", str(out)]) == 0
    results = list(read_jsonl(out / "results.jsonl"))
    assert [r["task_id"] for r in results] == ["q0", "q1", "q2", "q3"]
    for r in results:
        assert RESULT_FIELDS <= set(r)
        assert r["passed"] is True and r["winner"] in {"small", "big"}
        assert {"bid", "jury", "execute", "total"} <= set(r["dollars"])
        assert r["dollars"]["total"] == pytest.approx(sum(v for k, v in r["dollars"].items() if k != "total"))
        assert (out / r["trajectory"]).is_file() and (out / r["auction"]).is_file()
        auction = json.loads((out / r["auction"]).read_text())
        assert auction["winner"] == r["winner"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass_at_1"] == 1.0 and summary["tasks"] == 4
    assert set(summary["win_share"]) == {"small", "big"}
    assert abs(sum(summary["win_share"].values()) - 1.0) < 1e-9
    assert 0 < summary["auction_overhead"]["token_share"] < 1
    assert (out / "memory.sqlite").is_file()
    from sale.memory.store import SQLiteMemory

    mem = SQLiteMemory(out / "memory.sqlite")
    assert sorted(r.task_id for r in mem) == ["q0", "q1", "q2", "q3"]
    assert all(r.passed is True for r in mem)
    mem.close()
    ledger = [json.loads(l) for l in (out / "ledger.jsonl").read_text().splitlines()]
    assert {e["phase"] for e in ledger} >= {"bid", "jury", "execute"}
    assert sum(e["dollars"] for e in ledger) == pytest.approx(summary["dollars"])


def test_killed_run_resumes_without_repeating_or_losing_a_task(tmp_path):
    """A run killed mid-way (SIGKILL) is resumed by a rerun: every task once, none lost."""
    from sale.testing.scripted import ScriptedServer

    tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
    out = tmp_path / "out"
    with ScriptedServer(responder(delay=0.05)) as srv:
        pool = tmp_path / "pool.yaml"
        pool.write_text(scripted_pool_yaml(srv.base_url, [("small", 0.1), ("big", 1.0)]))
        cmd = [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(list(read_jsonl(out / "results.jsonl"))) >= 3:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = [r["task_id"] for r in read_jsonl(out / "results.jsonl")]
        assert 3 <= len(first) < 8, "the kill should land mid-run"
        asked_before = len(srv.requests)
        assert subprocess.run(cmd, capture_output=True).returncode == 0
        # the rerun did not run finished tasks again: no bids for them
        rerun_prompts = [prompt_text(r) for r in srv.requests[asked_before:]]
        for tid in first:
            n = int(tid[1:])
            assert not any(f"landmark number {n} in" in p for p in rerun_prompts)
    results = [r["task_id"] for r in read_jsonl(out / "results.jsonl")]
    assert sorted(results) == [f"q{i}" for i in range(8)]  # none lost, none twice
    from sale.memory.store import SQLiteMemory

    mem = SQLiteMemory(out / "memory.sqlite")
    assert sorted(r.task_id for r in mem) == sorted(results)
    mem.close()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == 8


def test_bad_task_file_is_a_one_line_error(tmp_path, capsys, pool_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "domain": "search"}\n')
    assert cli(["run", "--pool", str(pool_file), "--tasks", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and "line 1" in err


@pytest.mark.llama
def test_run_on_the_tiny_gguf(tiny_model, tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text(f"""
agents:
  - name: tiny-a
    model: {tiny_model}
    price: {{input: 0.01, output: 0.01}}
    context: 2048
    generation: {{max_tokens: 16}}
  - name: tiny-b
    model: {tiny_model}
    price: {{input: 0.05, output: 0.05}}
    context: 2048
    generation: {{max_tokens: 16}}
auction: {{bid_max_tokens: 16, refine_max_tokens: 16}}
execution: {{max_steps: 2, max_output_tokens: 16}}
""")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    out = tmp_path / "out"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--no-pull"]) == 0
    results = list(read_jsonl(out / "results.jsonl"))
    assert len(results) == 2 and all(RESULT_FIELDS <= set(r) for r in results)
    assert all(r["tokens"]["bid"] > 0 and r["tokens"]["execute"] > 0 for r in results)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == 2 and summary["dollars"] > 0


async def test_a_resumed_run_shows_the_tasks_done_before_in_its_progress(scripted, pool_file, tmp_path):
    from sale import Pool
    from sale.run import open_runner, progress_printer
    from sale.workloads.loaders import load_tasks

    scripted.responder = responder()
    tasks = load_tasks(write_tasks(tmp_path / "tasks.jsonl", 4))
    out = tmp_path / "out"

    class Shown:  # stands in for the progress bar
        def __init__(self):
            self.lines = []

        def update(self, done, text):
            self.lines.append((done, text))

    async with Pool.from_file(pool_file) as pool:
        await open_runner(pool, out, tasks).run(tasks[:3])
        seen, shown = [], Shown()
        show = progress_printer(shown)

        def on_task(done, total, rec):
            seen.append((done, total, rec["task_id"]))
            show(done, total, rec)

        await open_runner(pool, out, tasks).run(tasks, on_task=on_task)
    # The three tasks of the first run come first, then the one run now.
    assert seen == [(1, 4, "q0"), (2, 4, "q1"), (3, 4, "q2"), (4, 4, "q3")]
    # The dollars shown are those of all four tasks, not only of the one run now.
    spent = sum(r["dollars"]["total"] for r in read_jsonl(out / "results.jsonl"))
    assert shown.lines[-1][0] == 4 and f"${spent:.5f}" in shown.lines[-1][1]
