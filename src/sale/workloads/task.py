"""The task schema: one unit of agentic work, described as data.

A task file is JSON Lines, one task per line, with the fields of `Task`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Document(BaseModel):
    """A document a search task brings with it (a paragraph of its context)."""

    id: str
    title: str = ""
    text: str


class Task(BaseModel):
    """One task.

    - ``domain``: which environment runs it ("coding" or "search", or a user's own).
    - ``tier``: complexity tier within the domain, 1 = easiest (see README).
    - ``grading``: what the environment's grader needs. Coding: ``tests`` (Python
      source that raises on failure), ``entry_point``, optional ``setup``. Search:
      ``answers`` (the answer first, then its aliases).
    - ``documents``: paragraphs the task carries into the search collection.
    """

    id: str
    domain: str
    prompt: str
    tier: int = 1
    tier_name: str = ""
    grading: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    documents: list[Document] = Field(default_factory=list)
