"""Nearest-8 latency of the SQLite auction memory with the lexical embedder.

Builds one temporary memory file up to 1k, 10k and 100k synthetic auctions (each with
three bids) and, at each size, reopens it and times nearest-8 queries for unseen task
texts. Prints the median latency per size, plus the build rate and the time a reopened
memory takes to load its embedding matrix on the first search.

    python benchmarks/bench_memory.py [--sizes 1000,10000,100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from sale.memory.embedders import LexicalEmbedder
from sale.memory.store import AuctionRecord, Bid, SQLiteMemory

TOPICS = [
    "sort", "list", "integers", "string", "palindrome", "prime", "matrix", "graph", "shortest", "path",
    "dataframe", "column", "groupby", "csv", "json", "parse", "date", "timezone", "regex", "email",
    "film", "director", "novel", "author", "river", "country", "capital", "population", "election",
    "album", "band", "football", "club", "stadium", "university", "founded", "painter", "museum",
    "mountain", "height", "bridge", "architect", "species", "genus", "chemical", "element", "planet",
]
FRAMES = [
    "Write a Python function that {a} the {b} of a {c} and returns the {d}.",
    "Who was the {a} of the {b} that {c} the {d}?",
    "Given a {a} of {b}, compute the {c} grouped by {d} and plot it.",
    "In which year was the {a} of the {b} {c} in the {d}?",
    "Find the {a} {b} in a {c} using {d} and explain the steps.",
]


def synthetic_text(rng: random.Random, vocab: list[str]) -> str:
    words = {key: " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 3))) for key in "abcd"}
    text = rng.choice(FRAMES).format(**words)
    return text + " " + " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 25)))


def synthetic_record(i: int, rng: random.Random, vocab: list[str]) -> AuctionRecord:
    agents = ["small", "medium", "large"]
    winner = rng.choice(agents)
    bids = [
        Bid(agent=a, text=f"Plan by {a}: search, read, verify, answer. " * 4, cost=rng.random(),
            value=rng.random() * 5, total=rng.random(), jury_mean=rng.random() * 5, won=(a == winner))
        for a in agents
    ]
    return AuctionRecord(task_id=f"t{i:06d}", task_text=synthetic_text(rng, vocab), bids=bids, winner=winner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    rng = random.Random(7)
    vocab = TOPICS + [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 10))) for _ in range(20000)
    ]
    embedder = LexicalEmbedder()
    with tempfile.TemporaryDirectory(prefix="sale-bench-memory-") as folder:
        path = Path(folder) / "memory.sqlite"
        memory = SQLiteMemory(path, embedder, synchronous="NORMAL")
        built = 0
        build_s = 0.0
        for size in sizes:
            t0 = time.perf_counter()
            while built < size:
                batch = [synthetic_record(i, rng, vocab) for i in range(built, min(size, built + 5000))]
                memory.add_many(batch)
                built += len(batch)
            build_s += time.perf_counter() - t0
            memory.close()

            memory = SQLiteMemory(path, embedder)
            queries = [synthetic_text(rng, vocab) for _ in range(args.queries)]
            t0 = time.perf_counter()
            memory.nearest(queries[0], k=8)  # loads the matrix
            load_ms = (time.perf_counter() - t0) * 1e3
            times = []
            for q in queries:
                t0 = time.perf_counter()
                hits = memory.nearest(q, k=8)
                times.append((time.perf_counter() - t0) * 1e3)
                assert len(hits) == 8
            label = f"{size // 1000}k" if size % 1000 == 0 else str(size)
            print(f"memory_nearest8_ms_{label}: {statistics.median(times):.2f} ms")
            print(f"memory_first_search_ms_{label}: {load_ms:.1f} ms")
        memory.close()
        print(f"memory_build_records_per_s: {built / build_s:.0f} records/s")
        print(f"memory_file_mb_{label}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
