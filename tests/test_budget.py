"""Hard dollar budgets: refused before the call, never exceeded, reported in the results.

The scripted endpoints here behave like real ones in the two ways the bound relies on:
they never write more than ``max_tokens`` tokens, and they count at most one token per
byte of the prompt.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import yaml

from sale.cli import main as cli
from sale.config import parse_pool
from sale.errors import BudgetExceeded, ConfigError
from sale.jsonl import read_jsonl
from sale.llm.budget import (
    CALL_ALLOWANCE_TOKENS,
    MESSAGE_ALLOWANCE_TOKENS,
    Budget,
    OverBudget,
    max_input_tokens,
    worst_case_dollars,
)
from sale.llm.client import LLMError
from sale.llm.ledger import Ledger, ledger_tags
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, is_execution, prompt_text, scripted_pool_yaml
from test_run import write_tasks

MSG = [{"role": "user", "content": "hello there"}]
_TOKEN = re.compile(r"\s*\S+")


def capped(text: str, request: dict) -> str:
    """``text`` cut to the request's max_tokens (as an endpoint does)."""
    return "".join(_TOKEN.findall(text)[: int(request.get("max_tokens") or 10**9)])


def honest(request: dict) -> Reply:
    """Bids, jury answers and executions for the search tasks of test_run, capped."""
    text = prompt_text(request)
    if "You are a juror" in text:
        out = "\n".join(f"BID {k}: 4" for k in range(1, 4)) if "BID 1" in text else "SCORE: 4"
    elif "ANSWER:" in text or is_execution(request):
        out = "It is in Paris.\nANSWER: Paris"
    else:
        out = "Search the landmark, open its page, read the city and answer with it. " * 3
    return Reply(capped(out, request))


def pool_text(base_url: str, budget: dict | None = None, price: float = 100.0) -> str:
    text = scripted_pool_yaml(base_url, [("small", price), ("big", price * 4)], max_retries=0)
    if budget is not None:
        text += f"budget: {json.dumps(budget)}\n"
    return text


def ledger_dollars(path: Path) -> tuple[float, dict[str, float]]:
    total, by_task = 0.0, {}
    for e in Ledger.read(path):
        total += e.dollars
        by_task[e.task] = by_task.get(e.task, 0.0) + e.dollars
    return total, by_task


# ----------------------------------------------------------------------------- the bound


def test_worst_case_covers_bytes_allowances_and_output():
    msgs = [{"role": "system", "content": "é" * 10}, {"role": "user", "content": "abc"}]
    size = sum(len(json.dumps(m, ensure_ascii=False).encode()) for m in msgs)
    assert max_input_tokens(msgs) == size + 2 * MESSAGE_ALLOWANCE_TOKENS + CALL_ALLOWANCE_TOKENS
    assert max_input_tokens(msgs) >= 20 + 3  # two bytes per 'é': one token per byte at most
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert max_input_tokens(msgs, tools) > max_input_tokens(msgs) + len(json.dumps(tools))
    price = parse_pool(yaml.safe_load(pool_text("http://x"))).agents[0].price  # $100/M in and out
    assert worst_case_dollars(price, msgs, None, 50) == pytest.approx((max_input_tokens(msgs) + 50) * 100 / 1e6)


def test_budget_reserves_settles_and_refuses():
    b = Budget(per_task=1.0, per_run=1.5)
    h1 = b.reserve("a", 0.6, task="t1")
    with pytest.raises(OverBudget) as info:
        b.reserve("a", 0.5, task="t1")  # 0.6 held + 0.5 > 1.0 for t1
    assert info.value.scope == "per_task" and "task 't1'" in str(info.value) and "was not made" in str(info.value)
    h1.settle(0.2)  # the call cost less than its worst case: the rest is free again
    h2 = b.reserve("a", 0.5, task="t1")
    h3 = b.reserve("b", 0.7, task="t2")
    with pytest.raises(OverBudget) as info:
        b.reserve("b", 0.2, task="t3")  # run: 0.2 spent + 1.2 held + 0.2 > 1.5
    assert info.value.scope == "per_run"
    h2.release()
    h2.settle(0.4)  # a second settle of the same hold is ignored
    h3.settle(0.7)
    assert b.spent == pytest.approx(0.9) and b.held == 0
    assert b.spent_on("t1") == pytest.approx(0.2) and b.spent_on("t2") == pytest.approx(0.7)
    assert b.stopped("t1") == "per_task" and b.stopped("t3") == "per_run" and b.stopped("t2") == ""
    assert b.stopped_run
    with pytest.raises(ConfigError, match="per_run"):
        Budget(per_run=0)


def test_budget_section_is_validated():
    base = yaml.safe_load(pool_text("http://x"))
    assert parse_pool({**base, "budget": {"per_task": 0.01, "per_run": 1}}).budget.per_run == 1.0
    assert parse_pool({**base, "budget": None}).budget.per_task is None
    for bad, where in (({"per_task": -1}, "budget.per_task"), ({"per_run": "1$"}, "budget.per_run"),
                       ({"total": 1}, "budget.total"), ({"per_run": True}, "budget.per_run")):
        with pytest.raises(ConfigError, match=re.escape(where)):
            parse_pool({**base, "budget": bad}, "pool.yaml")


# ----------------------------------------------------------------------------- the agent


async def test_refused_call_is_never_sent_and_is_an_llm_error(scripted):
    cfg = parse_pool(yaml.safe_load(pool_text(scripted.base_url, {"per_task": 0.05})))
    scripted.responder = lambda req: Reply(capped("a b c d e f g h", req))
    async with Pool(cfg) as pool:
        small = pool["small"]
        worst = worst_case_dollars(small.price, MSG, None, 100)
        assert worst < 0.05 < 2 * worst + 0.01  # the first call fits, the next one does not
        with ledger_tags(task="t1"):
            await small.chat(MSG, phase="bid", max_tokens=100)
            sent = len(scripted.requests)
            with pytest.raises(OverBudget) as info:
                await small.chat(MSG, phase="bid", max_tokens=int(0.05e6 / 100))  # worst case alone passes it
        assert len(scripted.requests) == sent  # refused before anything went out
        assert isinstance(info.value, LLMError) and isinstance(info.value, BudgetExceeded)
        with ledger_tags(task="t2"):  # another task has its own per-task budget
            await small.chat(MSG, phase="bid", max_tokens=100)
    assert [e.task for e in pool.ledger.entries] == ["t1", "t2"]  # refusals are not calls
    assert pool.budget.stopped("t1") == "per_task"


async def test_concurrent_calls_never_pass_the_limit_together(scripted):
    scripted.responder = lambda req: Reply(capped("w " * 40, req), delay=0.05)
    cfg = parse_pool(yaml.safe_load(pool_text(scripted.base_url)))
    async with Pool(cfg) as pool:
        agent = pool["big"]
        worst = worst_case_dollars(agent.price, MSG, None, 40)
        pool.budget.per_run = 3.5 * worst  # room for three worst cases at once, not four

        async def one():
            try:
                return await agent.chat(MSG, phase="x", max_tokens=40)
            except OverBudget as exc:
                return exc

        answers = await asyncio.gather(*(one() for _ in range(12)))
    made = [a for a in answers if not isinstance(a, OverBudget)]
    assert len(made) == 3  # all twelve were started together: three reservations fit
    assert pool.ledger.totals().dollars <= pool.budget.per_run
    assert pool.budget.held == 0


# ----------------------------------------------------------------------------- a run


def test_tiny_per_task_budget_stops_tasks_and_is_never_exceeded(scripted, tmp_path):
    scripted.responder = honest
    per_task = 0.5  # bids and jury fit; the execution's worst case does not always
    pool = tmp_path / "pool.yaml"
    pool.write_text(pool_text(scripted.base_url, {"per_task": per_task}))
    tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
    out = tmp_path / "out"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]) == 3  # tasks errored
    results = list(read_jsonl(out / "results.jsonl"))
    assert [r["task_id"] for r in results] == ["q0", "q1", "q2", "q3"]  # every task recorded
    _, by_task = ledger_dollars(out / "ledger.jsonl")
    assert all(d <= per_task for d in by_task.values())
    limited = [r for r in results if r["budget"]]
    assert limited and all(r["budget"] == "per_task" for r in limited)
    for r in limited:  # the results say what the budget did
        auction = json.loads((out / r["auction"]).read_text()) if r["auction"] else {"dropped": []}
        refused = [d for d in auction["dropped"] if "per-task budget" in d["reason"]]
        assert r["reason"].startswith("budget: ") or refused, r
        assert r["dollars"]["total"] == pytest.approx(by_task[r["task_id"]])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["per_task"] == per_task and summary["budget"]["run_stopped"] is False
    assert summary["budget"]["tasks_limited"]["per_task"] == [r["task_id"] for r in limited]
    # a task that lost calls to the budget errored (kind budget): kept apart, not learned
    assert all(r["outcome"] == "errored" and r["error_kind"] == "budget" for r in limited)
    assert summary["errored_by_kind"]["budget"]["tasks"] == len(limited) == summary["errored"]
    from sale.memory.store import SQLiteMemory

    with SQLiteMemory(out / "memory.sqlite") as mem:
        assert not {r["task_id"] for r in limited} & {rec.task_id for rec in mem}


def test_per_run_budget_stops_the_run_and_a_resume_keeps_the_limit(scripted, tmp_path):
    scripted.responder = honest
    tasks = write_tasks(tmp_path / "tasks.jsonl", 6)
    out = tmp_path / "out"
    pool = tmp_path / "pool.yaml"
    per_run = 1.5
    pool.write_text(pool_text(scripted.base_url, {"per_run": per_run}))
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]) == 4  # the budget stop
    spent, _ = ledger_dollars(out / "ledger.jsonl")
    assert spent <= per_run
    results = list(read_jsonl(out / "results.jsonl"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["run_stopped"] is True and summary["budget"]["refused_calls"] >= 1
    stopped = [r for r in results if r["budget"] == "per_run"]
    assert len(stopped) == 1 and stopped[0] is results[-1]  # the task that hit the limit, recorded last
    assert stopped[0]["outcome"] == "errored" and stopped[0]["error_kind"] == "budget"
    assert summary["budget"]["tasks_limited"]["per_run"] == [stopped[0]["task_id"]]
    if not stopped[0]["reason"].startswith("budget: "):  # the refused calls were bids or jury calls
        auction = json.loads((out / stopped[0]["auction"]).read_text())
        assert any("per-run budget" in d["reason"] for d in auction["dropped"])
    assert summary["budget"]["not_started"] == [f"q{i}" for i in range(len(results), 6)]
    assert summary["budget"]["not_started"], "the budget should stop the run before its end"

    # A rerun with the same limit starts no task and makes no call: the budget is spent.
    calls = len(Ledger.read(out / "ledger.jsonl"))
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]) == 4
    assert len(Ledger.read(out / "ledger.jsonl")) == calls
    assert list(read_jsonl(out / "results.jsonl")) == results

    # A larger budget resumes: the task the limit stopped runs again, then those not started.
    pool.write_text(pool_text(scripted.base_url, {"per_run": 100.0}))
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]) == 0
    ids = [r["task_id"] for r in read_jsonl(out / "results.jsonl")]
    assert ids == [r["task_id"] for r in results] + [f"q{i}" for i in range(len(results) - 1, 6)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["run_stopped"] is False and summary["errored"] == 0 and summary["tasks"] == 6


@pytest.mark.llama
async def test_bound_holds_for_a_real_tokenizer(tiny_model, tmp_path):
    """The reported prompt tokens of a llama.cpp server stay under the bound."""
    text = f"agents:\n  - name: t\n    model: {tiny_model}\n    price: {{input: 1, output: 1}}\n    context: 2048\n"
    cfg = parse_pool(yaml.safe_load(text))
    samples = [
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ünïcødé ✓ " * 40}],
        [{"role": "user", "content": "def f(x):\n    return {'a': [x, x]}\n" * 20}],
    ]
    async with Pool(cfg) as pool:
        for msgs in samples:
            c = await pool["t"].chat(msgs, phase="probe", max_tokens=4)
            assert 0 < c.input_tokens <= max_input_tokens(msgs)
            assert c.output_tokens <= 4
