"""Auction throughput against a zero-delay scripted pool of 4 agents.

The scripted server runs in its own process (``python -m sale.testing.scripted``) so
the figure measures the auction's own machinery (prompts, HTTP client, parsing,
scoring, the memory update), not the server sharing its event loop. Auctions run one
after another, as a task stream runs (each auction sees the memory of the previous).

    python benchmarks/bench_auction.py [--auctions 200] [--pruning-auctions 100]

Prints:
    auctions_per_s: X auctions/s           per-bid whole jury (4 bids + 16 jury calls)
    auctions_per_s_batched: X auctions/s   batched whole jury (4 bids + 4 jury calls)
    jury_calls_per_auction_pruned: X calls   exact jury pruning (the default), per-bid jury
    jury_calls_per_auction_full: X calls     the whole per-bid jury (jury_pruning: off)
    jury_pruned_winner_differs: N auctions   auctions whose pruned winner is not the whole jury's

The last three come from a 4-agent scripted pool with weights like the fitted ones of
the local ladder (one juror at weight 0, unsure bids penalised), bids of varied length
and entropy, and jurors whose scores vary by task, bid and juror; the auctions have no
memory, so the figures are the original round's.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time

import yaml

from sale.auction.auction import Auction
from sale.auction.settings import AuctionSettings
from sale.auction.weights import Weights
from sale.config import parse_pool
from sale.llm.pool import Pool
from sale.memory.store import InMemoryMemory
from sale.testing.scripted import Reply, ScriptedServer, jury_bids, prompt_text, scripted_pool_yaml, serve_in_process
from sale.workloads.task import Task

AGENTS = [("a-135m", 0.0135), ("b-0.5b", 0.0494), ("c-1.5b", 0.1544), ("d-7b", 0.7)]
# A bid, and a jury answer that is both a per-bid and a batched jury answer.
BID = "Search the collection for the city, open the best document, then answer with the founder's name."
JURY = "SCORE: 3\nBID 1: 3\nBID 2: 2\nBID 3: 4\nBID 4: 3"
ENV = "Tools: search(query) -> documents; open(id) -> text. Answer with a short phrase."


async def rate(base_url: str, mode: str, n: int) -> float:
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(base_url, AGENTS, concurrency=32, max_retries=0)))
    tasks = [Task(id=f"t{i}", domain="search", prompt=f"Question {i}: who founded city {i % 17}?") for i in range(n)]
    async with Pool(cfg) as pool:
        auction = Auction(pool, InMemoryMemory(), AuctionSettings(jury_mode=mode, jury_pruning="off"))
        for t in tasks[:10]:  # warm up connections
            await auction.run(t.model_copy(update={"id": "warm-" + t.id}), ENV)
        started = time.perf_counter()
        for t in tasks:
            result = await auction.run(t, ENV)
        per_s = n / (time.perf_counter() - started)
    calls = result.phases["jury"].calls
    want = len(AGENTS) ** 2 if mode == "per_bid" else len(AGENTS)
    assert calls >= want and not result.dropped, f"{mode}: {calls} jury calls (want {want}+), dropped {result.dropped}"
    return per_s


# Weights like those fitted on the local ladder: the 1.5B juror at 0, unsure bids penalised.
FITTED = Weights(w_cost=0.02, w_entropy=-1.0, w_jury={"a-135m": 0.1, "b-0.5b": 0.25, "c-1.5b": 0.0, "d-7b": 0.15})
DISTS = [[-0.05, -3.5, -4.5, -5.5, -6.5], [-0.5, -1.5, -2.5, -3.0, -4.0], [-1.2, -1.4, -1.8, -2.2, -2.6]]


def _draw(*key: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:4], "big")


def _scripted(request: dict) -> Reply:
    """Bids of varied length and entropy; jurors score 0-5 by task, bid and juror."""
    model, text = request["model"], prompt_text(request)
    task = text.split("TASK:\n", 1)[-1].split("\n", 1)[0]
    if "You are a juror" in text:
        scores = [_draw(task, model, bid.split(" plan", 1)[0]) % 6 for bid in jury_bids(text)]
        if "SCORE: <" in text:
            return Reply(f"SCORE: {scores[0]}")
        return Reply("\n".join(f"BID {k}: {s}" for k, s in enumerate(scores, 1)))
    n = _draw(task, model)
    return Reply(f"{model} plan: search the collection, open the best document, answer briefly.",
                 top_logprobs=DISTS[n % 3], usage=(150, 30 + n % 90))  # fmt: skip


async def jury_calls(srv: ScriptedServer, pruning: str, n: int) -> tuple[float, list[str]]:
    cfg = parse_pool(yaml.safe_load(scripted_pool_yaml(srv.base_url, AGENTS, concurrency=32, max_retries=0)))
    tasks = [Task(id=f"t{i}", domain="search", prompt=f"Question {i}: who founded city {i}?") for i in range(n)]
    calls, winners = 0, []
    async with Pool(cfg) as pool:
        auction = Auction(pool, None, AuctionSettings(jury_pruning=pruning, jury_score="written"), FITTED)
        for t in tasks:
            result = await auction.run(t, ENV)
            calls += result.phases["jury"].calls
            winners.append(result.winner)
    return calls / n, winners


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--auctions", type=int, default=200)
    ap.add_argument("--pruning-auctions", type=int, default=100)
    args = ap.parse_args()
    with serve_in_process(BID, rules={"juror": JURY}) as base_url:
        per_bid = asyncio.run(rate(base_url, "per_bid", args.auctions))
        batched = asyncio.run(rate(base_url, "batched", args.auctions))
    print(f"auctions_per_s: {per_bid:.1f} auctions/s")
    print(f"auctions_per_s_batched: {batched:.1f} auctions/s")
    with ScriptedServer(_scripted) as srv:
        pruned, pruned_winners = asyncio.run(jury_calls(srv, "exact", args.pruning_auctions))
        full, full_winners = asyncio.run(jury_calls(srv, "off", args.pruning_auctions))
    print(f"jury_calls_per_auction_pruned: {pruned:.2f} calls")
    print(f"jury_calls_per_auction_full: {full:.2f} calls")
    print(f"jury_pruned_winner_differs: {sum(a != b for a, b in zip(pruned_winners, full_winners))} auctions")


if __name__ == "__main__":
    main()
