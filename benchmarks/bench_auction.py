"""Auction throughput against a zero-delay scripted pool of 4 agents.

The scripted server runs in its own process (``python -m sale.testing.scripted``) so
the figure measures the auction's own machinery (prompts, HTTP client, parsing,
scoring, the memory update), not the server sharing its event loop. Auctions run one
after another, as a task stream runs (each auction sees the memory of the previous).

    python benchmarks/bench_auction.py [--auctions 200]

Prints:
    auctions_per_s: X auctions/s           per-bid jury (4 bids + 16 jury calls)
    auctions_per_s_batched: X auctions/s   batched jury (4 bids + 4 jury calls)
"""

from __future__ import annotations

import argparse
import asyncio
import time

import yaml

from sale.auction.auction import Auction
from sale.auction.settings import AuctionSettings
from sale.config import parse_pool
from sale.llm.pool import Pool
from sale.memory.store import InMemoryMemory
from sale.testing.scripted import scripted_pool_yaml, serve_in_process
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
        auction = Auction(pool, InMemoryMemory(), AuctionSettings(jury_mode=mode))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--auctions", type=int, default=200)
    args = ap.parse_args()
    with serve_in_process(BID, rules={"juror": JURY}) as base_url:
        per_bid = asyncio.run(rate(base_url, "per_bid", args.auctions))
        batched = asyncio.run(rate(base_url, "batched", args.auctions))
    print(f"auctions_per_s: {per_bid:.1f} auctions/s")
    print(f"auctions_per_s_batched: {batched:.1f} auctions/s")


if __name__ == "__main__":
    main()
