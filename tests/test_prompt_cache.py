"""Prompt caching: cached prompt tokens read from responses (both styles, over real
HTTP), kept in the ledger, priced at ``cached_input``; and prompts that put what an
agent's calls for one task share first, so an endpoint's prompt cache can serve it."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from sale.auction.auction import Auction
from sale.auction.bids import bid_messages
from sale.auction.jury import batch_prompt, per_bid_prompt
from sale.auction.refine import refine_messages
from sale.auction.settings import AuctionSettings
from sale.auction.weights import Weights
from sale.config import Price, parse_pool
from sale.errors import ConfigError
from sale.llm.budget import OverBudget
from sale.llm.client import ChatClient
from sale.llm.ledger import Ledger, ledger_tags
from sale.llm.pool import Pool
from sale.testing.scripted import Reply, prompt_text, scripted_pool_yaml
from sale.workloads.task import Task

MSG = [{"role": "user", "content": "hello there"}]
TASK = "Who directed the film that won the 1998 award?"
ENV = "Tools: search(query) returns documents; open(id) returns one document."


@pytest.mark.parametrize("style", ["openai", "llama.cpp"])
async def test_cached_tokens_are_read_from_both_response_styles(scripted, style):
    scripted.script("m", Reply("a b c", usage=(120, 3), cached=96, cache_style=style), Reply("a", usage=(50, 1)))
    c = ChatClient(scripted.base_url, "m", agent="x")
    first = await c.chat(MSG)
    second = await c.chat(MSG)
    await c.close()
    assert (first.input_tokens, first.cached_tokens, first.output_tokens) == (120, 96, 3)
    assert second.cached_tokens == 0  # the endpoint said nothing of a cache


def _pool(base_url: str, price: dict, budget: dict | None = None) -> Pool:
    data = {
        "agents": [{"name": "m", "endpoint": {"base_url": base_url, "model": "m"}, "price": price, "max_retries": 0}],
    }
    if budget:
        data["budget"] = budget
    return Pool(parse_pool(data))


@pytest.mark.parametrize("style", ["openai", "llama.cpp"])
async def test_ledger_records_cached_tokens_and_prices_them(scripted, style, tmp_path):
    """1000 prompt tokens, 800 of them cached, 100 output tokens."""
    reply = dict(usage=(1000, 100), cached=800, cache_style=style)
    scripted.script("m", Reply("x", **reply), Reply("x", **reply))
    plain = _pool(scripted.base_url, {"input": 2.0, "output": 4.0})
    plain.ledger = Ledger(tmp_path / "plain.jsonl")
    for a in plain.agents:
        a.ledger = plain.ledger
    async with plain:
        c = await plain["m"].chat(MSG, phase="jury")
    # Without cached_input a cached token costs the input price: nothing changes.
    assert c.dollars == pytest.approx((1000 * 2.0 + 100 * 4.0) / 1e6)
    cheap = _pool(scripted.base_url, {"input": 2.0, "output": 4.0, "cached_input": 0.5})
    async with cheap:
        c = await cheap["m"].chat(MSG, phase="jury")
    assert c.dollars == pytest.approx((200 * 2.0 + 800 * 0.5 + 100 * 4.0) / 1e6)
    (entry,) = cheap.ledger.entries
    assert entry.cached_tokens == 800 and entry.dollars == pytest.approx(c.dollars)
    assert cheap.ledger.totals(by="phase")["jury"].cached_tokens == 800
    plain.ledger.close()
    (read,) = Ledger.read(tmp_path / "plain.jsonl")
    assert read.cached_tokens == 800 and read.input_tokens == 1000


def test_price_cached_input_is_validated_and_defaults_to_input():
    assert Price(input=1, output=2).cached == 1
    assert Price(input=1, output=2, cached_input=0.25).dollars(1000, 0, 1000) == pytest.approx(0.25e-3)
    assert Price(input=1, output=2).dollars(10, 0, 50) == pytest.approx(10e-6)  # cached never exceeds input
    base = {"name": "m", "endpoint": {"base_url": "http://127.0.0.1:1/v1", "model": "m"}}
    with pytest.raises(ConfigError, match=r"price.cached_input"):
        parse_pool({"agents": [{**base, "price": {"input": 1, "output": 1, "cached_input": -1}}]})


async def test_budget_counts_cached_tokens_at_their_price(scripted):
    """Each call: 1000 prompt tokens (900 cached) and 10 output tokens; a short
    message, so its reservation is small. At the input price a call costs $0.00101:
    after three calls the per-task budget of $0.0025 is spent and the fourth is
    refused. At the cached price a call costs $0.0002 and all four are made."""
    replies = [Reply("x", usage=(1000, 10), cached=900) for _ in range(8)]
    scripted.script("m", *replies)
    for price, want_spent, refused in (
        ({"input": 1.0, "output": 1.0}, 3 * 1010e-6, True),
        ({"input": 1.0, "output": 1.0, "cached_input": 0.1}, 4 * 200e-6, False),
    ):
        pool = _pool(scripted.base_url, price, {"per_task": 0.0025})
        async with pool:
            got_refused = False
            with ledger_tags(task="t1"):
                for _ in range(4):
                    try:
                        await pool["m"].chat([{"role": "user", "content": "hi"}], phase="bid", max_tokens=10)
                    except OverBudget:
                        got_refused = True
        assert got_refused is refused
        assert pool.budget.spent_on("t1") == pytest.approx(want_spent)


async def test_auction_phases_count_cached_tokens(scripted):
    def respond(request):
        text = prompt_text(request)
        if "You are a juror" in text:
            return Reply("SCORE: 3", usage=(300, 2), cached=250)
        return Reply("Search the award, open the page, read the director.", usage=(200, 12), cached=0)

    scripted.responder = respond
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(scripted.base_url, [("a", 0.1), ("b", 0.2)], max_retries=0)))
    weights = Weights(w_cost=0.01, w_entropy=0.0, w_jury={"a": 0.5, "b": 0.5})
    async with Pool(cfg) as pool:
        result = await Auction(pool, None, AuctionSettings(jury_pruning="off"), weights).run(
            Task(id="t", domain="search", prompt=TASK), ENV
        )
    assert result.phases["jury"].cached_tokens == 250 * 4
    assert result.phases["bid"].cached_tokens == 0
    assert result.to_dict()["phases"]["jury"]["cached_tokens"] == 1000


# ----------------------------------------------------------------------------- prompt order


def _common_prefix(texts: list[str]) -> str:
    return os.path.commonprefix(texts)


def test_jury_prompts_of_one_task_share_their_prefix_and_the_nonce_comes_after():
    bids = ["Search the award, then open the page.", "Open the page first, then search again.",
            "Read the director from the award page."]  # fmt: skip
    head = per_bid_prompt(TASK, ENV, bids[0], nonce="aaaaaaaaaaaa")
    per_bid = [per_bid_prompt(TASK, ENV, b, nonce=n) for b, n in zip(bids, ("0123456789ab", "ba9876543210", "ffff00001111"))]
    prefix = _common_prefix(per_bid)
    # Everything up to the bid block is shared: the task, the environment, the instructions.
    assert prefix.startswith(f"TASK:\n{TASK}\n\nENVIRONMENT:\n{ENV}\n")
    assert "Score how likely" in prefix and "score it 0" in prefix
    cut = head.index("<bid-aaaaaaaaaaaa>")
    assert prefix[:cut] == head[:cut] and len(prefix) <= cut + len("<bid-")
    for text, nonce in zip(per_bid, ("0123456789ab", "ba9876543210", "ffff00001111")):
        assert text.index(nonce) >= len(prefix) and nonce not in prefix

    # Batched: the calls of a pruned jury show different bids (and counts) after the same prefix.
    batches = [batch_prompt(TASK, ENV, bids, nonce="0123456789ab"), batch_prompt(TASK, ENV, bids[:2], nonce="ba9876543210")]
    prefix = _common_prefix(batches)
    assert "Score each strategy" in prefix and "score it 0" in prefix
    assert re.search(r"There are \d", batches[0]).start() >= len(prefix) - len("There are ")
    for text, nonce in zip(batches, ("0123456789ab", "ba9876543210")):
        assert text.index(nonce) >= len(prefix)


def test_bid_jury_and_refine_prompts_start_with_the_task_and_environment():
    settings = AuctionSettings()
    shared = f"TASK:\n{TASK}\n\nENVIRONMENT:\n{ENV}\n\n"
    bid = bid_messages(TASK, ENV, settings)[0]["content"]
    jury = per_bid_prompt(TASK, ENV, "a plan of three words", nonce="0123456789ab")
    refine_a = refine_messages(TASK, ENV, "PAST TASK 1:\nfirst past contest", settings)[0]["content"]
    refine_b = refine_messages(TASK, ENV, "PAST TASK 1:\nanother past contest", settings)[0]["content"]
    for text in (bid, jury, refine_a):
        assert text.startswith(shared)
    # Refine: the instructions come before the past contests, which differ per agent.
    prefix = _common_prefix([refine_a, refine_b])
    assert "write a better strategy" in prefix and "PAST TASK 1" not in prefix[:-len("PAST TASK 1:\n")]
    assert refine_a.index("first past contest") > refine_a.index("write a better strategy")


async def test_llama_cpp_serves_a_jurors_shared_prefix_from_its_cache(tiny_model, tmp_path):
    """Real llama.cpp: the per-bid jury calls of one juror for one task share the task,
    the environment and the instructions; from the second call on, the server reads
    that prefix from its prompt cache, the client reports it and the ledger keeps it."""
    from sale.auction.jury import score_bids
    from sale.auction.record import ORIGINAL, ScoredBid

    cfg = parse_pool(yaml.safe_load(f"""
agents:
  - name: tiny
    model: {tiny_model}
    price: {{input: 1.0, output: 1.0, cached_input: 0.1}}
    context: 1024
    concurrency: 1
    max_retries: 0
"""))
    bids = [ScoredBid(agent="tiny", kind="original", text=t, output_tokens=8) for t in (
        "Search the award list, open the 1998 page, read the director.",
        "Open the film page first and read its director from the infobox.",
        "Search for the director directly and check two sources.",
    )]  # fmt: skip
    settings = AuctionSettings(jury_max_tokens=2, jury_score="written")
    async with Pool(cfg) as pool:
        with ledger_tags(task="t"):
            _, stats = await score_bids(list(pool), TASK, ENV, bids, settings, ORIGINAL)
        entries = [e for e in pool.ledger.entries if e.phase == "jury"]
    assert len(entries) == 3 and stats.calls == 3
    shared = len(per_bid_prompt(TASK, ENV, bids[0].text, nonce="0" * 12).split("<bid-0")[0]) // 8  # a low bound
    for e in entries[1:]:
        assert e.cached_tokens >= shared and e.cached_tokens < e.input_tokens
        fresh = e.input_tokens - e.cached_tokens
        assert e.dollars == pytest.approx((fresh * 1.0 + e.cached_tokens * 0.1 + e.output_tokens * 1.0) / 1e6)
    assert stats.cached_tokens == sum(e.cached_tokens for e in entries)
