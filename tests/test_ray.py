"""`sale run --ray`: the run's tasks as Ray tasks on a real local cluster (2 CPUs).

One cluster is started for the module (Ray starts slowly on 2 busy cores); the tasks
call the scripted server on loopback and share one real Postgres memory. A worker is
killed for real (SIGKILL to a Ray worker process running a task).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from sale.jsonl import read_jsonl
from sale.testing.scripted import Reply, ScriptedServer, prompt_text
from test_concurrency import task_of
from test_crash import deterministic
from test_outages import latest, run_cli, tasks_asked, write_pool
from test_run import responder, write_tasks


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPUs for this module; skipped with the reason when
    Ray is missing or cannot start here."""
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'sale[ray]')")
    from sale.errors import SaleError
    from sale.ray_run import connect, disconnect

    try:  # as `sale run --ray` starts one: up to 4 workers kept alive (4 tasks in flight below)
        connect(num_cpus=2, in_flight=4)
    except SaleError as exc:
        pytest.skip(str(exc))
    yield ray
    disconnect()


def memory_rows(url: str) -> list[tuple[str, bool | None]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return sorted(conn.execute("SELECT task_id, passed FROM sale_memory_auctions").fetchall())


def check_folder(out: Path, url: str, n: int) -> dict:
    """Every task once in results.jsonl (graded), with its auction record and trajectory
    written by the driver, its calls in the ledger, and one memory record with its
    outcome; returns the summary."""
    results = [r for r in read_jsonl(out / "results.jsonl") if r["outcome"] != "errored"]
    assert sorted(r["task_id"] for r in results) == sorted(f"q{i}" for i in range(n))  # each task once
    for r in results:
        assert json.loads((out / r["auction"]).read_text())["task_id"] == r["task_id"]
        assert (out / r["trajectory"]).read_text().strip()
    ledger = list(read_jsonl(out / "ledger.jsonl"))
    assert {e["task"] for e in ledger} == {f"q{i}" for i in range(n)}
    assert memory_rows(url) == sorted((r["task_id"], r["passed"]) for r in results)  # once each, with its outcome
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == n and summary["graded"] == n and summary["errored"] == 0
    assert summary["passed"] == sum(r["passed"] for r in results)
    assert summary["ledger"]["calls"] == len(ledger)
    return summary


def delayed(request: dict) -> Reply:
    """`deterministic`'s answers (some tasks fail, odd tasks refine from the memory),
    each after 50 ms."""
    return dataclasses.replace(deterministic(request), delay=0.05)


def test_fifty_tasks_over_two_workers_share_one_postgres_memory(ray_cluster, postgres_url, tmp_path):
    n = 50
    tasks = write_tasks(tmp_path / "tasks.jsonl", n)
    with ScriptedServer(delayed) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        out = tmp_path / "out"
        assert run_cli(pool, tasks, out, "--ray", "--memory", postgres_url) == 0
        assert srv.overlapping(task_of) == 2  # two tasks at once: one per worker of the 2-CPU cluster
        assert tasks_asked(srv.requests) == set(range(n))
    summary = check_folder(out, postgres_url, n)
    assert 0 < summary["passed"] < n  # graded both ways, as the responder answers
    retrieved = [json.loads((out / r["auction"]).read_text())["refinement"]["retrieved"] for r in read_jsonl(out / "results.jsonl")]
    assert sum(map(bool, retrieved)) >= 10  # auctions read the one memory the workers write


def warm_workers(ray, k: int, timeout_s: float = 120.0) -> None:
    """Have ``k`` Ray worker processes started (the cluster keeps them alive)."""
    import time

    @ray.remote(num_cpus=2 / k)
    def hold() -> int:
        time.sleep(0.5)
        return os.getpid()

    deadline, seen = time.monotonic() + timeout_s, set()
    while len(seen) < k and time.monotonic() < deadline:
        seen |= set(ray.get([hold.remote() for _ in range(k)]))


def test_more_tasks_in_flight_than_cpus(ray_cluster, postgres_url, tmp_path):
    """--concurrency 4 on the 2-CPU cluster: more than two tasks really at once (each
    asks Ray for half a CPU), never more than four; every result and memory record once."""
    n = 20
    warm_workers(ray_cluster, 4)  # so that the overlap below does not wait on worker start-up on busy cores
    tasks = write_tasks(tmp_path / "tasks.jsonl", n)
    with ScriptedServer(responder(delay=0.5)) as srv:
        pool = write_pool(tmp_path / "pool.yaml", srv.base_url)
        out = tmp_path / "out"
        assert run_cli(pool, tasks, out, "--ray", "--concurrency", "4", "--memory", postgres_url) == 0
        assert 2 < srv.overlapping(task_of) <= 4
    check_folder(out, postgres_url, n)


def ray_workers_running_a_task() -> list[int]:
    """Pids of this test process's Ray workers that run a task now (process title
    ``ray::sale_task``)."""
    me = str(os.getpid())
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if not title.startswith(b"ray::sale_task"):
                continue
            parent = pid  # one of ours: the cluster's processes are children of this one
            while parent not in ("0", "1", me):
                parent = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1]
            if parent == me:
                found.append(int(pid))
        except (OSError, IndexError):
            continue
    return found


def killing_responder(victim_task: int, killed: list[int]):
    """`responder`, that kills a busy Ray worker when task ``victim_task`` first calls."""
    honest = responder(delay=0.05)
    lock = threading.Lock()

    def answer(request):
        if f"landmark number {victim_task} in" in prompt_text(request):
            with lock:
                if not killed:
                    pids = ray_workers_running_a_task()
                    if pids:
                        os.kill(pids[0], signal.SIGKILL)
                        killed.append(pids[0])
        return honest(request)

    return answer


@pytest.mark.parametrize("retries", [3, 0])
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(retries, ray_cluster, postgres_url, tmp_path):
    """With retries Ray runs the killed worker's task again; without, the task is
    recorded errored and the rerun does that task only."""
    import asyncio

    import yaml

    from sale.config import parse_pool
    from sale.llm.ledger import Ledger
    from sale.llm.pool import Pool
    from sale.ray_run import open_ray_runner
    from sale.workloads.loaders import load_tasks

    n = 12
    tasks_file = write_tasks(tmp_path / "tasks.jsonl", n)
    tasks = load_tasks(str(tasks_file))
    out = tmp_path / "out"
    killed: list[int] = []
    with ScriptedServer(killing_responder(5, killed)) as srv:
        pool_file = write_pool(tmp_path / "pool.yaml", srv.base_url)

        async def go() -> dict:
            cfg = parse_pool(yaml.safe_load(pool_file.read_text()))
            ledger = Ledger(out / "ledger.jsonl")
            async with Pool(cfg, ledger=ledger, source=str(pool_file)) as pool:
                runner = open_ray_runner(pool, out, tasks, memory=postgres_url, max_retries=retries)
                try:
                    return await runner.run(tasks)
                finally:
                    ledger.close()

        summary = asyncio.run(go())
    assert killed  # a worker running a task died mid-run
    before = (out / "results.jsonl").read_text()
    results = latest(out)
    assert len(results) == n == len(before.splitlines())  # every task recorded, once
    errored = sorted(t for t, r in results.items() if r["outcome"] == "errored")
    if retries:
        assert errored == [] and summary["exit_code"] == 0
        check_folder(out, postgres_url, n)
        return
    assert len(errored) == 1 and "Ray worker" in results[errored[0]]["error"] and summary["exit_code"] == 3
    assert [t for t, _ in memory_rows(postgres_url)] == sorted(set(results) - set(errored))  # not in the memory
    with ScriptedServer(responder(delay=0.0)) as back:
        pool_file = write_pool(tmp_path / "pool.yaml", back.base_url)
        assert run_cli(pool_file, tasks_file, out, "--ray", "--memory", postgres_url) == 0
        assert tasks_asked(back.requests) == {int(errored[0][1:])}  # the rerun resumes: that task only
    assert (out / "results.jsonl").read_text().startswith(before)  # nothing written before is lost
    assert len(latest(out)) == n
    check_folder(out, postgres_url, n)


# ----------------------------------------------------------------------------- refused before anything starts


def test_a_sqlite_memory_or_a_local_gguf_agent_is_refused_under_ray(tmp_path, capsys):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    pool = write_pool(tmp_path / "pool.yaml", "http://127.0.0.1:9/v1")
    out = tmp_path / "out"
    assert run_cli(pool, tasks, out, "--ray") == 2
    err = capsys.readouterr().err
    assert "--ray needs an auction memory every worker shares" in err and "memory.sqlite" in err
    assert run_cli(pool, tasks, out, "--ray", "--memory", str(tmp_path / "m.sqlite")) == 2
    assert "m.sqlite" in capsys.readouterr().err
    local = tmp_path / "local.yaml"
    local.write_text("agents:\n  - name: tiny\n    model: smollm2-135m-instruct-q8_0\n    price: {input: 0.1, output: 0.1}\n")
    assert run_cli(local, tasks, out, "--ray", "--no-pull", "--memory", "postgresql://u@127.0.0.1:9/db") == 2
    err = capsys.readouterr().err
    assert "tiny is a local GGUF model" in err and len(err.strip().splitlines()) == 1
    pool.write_text(pool.read_text() + "budget: {per_run: 1.0}\n")
    assert run_cli(pool, tasks, out, "--ray", "--memory", "postgresql://u@127.0.0.1:9/db") == 2
    assert "budget.per_run is not supported with --ray" in capsys.readouterr().err
    assert not out.exists()  # refused before the run folder is made
