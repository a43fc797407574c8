"""`sale demo`: the shipped demo workload through the auction and through the largest agent alone.

Both runs write into one folder, side by side::

    DIR/sale/      the auction run (results.jsonl, summary.json, memory, ledger, auctions, trajectories)
    DIR/largest/   the largest agent alone, following its own bid from the auction
    DIR/report/    report.html, plots, summary.json comparing the two

The largest agent alone executes each task following the plan it bid in the auction.
Where the auction's winner *was* the largest agent with that same original bid, its
execution is reused rather than run again (greedy decoding makes it the same run);
such rows are marked ``reused``. A rerun with the same folder resumes both runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from sale.agent.executor import Limits
from sale.envs.base import Environment
from sale.jsonl import JsonlWriter, read_jsonl
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.outcomes import OutcomeClass, outcome_of
from sale.progress import Progress
from sale.routers.base import Decision
from sale.run import Runner, as_task_result, build_environments, open_runner, progress_printer, safe_name
from sale.workloads.standard import demo_workload
from sale.workloads.task import Task


class OwnBidRouter:
    """Always routes to one agent, which follows its own original bid from a SALE run."""

    name = "own-bid"

    def __init__(self, agent: str, auctions_dir: Path):
        self.agent = agent
        self.auctions_dir = Path(auctions_dir)

    def bid_of(self, task: Task) -> str:
        path = self.auctions_dir / f"{safe_name(task.id)}.json"
        if not path.exists():
            return ""
        record = json.loads(path.read_text(encoding="utf-8"))
        for bid in record.get("bids", []):
            if bid.get("agent") == self.agent and bid.get("kind") == "original":
                return bid.get("text", "")
        return ""

    async def route(self, task: Task, env: Environment) -> Decision:
        return Decision(agent=self.agent, strategy=self.bid_of(task), info={"winner_kind": "original"})

    def observe(self, task: Task, decision: Decision, passed: bool | None) -> None:
        pass


def reuse_largest_executions(sale_dir: Path, largest_dir: Path, largest: str) -> int:
    """Copy into largest/results.jsonl the SALE executions the largest agent ran with its
    original bid (the same run the largest-alone baseline would make). Returns how many."""
    done = {r["task_id"] for r in read_jsonl(largest_dir / "results.jsonl")}
    n = 0
    with JsonlWriter(largest_dir / "results.jsonl") as out:
        for r in read_jsonl(sale_dir / "results.jsonl"):
            if r["task_id"] in done or r.get("error") or r["winner"] != largest or r["winner_kind"] != "original":
                continue
            d, t = r["dollars"].get("execute", 0.0), r["tokens"].get("execute", 0)
            out.write({
                **r, "dollars": {"execute": d, "total": d}, "tokens": {"execute": t, "total": t},
                "tokens_by_agent": {largest: t}, "wall_s": r["wall_s"] - r["auction_wall_s"],
                "auction_wall_s": 0.0, "auction": "", "reused": True,
                "trajectory": str(Path("..") / "sale" / r["trajectory"]),
            })  # fmt: skip
            n += 1
    return n


def side_by_side(tasks: list[Task], sale: dict[str, dict], largest: dict[str, dict]) -> str:
    lines = [f"{'task':<28}{'tier':<18}{'auction winner':<16}{'auction':>8}{'largest':>9}"]
    mark = {True: "pass", False: "fail", None: "-"}
    for t in tasks:
        s, g = sale.get(t.id, {}), largest.get(t.id, {})
        lines.append(
            f"{t.id[:27]:<28}{t.tier_name[:17]:<18}{(s.get('winner') or '-')[:15]:<16}"
            f"{mark[s.get('passed')]:>8}{mark[g.get('passed')]:>9}"
        )
    return "\n".join(lines)


async def run_demo(
    pool: Pool,
    out_dir: str | Path,
    *,
    tasks: list[Task] | None = None,
    documents: list[Path] | None = None,
    limits: Limits | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo with a started ``pool``; returns {"sale": summary, "largest": summary, "report": paths}."""
    from sale.evaluation.metrics import summarise
    from sale.evaluation.report import format_extra, format_summary, write_report

    out = Path(out_dir)
    if tasks is None:
        tasks, docs_path = demo_workload()
        documents = [docs_path]
    envs = build_environments(tasks, documents=documents or [])
    largest = pool.largest.name

    say(f"== 1/2 strategy auction over {len(pool)} agents ({', '.join(a.name for a in pool.by_price())}), {len(tasks)} tasks")
    sale_runner = open_runner(pool, out / "sale", tasks, envs=envs, limits=limits)
    sale_summary = await _run(sale_runner, tasks, "auction")

    say(f"== 2/2 the largest agent ({largest}) alone, following its own bid")
    reused = reuse_largest_executions(out / "sale", out / "largest", largest)
    if reused:
        say(f"   reusing {reused} execution(s) where the auction's winner was {largest} with that same bid")
    largest_runner = Runner(pool, OwnBidRouter(largest, out / "sale" / "auctions"), envs, out / "largest",
                            limits=sale_runner.limits, action_format=sale_runner.action_format,
                            execution=sale_runner.execution)  # fmt: skip
    largest_summary = await _run(largest_runner, tasks, "largest")

    # graded tasks only: an errored task (the infrastructure failed) says nothing of either method
    graded = lambda r: outcome_of(r) is not OutcomeClass.ERRORED  # noqa: E731
    sale_recs = {r["task_id"]: r for r in read_jsonl(out / "sale" / "results.jsonl")}
    big_recs = {r["task_id"]: r for r in read_jsonl(out / "largest" / "results.jsonl")}
    sale_recs = {k: r for k, r in sale_recs.items() if graded(r)}
    big_recs = {k: r for k, r in big_recs.items() if graded(r)}
    results = {
        "sale": [as_task_result(sale_recs[t.id], "sale", largest) for t in tasks if t.id in sale_recs],
        "largest": [as_task_result(big_recs[t.id], "largest", largest) for t in tasks if t.id in big_recs],
    }
    if not results["sale"] or not results["largest"]:
        # every task of a run errored (an outage): there is nothing graded to compare
        say("no task of " + " or ".join(m for m, r in results.items() if not r) + " was graded; "
            "nothing to compare (see the errors below; a rerun retries the errored tasks)")
        return {"sale": sale_summary, "largest": largest_summary, "summary": None, "report": {}}
    summary = summarise(results, largest="largest", oracle="largest", n_boot=500)
    winners = [[sale_recs[t.id]["winner"] for t in tasks if t.id in sale_recs]]
    extra = {
        "title": "sale demo: strategy auction vs the largest agent alone",
        "agents": [a.name for a in pool.by_price()], "sale_method": "sale", "winners": winners,
        "notes": f"{reused} of the largest agent's executions were reused from the auction run (same agent, same bid).",
        "phase_costs": {"sale": sale_summary.get("by_phase", {}), "largest": largest_summary.get("by_phase", {})},
    }  # fmt: skip
    paths = write_report(out / "report", summary, results, extra)
    say("")
    say(side_by_side(tasks, sale_recs, big_recs))
    say("")
    say(format_summary(summary))
    grading = sale_summary.get("grading") or {}
    if grading.get("search_tasks"):
        rates = ", ".join(f"{r} {p:.0%}" for r, p in grading["search_pass_at_1_by_rule"].items())
        say(f"search answers passed by '{grading.get('rule')}' (auction's search pass@1 by rule: {rates}; "
            f"`sale regrade {out} --grade em` re-reads both runs under another rule)")
    say("\n" + format_extra(extra))
    say(f"\nreport: {paths.get('html')}")
    return {"sale": sale_summary, "largest": largest_summary, "summary": summary, "report": paths}


async def _run(runner: Runner, tasks: list[Task], label: str) -> dict[str, Any]:
    progress = Progress(len(tasks), label)
    try:
        return await runner.run(tasks, on_task=progress_printer(progress))
    finally:
        progress.close()


def demo_pool(pool_path: str | Path, out_dir: Path) -> Pool:
    return Pool.from_file(pool_path, ledger=Ledger(Path(out_dir) / "ledger.jsonl"))
