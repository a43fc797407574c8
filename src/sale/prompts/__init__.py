"""The prompt files sent to the agents (the ``*.txt`` files beside this module).

Caches of LLM work record the digest of the prompts they were made with (an original
round its `ROUND` prompts, a bench folder its `EXECUTION` and `REFINE` prompts), so that a prompt
edit recomputes the work instead of silently mixing old and new results.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from importlib import resources

#: The prompts an original round (the bids and their jury) is made with.
ROUND = ("bid.txt", "jury_bid.txt", "jury_batch.txt")
#: The prompts a tool-using execution is made with.
EXECUTION = ("execute_system_text.txt", "execute_system_tools.txt", "execute_task.txt",
             "execute_coding_start.txt", "direct_task.txt", "direct_search.txt")
#: The prompt refinement is made with (it matters to the SALE orderings only).
REFINE = ("refine.txt",)


@functools.cache
def text(name: str) -> str:
    """The text of the prompt file ``name``."""
    return (resources.files(__name__) / name).read_text(encoding="utf-8")


def digest(names: Iterable[str]) -> str:
    """A short sha256 of the contents of the prompt files ``names``, in order."""
    h = hashlib.sha256()
    for name in names:
        h.update(text(name).encode("utf-8"))
    return h.hexdigest()[:12]
