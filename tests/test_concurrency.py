"""`sale run --concurrency N`: several tasks in flight in one process.

The scripted server answers after a delay and records which requests were open at the
same time, so the tests see the overlap itself (never a clock). A run with N tasks in
flight must write what a sequential run writes (for tasks whose auctions do not depend
on the memory), keep every results line and memory record exactly once through a
kill -9, read the memory as it stood when each task started, and keep the early stops
(repeated errors, the per-run budget) of a sequential run.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sale.cli import main as cli
from sale.jsonl import read_jsonl
from sale.memory.staged import StagedMemory, as_of_now
from sale.memory.store import AuctionRecord, Bid, SQLiteMemory
from sale.testing.scripted import Reply, ScriptedServer, is_execution, prompt_text, scripted_pool_yaml
from test_crash import deterministic
from test_outages import comparable, latest, memory_tasks, run_cli, tasks_asked, write_pool
from test_run import responder, write_tasks

_TASK = re.compile(r"landmark number (\d+)")


def task_of(request: dict) -> int:
    found = _TASK.search(prompt_text(request))  # a refine prompt names its own task first
    return int(found[1]) if found else -1


def slow_execution(request: dict) -> Reply:
    """`deterministic`'s answers; the executor answers slowly, the auction quickly, so
    auctions of later tasks run while earlier tasks execute."""
    reply = deterministic(request)
    slow = is_execution(request)
    return dataclasses.replace(reply, delay=0.3 if slow else 0.02)


def test_tasks_are_really_in_flight_together_up_to_the_limit(tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
    with ScriptedServer(responder(delay=0.2)) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        assert run_cli(pool, tasks, tmp_path / "c4", "--concurrency", "4") == 0
        together = srv.overlapping(task_of)
    assert 2 <= together <= 4  # overlapping tasks, never more than asked for
    with ScriptedServer(responder(delay=0.05)) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        assert run_cli(pool, tasks, tmp_path / "c1") == 0
        assert srv.overlapping(task_of) == 1  # the default: one task at a time
    results = list(read_jsonl(tmp_path / "c4" / "results.jsonl"))
    assert sorted(r["task_id"] for r in results) == memory_tasks(tmp_path / "c4") == [f"q{i}" for i in range(8)]


def test_four_in_flight_write_what_one_at_a_time_writes(scripted, tmp_path):
    scripted.responder = responder(delay=0.01)  # every auction ends alike, memory or not
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
    assert run_cli(pool, tasks, tmp_path / "c1") == 0
    assert run_cli(pool, tasks, tmp_path / "c4", "--concurrency", "4") == 0
    one, four = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("c1", "c4"))
    assert comparable(four) == comparable(one)
    assert four["tasks"] == 8 and four["ledger"]["calls"] == one["ledger"]["calls"]

    def rows(d: str) -> dict:
        return {r["task_id"]: (r["winner"], r["passed"], r["answer"], r["dollars"]) for r in read_jsonl(tmp_path / d / "results.jsonl")}

    assert rows("c4") == rows("c1")


def test_an_auction_reads_the_memory_as_it_stood_when_its_task_started(tmp_path):
    """A task's retrieved records are of tasks that had finished (their last call
    answered) before the task's first call; an auction never sees a task in flight."""
    n = 12
    tasks = write_tasks(tmp_path / "tasks.jsonl", n)
    with ScriptedServer(slow_execution) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        out = tmp_path / "out"
        assert run_cli(pool, tasks, out, "--concurrency", "4") in (0, 3)
        events, requests = list(srv.events), list(srv.requests)
    first_start: dict[int, int] = {}
    last_end: dict[int, int] = {}
    for at, (what, i) in enumerate(events):
        t = task_of(requests[i])
        if what == "start":
            first_start.setdefault(t, at)
        else:
            last_end[t] = at
    retrieved_any = False
    for rec in read_jsonl(out / "results.jsonl"):
        auction = json.loads((out / rec["auction"]).read_text())
        me = int(rec["task_id"][1:])
        for other in auction["refinement"]["retrieved"]:
            retrieved_any = True
            assert last_end[int(other[1:])] < first_start[me], (rec["task_id"], other)
    assert retrieved_any  # the memory was in play
    with SQLiteMemory(out / "memory.sqlite") as mem:
        assert sorted(r.task_id for r in mem) == sorted(f"q{i}" for i in range(n))
        assert all(r.passed is not None for r in mem)  # every record with its outcome


def test_a_staged_record_is_invisible_until_its_outcome_and_reads_keep_their_moment(tmp_path):
    mem = StagedMemory(SQLiteMemory(tmp_path / "m.sqlite"))

    def record(task_id: str, text: str) -> AuctionRecord:
        return AuctionRecord(task_id=task_id, task_text=text, winner="a", bids=[Bid(agent="a", text="s", won=True)])

    mem.add(record("t1", "find the capital city of France"))
    assert len(mem) == 0 and mem.nearest("capital city of France") == []  # no outcome yet
    mem.set_outcome("t1", True)
    assert [(r.task_id, r.passed) for r in mem.nearest("capital city of France")] == [("t1", True)]
    with as_of_now():  # a task starts here
        mem.add(record("t2", "find the capital city of Spain"))
        mem.set_outcome("t2", False)  # another task finished meanwhile
        assert [r.task_id for r in mem.nearest("capital city", k=5)] == ["t1"]
        assert mem.outcome_counts() == {"a": (1, 1)}  # the outcome term's prior: as of the start too
    assert {r.task_id for r in mem.nearest("capital city", k=5)} == {"t1", "t2"}
    assert mem.outcome_counts() == {"a": (1, 2)} and mem.outcome_counts(exclude_task_id="t1") == {"a": (0, 1)}
    mem.add(record("t3", "find the capital city of Italy"))
    mem.discard("t3")  # the task errored: nothing is left of it
    assert sorted(r.task_id for r in mem) == ["t1", "t2"] and mem.staged == []
    mem.close()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_kill_9_with_four_in_flight_loses_and_duplicates_nothing(store, request, tmp_path):
    n = 12
    memory = ["--memory", request.getfixturevalue("postgres_url")] if store == "postgres" else []
    tasks = write_tasks(tmp_path / "tasks.jsonl", n)
    with ScriptedServer(responder(delay=0.05)) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out),
               "--concurrency", "4", *memory]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(read_jsonl(out / "results.jsonl"))) < 3:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = (out / "results.jsonl").read_text()
        killed = [json.loads(line) for line in before.splitlines()]  # every line whole
        assert 3 <= len(killed) < n
        assert run_cli(pool, tasks, out, "--concurrency", "4", *memory) == 0
    after = (out / "results.jsonl").read_text()
    assert after.startswith(before)  # nothing written before the kill is lost
    ids = [json.loads(line)["task_id"] for line in after.splitlines()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(n))  # each task once
    if store == "sqlite":
        db = sqlite3.connect(out / "memory.sqlite")
        try:
            rows = [r[0] for r in db.execute("SELECT task_id FROM auctions")]
            assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == len(rows)
        finally:
            db.close()
    else:
        import psycopg

        with psycopg.connect(memory[1]) as conn:
            rows = [r[0] for r in conn.execute("SELECT task_id FROM sale_memory_auctions")]
            assert conn.execute("SELECT COUNT(*) FROM sale_memory_auctions WHERE passed IS NULL").fetchone()[0] == 0
    assert sorted(rows) == sorted(ids)  # each memory record once, with its outcome
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == n and summary["passed"] == n


def test_an_endpoint_down_with_three_in_flight_stops_early_and_a_rerun_retries(tmp_path):
    honest = responder(delay=0.02)
    srv = ScriptedServer().start()
    port = srv.port

    def answer(request):
        if "landmark number 3 in" in prompt_text(request):
            threading.Thread(target=srv.stop, daemon=True).start()
            return Reply(hang=True)
        return honest(request)

    srv.responder = answer
    pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 12)
    out = tmp_path / "out"
    try:
        assert run_cli(pool, tasks, out, "--concurrency", "3") == 5  # stopped early
    finally:
        srv.stop()
    results = latest(out)
    summary = json.loads((out / "summary.json").read_text())
    errored = sorted(t for t, r in results.items() if r["outcome"] == "errored")
    assert len(errored) >= 3 and all(results[t]["error_kind"] == "endpoint" for t in errored)
    assert summary["stop"]["reason"] == "repeated_error" and summary["stop"]["not_started"] > 0
    assert summary["stop"]["not_started"] + len(results) == 12
    assert memory_tasks(out) == sorted(t for t, r in results.items() if r["outcome"] == "passed")
    with ScriptedServer(honest, port=port) as back:
        assert run_cli(pool, tasks, out, "--concurrency", "3") == 0
        redone = {int(t[1:]) for t in errored} | set(range(12)) - {int(t[1:]) for t in results}
        assert tasks_asked(back.requests) == redone
    results = latest(out)
    assert len(results) == 12 and all(r["outcome"] == "passed" for r in results.values())
    assert memory_tasks(out) == sorted(f"q{i}" for i in range(12))


def test_the_per_run_budget_stops_a_run_with_four_in_flight(scripted, tmp_path):
    from test_budget import honest, ledger_dollars, pool_text

    scripted.responder = honest
    tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
    out = tmp_path / "out"
    pool = tmp_path / "pool.yaml"
    per_run = 1.5
    pool.write_text(pool_text(scripted.base_url, {"per_run": per_run}))
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--concurrency", "4"]) == 4
    spent, _ = ledger_dollars(out / "ledger.jsonl")
    assert spent <= per_run  # never exceeded, with calls of four tasks racing for it
    results = latest(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop"]["reason"] == "budget" and summary["budget"]["run_stopped"] is True
    assert summary["budget"]["not_started"] and len(summary["budget"]["not_started"]) + len(results) == 8
    assert summary["budget"]["tasks_limited"]["per_run"]
    pool.write_text(pool_text(scripted.base_url, {"per_run": 100.0}))
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), "--concurrency", "4"]) == 0
    results = latest(out)
    assert len(results) == 8 and all(r["outcome"] == "passed" for r in results.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == 8 and summary["errored"] == 0


def test_concurrency_below_one_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["run", "--tasks", "x.jsonl", "--out", str(tmp_path / "o"), "--concurrency", "0"])
    assert "expected a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- one memory in Postgres


def test_runs_in_flight_together_share_one_postgres_memory(postgres_url, tmp_path):
    """Two runs at once, each with 4 tasks in flight, write one Postgres memory; the
    pool file's ``memory:`` names it for the second."""
    from sale.memory.postgres import PostgresMemory

    all_tasks = [json.loads(line) for line in write_tasks(tmp_path / "all.jsonl", 16).read_text().splitlines()]
    halves = []
    for h in range(2):
        path = tmp_path / f"tasks{h}.jsonl"
        path.write_text("".join(json.dumps(t) + "\n" for t in all_tasks[h::2]))
        halves.append(path)
    with ScriptedServer(slow_execution) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        shared_pool = write_pool(tmp_path / "pool-pg.yaml", srv.base_url, f"memory: {postgres_url}\n")
        cmds = [
            [sys.executable, "-m", "sale.cli", "run", "--pool", str(pool), "--tasks", str(halves[0]),
             "--out", str(tmp_path / "a"), "--concurrency", "4", "--memory", postgres_url],
            [sys.executable, "-m", "sale.cli", "run", "--pool", str(shared_pool), "--tasks", str(halves[1]),
             "--out", str(tmp_path / "b"), "--concurrency", "4"],
        ]  # fmt: skip
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode in (0, 3), err
    assert not (tmp_path / "a" / "memory.sqlite").exists() and not (tmp_path / "b" / "memory.sqlite").exists()
    done = {**latest(tmp_path / "a"), **latest(tmp_path / "b")}
    assert len(done) == 16
    with PostgresMemory(postgres_url) as mem:
        records = {r.task_id: r for r in mem}
    assert sorted(records) == sorted(done) and len(mem_ids := [*records]) == len(set(mem_ids))
    assert all(records[t].passed == r["passed"] for t, r in done.items())  # every outcome, once
    retrieved = set()
    for folder in ("a", "b"):
        for rec in read_jsonl(tmp_path / folder / "results.jsonl"):
            retrieved |= set(json.loads((tmp_path / folder / rec["auction"]).read_text())["refinement"]["retrieved"])
    assert retrieved  # the memory was read


def test_an_unreachable_postgres_memory_stops_the_run_before_the_folder_is_made(scripted, tmp_path, capsys):
    pytest.importorskip("psycopg")
    scripted.responder = responder()
    pool = write_pool(tmp_path / "pool.yaml", scripted.base_url)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    code = run_cli(pool, tasks, tmp_path / "out", "--memory", "postgresql://sale:pw@127.0.0.1:1/db")
    assert code == 2 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert "postgresql://sale:***@127.0.0.1:1/db: cannot connect to the auction memory" in err and "pw@" not in err
