"""The standard workload, its train/test split, and the demo workload shipped in the package.

The standard workload mixes both domains across every tier (see `sale.workloads.tiers`),
drawn from the evaluation files of the benchmark data folder (``coding/`` and
``search/``, laid out as in its README):

- coding/1: ``mbpp_sanitized.jsonl``; coding/2: ``humaneval.jsonl``;
  coding/3: ``dataframebench_val.jsonl``, then ``dataframebench_train.jsonl`` if more
  tasks are needed than val holds; only tasks whose libraries the project installs
  (pandas, numpy, scipy, matplotlib and the standard library, see
  ``SANDBOX_LIBRARIES``) are drawn, so a failure means the agent failed, not the sandbox.
- search/1: single-hop sub-questions of ``musique_dev.jsonl``.
- search/2: ``hotpotqa_dev_distractor.jsonl`` (paragraphs), ``musique_dev_paragraphs``
  (paragraphs) and ``musique_dev.jsonl`` (no paragraphs: its facts are in
  ``musique_facts.jsonl``), in equal shares.
- search/3 and search/4: ``musique_dev_paragraphs`` and ``musique_dev.jsonl``, in equal
  shares; a question of the paragraphs file is not drawn a second time from
  ``musique_dev.jsonl``.

The draw is deterministic: every candidate is ranked by a hash of the seed and its task
id, so a draw does not depend on file order, and a larger ``per_tier`` extends a smaller
one. Where a source runs short, the other sources of the tier fill its share.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from sale.errors import ConfigError, SaleError, TaskFileError
from sale.workloads.loaders import load_tasks
from sale.workloads.task import Task

#: Tasks drawn per tier by default (7 tiers: 140 tasks, 70 per side of a 50/50 split).
DEFAULT_PER_TIER = 20

#: Document files the search environment indexes next to the tasks' own paragraphs.
COLLECTION_FILES = ("search/musique_facts.jsonl", "search/wiki_vital_summaries_en.jsonl")


#: Third-party libraries installed with the project, so model-written code may use them.
SANDBOX_LIBRARIES = frozenset({"pandas", "numpy", "scipy", "matplotlib"})


def runnable(task: Task) -> bool:
    """True when every library a coding task names is installed with the project."""
    import sys

    libs = task.metadata.get("libs", [])
    return all(lib.split(".")[0] in SANDBOX_LIBRARIES or lib.split(".")[0] in sys.stdlib_module_names for lib in libs)


def _rank(task_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\x00{task_id}".encode("utf-8")).hexdigest()


def _ranked(tasks: Sequence[Task], seed: int) -> list[Task]:
    return sorted(tasks, key=lambda t: _rank(t.id, seed))


def _draw(pools: list[list[Task]], n: int) -> list[Task]:
    """Take ``n`` tasks from ranked pools in equal shares (earlier pools get the
    remainder); a pool that runs short leaves its share to the others."""
    taken = [0] * len(pools)
    want = n
    while want > 0:
        open_pools = [i for i, pool in enumerate(pools) if taken[i] < len(pool)]
        if not open_pools:
            break
        share, extra = divmod(want, len(open_pools))
        for rank, i in enumerate(open_pools):
            grab = min(share + (1 if rank < extra else 0), len(pools[i]) - taken[i])
            taken[i] += grab
            want -= grab
    return [task for pool, k in zip(pools, taken) for task in pool[:k]]


def _source(data_dir: Path, fmt: str, rel: str) -> list[Task]:
    path = data_dir / rel
    if not path.is_file():
        raise TaskFileError(
            f"{path}: missing; the standard workload reads the benchmark data folder"
            " (with coding/ and search/ inside, see its README)"
        )
    return load_tasks(f"{fmt}:{path}")


def standard_workload(data_dir: str | Path, *, per_tier: int = DEFAULT_PER_TIER,
                      seed: int = 0) -> list[Task]:
    """Draw ``per_tier`` tasks from each tier of both domains (fewer where a tier has
    fewer); returns coding tiers 1-3 then search tiers 1-4, each in rank order."""
    if per_tier < 0:
        raise ConfigError(f"per_tier must be >= 0, got {per_tier}")
    data_dir = Path(data_dir)

    def ranked(fmt: str, rel: str) -> list[Task]:
        return _ranked(_source(data_dir, fmt, rel), seed)

    musique_paragraphs = ranked("musique", "search/musique_dev_paragraphs.jsonl")
    with_paragraphs = {t.id for t in musique_paragraphs}
    musique_facts = [t for t in ranked("musique", "search/musique_dev.jsonl")
                     if t.id not in with_paragraphs]

    def hops(tasks: list[Task], tier: int) -> list[Task]:
        return [t for t in tasks if t.tier == tier]

    dataframebench = [t for t in ranked("dataframebench", "coding/dataframebench_val.jsonl")
                      + ranked("dataframebench", "coding/dataframebench_train.jsonl") if runnable(t)]
    tiers: list[list[list[Task]]] = [
        [ranked("mbpp", "coding/mbpp_sanitized.jsonl")],
        [ranked("humaneval", "coding/humaneval.jsonl")],
        [dataframebench],
        [ranked("musique-single", "search/musique_dev.jsonl")],
        [ranked("hotpotqa-ircot", "search/hotpotqa_dev_distractor.jsonl"),
         hops(musique_paragraphs, 2), hops(musique_facts, 2)],
        [hops(musique_paragraphs, 3), hops(musique_facts, 3)],
        [hops(musique_paragraphs, 4), hops(musique_facts, 4)],
    ]
    workload: list[Task] = []
    for pools in tiers:
        drawn = _draw(pools, per_tier)
        workload.extend(sorted(drawn, key=lambda t: _rank(t.id, seed)))
    return workload


def collection_files(data_dir: str | Path) -> list[Path]:
    """The document files (``{id, title, text}`` JSONL) that the standard workload's
    search tasks need besides their own paragraphs: the MuSiQue facts and the
    Wikipedia summaries used as real-text distractors."""
    return [Path(data_dir) / rel for rel in COLLECTION_FILES]


def split(tasks: Sequence[Task], *, test_fraction: float = 0.5,
          seed: int = 0) -> tuple[list[Task], list[Task]]:
    """Split tasks into (train, test), stratified by (domain, tier).

    Within each stratum, tasks are ranked by a hash of the seed and their id and the
    first ``round(test_fraction * size)`` go to test, so the split depends only on the
    set of ids and the seed, not on input order. Both lists keep the input order.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ConfigError(f"test_fraction must be within [0, 1], got {test_fraction}")
    strata: dict[tuple[str, int], list[Task]] = defaultdict(list)
    for task in tasks:
        strata[(task.domain, task.tier)].append(task)
    test_ids: set[str] = set()
    for members in strata.values():
        n_test = int(test_fraction * len(members) + 0.5)
        test_ids.update(t.id for t in _ranked(members, seed)[:n_test])
    train = [t for t in tasks if t.id not in test_ids]
    test = [t for t in tasks if t.id in test_ids]
    return train, test


def demo_dir() -> Path:
    """The folder of the demo workload shipped in the package (tasks and documents)."""
    root = resources.files("sale") / "data" / "demo"
    if not isinstance(root, Path):  # pragma: no cover - only inside a zip import
        raise SaleError("the demo workload needs the sale package installed as files")
    return root


def demo_workload() -> tuple[list[Task], Path]:
    """The shipped demo: a dozen original tasks over both domains' tiers, and the
    path of the document collection (``{id, title, text}`` JSONL) its search tasks use."""
    root = demo_dir()
    return load_tasks(root / "tasks.jsonl"), root / "documents.jsonl"
