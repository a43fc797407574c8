"""One task through the auction and the winner's execution, then a stream of tasks.

    python examples/quickstart.py [POOL.yaml]     # default: the local ladder
"""

import asyncio
import sys

from sale import Pool, SALERouter, Task, build_environments, default_pool_path, execute, run_tasks


async def main(pool_file):
    task = Task(
        id="add", domain="coding", prompt="Write a Python function add(a, b) that returns a + b.",
        grading={"style": "asserts", "tests": "assert add(2, 3) == 5", "entry_point": "add"},
    )
    async with Pool.from_file(pool_file) as pool:
        # One task, step by step: auction, execution, outcome into memory.
        router = SALERouter(pool)                              # in-memory auction memory
        env = build_environments([task])["coding"]
        decision = await router.route(task, env)               # every agent bids; the jury scores
        for bid in decision.record["bids"]:
            print(f"{bid['agent']:>14} C-V={bid['total']:+.3f}  {bid['text'][:60]!r}")
        outcome = await execute(pool[decision.agent], env, task, decision.strategy)
        router.observe(task, decision, outcome.passed)         # the memory learns the outcome
        print("winner:", decision.agent, "passed:", outcome.passed, "reason:", outcome.reason)

        # A stream of tasks into a run folder (results.jsonl, summary.json, memory, ledger).
        summary = await run_tasks(pool, [task], "quickstart-run")
        print("pass@1:", summary["pass_at_1"], "dollars:", summary["dollars"])
    print({phase: round(t.dollars, 8) for phase, t in pool.ledger.totals("phase").items()})


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else default_pool_path()))
