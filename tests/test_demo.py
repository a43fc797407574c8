"""`sale demo`'s run (`run_demo`): the auction and the largest agent alone on the shipped
workload, side by side, with the cost per phase, on the scripted server."""

from __future__ import annotations

import re

import pytest
import yaml

from sale.config import parse_pool
from sale.demo import run_demo
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, is_execution, jury_answer, prompt_text, scripted_pool_yaml
from sale.workloads.standard import demo_workload

QUALITY = {"small": 1, "mid": 2, "big": 5}
RIGHT = "ANSWER:\n```python\ndef count_vowels(text: str) -> int:\n    return sum(ch in 'aeiou' for ch in text.lower())\n```"


def quality(bid: str) -> int:
    m = re.search(r"Q(\d)", bid)
    return int(m[1]) if m else 0


class Responder:
    """Bids tagged by quality (the big agent's best), jurors score by the tag; only the
    big agent solves tasks: count-vowels, and textiles-founder with a sentence that holds
    the answer (passed by the default rule, match; exact match would fail it); everyone
    else answers wrongly."""

    def __init__(self):
        self.requests = 0

    def __call__(self, request):
        self.requests += 1
        model, text = request["model"], prompt_text(request)
        # an execution: the loop (a system prompt) or the direct answer a search loop starts from
        if is_execution(request):
            if model == "big" and "Who founded Corvin Textiles?" in text:
                return Reply('ANSWER: The final answer is "Ada Quell founded Corvin Textiles in 1902."')
            return Reply(RIGHT if model == "big" and "count_vowels" in text else "ANSWER: no idea")
        if "You are a juror" in text:
            return Reply(jury_answer(text, quality))
        if "You bid for tasks" in text:
            return Reply("ANALYSIS: the winner planned.\nREFINED STRATEGY: guess the answer quickly. Q1")
        return Reply(f"Plan of {model}: read the task, use the tools, answer. Q{QUALITY[model]}")


async def test_demo_runs_the_auction_and_the_largest_agent_side_by_side(scripted, tmp_path):
    responder = Responder()
    scripted.responder = responder
    agents = [("small", 0.1), ("mid", 0.2), ("big", 0.4)]
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(scripted.base_url, agents, max_retries=0)))
    tasks, _ = demo_workload()
    lines: list[str] = []
    async with Pool(cfg) as pool:
        out = await run_demo(pool, tmp_path / "demo", say=lines.append)
        calls = responder.requests
        # A rerun of the same folder resumes: nothing is asked again.
        again = await run_demo(pool, tmp_path / "demo", say=lambda _: None)
    assert responder.requests == calls
    sale, largest = out["sale"], out["largest"]
    assert sale["tasks"] == largest["tasks"] == len(tasks)
    # The big agent's plans win every auction, so its executions serve both columns.
    assert sale["win_share"]["big"] == 1.0 and sale["passed"] == largest["passed"] == 2
    assert sale["grading"]["rule"] == "match" and largest["grading"]["rule"] == "match"
    assert sale["grading"]["search_pass_at_1_by_rule"]["em"] == 0.0
    assert sale["grading"]["search_pass_at_1_by_rule"]["match"] == pytest.approx(1 / 5)
    text = "\n".join(lines)
    assert f"reusing {len(tasks)} execution(s)" in text
    rows = {line.split()[0]: line.split()[-3:] for line in text.splitlines() if line.startswith("demo/")}
    assert rows["demo/count-vowels"] == ["big", "pass", "pass"] and rows["demo/founder-river"] == ["big", "fail", "fail"]
    assert rows["demo/textiles-founder"] == ["big", "pass", "pass"]
    assert "search answers passed by 'match' (auction's search pass@1 by rule: em 0%, match 20%" in text
    # Where the dollars went, per phase: the auction's phases and the execution.
    phases = sale["by_phase"]
    assert set(phases) == {"bid", "jury", "refine", "execute"} and set(largest["by_phase"]) == {"execute"}
    assert sum(p["dollar_share"] for p in phases.values()) == pytest.approx(1.0)
    assert phases["execute"]["dollars_per_task"] == largest["by_phase"]["execute"]["dollars_per_task"]
    assert "Cost per phase" in text and re.search(r"^sale +jury ", text, re.M)
    # calls and cached tokens per phase come from the ledger, skipped jury calls from the auctions
    assert phases["bid"]["calls_per_task"] == len(agents)
    assert sum(p["calls_per_task"] for p in phases.values()) * len(tasks) == calls
    assert phases["jury"]["calls_per_task"] > 0 and phases["jury"]["skipped_calls_per_task"] > 0
    assert phases["bid"]["skipped_calls_per_task"] == phases["execute"]["skipped_calls_per_task"] == 0
    assert all(p["cached_tokens_per_task"] == 0 for p in phases.values())  # the scripted server caches nothing
    assert not re.search(r"^sale +bid +-", text, re.M)
    page = out["report"]["html"].read_text()
    assert "Cost per phase" in page and "<td>largest</td>" in page
    assert again["sale"]["dollars"] == sale["dollars"]
    # the finished demo folder read again under exact match: nothing is asked
    from sale.evaluation.regrade import regrade_folder

    parts = await regrade_folder(tmp_path / "demo", "em", say=lines.append)
    assert responder.requests == calls
    assert parts["sale"]["passed"] == parts["largest"]["passed"] == 1  # the sentence fails em
    assert (tmp_path / "demo" / "regraded-em" / "report" / "report.html").is_file()


def test_demo_whose_executions_fail_upstream_says_so_and_exits_non_zero(scripted, tmp_path, capsys):
    """An endpoint that fails every execution call (HTTP 500) is an outage, not the
    agents' failure: `sale demo` prints the error kind and how to resume, and exits
    with the run's non-zero code."""
    from sale.cli import main
    from sale.outcomes import EXIT_ERRORED, EXIT_STOPPED

    responder = Responder()

    def failing_executions(request):
        if is_execution(request):
            return Reply("upstream broke", status=500)
        return responder(request)

    scripted.responder = failing_executions
    pool = tmp_path / "pool.yaml"
    pool.write_text(scripted_pool_yaml(scripted.base_url, [("small", 0.1), ("mid", 0.2), ("big", 0.4)], max_retries=0))
    code = main(["demo", "--pool", str(pool), "--out", str(tmp_path / "demo"), "--no-pull"])
    out = capsys.readouterr().out
    assert code in (EXIT_ERRORED, EXIT_STOPPED)
    assert "sale run (" in out and "errored (endpoint)" in out and f"exit code {code}" in out
    assert "nothing to compare" in out
