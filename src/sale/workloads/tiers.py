"""Complexity tiers: where a task sits on its domain's ladder of difficulty.

The paper bins its tasks by human solution time. Its benchmark is not public, so this
project stands in for those bins with public datasets whose difficulty is known to rise
from one to the next. Tier 1 is the easiest in each domain.

Coding (the agent writes a Python function; hidden tests grade it):

- tier 1, ``coding/1 mbpp``: MBPP sanitized. Short, basic functions asked for in one
  sentence (the prompt names the function and shows one of its asserts).
- tier 2, ``coding/2 humaneval``: HumanEval. A signature and a docstring with examples;
  the hidden tests probe edge cases.
- tier 3, ``coding/3 dataframebench``: DataFrameBench, rewritten BigCodeBench problems
  solved here with pandas. Multi-step data work across several libraries (pandas,
  numpy, matplotlib, ...), graded by unittest suites.

Search (the agent answers a question by searching a document collection):

- tier 1, ``search/1 single-hop``: one lookup. The single-hop sub-questions of MuSiQue
  (each step of a question's decomposition, asked on its own).
- tier 2, ``search/2 2-hop``: two lookups. HotpotQA (distractor setting, real Wikipedia
  paragraphs) and MuSiQue 2-hop questions.
- tier 3, ``search/3 3-hop``: three lookups. MuSiQue 3-hop questions.
- tier 4, ``search/4 4-hop``: four lookups. MuSiQue 4-hop questions.

A search task's tier is its hop count (the number of lookups a correct answer chains),
capped at 4. The loaders set ``Task.tier`` and ``Task.tier_name`` with the functions
below; a task file may set its own tier and name (the shipped demo labels its coding
tiers ``coding/<n> demo``), and where it leaves the name empty the name comes from
the lists above.
"""

from __future__ import annotations

from sale.errors import TaskFileError

#: Tier labels per domain: domain -> tier -> short label.
TIER_LABELS: dict[str, dict[int, str]] = {
    "coding": {1: "mbpp", 2: "humaneval", 3: "dataframebench"},
    "search": {1: "single-hop", 2: "2-hop", 3: "3-hop", 4: "4-hop"},
}

#: Which coding tier each coding dataset belongs to.
CODING_DATASET_TIERS: dict[str, int] = {"mbpp": 1, "humaneval": 2, "dataframebench": 3}

#: The highest search tier; questions with more hops share it.
MAX_SEARCH_TIER = max(TIER_LABELS["search"])


def tier_name(domain: str, tier: int) -> str:
    """The display name of a tier, e.g. ``tier_name("search", 3) == "search/3 3-hop"``.

    A domain or tier without a label (a user's own domain) gets ``"<domain>/<tier>"``.
    """
    label = TIER_LABELS.get(domain, {}).get(tier)
    return f"{domain}/{tier} {label}" if label else f"{domain}/{tier}"


def coding_tier(dataset: str) -> tuple[int, str]:
    """Tier number and name of a coding task from ``dataset`` (mbpp, humaneval, ...)."""
    try:
        tier = CODING_DATASET_TIERS[dataset]
    except KeyError:
        known = ", ".join(sorted(CODING_DATASET_TIERS))
        raise TaskFileError(f"no coding tier for dataset '{dataset}' (known: {known})")
    return tier, tier_name("coding", tier)


def search_tier(hops: int) -> tuple[int, str]:
    """Tier number and name of a search question that needs ``hops`` lookups."""
    if hops < 1:
        raise TaskFileError(f"a search question needs at least one hop, got {hops}")
    tier = min(hops, MAX_SEARCH_TIER)
    return tier, tier_name("search", tier)
