"""The executor loop: its own overhead, and real local models on the demo workload.

    python benchmarks/bench_executor.py [--episodes 200] [--local qwen2.5-coder-0.5b,...]
                                        [--domains search,coding] [--format text] [--trajectories DIR]

Prints:
  executor_overhead_ms_per_step   wall time of the loop per step, minus the time spent in
                                  LLM calls (parsing, tools on a tiny index, bookkeeping),
                                  over 3-step episodes against the scripted server
  parse_text_action_us            one reply parsed (a thought and a fenced block)
With --local, for each model and domain of the demo workload (one episode per task, a
fixed plan, greedy decoding):
  exec_pass_<model>_<domain>              tasks passed / tasks, in percent
  exec_tokens_per_task_<model>_<domain>   input + output tokens per episode
  exec_steps_per_task_<model>_<domain>    replies per episode
  exec_malformed_per_step_<model>_<domain>  share of replies with no usable action
  exec_submitted_<model>_<domain>         share of episodes that ended with an answer
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sale.agent.actions import parse_text_action
from sale.agent.executor import Limits, execute
from sale.config import parse_pool
from sale.envs.coding import CodingEnvironment
from sale.envs.search import SearchEnvironment, SearchIndex, load_collection
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, ScriptedServer
from sale.workloads.standard import demo_workload
from sale.workloads.task import Document, Task

PLANS = {
    "search": "Search for the main entity of the question. If a snippet does not give the "
              "answer, open the best document. Search again for each entity the answer "
              "depends on. Answer with a short phrase as soon as you find it.",
    "coding": "Write the function, run it on the example from the task, fix any error, "
              "then give the function as the final answer.",
}


def _script(request: dict) -> Reply:
    turn = len(request["messages"]) // 2
    if turn == 1:
        return Reply("Find the tower first.\n```search\nEiffel Tower engineer\n```", usage=(400, 12))
    if turn == 2:
        return Reply("Open it.\n```open\neiffel\n```", usage=(700, 8))
    return Reply("```answer\nGustave Eiffel\n```", usage=(1000, 6))


async def overhead(episodes: int) -> None:
    docs = [Document(id="eiffel", title="Eiffel Tower", text="Built by Gustave Eiffel's company in 1889.")]
    docs += [Document(id=f"d{i}", title=f"Doc {i}", text=f"Filler text number {i} about towers.") for i in range(200)]
    env = SearchEnvironment(SearchIndex.build(docs))
    task = Task(id="bench", domain="search", prompt="Who built the Eiffel Tower?", grading={"answers": ["Gustave Eiffel"]})
    with ScriptedServer(_script) as srv:
        cfg = parse_pool({"agents": [{"name": "a", "endpoint": {"base_url": srv.base_url, "model": "a"},
                                      "price": {"input": 1, "output": 1}}]})
        async with Pool(cfg) as pool:
            await execute(pool["a"], env, task, "plan")  # warm up the connection
            pool.ledger.entries.clear()
            steps, t0 = 0, time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                for i in range(episodes):
                    out = await execute(pool["a"], env, task, "plan", trajectory_path=Path(tmp) / f"{i}.jsonl")
                    assert out.passed, out
                    steps += out.steps
            wall = time.perf_counter() - t0
            llm = sum(e.latency_s for e in pool.ledger.entries)
    print(f"executor_overhead_ms_per_step: {(wall - llm) / steps * 1000:.2f} ms")
    text = "I will look up the tower first, then its engineer.\n```search\nEiffel Tower engineer\n```"
    tools = env.tools(task)
    n, t0 = 20000, time.perf_counter()
    for _ in range(n):
        parse_text_action(text, tools)
    print(f"parse_text_action_us: {(time.perf_counter() - t0) / n * 1e6:.1f} us")


async def local(models: list[str], domains: list[str], action_format: str, limits: Limits, keep: Path | None) -> None:
    tasks, documents = demo_workload()
    envs = {"search": SearchEnvironment(SearchIndex.build(load_collection([documents]))), "coding": CodingEnvironment()}
    for model in models:
        cfg = parse_pool({"agents": [{"name": "a", "model": model, "price": {"input": 0.1, "output": 0.1}, "context": 4096}]})
        async with Pool(cfg) as pool:
            for domain in domains:
                outs = [await execute(pool["a"], envs[domain], t, PLANS[domain], action_format=action_format, limits=limits,
                                      trajectory_path=keep / model / f"{t.id.replace('/', '_')}.jsonl" if keep else None)
                        for t in tasks if t.domain == domain]
                n = len(outs)
                steps = sum(o.steps for o in outs)
                name = f"{model}_{domain}"
                print(f"exec_pass_{name}: {100 * sum(o.passed for o in outs) / n:.0f} % ({sum(o.passed for o in outs)}/{n})")
                print(f"exec_tokens_per_task_{name}: {sum(o.input_tokens + o.output_tokens for o in outs) / n:.0f} tokens")
                print(f"exec_steps_per_task_{name}: {steps / n:.2f} steps")
                print(f"exec_malformed_per_step_{name}: {sum(o.malformed for o in outs) / max(1, steps):.2f} ratio")
                print(f"exec_submitted_{name}: {sum(o.reason == 'submitted' for o in outs) / n:.2f} ratio", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--local", default="", help="comma-separated catalogue models to run on the demo workload")
    ap.add_argument("--domains", default="search,coding")
    ap.add_argument("--format", default="text", choices=["text", "tools"])
    ap.add_argument("--max-steps", type=int, default=6)
    ap.add_argument("--trajectories", type=Path, help="write each local episode's trajectory under this folder")
    args = ap.parse_args()
    asyncio.run(overhead(args.episodes))
    if args.local:
        limits = Limits(max_steps=args.max_steps)
        asyncio.run(local(args.local.split(","), args.domains.split(","), args.format, limits, args.trajectories))


if __name__ == "__main__":
    main()
