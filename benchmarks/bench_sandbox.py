"""Latency of the Python sandbox: how long a trivial program takes from call to result.

    python benchmarks/bench_sandbox.py [--runs 30] [--grade-rounds 2]

Prints the median and 90th percentile wall time of ``run_python("print(1)")`` (target:
median under 100 ms), the median of a bare ``python -I -c "print(1)"`` measured in
turn with it (the floor any out-of-process run pays; on a busy machine both grow), the
median for a program that imports numpy, the time of the one-off isolation probe, and
the isolation in force.

With the benchmark data folder (``$SALE_SHARED_DATA``, else ../shared/data), it also
grades reference solutions of HumanEval and DataFrameBench tasks with the coding
grader, the two-process one (``new``) and the earlier one-process one (``old``) in
turn, and prints the median wall time of a grade for each (target: new at most 2x old).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

from sale.envs.coding import CodingEnvironment
from sale.envs.sandbox import run_python, sandbox_isolation

DATA = Path(os.environ.get("SALE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


async def _timed(code: str, runs: int, bare: list[float] | None = None) -> list[float]:
    """Wall times (ms) of ``runs`` sandbox runs; with ``bare``, a plain interpreter run
    is timed before each, into that list."""
    times = []
    for _ in range(runs):
        if bare is not None:
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-c", code, stdout=asyncio.subprocess.DEVNULL)
            await proc.wait()
            bare.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        result = await run_python(code)
        times.append((time.perf_counter() - start) * 1000)
        if not result.ok:
            raise SystemExit(f"sandbox run failed: {result.summary()}\n{result.stderr}")
    return times


def _references(fmt: str, name: str, count: int) -> list:
    """The first ``count`` runnable tasks of a dataset, with their reference solutions."""
    from sale.workloads.loaders import load_tasks
    from sale.workloads.standard import runnable

    path = DATA / "coding" / name
    if not path.is_file():
        return []
    raw = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            raw[str(record["task_id"])] = record
    picked = []
    for task in load_tasks(f"{fmt}:{path}"):
        if runnable(task):
            record = raw[str(task.metadata["original_id"])]
            solution = (record["prompt"] + record["canonical_solution"] if fmt == "humaneval"
                        else record["ground_truth"]["pandas"])
            picked.append((task, solution))
        if len(picked) == count:
            break
    return picked


async def _grade_times(pairs: list, rounds: int) -> dict[str, list[float]]:
    """Wall times (ms) of grading each reference with the new and the old grader in turn."""
    graders = {"new": CodingEnvironment(), "old": CodingEnvironment(boundary=False)}
    times: dict[str, list[float]] = {name: [] for name in graders}
    for _ in range(rounds):
        for task, solution in pairs:
            for name, grader in graders.items():
                start = time.perf_counter()
                grade = await grader.grade(task, solution)
                times[name].append((time.perf_counter() - start) * 1000)
                if not grade.passed:
                    raise SystemExit(f"{name} grader failed the reference of {task.id}:"
                                     f" {grade.detail}")
    return times


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]


async def main(runs: int, grade_rounds: int) -> None:
    start = time.perf_counter()
    isolation = await sandbox_isolation()
    probe_ms = (time.perf_counter() - start) * 1000
    bare: list[float] = []
    trivial = await _timed("print(1)", runs, bare)
    numpy = await _timed("import numpy; print(numpy.ones(3).sum())", max(5, runs // 3))
    print(f"sandbox_probe_ms: {probe_ms:.1f} ms")
    print(f"sandbox_p50_ms: {statistics.median(trivial):.1f} ms")
    print(f"sandbox_p90_ms: {_p90(trivial):.1f} ms")
    print(f"bare_python_p50_ms: {statistics.median(bare):.1f} ms")
    print(f"sandbox_numpy_p50_ms: {statistics.median(numpy):.1f} ms")
    print(f"sandbox_isolation: {isolation}")
    for label, fmt, name, count in (("humaneval", "humaneval", "humaneval.jsonl", 10),
                                    ("dataframebench", "dataframebench",
                                     "dataframebench_val.jsonl", 6)):
        pairs = _references(fmt, name, count) if grade_rounds > 0 else []
        if not pairs:
            print(f"# {label}: no data at {DATA / 'coding' / name}; grade times skipped")
            continue
        times = await _grade_times(pairs, grade_rounds)
        new, old = statistics.median(times["new"]), statistics.median(times["old"])
        print(f"grade_p50_ms_{label}_new: {new:.1f} ms")
        print(f"grade_p50_ms_{label}_old: {old:.1f} ms")
        print(f"grade_p50_ratio_{label}: {new / old:.2f} x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of print(1)")
    parser.add_argument("--grade-rounds", type=int, default=2,
                        help="rounds of grading the reference solutions (0: none)")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.grade_rounds))
