"""The memory of outcomes: the memory term m_i of a bid's value and the auction gate.

Memories are real SQLite files holding scripted past auctions (who executed each
past task and whether it passed); auctions run over the scripted HTTP server.
"""

from __future__ import annotations

import random

import pytest
import yaml

from sale.auction.auction import Auction
from sale.auction.outcomes_memory import explore_draw, gate_decision, memory_terms
from sale.auction.settings import AuctionSettings, GateSettings
from sale.auction.weights import BidFeatures, FitExample, Weights, fit_minmax
from sale.config import parse_pool
from sale.errors import ConfigError
from sale.llm.pool import Pool
from sale.memory.store import AuctionRecord, Bid, SQLiteMemory
from sale.routers.sale import SALERouter
from sale.testing.scripted import Reply, is_execution, prompt_text, scripted_pool_yaml
from sale.workloads.task import Task

AGENTS = [("small", 0.1), ("mid", 0.2), ("big", 0.4)]
PRICES = dict(AGENTS)
SURE = [-0.05, -3.5, -4.5, -5.5, -6.5]
ENV = "Tools: search(query) returns documents; open(id) returns one document."
TASK = Task(id="t-now", domain="search", prompt="Who directed the film that won the 1998 award?")
NEAR = "Who directed the film that won the {} award?"
FAR = "Sort these integers ascending and print them comma separated."
WEIGHTS = Weights(w_cost=0.01, w_entropy=-1.0, w_jury={"small": 1 / 3, "mid": 1 / 3, "big": 1 / 3}, w_memory=5.0)


def past(mem: SQLiteMemory, task_id: str, text: str, winner: str, passed: bool | None, losers=("small", "mid", "big")):
    """A past auction of ``text`` won (and executed) by ``winner``; ``passed``: its outcome."""
    bids = [Bid(agent=a, text=f"plan of {a} for {task_id}", won=a == winner) for a in losers if a != winner]
    bids.append(Bid(agent=winner, text=f"plan of {winner} for {task_id}", won=True))
    mem.add(AuctionRecord(task_id=task_id, task_text=text, bids=bids, winner=winner))
    if passed is not None:
        mem.set_outcome(task_id, passed)


@pytest.fixture
def mem(tmp_path):
    with SQLiteMemory(tmp_path / "memory.sqlite") as m:
        yield m


# ----------------------------------------------------------------------------- the memory term


def test_memory_term_is_similarity_weighted_success_shrunk_to_the_prior(mem):
    past(mem, "p1", NEAR.format(1991), "small", False)
    past(mem, "p2", NEAR.format(1992), "small", True)
    past(mem, "p3", NEAR.format(1993), "mid", True)  # executed by another agent
    past(mem, "p4", FAR, "small", True)  # dissimilar: similarity 0, no weight
    past(mem, "p5", NEAR.format(1995), "small", None)  # outcome never observed
    sims = {r.task_id: s for s, r in mem.nearest_scored(TASK.prompt, k=8)}
    assert sims["p4"] < 0.1 and sims["p1"] > 0.5  # clipped at 0: at most a trace of weight
    a = 2.0
    terms = memory_terms(mem, TASK.prompt, ["small", "mid", "big"], k=8, strength=a, exclude=TASK.id)

    # observed executions: small 2 of 3 (p1 failed, p2 and p4 passed), mid 1 of 1; p5 is unknown
    overall = (3 + 1) / (4 + 2)
    prior_small = (2 + a * overall) / (3 + a)
    w = sims["p1"] + sims["p2"] + max(0.0, sims["p4"])
    want_small = (sims["p2"] + max(0.0, sims["p4"]) + a * prior_small) / (w + a)
    small = terms["small"]
    assert small.prior == pytest.approx(prior_small)
    assert small.value == pytest.approx(want_small)
    assert (small.executed, small.passed) == (3, 2)
    assert {n.task_id: n.passed for n in small.neighbours} == {"p1": False, "p2": True, "p4": True}

    prior_mid = (1 + a * overall) / (1 + a)
    assert terms["mid"].value == pytest.approx((sims["p3"] + a * prior_mid) / (sims["p3"] + a))
    assert [n.task_id for n in terms["mid"].neighbours] == ["p3"]

    # an agent that never executed anything gets the overall observed rate: neither favoured nor punished
    assert terms["big"].value == pytest.approx(overall)
    assert terms["big"].neighbours == [] and terms["big"].weight == 0.0


def test_only_observed_executions_count(mem):
    # losing bids say nothing about their agents; unknown outcomes say nothing either
    past(mem, "p1", NEAR.format(1991), "mid", None)
    past(mem, "p2", NEAR.format(1992), "mid", None)
    terms = memory_terms(mem, TASK.prompt, ["small", "mid", "big"], k=8, strength=1.0, exclude=TASK.id)
    assert {a: t.value for a, t in terms.items()} == {"small": 0.5, "mid": 0.5, "big": 0.5}
    assert all(t.neighbours == [] for t in terms.values())
    # the current task's own record (a rerun over a kept memory) is not evidence about itself
    past(mem, TASK.id, TASK.prompt, "mid", False)
    terms = memory_terms(mem, TASK.prompt, ["mid"], k=8, strength=1.0, exclude=TASK.id)
    assert terms["mid"].value == 0.5
    assert mem.outcome_counts() == {"mid": (0, 1)}
    assert mem.outcome_counts(exclude_task_id=TASK.id) == {}


def test_memory_settings_are_validated():
    with pytest.raises(ConfigError, match="memory_prior"):
        AuctionSettings.from_dict({"memory_prior": 0})
    with pytest.raises(ConfigError, match="explore"):
        AuctionSettings.from_dict({"gate": {"explore": 2}})
    with pytest.raises(ConfigError, match="gate"):
        AuctionSettings.from_dict({"gate": {"kk": 2}})
    s = AuctionSettings.from_dict({"memory_value": True, "gate": {"k": 3}})
    assert s.gate == GateSettings(k=3) and AuctionSettings.from_dict(s.model_dump()) == s
    assert AuctionSettings().memory_value is False and AuctionSettings().gate is None


# ----------------------------------------------------------------------------- auctions


class Script:
    """Bids per model; jurors score every bid 3 (so the jury cannot decide)."""

    def __init__(self, lengths=None):
        self.lengths = lengths or {"small": 40, "mid": 40, "big": 40}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, request):
        model, text = request["model"], prompt_text(request)
        if "You are a juror" in text:
            self.calls.append(("jury", model))
            if "SCORE: <a whole number" in text:
                return Reply("SCORE: 3")
            return Reply("\n".join(f"BID {k}: 3" for k in range(1, 4)))
        if "You bid for tasks" in text:
            self.calls.append(("refine", model))
            return Reply("")
        self.calls.append(("bid", model))
        return Reply(f"Search the award, open the page, read the director ({model}).", top_logprobs=SURE,
                     usage=(100, self.lengths[model]))  # fmt: skip

    def count(self, kind: str) -> int:
        return sum(k == kind for k, _ in self.calls)


async def auction_with(srv, script, mem, settings, weights=WEIGHTS, task=TASK, original=None):
    srv.responder = script
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(srv.base_url, AGENTS, max_retries=0)))
    async with Pool(cfg) as pool:
        result = await Auction(pool, mem, settings, weights).run(task, ENV, original=original)
        entries = [e for e in pool.ledger.entries if e.task == task.id]
    return result, entries


async def test_memory_value_moves_the_choice_and_the_record_shows_its_evidence(scripted, mem):
    for i in range(3):  # small failed the similar tasks it executed; mid passed its own
        past(mem, f"s{i}", NEAR.format(1990 + i), "small", False)
        past(mem, f"m{i}", NEAR.format(1980 + i), "mid", True)
    off, _ = await auction_with(scripted, Script(), mem, AuctionSettings(no_memory=True))
    assert off.winner == "small" and off.memory_value is None
    assert all(b.memory is None and b.memory_term == 0.0 for b in off.bids)

    on, _ = await auction_with(scripted, Script(), mem, AuctionSettings(no_memory=True, memory_value=True))
    assert on.winner == "mid"
    ev = on.memory_value
    assert ev["k"] == 8 and ev["w_memory"] == 5.0
    assert {n["task_id"]: n["passed"] for n in ev["agents"]["small"]["neighbours"]} == {f"s{i}": False for i in range(3)}
    assert all(n["passed"] for n in ev["agents"]["mid"]["neighbours"])
    assert ev["agents"]["big"]["neighbours"] == []
    for b in on.bids:
        assert b.memory == pytest.approx(ev["agents"][b.agent]["value"])
        assert b.memory_term == pytest.approx(5.0 * b.memory)
        assert b.total == pytest.approx(b.cost - b.value)
    small, mid = (next(b for b in on.bids if b.agent == a) for a in ("small", "mid"))
    assert small.memory < 0.5 < mid.memory
    # the record round-trips with its evidence
    from sale.auction.record import AuctionResult

    again = AuctionResult.from_dict(on.to_dict())
    assert again.memory_value == on.memory_value and again.bids[0].memory == on.bids[0].memory


async def test_pruned_jury_with_memory_value_decides_as_the_whole_jury(scripted, mem):
    past(mem, "s0", NEAR.format(1990), "small", False)
    past(mem, "m0", NEAR.format(1991), "mid", True)
    settings = AuctionSettings(no_memory=True, memory_value=True, jury_pruning="off")
    full, _ = await auction_with(scripted, Script(), mem, settings)
    script = Script()
    pruned, _ = await auction_with(scripted, script, mem, settings.model_copy(update={"jury_pruning": "exact"}))
    assert pruned.winner == full.winner
    assert script.count("jury") < 9  # the memory term decided part of it without the jury
    # the pruner's C - V of a bid whose scores are all known is the record's total, memory term included
    srv = scripted
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(srv.base_url, AGENTS, max_retries=0)))
    async with Pool(cfg) as pool:
        auction = Auction(pool, mem, settings, WEIGHTS)
        for b in full.bids:
            cand = auction.candidate(b)
            cand.known = {j: js.score for j, js in b.jury.items()}
            assert b.memory_term != 0.0
            assert cand.bounds() == pytest.approx((b.total, b.total))


# ----------------------------------------------------------------------------- the fit


def test_fit_recovers_a_known_memory_weight():
    """Two agents alike but for price and memory: the target is whoever the known
    weights (w_c = 0.01, w_m = 5) pick, so the ratio w_m / w_c is pinned by the data."""
    rng = random.Random(7)
    examples = []
    for i in range(300):
        m_cheap, m_dear = rng.random(), rng.random()
        bids = {
            "cheap": BidFeatures(price=1.0, length=100, entropy=0.5, jury={"j": 3.0}, memory=m_cheap),
            "dear": BidFeatures(price=4.0, length=100, entropy=0.5, jury={"j": 3.0}, memory=m_dear),
        }
        truth = Weights(w_cost=0.01, w_entropy=0.0, w_jury={"j": 0.0}, w_memory=5.0)
        target = min(bids, key=lambda a: truth.score(bids[a].price, bids[a].length, bids[a].entropy, bids[a].jury,
                                                     bids[a].memory))  # fmt: skip
        examples.append(FitExample(bids=bids, succeeded={target}, task_id=f"t{i}", target=target))
    assert {ex.target for ex in examples} == {"cheap", "dear"}
    w = fit_minmax(examples)
    assert w.meta["train_accuracy"] == 1.0
    assert w.w_memory is not None and w.w_memory > 0
    assert w.w_memory / w.w_cost == pytest.approx(500.0, rel=0.05)
    # without the memory term the same examples cannot be fitted, and no memory weight is claimed
    plain = [FitExample(bids={a: BidFeatures(b.price, b.length, b.entropy, b.jury) for a, b in ex.bids.items()},
                        target=ex.target, task_id=ex.task_id) for ex in examples]  # fmt: skip
    w_plain = fit_minmax(plain)
    assert w_plain.w_memory is None and w_plain.meta["train_accuracy"] < 1.0
    assert Weights.from_dict(w.to_dict()).w_memory == w.w_memory


# ----------------------------------------------------------------------------- the gate

GATE = dict(k=4, min_similarity=0.5, min_agreement=1.0, explore=0.0)


def gate_memory(mem, winners_passed, texts=None):
    for i, (winner, passed) in enumerate(winners_passed):
        past(mem, f"g{i}", (texts or {}).get(i, NEAR.format(1980 + i)), winner, passed)


def test_gate_needs_k_similar_neighbours_all_passed_by_one_agent(mem):
    gate = lambda **kw: gate_decision(mem, TASK.id, TASK.prompt, PRICES, **{**GATE, **kw})  # noqa: E731
    assert not gate().gated and "only 0" in gate().reason
    gate_memory(mem, [("mid", True)] * 4)
    d = gate()
    assert d.gated and d.agent == "mid" and d.agreement == 1.0
    assert len(d.neighbours) == 4 and all(n.passed and n.executor == "mid" for n in d.neighbours)
    # a failed neighbour breaks the agreement
    mem.set_outcome("g3", False)
    d = gate()
    assert not d.gated and d.agent is None and "the most by one agent: 3" in d.reason
    assert gate(min_agreement=0.75).gated
    # disagreeing neighbours: two agents each passed half; with min_agreement 1/2 the cheapest
    past(mem, "g2", NEAR.format(1982), "small", True)
    past(mem, "g3", NEAR.format(1983), "small", True)
    assert not gate().gated
    d = gate(min_agreement=0.5)
    assert d.gated and d.agent == "small"
    # a dissimilar neighbour among the k nearest: no gate
    past(mem, "g3", FAR, "small", True)
    d = gate(min_agreement=0.5)
    assert not d.gated and "less similar" in d.reason
    # an agent not in the pool is never gated to
    for i in range(4):
        past(mem, f"g{i}", NEAR.format(1980 + i), "gone", True)
    assert not gate().gated


def test_explore_share_is_deterministic_by_task_id(mem):
    ids = [f"task-{i}" for i in range(4000)]
    draws = [explore_draw(t) for t in ids]
    assert draws == [explore_draw(t) for t in ids]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert sum(d < 0.25 for d in draws) / len(ids) == pytest.approx(0.25, abs=0.03)
    gate_memory(mem, [("mid", True)] * 4)
    explored = next(t for t in ids if explore_draw(t) < 0.25)
    kept = next(t for t in ids if explore_draw(t) >= 0.25)
    d = gate_decision(mem, explored, TASK.prompt, PRICES, **{**GATE, "explore": 0.25})
    assert not d.gated and d.explored and d.agent == "mid" and "explore" in d.reason
    assert gate_decision(mem, kept, TASK.prompt, PRICES, **{**GATE, "explore": 0.25}).gated


async def test_gated_task_makes_one_bid_call_and_no_jury_call(scripted, mem):
    gate_memory(mem, [("mid", True)] * 4)
    script = Script()
    settings = AuctionSettings(gate=GateSettings(**GATE))
    result, entries = await auction_with(scripted, script, mem, settings)
    assert result.gated and result.winner == "mid" and result.provisional_winner == "mid"
    assert script.calls == [("bid", "mid")]
    assert [(e.phase, e.agent) for e in entries] == [("bid", "mid")]
    assert result.phases["bid"].calls == 1 and result.phases["jury"].calls == 0
    assert [b.agent for b in result.bids] == ["mid"] and result.bids[0].jury == {}
    gate = result.to_dict()["gate"]
    assert gate["gated"] and gate["agent"] == "mid" and len(gate["neighbours"]) == 4
    assert result.refinement.reason.startswith("gated")
    # stored in memory, so its outcome can be recorded and learnt from
    mem.set_outcome(TASK.id, True)
    assert mem.get(TASK.id).winner == "mid"


async def test_gated_task_reuses_only_its_agents_bid_from_a_cached_round(scripted, mem):
    script = Script()
    srv_settings = AuctionSettings()
    srv = scripted
    srv.responder = script
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(srv.base_url, AGENTS, max_retries=0)))
    async with Pool(cfg) as pool:
        rnd = await Auction(pool, None, srv_settings, WEIGHTS).original_round(TASK, ENV)
    gate_memory(mem, [("mid", True)] * 4)
    script.calls.clear()
    result, entries = await auction_with(scripted, script, mem, AuctionSettings(gate=GateSettings(**GATE)),
                                         original=rnd)  # fmt: skip
    assert result.gated and script.calls == [] and entries == []
    bid = result.bids[0]
    assert result.phases["bid"].calls == 1 and result.phases["bid"].dollars == pytest.approx(bid.dollars)
    assert result.phases["bid"].output_tokens == 40 and result.phases["jury"].calls == 0


async def test_ungated_and_explored_tasks_hold_the_full_auction(scripted, mem):
    gate_memory(mem, [("mid", True)] * 3 + [("mid", False)])
    script = Script()
    result, _ = await auction_with(scripted, script, mem, AuctionSettings(gate=GateSettings(**GATE)))
    assert not result.gated and result.gate["gated"] is False and script.count("bid") == 3
    assert "the most by one agent: 3" in result.gate["reason"]
    mem.discard(TASK.id)  # its auction (outcome unknown) would break the agreement of the next one
    mem.set_outcome("g3", True)
    task = next(Task(id=f"x{i}", domain="search", prompt=TASK.prompt) for i in range(1000)
                if explore_draw(f"x{i}") < 0.5)  # fmt: skip
    script = Script()
    result, _ = await auction_with(scripted, script, mem, AuctionSettings(gate=GateSettings(**{**GATE, "explore": 0.5})),
                                   task=task)  # fmt: skip
    assert not result.gated and result.gate["explored"] and script.count("bid") == 3


async def test_router_reports_a_gated_task(scripted, mem):
    from sale.envs.base import Environment  # noqa: F401  (the router only asks the env to describe the task)

    class Env:
        def describe(self, task):
            return ENV

    gate_memory(mem, [("small", True)] * 4)
    scripted.responder = Script()
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(scripted.base_url, AGENTS, max_retries=0)))
    async with Pool(cfg) as pool:
        router = SALERouter(pool, mem, AuctionSettings(gate=GateSettings(**GATE)), WEIGHTS)
        decision = await router.route(TASK, Env())
    assert decision.agent == "small" and decision.info["gated"] is True and decision.info["auction_calls"] == 1


def test_sale_run_gates_agreed_tasks_and_counts_them_in_the_summary(scripted, tmp_path):
    """`sale run` with the gate: once the k nearest past tasks were all passed by the
    same agent, a task costs one bid call and no jury call; summary.json counts it."""
    import json

    from sale.cli import main as cli
    from sale.jsonl import read_jsonl

    def answer(req):
        text = prompt_text(req)
        if "You are a juror" in text:
            return Reply("SCORE: 4\nBID 1: 4\nBID 2: 4")
        if "ANSWER:" in text or is_execution(req):
            return Reply("It is in Paris.\nANSWER: Paris")
        return Reply("Search the landmark, read its page, answer with the city.")

    scripted.responder = answer
    pool = tmp_path / "pool.yaml"
    pool.write_text(scripted_pool_yaml(scripted.base_url, [("small", 0.1), ("big", 1.0)])
                    + "auction:\n  gate: {k: 3, min_similarity: 0.3, explore: 0.0}\n")  # fmt: skip
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({
        "id": f"q{i}", "domain": "search", "prompt": f"Which city is landmark number {i} in?",
        "grading": {"answers": ["Paris"]},
        "documents": [{"id": f"d{i}", "title": f"Landmark {i}", "text": f"Landmark {i} stands in Paris."}],
    }) + "\n" for i in range(6)))  # fmt: skip
    out = tmp_path / "out"
    assert cli(["run", "--pool", str(pool), "--tasks", str(tasks), "--out", str(out)]) == 0
    results = {r["task_id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert [results[f"q{i}"]["gated"] for i in range(6)] == [False] * 3 + [True] * 3
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    for i in range(6):
        auction_calls = [(e["phase"], e["agent"]) for e in ledger if e["task"] == f"q{i}" and e["phase"] != "execute"]
        record = json.loads((out / results[f"q{i}"]["auction"]).read_text())
        if i < 3:
            assert ("jury", "big") in auction_calls and not record["gate"]["gated"]
        else:
            assert auction_calls == [("bid", "small")]
            assert record["gate"]["gated"] and record["gate"]["agent"] == "small"
            assert [n["executor"] for n in record["gate"]["neighbours"]] == ["small"] * 3
    summary = json.loads((out / "summary.json").read_text())
    gated = summary["gated"]
    assert gated["tasks"] == 3 and summary["pass_at_1"] == 1.0
    full = [results[f"q{i}"] for i in range(3)]
    mean_full = sum(r["dollars"][p] for r in full for p in ("bid", "jury", "refine") if p in r["dollars"]) / 3
    assert gated["saved_estimate"]["dollars"] == pytest.approx(3 * mean_full - gated["auction_dollars"])
    assert gated["saved_estimate"]["dollars"] > 0
