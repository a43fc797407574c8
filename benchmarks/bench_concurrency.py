"""Throughput of `sale run --concurrency N` against a remote-like pool.

    python benchmarks/bench_concurrency.py [--tasks 64] [--delay 0.2] [--levels 1,16]

The scripted server runs in its own process and answers every call after ``--delay``
seconds (a remote endpoint's latency), so a task's wall time is waiting on the network;
each agent allows 64 calls in flight. The same tasks run once per level, each into a
fresh folder.

Prints, per level N:
  run_tasks_per_s_cN     tasks finished per second with N tasks in flight
and run_speedup_c{max}_vs_c1.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import yaml

from sale.config import parse_pool
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.run import open_runner
from sale.testing.scripted import landmark_tasks, scripted_pool_yaml, serve_in_process


async def tasks_per_s(n_tasks: int, concurrency: int, base_url: str, out: Path) -> float:
    text = scripted_pool_yaml(base_url, [("a0", 0.1), ("a1", 0.2), ("a2", 0.3)], concurrency=64)
    cfg = parse_pool(yaml.safe_load(text))
    tasks = landmark_tasks(n_tasks)
    ledger = Ledger(out / "ledger.jsonl")
    async with Pool(cfg, ledger=ledger) as pool:
        runner = open_runner(pool, out, tasks, concurrency=concurrency)
        t = time.perf_counter()
        summary = await runner.run(tasks)
        wall = time.perf_counter() - t
    ledger.close()
    assert summary["tasks"] == n_tasks and not summary["errored"], summary
    return n_tasks / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--levels", default="1,16")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    reply = "I search the notes first.\nANSWER: Paris"
    rates = {}
    with serve_in_process(reply, delay=args.delay) as base_url, tempfile.TemporaryDirectory(prefix="sale-bench-c-") as tmp:
        for n in levels:
            rates[n] = asyncio.run(tasks_per_s(args.tasks, n, base_url, Path(tmp) / f"c{n}"))
            print(f"run_tasks_per_s_c{n}: {rates[n]:.2f} tasks/s")
    if len(levels) > 1:
        print(f"run_speedup_c{levels[-1]}_vs_c{levels[0]}: {rates[levels[-1]] / rates[levels[0]]:.1f} x")


if __name__ == "__main__":
    main()
