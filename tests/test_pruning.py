"""Exact jury pruning against the whole jury, over real HTTP from the scripted server.

Each case is a pool of 2-6 agents with prices, weights of any sign (0 included), bid
lengths, entropies and a table of jury scores (juror, bidder, original/refined) that
the scripted server serves. The pruned auction must pick the same provisional and final
winner as the whole jury, never ask a juror of weight 0, and ask no more calls.
"""

from __future__ import annotations

import asyncio
import collections
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from sale.auction.auction import Auction
from sale.auction.pruning import Candidate, Pruner
from sale.auction.settings import AuctionSettings
from sale.auction.weights import Weights
from sale.config import parse_pool
from sale.errors import ConfigError
from sale.llm.pool import Pool
from sale.memory.store import AuctionRecord, Bid, InMemoryMemory
from sale.testing.scripted import Reply, ScriptedServer, jury_bids, prompt_text, scripted_pool_yaml
from sale.workloads.task import Task

ENV = "Tools: search(query) returns documents; open(id) returns one document."
TASK = Task(id="t-now", domain="search", prompt="Who directed the film that won the 1998 award?")
DISTS = {
    "sure": [-0.05, -3.5, -4.5, -5.5, -6.5],
    "mixed": [-0.6, -1.2, -2.5, -3.0, -4.0],
    "unsure": [-1.6, -1.6, -1.6, -1.6, -1.6],
}
TAG = re.compile(r"\b(original|refined) plan of (a\d)\b")


class Case:
    """One pool and what its scripted agents answer."""

    def __init__(self, prices, weights, lengths, dists, scores, refine_lengths, outcomes=(None, None, None),
                 w_memory=None, own=()):
        self.own = own
        self.outcomes = outcomes  # of the past auctions in memory (memory_value's evidence)
        self.w_memory = w_memory
        self.names = [f"a{i}" for i in range(len(prices))]
        self.prices = prices
        self.weights = weights
        self.lengths = lengths
        self.dists = dists
        self.scores = scores  # (juror, bidder, kind) -> 0..5
        self.refine_lengths = refine_lengths
        self.calls: collections.Counter = collections.Counter()  # (kind, model)

    def bid_text(self, name: str, kind: str) -> str:
        return f"The {kind} plan of {name}: search the award, open the page, read the director."

    def score_of(self, juror: str, bid: str) -> int:
        m = TAG.search(bid)
        assert m, bid
        return self.scores[juror, m[2], m[1]]

    def __call__(self, request):
        model, text = request["model"], prompt_text(request)
        i = self.names.index(model)
        if "You are a juror" in text:
            bids = jury_bids(text)
            batched = "SCORE: <a whole number" not in text
            self.calls["jury", model] += 1
            if not batched:
                return Reply(f"SCORE: {self.score_of(model, bids[0])}")
            return Reply("\n".join(f"BID {k}: {self.score_of(model, b)}" for k, b in enumerate(bids, 1)))
        if "You bid for tasks" in text:
            self.calls["refine", model] += 1
            strategy = self.bid_text(model, "refined")
            return Reply(f"ANALYSIS: the winner named its tools.\nREFINED STRATEGY: {strategy}",
                         top_logprobs=self.dists[i], usage=(100, self.refine_lengths[i]))  # fmt: skip
        self.calls["bid", model] += 1
        return Reply(self.bid_text(model, "original"), top_logprobs=self.dists[i], usage=(100, self.lengths[i]))

    def jury_calls(self) -> int:
        return sum(n for (kind, _), n in self.calls.items() if kind == "jury")


def memory(names: list[str], outcomes=(None, None, None), own=()) -> InMemoryMemory:
    """Past auctions in which every agent lost to the last one (pairs for everyone);
    ``outcomes``: whether each past winner's execution passed (None: unknown);
    ``own``: for each agent in turn, the outcome of a past task it alone bid for and
    executed (memory_value's evidence)."""
    mem = InMemoryMemory()
    for name, passed in zip(names, own):
        mem.add(AuctionRecord(task_id=f"own-{name}", task_text="Who directed the film that won the 1998 prize?",
                              bids=[Bid(agent=name, text=f"own plan of {name}", won=True)], winner=name))  # fmt: skip
        mem.set_outcome(f"own-{name}", passed)
    for i in range(3):
        bids = [Bid(agent=a, text=f"weak past plan {i} of {a}", total=-1.0) for a in names[:-1]]
        bids.append(Bid(agent=names[-1], text=f"strong past plan {i}: search, open, read", total=-3.0, won=True))
        mem.add(AuctionRecord(task_id=f"past-{i}", task_text=f"Who directed the film that won the {1990 + i} award?",
                              bids=bids, winner=names[-1]))  # fmt: skip
        mem.set_outcome(f"past-{i}", outcomes[i])
    return mem


async def run_auction(srv: ScriptedServer, case: Case, settings: AuctionSettings, *, original=None, refine=True):
    srv.responder = case
    agents = list(zip(case.names, case.prices))
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(srv.base_url, agents, max_retries=0)))
    weights = Weights(w_cost=case.weights[0], w_entropy=case.weights[1], w_jury=dict(zip(case.names, case.weights[2:])),
                      w_memory=case.w_memory)  # fmt: skip
    async with Pool(cfg) as pool:
        auction = Auction(pool, memory(case.names, case.outcomes, case.own) if refine else None, settings, weights)
        before = case.jury_calls()
        result = await auction.run(TASK, ENV, original=original)
        return result, case.jury_calls() - before, auction


@pytest.fixture(scope="module")
def server():
    with ScriptedServer() as srv:
        yield srv


WEIGHT = st.one_of(st.just(0.0), st.floats(-2, 2, allow_nan=False).map(lambda x: round(x, 3)))


@st.composite
def cases(draw):
    n = draw(st.integers(2, 6))
    prices = draw(st.lists(st.sampled_from([0.01, 0.05, 0.1, 0.2, 0.4, 0.8]), min_size=n, max_size=n))
    weights = [draw(st.sampled_from([0.0, 0.001, 0.01, 0.05, -0.01])), draw(WEIGHT)]
    weights += draw(st.lists(WEIGHT, min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(5, 200), min_size=n, max_size=n))
    refine_lengths = draw(st.lists(st.integers(5, 200), min_size=n, max_size=n))
    dists = [DISTS[k] for k in draw(st.lists(st.sampled_from(sorted(DISTS)), min_size=n, max_size=n))]
    names = [f"a{i}" for i in range(n)]
    keys = [(j, b, k) for j in names for b in names for k in ("original", "refined")]
    scores = dict(zip(keys, draw(st.lists(st.integers(0, 5), min_size=len(keys), max_size=len(keys)))))
    outcomes = draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=3, max_size=3))
    w_memory = draw(st.sampled_from([None, 0.0, 2.0, 20.0, -5.0]))
    own = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return Case(prices, weights, lengths, dists, scores, refine_lengths, outcomes, w_memory, own)


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    case=cases(),
    mode=st.sampled_from(["per_bid", "batched"]),
    jury=st.sampled_from(["all", "self", "peer"]),
    memory_value=st.booleans(),
)
def test_pruned_jury_decides_as_the_whole_jury(server, case, mode, jury, memory_value):
    full_settings = AuctionSettings(jury_mode=mode, jury=jury, jury_pruning="off", jury_score="written",
                                    memory_value=memory_value)  # fmt: skip
    pruned_settings = full_settings.model_copy(update={"jury_pruning": "exact"})
    full, full_calls, _ = asyncio.run(run_auction(server, case, full_settings))
    case.calls.clear()
    pruned, pruned_calls, _ = asyncio.run(run_auction(server, case, pruned_settings))
    assert (pruned.provisional_winner, pruned.winner, pruned.winner_kind) == (
        full.provisional_winner, full.winner, full.winner_kind
    )  # fmt: skip
    assert pruned.refinement.ran == full.refinement.ran
    assert pruned_calls <= full_calls
    for name, w in zip(case.names, case.weights[2:]):
        if w == 0:
            assert case.calls["jury", name] == 0, f"juror {name} of weight 0 was asked"
    jury = pruned.phases["jury"]
    assert jury.calls == pruned_calls
    assert jury.calls + jury.skipped == full.phases["jury"].calls
    # Every included juror of every bid is in the record: asked, or skipped with why.
    for b in pruned.bids:
        for js in b.jury.values():
            assert js.asked or js.skipped
    # The same decision when the pruned jury is served by a cached whole-jury round.
    rnd = asyncio.run(_full_round(server, case, full_settings))
    replayed, replay_calls, _ = asyncio.run(run_auction(server, case, pruned_settings, original=rnd))
    assert (replayed.provisional_winner, replayed.winner, replayed.winner_kind) == (
        full.provisional_winner, full.winner, full.winner_kind
    )  # fmt: skip
    assert replayed.phases["jury"].calls <= full.phases["jury"].calls


async def _full_round(srv, case, settings):
    srv.responder = case
    agents = list(zip(case.names, case.prices))
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(srv.base_url, agents, max_retries=0)))
    weights = Weights(w_cost=1.0, w_entropy=0.0, w_jury={n: 1.0 for n in case.names})
    async with Pool(cfg) as pool:
        return await Auction(pool, None, settings, weights).original_round(TASK, ENV)


# ----------------------------------------------------------------------------- fixed cases


def fitted_like(**scores) -> Case:
    """4 agents, weights like the fitted ones (the largest juror at 0); a0 clearly wins."""
    names = ["a0", "a1", "a2", "a3"]
    table = {(j, b, k): 1 for j in names for b in names for k in ("original", "refined")}
    for j in names:
        table[j, "a0", "original"] = 5
        table[j, "a0", "refined"] = 5
    table.update(scores)
    return Case([0.01, 0.05, 0.15, 0.7], [0.01, -0.5, 0.4, 0.3, 0.2, 0.0], [40, 40, 40, 40],
                [DISTS["sure"]] * 4, table, [40] * 4)  # fmt: skip


@pytest.mark.parametrize("mode", ["per_bid", "batched"])
async def test_zero_weight_juror_is_never_asked_and_the_record_says_why(server, mode):
    case = fitted_like()
    settings = AuctionSettings(jury_mode=mode, jury_score="written")
    result, calls, _ = await run_auction(server, case, settings, refine=False)
    assert result.winner == "a0"
    assert case.calls["jury", "a3"] == 0
    full = 16 if mode == "per_bid" else 4
    assert calls < full and result.phases["jury"].calls == calls
    assert result.phases["jury"].skipped == full - calls
    for b in result.bids:
        assert not b.jury["a3"].asked and b.jury["a3"].skipped.startswith("weight 0")
    skipped = [js.skipped for b in result.bids for j, js in b.jury.items() if j != "a3" and not js.asked]
    assert skipped and all(("out of contention" in r) or r.startswith("decided without it") for r in skipped)
    data = result.to_dict()
    assert data["phases"]["jury"]["skipped"] == full - calls
    assert data["bids"][0]["jury"]["a3"]["asked"] is False


class MuteJuror(Case):
    """A case whose juror a0 never writes a score (its answers are prose)."""

    def __call__(self, request):
        if request["model"] == "a0" and "You are a juror" in prompt_text(request):
            self.calls["jury", "a0"] += 1
            return Reply("The plan reads well and names its tools.")
        return super().__call__(request)


@pytest.mark.parametrize("replayed", [False, True])
async def test_a_zero_weight_juror_does_not_decide_through_imputation(server, replayed):
    # a0 (weight 10) never gives a score, so its scores are imputed from the other
    # jurors'; a2 (weight 0) scores a2's plan 5 and a1's plan 0. Were a2's scores used
    # to impute a0's, the whole jury would pick a2 (a0's term 10 * 4.0 against a1's
    # 10 * 2.0); from a1's scores alone it picks a1, as the pruned jury does, which
    # never asks a2.
    names = ["a0", "a1", "a2"]
    scores = {(j, b, k): 0 for j in names for b in names for k in ("original", "refined")}
    scores.update({("a1", "a1", "original"): 4, ("a1", "a2", "original"): 3, ("a2", "a2", "original"): 5})
    case = MuteJuror([0.01, 0.05, 0.1], [0.0, 0.0, 10.0, 1.0, 0.0], [20] * 3, [DISTS["sure"]] * 3, scores, [20] * 3)
    full_settings = AuctionSettings(jury_pruning="off", jury_score="written")
    original = await _full_round(server, case, full_settings) if replayed else None
    full, _, _ = await run_auction(server, case, full_settings, original=original, refine=False)
    case.calls.clear()
    pruned, _, _ = await run_auction(server, case, full_settings.model_copy(update={"jury_pruning": "exact"}),
                                     original=original, refine=False)  # fmt: skip
    assert full.provisional_winner == pruned.provisional_winner == "a1"
    assert case.calls["jury", "a2"] == 0 or replayed
    for result in (full, pruned):
        a1_plan = next(b for b in result.bids if b.agent == "a1")
        assert a1_plan.jury["a0"].imputed and a1_plan.jury["a0"].score == 4.0
    whole = next(b for b in full.bids if b.agent == "a2")
    assert whole.jury["a2"].score == 5.0 and whole.jury["a0"].score == 3.0  # a2 scored, and not counted


async def test_pruning_off_asks_the_whole_jury(server):
    case = fitted_like()
    result, calls, _ = await run_auction(server, case, AuctionSettings(jury_pruning="off"), refine=False)
    assert calls == 16 and case.calls["jury", "a3"] == 4
    assert result.phases["jury"].skipped == 0 and all(js.asked for b in result.bids for js in b.jury.values())


async def test_replayed_round_charges_only_the_calls_asked(server):
    case = fitted_like()
    settings = AuctionSettings(jury_score="written")
    rnd = await _full_round(server, case, settings)
    assert rnd.phases["jury"].calls == 16
    case.calls.clear()
    result, live_calls, _ = await run_auction(server, case, settings, original=rnd, refine=False)
    assert live_calls == 0  # every answer came from the cached round
    jury = result.phases["jury"]
    assert jury.calls < 16 and jury.skipped == 16 - jury.calls
    assert 0 < jury.dollars < rnd.phases["jury"].dollars
    assert 0 < jury.input_tokens < rnd.phases["jury"].input_tokens
    assert result.winner == "a0"


@pytest.mark.parametrize("mode", ["per_bid", "batched"])
async def test_refinement_stage_is_pruned_against_the_bar(server, mode):
    """The provisional winner is the dear a3; the cheaper agents refine. A refined bid
    of a1 scored 5 by everyone beats it; the refined bids of a0 and a2 (score 0) need
    only enough calls to fall out of contention."""
    names = ["a0", "a1", "a2", "a3"]
    table = {(j, b, k): 0 for j in names for b in names for k in ("original", "refined")}
    for j in names:
        table[j, "a3", "original"] = 4
        table[j, "a1", "refined"] = 5
    case = Case([0.01, 0.05, 0.15, 0.7], [0.001, 0.0, 0.5, 0.4, 0.3, 0.2], [40] * 4, [DISTS["sure"]] * 4,
                table, [40] * 4)  # fmt: skip
    full_settings = AuctionSettings(jury_mode=mode, jury_score="written", jury_pruning="off")
    full, full_calls, _ = await run_auction(server, case, full_settings)
    pruned, pruned_calls, _ = await run_auction(server, case, full_settings.model_copy(update={"jury_pruning": "exact"}))
    assert full.provisional_winner == pruned.provisional_winner == "a3"
    assert (full.winner, full.winner_kind) == (pruned.winner, pruned.winner_kind) == ("a1", "refined")
    assert pruned_calls < full_calls
    if mode == "batched":  # the reference (the provisional bid judged again) is in the record
        assert pruned.refinement.reference is not None and full.refinement.reference is not None
    refined = [b for b in pruned.bids if b.kind == "refined" and b.agent != "a1"]
    assert any(not js.asked for b in refined for js in b.jury.values())


def test_pruner_keeps_ties_open():
    """Two bids that tie whatever the jury says are never pruned (ties are decided by
    price and pool order after the scores, as the whole jury decides them)."""
    a = Candidate("a", 1.0, {"j": 0.0})
    b = Candidate("b", 1.0, {"j": 0.0})
    p = Pruner([a, b], ["j"], batched=False)
    assert p.contenders() == [0, 1] and p.next_requests() == []
    c = Candidate("c", 0.0, {"j": 1.0})
    d = Candidate("d", 0.5, {"j": 1.0})
    p = Pruner([c, d], ["j"], batched=True)
    assert p.next_requests() == [("j", [0, 1])]
    p.record(0, "j", 5.0)  # c: -5, d in [-4.5, 0.5]
    assert p.contenders() == [0] and p.next_requests() == []
    assert "out of contention" in p.skip_reason(1, "j")


def test_jury_pruning_setting_is_validated():
    assert AuctionSettings().jury_pruning == "exact"
    with pytest.raises(ConfigError, match="jury_pruning"):
        AuctionSettings.from_dict({"jury_pruning": "sometimes"})


@pytest.mark.parametrize("jury", ["self", "peer"])
@pytest.mark.parametrize("mode", ["per_bid", "batched"])
async def test_self_and_peer_juries_prune_under_their_rescaling(server, jury, mode):
    """Subset juries rescale each bid's jury term (sum of all weights / sum of the
    included ones); the pruned jury bounds the rescaled terms and decides as the whole."""
    names = ["a0", "a1", "a2", "a3"]
    table = {(j, b, k): (2 + names.index(j) + 2 * names.index(b)) % 6 for j in names for b in names
             for k in ("original", "refined")}  # fmt: skip
    case = Case([0.01, 0.05, 0.15, 0.7], [0.002, -0.3, 0.4, 0.0, -0.2, 0.5], [30, 60, 45, 20],
                [DISTS["sure"], DISTS["mixed"], DISTS["unsure"], DISTS["sure"]], table, [25, 35, 40, 50])  # fmt: skip
    full_settings = AuctionSettings(jury_mode=mode, jury=jury, jury_score="written", jury_pruning="off")
    full, full_calls, _ = await run_auction(server, case, full_settings)
    case.calls.clear()
    pruned, pruned_calls, _ = await run_auction(server, case, full_settings.model_copy(update={"jury_pruning": "exact"}))
    assert (pruned.provisional_winner, pruned.winner, pruned.winner_kind) == (
        full.provisional_winner, full.winner, full.winner_kind
    )  # fmt: skip
    assert pruned_calls <= full_calls and case.calls["jury", "a1"] == 0
    for b in pruned.bids:
        assert set(b.jury) == set(next(f for f in full.bids if f.key == b.key).jury)
