"""Orchestration overhead of `sale run` with a zero-delay scripted pool.

    python benchmarks/bench_run.py [--tasks 1000] [--agents 3]

The scripted server runs in its own process and answers every call at once with
"I search the notes first." and "ANSWER: Paris" on two lines (a bid, an unparseable
jury score that is imputed, and an immediate answer in execution), so the auction,
execution, grading, memory, ledger and results bookkeeping all run for real while the
calls cost next to nothing.

Prints:
  run_tasks_per_s            tasks finished per second
  run_overhead_ms_per_task   wall time per task outside any LLM call (the framework's own
                             time: the union of call intervals from the ledger is subtracted)
  run_peak_mb                peak resident memory of the process
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import yaml

from sale.config import parse_pool
from sale.jsonl import read_jsonl
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.run import open_runner
from sale.testing.scripted import landmark_tasks, scripted_pool_yaml, serve_in_process


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


async def bench(n_tasks: int, n_agents: int, base_url: str, out: Path) -> None:
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(base_url, [(f"a{i}", 0.1 * (i + 1)) for i in range(n_agents)])))
    tasks = landmark_tasks(n_tasks)
    ledger = Ledger(out / "ledger.jsonl")
    async with Pool(cfg, ledger=ledger) as pool:
        runner = open_runner(pool, out, tasks)
        t = time.perf_counter()
        summary = await runner.run(tasks)
        wall = time.perf_counter() - t
    ledger.close()
    assert summary["tasks"] == n_tasks, summary
    failed = [r for r in read_jsonl(out / "results.jsonl") if r.get("error")]
    assert not failed, f"{len(failed)} tasks failed, e.g. {failed[0]['error']}"
    calls = union_seconds([(e.ts - e.latency_s, e.ts) for e in ledger.entries])
    print(f"run_tasks_per_s: {n_tasks / wall:.1f} tasks/s")
    print(f"run_calls_per_task: {len(ledger.entries) / n_tasks:.1f} calls")
    print(f"run_overhead_ms_per_task: {1000 * (wall - calls) / n_tasks:.2f} ms")
    print(f"run_peak_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--agents", type=int, default=3)
    args = ap.parse_args()
    reply = "I search the notes first.\nANSWER: Paris"
    with serve_in_process(reply) as base_url, tempfile.TemporaryDirectory(prefix="sale-bench-run-") as tmp:
        asyncio.run(bench(args.tasks, args.agents, base_url, Path(tmp)))


if __name__ == "__main__":
    main()
