"""The Postgres auction memory (pgvector) on a local server from the pgserver package.

    python benchmarks/bench_memory_pg.py [--records 10000] [--writers 4]

Prints:
  memory_pg_nearest8_ms_10k   median time of one nearest-8 query over N records (exact scan)
  memory_pg_writes_per_s      records added per second by W processes writing at once
                              (each add its own committed transaction)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from sale.memory.postgres import PostgresMemory
from sale.memory.store import AuctionRecord, Bid
from sale.testing.postgres import PostgresForTests

WORDS = ("sort list parse csv film river city landmark compute mean group graph path tree string count "
         "prime matrix search index author year country capital sum filter merge split").split()  # fmt: skip


def text(i: int) -> str:
    return " ".join(WORDS[(i * k + k * k) % len(WORDS)] for k in range(1, 9)) + f" item {i}"


def rec(task_id: str, i: int) -> AuctionRecord:
    return AuctionRecord(task_id, text(i), [Bid("a", "plan", won=True), Bid("b", "other plan")], "a")


WRITER = """
import sys, time
from sale.memory.postgres import PostgresMemory
from sale.memory.store import AuctionRecord, Bid
m = PostgresMemory(sys.argv[1]); w = sys.argv[2]; n = int(sys.argv[3])
for i in range(n):
    m.add(AuctionRecord(f"w{w}-{i}", f"writer {w} task {i} about things", [Bid("a", "p", won=True)], "a"))
m.close()
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--writes", type=int, default=500, help="records per writer")
    args = ap.parse_args()
    server = PostgresForTests()
    try:
        url = server.database()
        with PostgresMemory(url) as mem:
            for start in range(0, args.records, 1000):
                mem.add_many(rec(f"t{i}", i) for i in range(start, min(args.records, start + 1000)))
            assert len(mem) == args.records
            for q in range(20):  # warm the table into the server's cache
                mem.nearest(text(q * 7 + 3), k=8)
            times = []
            for q in range(200):
                t = time.perf_counter()
                mem.nearest(text(q * 13 + 5) + " query", k=8)
                times.append(time.perf_counter() - t)
        print(f"memory_pg_nearest8_ms_{args.records // 1000}k: {1000 * statistics.median(times):.2f} ms")
        url = server.database()
        PostgresMemory(url).close()  # the tables, before the writers race
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(w), str(args.writes)]) for w in range(args.writers)]
        assert all(p.wait() == 0 for p in procs)
        wall = time.perf_counter() - t
        with PostgresMemory(url) as mem:
            assert len(mem) == args.writers * args.writes
        print(f"memory_pg_writes_per_s: {args.writers * args.writes / wall:.0f} records/s ({args.writers} writers)")
    finally:
        server.close()


if __name__ == "__main__":
    main()
