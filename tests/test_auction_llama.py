"""One auction end to end on the tiny GGUF through real llama.cpp.

The tiny model writes gibberish, so its scores are mostly missing and imputed; the
point is that the real path (logprobs, usage, failures of a real server) yields a
winner and a complete record.
"""

from __future__ import annotations

import json

import pytest
import yaml

from sale.auction.auction import Auction
from sale.auction.settings import AuctionSettings
from sale.config import parse_pool
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool
from sale.auction.weights import Weights
from sale.memory.store import AuctionRecord, Bid, InMemoryMemory
from sale.workloads.task import Task

pytestmark = pytest.mark.llama


async def test_auction_on_the_tiny_model(tiny_model):
    agents = "".join(
        f"""
  - name: {name}
    model: {tiny_model}
    price: {{input: {price}, output: {price}}}
    context: 512
    concurrency: 2
    max_retries: 0
    generation: {{max_tokens: 16}}
"""
        for name, price in [("tiny-a", 0.01), ("tiny-b", 0.05)]
    )
    cfg = parse_pool(yaml.safe_load("agents:" + agents))
    settings = AuctionSettings(bid_max_tokens=12, jury_max_tokens=4, refine_max_tokens=16, jury_mode="batched")
    task = Task(id="llama-1", domain="search", prompt="Which river flows through Paris?")
    # A past auction that tiny-a lost, so that it has a contrastive pair to refine from;
    # weights that favour the dearer agent make tiny-b the provisional winner.
    memory = InMemoryMemory()
    memory.add(AuctionRecord(task_id="past", task_text="Which river flows through Rome?", winner="tiny-b", bids=[
        Bid(agent="tiny-a", text="guess", total=1.0), Bid(agent="tiny-b", text="search rivers of Rome", won=True)]))
    weights = Weights(w_cost=-1.0, w_entropy=0.0, w_jury={"tiny-a": 0.5, "tiny-b": 0.5})
    ledger = Ledger()
    async with Pool(cfg, ledger=ledger) as pool:
        result = await Auction(pool, memory, settings, weights).run(task, "Tools: search(query), open(id).")

    assert result.winner in ("tiny-a", "tiny-b")
    data = json.loads(json.dumps(result.to_dict()))
    originals = [b for b in data["bids"] if b["kind"] == "original"]
    dropped = {d["agent"] for d in data["dropped"] if d["role"] == "bidder"}
    assert {b["agent"] for b in originals} | dropped == {"tiny-a", "tiny-b"}
    for b in originals:
        assert 0 < b["output_tokens"] <= 12
        assert b["entropy_k"] == settings.top_logprobs and b["entropy"] >= 0
        assert set(b["jury"]) == {"tiny-a", "tiny-b"}
        assert all(0 <= s["score"] <= 5 for s in b["jury"].values())
        assert b["total"] == pytest.approx(b["cost"] - b["value"])
    bid, jury = data["phases"]["bid"], data["phases"]["jury"]
    refined = [b for b in data["bids"] if b["kind"] == "refined"]
    # Batched jury: one call per juror for the original bids, one more for the refined.
    assert bid["calls"] == 2 and jury["calls"] == 2 * (1 + len(refined)) and bid["input_tokens"] > 0
    assert bid["dollars"] > 0 and bid["wall_s"] > 0
    # The record's phases agree with the pool's ledger.
    by_phase = ledger.totals(by="phase")
    assert by_phase["bid"].output_tokens == bid["output_tokens"]
    assert by_phase["jury"].calls == jury["calls"]
    assert memory.get("llama-1").winner == result.winner
    # Refinement ran for the cheaper agent on the real path.
    assert result.provisional_winner == "tiny-b" and data["refinement"]["ran"]
    assert data["refinement"]["agents"] == ["tiny-a"] and data["refinement"]["pairs"] == {"tiny-a": 1}
    assert data["phases"]["refine"]["calls"] == 1 and by_phase["refine"].calls == 1
    refiner_out = [d for d in data["dropped"] if d["role"] == "refiner"]
    assert len(refined) + len(refiner_out) == 1
    for b in refined:
        assert b["agent"] == "tiny-a" and 0 < b["output_tokens"] <= 16 and set(b["jury"]) == {"tiny-a", "tiny-b"}
