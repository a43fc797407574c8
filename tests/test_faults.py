"""Endpoint faults injected into whole runs: `sale run` over a scripted pool.

One agent of the pool ("flaky") misbehaves in one phase (bid, jury, refinement or
execution) in the way a real endpoint can: a timeout, a call that never answers, HTTP
500 or 429 with Retry-After, a truncated or malformed body, an empty completion,
nonsense scores, a refused connection. Every run must finish with every task
recorded; the auction goes on with the agents that answered and records who dropped
out of which role and why. (test_auction.py checks the same rules on single auctions
with hand-computed scores; here they are checked end to end, over HTTP, with the
executor, the memory and the results files in the loop.)
"""

from __future__ import annotations

import collections
import json
import random
import re
from pathlib import Path

import pytest

from sale.cli import main as cli
from sale.jsonl import read_jsonl
from sale.llm.local import free_port
from sale.testing.scripted import Reply, is_execution, jury_answer, prompt_text, scripted_pool_yaml
from test_run import write_tasks

AGENTS = [("flaky", 0.05), ("small", 0.1), ("big", 0.4)]
N_TASKS = 3

TRUNCATED = b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Search the la'
NOT_JSON = b"<html><body>502 Bad Gateway</body></html>"
NO_CHOICES = b'{"id": "x", "object": "chat.completion", "choices": []}'
BAD_USAGE = (b'{"choices": [{"message": {"role": "assistant", "content": "plan"}}],'
             b' "usage": {"prompt_tokens": "many", "completion_tokens": null}}')
NONSENSE = "BID 1: banana\nBID 2: 99\nBID 3: -4\nSCORE: five\n\x00\ufffd\u202e 5/0"


def kind_of(request: dict) -> str:
    text = prompt_text(request)
    if is_execution(request):
        return "execute"
    if "You are a juror" in text:
        return "jury"
    if "You bid for tasks" in text:
        return "refine"
    if "You are one of several agents bidding" in text:
        return "bid"
    raise AssertionError(f"unexpected request: {text[:80]!r}")


class Faulty:
    """The pool's endpoints: honest answers, except where ``faults`` says otherwise.

    ``faults`` maps (kind, model) to a function of n (how many such requests came
    before) returning a Reply, or None for the honest answer. ``quality`` is the Q tag
    each model writes into its bids; jurors score a bid by its tag.
    """

    def __init__(self, faults=None, quality=None):
        self.faults = faults or {}
        self.quality = {"flaky": 3, "small": 3, "big": 3, **(quality or {})}
        self.seen: collections.Counter = collections.Counter()

    def __call__(self, request: dict) -> Reply:
        kind, model = kind_of(request), request["model"]
        n = self.seen[kind, model]
        self.seen[kind, model] += 1
        fault = self.faults.get((kind, model))
        reply = fault(n) if fault else None
        return reply if reply is not None else self.honest(kind, model, request)

    def honest(self, kind: str, model: str, request: dict) -> Reply:
        text = prompt_text(request)
        if kind == "bid":
            return Reply(f"Search the landmark, open its page, answer with the city. Q{self.quality[model]}")
        if kind == "refine":
            return Reply(f"ANALYSIS: the winner named its tools.\nREFINED STRATEGY: search, open, read. Q{self.quality[model]}")
        if kind == "jury":
            return Reply(jury_answer(text, lambda bid: int(m[1]) if (m := re.search(r"Q(\d)", bid)) else 0))
        return Reply("The page says Paris.\nANSWER: Paris")


def always(reply: Reply):
    return lambda n: reply


def first(reply: Reply, times: int = 1):
    return lambda n: reply if n < times else None


def pool_yaml(base_url: str, *, retries: int = 0, timeout_s: float = 2.0, extra: str = "") -> str:
    """The three agents; auction calls time out after 0.25 s, the executor's after ``timeout_s``."""
    text = scripted_pool_yaml(base_url, AGENTS, timeout_s=timeout_s, max_retries=retries)
    return text + "auction: {call_timeout_s: 0.25}\n" + extra


def run(tmp_path: Path, srv, script: Faulty, *, pool_text: str | None = None, n_tasks: int = N_TASKS,
        args: tuple[str, ...] = (), code: int = 0):
    """`sale run` in this process; returns (results, auction records by task, summary)."""
    srv.responder = script
    pool = tmp_path / "pool.yaml"
    pool.write_text(pool_text or pool_yaml(srv.base_url))
    tasks = write_tasks(tmp_path / "tasks.jsonl", n_tasks)
    out = tmp_path / "out"
    got = cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out), *args])
    assert got == code if isinstance(code, int) else got in code
    results = list(read_jsonl(out / "results.jsonl"))
    assert [r["task_id"] for r in results] == [f"q{i}" for i in range(n_tasks)]  # the run completed
    auctions = {r["task_id"]: json.loads((out / r["auction"]).read_text()) for r in results if r["auction"]}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == n_tasks
    return results, auctions, summary


def dropouts(auction: dict) -> dict[tuple[str, str], str]:
    return {(d["agent"], d["role"]): d["reason"] for d in auction["dropped"]}


# ----------------------------------------------------------------------------- bidders

BID_FAULTS = {
    "timeout": (always(Reply("late plan Q5", delay=1.0)), "no answer within"),
    "never answers": (always(Reply(hang=True)), "no answer within"),
    "HTTP 500": (always(Reply("boom", status=500)), "HTTP 500"),
    "HTTP 429 every time": (always(Reply("slow down", status=429, retry_after=0.05)), "HTTP 429"),
    "truncated JSON": (always(Reply(raw=TRUNCATED)), "malformed completion"),
    "not JSON": (always(Reply(raw=NOT_JSON)), "malformed completion"),
    "no choices": (always(Reply(raw=NO_CHOICES)), "no choices"),
    "garbage usage": (always(Reply(raw=BAD_USAGE)), "non-integer token counts"),
    "empty completion": (always(Reply("")), "empty bid"),
    "whitespace completion": (always(Reply(" \n\t ")), "empty bid"),
}


@pytest.mark.parametrize("fault", list(BID_FAULTS))
def test_a_failing_bidder_drops_out_and_the_run_completes(scripted, tmp_path, fault):
    reply, why = BID_FAULTS[fault]
    results, auctions, _ = run(tmp_path, scripted, Faulty({("bid", "flaky"): reply}))
    for r in results:
        assert r["passed"] and r["winner"] in {"small", "big"} and not r["error"]
        auction = auctions[r["task_id"]]
        assert why in dropouts(auction)[("flaky", "bidder")]
        assert {b["agent"] for b in auction["bids"]} == {"small", "big"}
        assert auction["phases"]["bid"]["failed"] == (0 if "empty" in fault or "whitespace" in fault else 1)


@pytest.mark.parametrize("status, retry_after", [(500, None), (429, 0.05), (503, None)])
def test_a_transient_error_is_retried_and_nobody_drops_out(scripted, tmp_path, status, retry_after):
    script = Faulty({("bid", "flaky"): first(Reply("busy", status=status, retry_after=retry_after))},
                    quality={"flaky": 5})
    results, auctions, _ = run(tmp_path, scripted, script, pool_text=pool_yaml(scripted.base_url, retries=1))
    assert script.seen["bid", "flaky"] == N_TASKS + 1  # one retry, then every bid answered
    assert not any(a["dropped"] for a in auctions.values())
    assert [r["winner"] for r in results] == ["flaky"] * N_TASKS


def test_an_unreachable_bidder_drops_out(scripted, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    text = scripted_pool_yaml(scripted.base_url, AGENTS[1:], timeout_s=2.0, max_retries=0)
    text = text.replace("agents:\n", "agents:\n" + scripted_pool_yaml(dead, AGENTS[:1], max_retries=0).split("\n", 1)[1], 1)
    results, auctions, _ = run(tmp_path, scripted, Faulty(), pool_text=text, args=("--no-probe",))
    for r in results:
        assert r["passed"] and r["winner"] != "flaky"
        assert "ClientConnectorError" in dropouts(auctions[r["task_id"]])[("flaky", "bidder")]


def test_a_task_no_bidder_answers_is_recorded_and_the_next_task_runs(scripted, tmp_path):
    down = lambda n: Reply("down", status=500) if n == 1 else None  # noqa: E731 - every agent's 2nd bid
    faults = {("bid", name): down for name, _ in AGENTS}
    results, auctions, summary = run(tmp_path, scripted, Faulty(faults), code=3)  # 3: tasks errored
    assert [bool(r["error"]) for r in results] == [False, True, False]
    assert "no bid survived" in results[1]["error"] and "HTTP 500" in results[1]["error"]
    assert results[1]["reason"] == "error" and not results[1]["passed"]
    assert [r["outcome"] for r in results] == ["passed", "errored", "passed"]
    assert results[1]["error_kind"] == "endpoint"
    assert results[0]["passed"] and results[2]["passed"]
    # the outage is not counted against the agents: pass@1 is over the graded tasks
    assert summary["errored"] == 1 and summary["graded"] == 2 and summary["pass_at_1"] == 1.0
    assert summary["errored_by_kind"]["endpoint"]["tasks"] == 1


# ----------------------------------------------------------------------------- jurors

JURY_FAULTS = {
    "nonsense scores": (always(Reply(NONSENSE)), None),
    "out-of-range scores": (always(Reply("SCORE: 7\nBID 1: 7\nBID 2: 12\nBID 3: 6")), None),
    "HTTP 500": (always(Reply("boom", status=500)), "HTTP 500"),
    "never answers": (always(Reply(hang=True)), "no answer within"),
    "truncated JSON": (always(Reply(raw=TRUNCATED)), "malformed completion"),
    "empty completion": (always(Reply("")), None),
}


@pytest.mark.parametrize("fault", list(JURY_FAULTS))
def test_a_failing_juror_has_its_scores_imputed(scripted, tmp_path, fault):
    reply, why = JURY_FAULTS[fault]
    results, auctions, _ = run(tmp_path, scripted, Faulty({("jury", "flaky"): reply}, quality={"big": 5}))
    for r in results:
        auction = auctions[r["task_id"]]
        assert r["passed"] and r["winner"] == "big"  # the honest jurors still decide
        for bid in auction["bids"]:
            flaky = bid["jury"]["flaky"]
            assert flaky["imputed"] and flaky["raw"] is None
            assert flaky["score"] == pytest.approx(5 if bid["agent"] == "big" else 3)  # the others' mean
            assert not any(s["imputed"] for j, s in bid["jury"].items() if j != "flaky")
        if why:
            assert why in dropouts(auction)[("flaky", "juror")]
        else:  # it answered, with nothing usable: imputed, not a drop-out
            assert "no score in answer" in auction["bids"][0]["jury"]["flaky"]["reason"]
            assert not auction["dropped"]


# ----------------------------------------------------------------------------- refiners


def test_a_failing_refiner_drops_out_and_the_provisional_winner_stands(scripted, tmp_path):
    script = Faulty({("refine", "flaky"): always(Reply("boom", status=500)),
                     ("refine", "small"): always(Reply(raw=TRUNCATED))}, quality={"big": 5, "flaky": 1, "small": 1})
    results, auctions, _ = run(tmp_path, scripted, script)
    assert results[0]["winner"] == "big"  # nothing in memory yet: no refinement
    for r in results[1:]:
        auction = auctions[r["task_id"]]
        assert auction["refinement"]["ran"] and auction["refinement"]["refined"] == []
        drops = dropouts(auction)
        assert "HTTP 500" in drops["flaky", "refiner"] and "malformed" in drops["small", "refiner"]
        assert r["winner"] == "big" and r["winner_kind"] == "original" and r["passed"]


# ----------------------------------------------------------------------------- the executor

EXECUTE_FAULTS = {
    "HTTP 500": (always(Reply("boom", status=500)), "llm_error: HTTP 500"),
    "never answers": (always(Reply(hang=True)), "llm_error: no answer within"),
    "truncated JSON": (always(Reply(raw=TRUNCATED)), "llm_error: malformed completion"),
    "empty completions": (always(Reply("")), "malformed"),
    "HTTP 500 once": (first(Reply("boom", status=500)), "submitted"),
}


@pytest.mark.parametrize("fault", list(EXECUTE_FAULTS))
def test_a_failing_executor_ends_its_task_with_a_reason(scripted, tmp_path, fault):
    reply, reason = EXECUTE_FAULTS[fault]
    text = pool_yaml(scripted.base_url, retries=1 if "once" in fault else 0, timeout_s=0.3,
                     extra="execution: {max_steps: 3}\n")
    outage = reason.startswith("llm_error")  # the endpoint failed, not the agent
    results, _, summary = run(tmp_path, scripted, Faulty({("execute", "flaky"): reply}), pool_text=text,
                              code=3 if outage else 0)
    for r in results:
        assert r["winner"] == "flaky"  # the cheapest agent, all bids scored alike
        assert r["reason"].startswith(reason)
        assert r["passed"] == (reason == "submitted")
        assert r["outcome"] == ("errored" if outage else "passed" if r["passed"] else "failed")
        assert bool(r["error"]) == outage and r["error_kind"] == ("endpoint" if outage else "")
        assert r["dollars"]["bid"] > 0  # the auction's calls are counted even when execution failed
    assert summary["errored"] == (N_TASKS if outage else 0)


# ----------------------------------------------------------------------------- everything at once


def test_random_faults_everywhere_never_crash_a_run(scripted, tmp_path):
    """Seeded chaos: every call of every agent in every phase may fail in any way."""
    rng = random.Random(7)
    menu = [Reply("boom", status=500), Reply("wait", status=429, retry_after=0.01), Reply(raw=TRUNCATED),
            Reply(raw=NOT_JSON), Reply(raw=NO_CHOICES), Reply(""), Reply(NONSENSE), Reply(hang=True),
            Reply("ANSWER:"), Reply("```python\nprint(1)\n```")]  # fmt: skip

    def chaos(n):
        return rng.choice(menu) if rng.random() < 0.35 else None

    faults = {(k, name): chaos for k in ("bid", "jury", "refine", "execute") for name, _ in AGENTS}
    text = pool_yaml(scripted.base_url, retries=1, timeout_s=0.3, extra="execution: {max_steps: 3}\n")
    results, auctions, summary = run(tmp_path, scripted, Faulty(faults, quality={"big": 4}), pool_text=text,
                                     n_tasks=8, args=("--stop-after-errors", "0"), code=(0, 3))
    for r in results:
        assert r["reason"], r
        if r["error"] and not r["winner"]:
            assert "no bid survived" in r["error"]
        else:
            assert r["winner"] in {name for name, _ in AGENTS}
    assert summary["tasks"] == 8
    assert sum(len(a["dropped"]) for a in auctions.values()) > 0  # the faults did land
