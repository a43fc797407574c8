"""Throughput of `sale run --ray` on a local Ray cluster against a remote-like pool.

    python benchmarks/bench_ray.py [--tasks 24] [--delay 0.2] [--workers 1,2] [--concurrency 16]

The scripted server runs in its own process and answers every call after ``--delay``
seconds; the auction memory is one Postgres database (from the pgserver package) per
level. For each W a local cluster with W CPUs is started (W workers, one task each at
a time), the same tasks run into a fresh folder, and the cluster is shut down; the
start-up and each worker's first task (it builds its pool and router) are not timed.

Prints, per W:
  ray_tasks_per_s_wW         tasks finished per second with W workers
  ray_task_wall_s_wW         mean wall time of one task on a worker (its calls' waits)
  ray_worker_cpu_ms_per_task CPU time a worker spends on one task (auction, execution, grading)
  ray_driver_cpu_ms_per_task CPU time of the driver per task (sending, collecting, writing)
  ray_calls_per_task         model calls per task
and, on the last cluster, ray_tasks_per_s_wW_cN: N tasks in flight on W CPUs (each
task asks Ray for W/N of a CPU; N worker processes), with --concurrency N.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from sale.config import parse_pool
from sale.jsonl import read_jsonl
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.ray_run import connect, open_ray_runner
from sale.testing.postgres import PostgresForTests
from sale.testing.scripted import landmark_tasks, scripted_pool_yaml, serve_in_process


def pause_s(seconds: float) -> None:
    time.sleep(seconds)


async def run_level(n_tasks: int, base_url: str, memory: str, out: Path, concurrency: int | None = None) -> dict:
    text = scripted_pool_yaml(base_url, [("a0", 0.1), ("a1", 0.2), ("a2", 0.3)], concurrency=64)
    cfg = parse_pool(yaml.safe_load(text))
    tasks = landmark_tasks(n_tasks)
    ledger = Ledger(out / "ledger.jsonl")
    async with Pool(cfg, ledger=ledger) as pool:
        runner = open_ray_runner(pool, out, tasks, memory=memory, concurrency=concurrency)
        import ray

        # the workers' processes started, then each one's first task (it builds its pool
        # and router once per run): one-off costs of a stream, not timed
        pause = ray.remote(num_cpus=runner.task_cpus)(pause_s)
        ray.get([pause.remote(2.0) for _ in range(runner.concurrency)])
        warm = tasks[:runner.concurrency]
        await runner.run(warm)
        runner.worker_cpu_s = 0.0
        rest = tasks[len(warm):]
        cpu, t = time.process_time(), time.perf_counter()
        summary = await runner.run(tasks)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    ledger.close()
    assert summary["tasks"] == n_tasks and not summary["errored"], summary
    records = {r["task_id"]: r for r in read_jsonl(out / "results.jsonl")}
    return {
        "rate": len(rest) / wall, "task_wall": statistics.mean(records[t.id]["wall_s"] for t in rest),
        "worker_cpu": runner.worker_cpu_s / len(rest), "driver_cpu": cpu / len(rest),
        "calls": summary["ledger"]["calls"] / n_tasks,
    }


def main() -> None:
    import ray

    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=24)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    reply = "I search the notes first.\nANSWER: Paris"
    server = PostgresForTests()
    try:
        with serve_in_process(reply, delay=args.delay) as base_url, tempfile.TemporaryDirectory(prefix="sale-bench-ray-") as tmp:
            levels = [int(x) for x in args.workers.split(",")]
            for w in levels:
                connect(None, num_cpus=w, in_flight=args.concurrency)  # as `sale run --ray` starts a local cluster
                try:
                    got = asyncio.run(run_level(args.tasks + w, base_url, server.database(), Path(tmp) / f"w{w}"))
                    if w == levels[-1] and args.concurrency:
                        c = args.concurrency
                        wide = asyncio.run(run_level(4 * c, base_url, server.database(), Path(tmp) / f"w{w}c{c}", c))
                finally:
                    ray.shutdown()
                print(f"ray_tasks_per_s_w{w}: {got['rate']:.2f} tasks/s")
                print(f"ray_task_wall_s_w{w}: {got['task_wall']:.3f} s")
                print(f"ray_worker_cpu_ms_per_task_w{w}: {1000 * got['worker_cpu']:.1f} ms")
                print(f"ray_driver_cpu_ms_per_task_w{w}: {1000 * got['driver_cpu']:.1f} ms")
                print(f"ray_calls_per_task_w{w}: {got['calls']:.1f} calls")
            if args.concurrency:
                print(f"ray_tasks_per_s_w{levels[-1]}_c{args.concurrency}: {wide['rate']:.2f} tasks/s")
                print(f"ray_worker_cpu_ms_per_task_w{levels[-1]}_c{args.concurrency}: {1000 * wide['worker_cpu']:.1f} ms")
                print(f"ray_driver_cpu_ms_per_task_w{levels[-1]}_c{args.concurrency}: {1000 * wide['driver_cpu']:.1f} ms")
    finally:
        server.close()


if __name__ == "__main__":
    main()
