"""One local agent on coding tasks in five execution modes: the loop started by the
agent's first action (``start: loop``) with its own plan and without a plan, one direct
answer, and the loop started from a direct answer (``start: direct``, the default) with
and without the plan.

    python benchmarks/bench_execution_modes.py --data-dir ../shared/data --out runs/modes \\
        [--model qwen2.5-coder-1.5b] [--n 20] [--seed 0] [--modes direct,from-direct-plan] [--until 05:05]

The tasks are a seeded sample of HumanEval (``--dataset`` for MBPP or DataFrameBench).
The plan is the agent's own bid (the bid prompt of the auction, the pool's bid token
cap), asked once per task. The modes run task by task, interleaved, so that a run cut
by ``--until`` (a UTC time) leaves every mode with the same tasks done; results go to
``OUT/<mode>/results.jsonl`` with a trajectory per episode, and a rerun resumes.
Execution limits are the default pool's (``execution:`` of local-ladder.yaml).

Prints, per mode, over the tasks every mode finished:
  modes_pass_<mode>             tasks passed, in percent (passed/tasks)
  modes_tokens_per_task_<mode>  input + output tokens of the execution per task
  modes_wall_s_per_task_<mode>  wall time of the execution per task
  modes_steps_per_task_<mode>   replies per task
and modes_bid_tokens_per_task, modes_bid_wall_s_per_task (the plan's cost, paid by the
plan mode only).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import time
from pathlib import Path

from sale.agent.modes import ExecutionSettings, execution_config, run_execution
from sale.auction.bids import collect_bids
from sale.auction.settings import AuctionSettings
from sale.config import default_pool_path, load_pool_config, parse_pool
from sale.envs.coding import CodingEnvironment
from sale.jsonl import JsonlWriter, read_jsonl
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.run import safe_name
from sale.workloads.loaders import load_tasks

MODES = {
    "agent-plan": ExecutionSettings(mode="agent", plan="after", start="loop"),
    "agent-no-plan": ExecutionSettings(mode="agent", plan="none", start="loop"),
    "direct": ExecutionSettings(mode="direct", plan="none"),
    "from-direct-plan": ExecutionSettings(mode="agent", plan="after", start="direct"),
    "from-direct-no-plan": ExecutionSettings(mode="agent", plan="none", start="direct"),
}
DATASETS = {"humaneval": "coding/humaneval.jsonl", "mbpp": "coding/mbpp_sanitized.jsonl",
            "dataframebench": "coding/dataframebench_val.jsonl"}


def deadline(until: str | None) -> float | None:
    """Seconds since the epoch of the next ``HH:MM`` UTC, or None."""
    if not until:
        return None
    now = dt.datetime.now(dt.timezone.utc)
    hour, minute = map(int, until.split(":"))
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at.timestamp()


async def main_async(args: argparse.Namespace) -> None:
    tasks = load_tasks(f"{args.dataset}:{Path(args.data_dir) / DATASETS[args.dataset]}")
    tasks = random.Random(args.seed).sample(tasks, min(args.n, len(tasks)))
    ladder = load_pool_config(default_pool_path())
    settings_all = AuctionSettings.from_pool(ladder)
    _, limits, fmt = execution_config(ladder.execution)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = parse_pool({"agents": [{"name": "agent", "model": args.model, "price": {"input": 0.1544, "output": 0.1544},
                                  "context": 4096}]})
    env = CodingEnvironment(hide_paths=[str(Path(args.data_dir).resolve())])
    stop_at = deadline(args.until)
    plans = {r["task_id"]: r for r in read_jsonl(out / "plans.jsonl")}
    modes = {m: MODES[m] for m in (args.modes.split(",") if args.modes else MODES)}
    done = {m: {r["task_id"]: r for r in read_jsonl(out / m / "results.jsonl")} for m in modes}
    writers = {m: JsonlWriter(out / m / "results.jsonl") for m in modes if (out / m).mkdir(parents=True, exist_ok=True) is None}
    plan_writer = JsonlWriter(out / "plans.jsonl")
    try:
        async with Pool(cfg, ledger=Ledger(out / "ledger.jsonl")) as pool:
            agent = pool["agent"]
            for task in tasks:
                for mode, settings in modes.items():
                    if task.id in done[mode]:
                        continue
                    left = None if stop_at is None else stop_at - time.time()
                    if left is not None and left <= 0:
                        raise TimeoutError
                    async with asyncio.timeout(left):
                        if task.id not in plans:
                            bid_started = time.perf_counter()
                            bids, _, stats = await collect_bids([agent], task.prompt, env.describe(task), settings_all)
                            plans[task.id] = {"task_id": task.id, "plan": bids[0].text if bids else "",
                                              "tokens": stats.input_tokens + stats.output_tokens,
                                              "wall_s": round(time.perf_counter() - bid_started, 2)}
                            plan_writer.write(plans[task.id])
                        started = time.perf_counter()
                        outcome = await run_execution(
                            agent, env, task, plans[task.id]["plan"], settings=settings, limits=limits, action_format=fmt,
                            trajectory_path=out / mode / "trajectories" / f"{safe_name(task.id)}.jsonl")
                    rec = {"task_id": task.id, "passed": outcome.passed, "reason": outcome.reason,
                           "steps": outcome.steps, "tokens": outcome.input_tokens + outcome.output_tokens,
                           "wall_s": round(time.perf_counter() - started, 2), "answer_source": outcome.answer_source}
                    writers[mode].write(rec)
                    done[mode][task.id] = rec
                    print(f"{mode:14s} {task.id:28s} {'pass' if rec['passed'] else 'fail'}  {rec['reason']:10s}"
                          f" {rec['steps']} steps {rec['tokens']} tok {rec['wall_s']} s", file=sys.stderr, flush=True)
    except TimeoutError:
        print(f"stopped at --until {args.until}", file=sys.stderr)
    finally:
        for w in [*writers.values(), plan_writer]:
            w.close()
    common = [t.id for t in tasks if all(t.id in done[m] for m in modes)]
    print(f"modes_tasks: {len(common)} tasks")
    for mode in modes:
        recs = [done[mode][i] for i in common]
        n = max(1, len(recs))
        passed = sum(r["passed"] for r in recs)
        print(f"modes_pass_{mode}: {100 * passed / n:.0f} % ({passed}/{len(recs)})")
        print(f"modes_tokens_per_task_{mode}: {sum(r['tokens'] for r in recs) / n:.0f} tokens")
        print(f"modes_wall_s_per_task_{mode}: {sum(r['wall_s'] for r in recs) / n:.1f} s")
        print(f"modes_steps_per_task_{mode}: {sum(r['steps'] for r in recs) / n:.2f} steps")
    bid_tokens = [plans[i]["tokens"] for i in common if i in plans]
    print(f"modes_bid_tokens_per_task: {sum(bid_tokens) / max(1, len(bid_tokens)):.0f} tokens")
    bid_wall = [plans[i].get("wall_s", 0.0) for i in common if i in plans]
    print(f"modes_bid_wall_s_per_task: {sum(bid_wall) / max(1, len(bid_wall)):.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dataset", default="humaneval", choices=sorted(DATASETS))
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", type=lambda v: v if set(v.split(",")) <= set(MODES) else ap.error(f"--modes: one or more of {', '.join(MODES)}"),
                    help="comma-separated modes to run and report (default: all)")
    ap.add_argument("--until", help="stop starting episodes at this UTC time (HH:MM); a rerun resumes")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
