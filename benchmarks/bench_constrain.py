"""Constrained executor steps against unconstrained ones: one local model alone on the
multi-hop search tasks of the standard workload, each task run with ``constrain: off``
and ``constrain: auto`` (a grammar on a local model), one after the other.

    python benchmarks/bench_constrain.py --out out/constrain [--model qwen2.5-coder-0.5b]
        [--tasks 10] [--modes off,auto] [--data-dir ../shared/data]

Every episode follows the same fixed plan (no auction: the plan is not what is
measured), greedy decoding, the default limits. Results go to OUT/results.jsonl, one
line per (task, mode) as it finishes, and a rerun resumes. Prints, per mode:
  malformed_episodes_<mode>        episodes that ended on malformed replies / episodes
  episodes_with_malformed_<mode>   episodes with at least one malformed reply / episodes
                                   (a repeated action's correction counts as one)
  unparseable_replies_<mode>       replies with no usable action (repeats not counted) / replies
  pass_<mode>                      tasks passed (the search environment's grade)
  submitted_<mode>                 episodes that ended with an answer
  turned_back_<mode>               answers turned back for restating the question
  step_wall_s_<mode>               mean wall time of one step's LLM call
  step_output_tokens_<mode>        mean tokens written per step
  ms_per_output_token_<mode>       LLM call wall time over tokens written, all steps
and, with both modes, step_wall_ratio_auto_vs_off over the tasks both modes finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from sale.agent.executor import REPEATED, Limits, execute
from sale.config import parse_pool
from sale.jsonl import read_jsonl
from sale.llm.pool import Pool
from sale.run import build_environments
from sale.workloads.standard import standard_workload

PLAN = ("Search for the main entity of the question. If a snippet does not give the answer, open the best "
        "document. Search again for each entity the answer depends on. Answer with a short phrase as soon as "
        "you find it.")  # fmt: skip


def multi_hop(data_dir: Path, n: int) -> list:
    """The first ``n`` multi-hop search tasks of the standard workload (tiers 2-4 in turn)."""
    tasks = [t for t in standard_workload(data_dir) if t.domain == "search" and t.tier >= 2]
    by_tier: dict[int, list] = {}
    for t in tasks:
        by_tier.setdefault(t.tier, []).append(t)
    order = []
    while len(order) < n and any(by_tier.values()):
        for tier in sorted(by_tier):
            if by_tier[tier] and len(order) < n:
                order.append(by_tier[tier].pop(0))
    return order


def done(path: Path) -> dict[tuple[str, str], dict]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["task_id"], r["mode"]): r for r in rows}


async def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    tasks = multi_hop(Path(args.data_dir), args.tasks)
    modes = args.modes.split(",")
    finished = done(results)
    envs = build_environments(tasks, data_dir=args.data_dir)
    cfg = parse_pool({"agents": [{"name": "a", "model": args.model, "price": {"input": 0.1, "output": 0.1},
                                  "context": 4096}]})  # fmt: skip
    if all((t.id, m) in finished for t in tasks for m in modes):
        return
    async with Pool(cfg) as pool:
        for task in tasks:
            for mode in modes:
                if (task.id, mode) in finished:
                    continue
                start = len(pool.ledger.entries)
                path = out / "trajectories" / mode / f"{task.id.replace('/', '_')}.jsonl"
                t0 = time.perf_counter()
                o = await execute(pool["a"], envs[task.domain], task, PLAN, limits=Limits(), trajectory_path=path,
                                  constrain=mode)  # fmt: skip
                calls = [e for e in pool.ledger.entries[start:] if e.ok]
                steps = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
                row = {
                    "task_id": task.id, "tier": task.tier, "mode": mode, "passed": o.passed, "reason": o.reason,
                    "answer": o.answer, "steps": o.steps, "malformed": o.malformed,
                    "turned_back": sum(1 for s in steps if s.get("turned_back")),
                    "call_s": [round(e.latency_s, 3) for e in calls], "output_tokens": [e.output_tokens for e in calls],
                    "input_tokens": [e.input_tokens for e in calls], "wall_s": round(time.perf_counter() - t0, 2),
                }  # fmt: skip
                with results.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"# {task.id} {mode}: {o.reason}, passed={o.passed}, steps={o.steps}, malformed={o.malformed}",
                      flush=True)  # fmt: skip


def report(out: Path, modes: list[str]) -> None:
    rows = list(done(out / "results.jsonl").values())
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        n = len(mine)
        calls = [s for r in mine for s in r["call_s"]]
        toks = [t for r in mine for t in r["output_tokens"]]
        print(f"malformed_episodes_{mode}: {sum(r['reason'] == 'malformed' for r in mine)}/{n} episodes")
        print(f"episodes_with_malformed_{mode}: {sum(r['malformed'] > 0 for r in mine)}/{n} episodes")
        steps = [s for path in sorted((out / "trajectories" / mode).glob("*.jsonl")) for s in read_jsonl(path)
                 if s.get("type") == "step"]
        bad = sum(1 for s in steps if s.get("malformed") and s["malformed"] not in REPEATED.values())
        print(f"unparseable_replies_{mode}: {bad}/{len(steps)} replies")
        print(f"pass_{mode}: {sum(r['passed'] for r in mine)}/{n} tasks")
        print(f"submitted_{mode}: {sum(r['reason'] == 'submitted' for r in mine)}/{n} episodes")
        print(f"turned_back_{mode}: {sum(r['turned_back'] for r in mine)} answers")
        print(f"step_wall_s_{mode}: {sum(calls) / max(1, len(calls)):.2f} s")
        print(f"step_output_tokens_{mode}: {sum(toks) / max(1, len(toks)):.1f} tokens")
        print(f"ms_per_output_token_{mode}: {1000 * sum(calls) / max(1, sum(toks)):.1f} ms")
    if {"off", "auto"} <= set(modes):
        both = {r["task_id"] for r in rows if r["mode"] == "off"} & {r["task_id"] for r in rows if r["mode"] == "auto"}

        def mean(mode: str) -> float:
            calls = [s for r in rows if r["mode"] == mode and r["task_id"] in both for s in r["call_s"]]
            return sum(calls) / max(1, len(calls))

        if both and mean("off"):
            print(f"step_wall_ratio_auto_vs_off: {mean('auto') / mean('off'):.2f} ratio ({len(both)} tasks)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="results folder (a rerun resumes it)")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--modes", default="off,auto")
    ap.add_argument("--data-dir", default=os.environ.get("SALE_SHARED_DATA", "../shared/data"))
    ap.add_argument("--report-only", action="store_true", help="print the figures of what OUT holds")
    args = ap.parse_args()
    if not args.report_only:
        asyncio.run(run(args))
    report(Path(args.out), args.modes.split(","))


if __name__ == "__main__":
    main()
