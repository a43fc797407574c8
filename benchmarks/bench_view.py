"""How fast `sale view` answers on a large run folder.

    python benchmarks/bench_view.py [--tasks 10000] [--real 400]

A run of ``--real`` tasks is made with the real runner against a zero-delay scripted
pool (3 agents; bids, jury, refinement, an execution per task), then copied up to
``--tasks`` tasks: each copy is a task of its own (new id, its own auction record,
trajectory and ledger lines), so the folder has the size and shape of a run of that
many scripted tasks without waiting for one. The viewer is served by uvicorn on
loopback and asked over real HTTP.

Prints:
  view_first_page_ms        a fresh viewer: from create_app to the run page's last byte
                            (indexes results.jsonl)
  view_run_page_ms_p50      the run page again (the index is only refreshed)
  view_tasks_api_ms_p50     one page of the task table, filtered and sorted
  view_ledger_index_ms      the first task page asked at once after a fresh viewer's first
                            page (it waits for the ledger's index, begun by that page)
  view_task_page_ms_p50     task pages of random tasks (auction, trajectory, ledger calls)
  view_task_page_ms_p90
  view_folder_mb            the folder's size on disk
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from sale.config import parse_pool
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.run import open_runner, safe_name
from sale.testing.scripted import landmark_tasks, scripted_pool_yaml, serve_in_process
from sale.view import create_app
from sale.view.server import ViewServer


async def real_run(n: int, base_url: str, out: Path) -> None:
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(base_url, [("small", 0.1), ("mid", 0.3), ("big", 1.0)])))
    tasks = landmark_tasks(n, tiers=3)
    ledger = Ledger(out / "ledger.jsonl")
    async with Pool(cfg, ledger=ledger) as pool:
        await open_runner(pool, out, tasks).run(tasks)
    ledger.close()


def grow(out: Path, real: int, total: int) -> None:
    """Copy the real tasks' records until the folder holds ``total`` tasks."""
    results = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    ledger: dict[str, list[dict]] = {}
    for line in (out / "ledger.jsonl").read_text().splitlines():
        e = json.loads(line)
        ledger.setdefault(e["task"], []).append(e)
    with open(out / "results.jsonl", "a") as res_fh, open(out / "ledger.jsonl", "a") as led_fh:
        for i in range(real, total):
            src = results[i % real]
            tid = f"t{i}"
            name = safe_name(tid)
            rec = {**src, "task_id": tid}
            if src.get("auction"):
                auction = json.loads((out / src["auction"]).read_text())
                auction["task_id"] = tid
                (out / "auctions" / f"{name}.json").write_text(json.dumps(auction, indent=2))
                rec["auction"] = f"auctions/{name}.json"
            if src.get("trajectory"):
                (out / "trajectories" / f"{name}.jsonl").write_bytes((out / src["trajectory"]).read_bytes())
                rec["trajectory"] = f"trajectories/{name}.jsonl"
            res_fh.write(json.dumps(rec) + "\n")
            for e in ledger.get(src["task_id"], []):
                led_fh.write(json.dumps({**e, "task": tid}) + "\n")


def fetch(url: str) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
        assert r.status == 200, (url, r.status)
    return 1000 * (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--real", type=int, default=400, help="tasks run for real before the folder is copied up")
    ap.add_argument("--pages", type=int, default=200, help="task pages asked for")
    args = ap.parse_args()
    rules = {"You are a juror": "SCORE: 4", "You bid for tasks": "REFINED STRATEGY: search the notes, then answer.",
             "You are one of several agents bidding": "I search the notes first, then answer with the city."}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sale-bench-view-") as tmp:
        out = Path(tmp) / "run"
        out.mkdir()
        with serve_in_process("I search the notes first.\nANSWER: Paris", rules) as base_url:
            asyncio.run(real_run(min(args.real, args.tasks), base_url, out))
        grow(out, min(args.real, args.tasks), args.tasks)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

        t = time.perf_counter()
        app = create_app(out)
        with ViewServer(out, app=app) as url:
            fetch(url + "/")
            first = 1000 * (time.perf_counter() - t)
            run_page = [fetch(url + "/") for _ in range(20)]
            api = [fetch(url + "/f/_/api/tasks?" + urllib.parse.urlencode(
                {"tier_name": "search/2", "sort": "dollars", "desc": "1", "offset": 100 * k})) for k in range(20)]
            rng = random.Random(0)
            ids = [f"t{rng.randrange(args.tasks)}" for _ in range(args.pages + 1)]
            fresh = create_app(out)  # a second viewer: its first page starts the ledger's index
            with ViewServer(out, app=fresh) as url2:
                fetch(url2 + "/")
                ledger_index = fetch(url2 + f"/f/_/task/{ids[0]}")
            fetch(url + "/")
            pages = sorted(fetch(url + f"/f/_/task/{tid}") for tid in ids[1:])
    print(f"view_tasks: {args.tasks} tasks ({min(args.real, args.tasks)} run, the rest copies)")
    print(f"view_first_page_ms: {first:.0f} ms")
    print(f"view_run_page_ms_p50: {statistics.median(run_page):.1f} ms")
    print(f"view_tasks_api_ms_p50: {statistics.median(api):.1f} ms")
    print(f"view_ledger_index_ms: {ledger_index:.0f} ms")
    print(f"view_task_page_ms_p50: {statistics.median(pages):.1f} ms")
    print(f"view_task_page_ms_p90: {pages[int(0.9 * len(pages))]:.1f} ms")
    print(f"view_folder_mb: {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
