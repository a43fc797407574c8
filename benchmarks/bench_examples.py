"""Visible examples on the real datasets: how many tasks state some, and whether the
reference solutions pass them (an example a reference fails is wrong in the prompt).

    python benchmarks/bench_examples.py --data-dir ../shared/data

Prints, per dataset:
  examples_tasks_with_<dataset>        tasks whose prompt states examples / tasks (those
                                       whose libraries are installed)
  examples_per_task_<dataset>          examples per task that has some
  examples_reference_pass_<dataset>    tasks whose reference solution passes all of its
                                       visible examples / tasks with examples
  examples_run_ms_<dataset>            wall time of one sandbox run of the examples
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from sale.envs.examples import run_examples, visible_examples
from sale.workloads.loaders import load_tasks
from sale.workloads.standard import runnable

SOURCES = {
    "humaneval": ("coding/humaneval.jsonl", lambda r: r["prompt"] + r["canonical_solution"]),
    "mbpp": ("coding/mbpp_sanitized.jsonl", lambda r: r["code"]),
    "dataframebench": ("coding/dataframebench_val.jsonl", lambda r: (r.get("ground_truth") or {}).get("pandas", "")),
    "dataframebench-train": ("coding/dataframebench_train.jsonl", lambda r: (r.get("ground_truth") or {}).get("pandas", "")),
}


async def main_async(data_dir: Path, limit: int | None) -> None:
    for name, (rel, reference) in SOURCES.items():
        path = data_dir / rel
        records = {str(r["task_id"]): r for r in map(json.loads, path.read_text().splitlines()) if r}
        tasks = [t for t in load_tasks(f"{name.split('-')[0]}:{path}", limit=limit) if runnable(t)]
        with_examples = [(t, visible_examples(t)) for t in tasks]
        with_examples = [(t, ex) for t, ex in with_examples if ex]
        passed, wall = 0, 0.0
        for task, examples in with_examples:
            code = reference(records[str(task.metadata["original_id"])])
            started = time.perf_counter()
            run = await run_examples(code, examples, setup=str(task.grading.get("setup") or ""))
            wall += time.perf_counter() - started
            passed += run.all_passed
        n = len(with_examples)
        name = name.replace("-", "_")
        print(f"examples_tasks_with_{name}: {n}/{len(tasks)} tasks")
        print(f"examples_per_task_{name}: {sum(len(ex) for _, ex in with_examples) / max(1, n):.2f} examples")
        print(f"examples_reference_pass_{name}: {passed}/{n} tasks")
        print(f"examples_run_ms_{name}: {1000 * wall / max(1, n):.0f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--limit", type=int, help="at most this many tasks per dataset")
    args = ap.parse_args()
    asyncio.run(main_async(args.data_dir, args.limit))


if __name__ == "__main__":
    main()
