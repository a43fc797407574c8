"""Reference solutions under the coding grader: every one must pass its hidden tests.

    python benchmarks/bench_references.py [--data-dir ../shared/data] [--one-process]
                                          [--limit N] [--concurrency 2]

Grades the reference solution of every runnable task of HumanEval, MBPP and
DataFrameBench (val and train) with `CodingEnvironment` (the two-process grader, or
with ``--one-process`` the earlier one) and prints, per dataset,

  references_pass_<dataset>   tasks whose reference passed / runnable tasks
  references_grade_s_<dataset>  wall time of grading them all

followed by the ids (and the reason) of any reference that failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from sale.envs.coding import CodingEnvironment
from sale.workloads.loaders import load_tasks
from sale.workloads.standard import runnable

SOURCES = {
    "humaneval": ("humaneval", "humaneval.jsonl", lambda r: r["prompt"] + r["canonical_solution"]),
    "mbpp": ("mbpp", "mbpp_sanitized.jsonl", lambda r: r["code"]),
    "dataframebench": ("dataframebench", "dataframebench_val.jsonl",
                       lambda r: r["ground_truth"]["pandas"]),
    "dataframebench_train": ("dataframebench", "dataframebench_train.jsonl",
                             lambda r: r["ground_truth"]["pandas"]),
}
DEFAULT_DATA = Path(os.environ.get("SALE_SHARED_DATA",
                                   Path(__file__).resolve().parents[2] / "shared" / "data"))


async def grade_all(env: CodingEnvironment, pairs: list, concurrency: int) -> list:
    """(task id, reason) of each reference that failed."""
    gate = asyncio.Semaphore(concurrency)

    async def one(task, solution):
        async with gate:
            grade = await env.grade(task, solution)
        return None if grade.passed else (task.id, grade.detail.get("reason"))

    results = await asyncio.gather(*(one(t, s) for t, s in pairs))
    return [r for r in results if r is not None]


async def main(data_dir: Path, one_process: bool, limit: int | None, concurrency: int) -> None:
    env = CodingEnvironment(boundary=not one_process)
    for name, (fmt, file, reference) in SOURCES.items():
        path = data_dir / "coding" / file
        if not path.is_file():
            print(f"# {name}: no data at {path}; skipped")
            continue
        records = {str(r["task_id"]): r for r in map(json.loads, path.read_text().splitlines()) if r}
        tasks = [t for t in load_tasks(f"{fmt}:{path}", limit=limit) if runnable(t)]
        pairs = [(t, reference(records[str(t.metadata["original_id"])])) for t in tasks]
        started = time.perf_counter()
        failed = await grade_all(env, pairs, concurrency)
        print(f"references_pass_{name}: {len(pairs) - len(failed)}/{len(pairs)} tasks")
        print(f"references_grade_s_{name}: {time.perf_counter() - started:.1f} s")
        for task_id, reason in failed:
            print(f"# {name}: the reference of {task_id} failed ({reason})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--one-process", action="store_true",
                        help="grade with the earlier one-process grader")
    parser.add_argument("--limit", type=int, help="at most this many tasks per dataset")
    parser.add_argument("--concurrency", type=int, default=2, help="grades at a time")
    args = parser.parse_args()
    asyncio.run(main(args.data_dir, args.one_process, args.limit, args.concurrency))
