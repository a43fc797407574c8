"""Search latency and recall over the default collection.

Builds the default collection (MuSiQue facts, Wikipedia summaries, and the paragraphs of
the HotpotQA and MuSiQue dev tasks) from the shared data folder into a fresh cache,
then runs MuSiQue sub-questions, phrased as the musique-single tasks phrase them, as
queries. Prints:

    search_docs: N docs
    search_build_s: X s        (uncached build, including reading the files)
    search_cached_open_ms: X ms (the same call again, served from the cache)
    search_p50_ms: X ms        (median latency of one search, k = 5; target < 5 ms)
    search_p95_ms: X ms
    search_recall_at_5: X %    (sub-questions whose supporting fact is in the top 5)

Usage: python benchmarks/bench_search.py [DATA_DIR] [--queries N]
DATA_DIR defaults to ../shared/data relative to the repository root.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sale.envs.search import default_collection
from sale.workloads.loaders import load_tasks, subquestion_text

REPO = Path(__file__).resolve().parents[1]


def sub_questions(path: Path, limit: int) -> list[tuple[str, str]]:
    """(question, supporting document id) for the first ``limit`` MuSiQue steps."""
    pairs: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            answers: list[str] = []
            for step in record["question_decomposition"]:
                pairs.append((subquestion_text(step["question"], answers), step["document_id"]))
                answers.append(step["answer"])
                if len(pairs) == limit:
                    return pairs
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--queries", type=int, default=500, help="how many sub-questions")
    args = parser.parse_args()
    search_dir = args.data_dir / "search"
    if not (search_dir / "musique_dev.jsonl").is_file():
        print(f"no search data under {args.data_dir}", file=sys.stderr)
        return 2

    tasks = load_tasks(f"hotpotqa-ircot:{search_dir / 'hotpotqa_dev_distractor.jsonl'}")
    tasks += load_tasks(f"musique:{search_dir / 'musique_dev_paragraphs.jsonl'}")
    queries = sub_questions(search_dir / "musique_dev.jsonl", args.queries)

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        index = default_collection(args.data_dir, tasks, cache_dir=cache)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        index = default_collection(args.data_dir, tasks, cache_dir=cache)
        reopen_ms = (time.perf_counter() - start) * 1000

        for question, _ in queries[:50]:  # warm the page cache
            index.search(question, k=5)
        latencies, found = [], 0
        for question, doc_id in queries:
            start = time.perf_counter()
            hits = index.search(question, k=5)
            latencies.append((time.perf_counter() - start) * 1000)
            found += any(hit.id == doc_id for hit in hits)
        index.close()

    latencies.sort()
    print(f"search_docs: {len(index)} docs")
    print(f"search_build_s: {build_s:.2f} s")
    print(f"search_cached_open_ms: {reopen_ms:.1f} ms")
    print(f"search_p50_ms: {statistics.median(latencies):.2f} ms")
    print(f"search_p95_ms: {latencies[int(0.95 * (len(latencies) - 1))]:.2f} ms")
    print(f"search_recall_at_5: {100 * found / len(queries):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
