"""Deep search: a BM25-ranked document collection and the environment built on it.

The collection lives in SQLite: a plain table holds the documents (one row per id),
and an FTS5 table indexes their title and text for BM25 ranking (``bm25()``, Porter
stemming, diacritics folded). An index is built in memory or written to a file that
`SearchIndex.open` reopens. `default_collection` builds the project's collection from
../shared/data/search plus the paragraphs that tasks carry, and caches it on disk keyed
by a hash of its inputs.

`SearchEnvironment` gives an executing agent two tools, ``search(query, k)`` and
``open(id)``, and grades the final short answer with `sale.envs.answers`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import ValidationError

from sale.envs.answers import STOP_WORDS, ChatAgent  # noqa: F401 (ChatAgent: re-exported)
from sale.envs.grading import DEFAULT_RULE, GradeRule, golds_of, grade_short_answer, resolve_rule
from sale.envs.base import Grade, Tool
from sale.errors import SaleError, TaskFileError
from sale.workloads.task import Document, Task

log = logging.getLogger(__name__)

#: Bumped whenever the on-disk layout changes, so old cached indexes are not reused.
INDEX_FORMAT = 1
#: The files of ../shared/data/search that make up the default collection.
DEFAULT_COLLECTION_FILES = ("musique_facts.jsonl", "wiki_vital_summaries_en.jsonl")
#: BM25 column weights (title, text): a match in the title counts double.
TITLE_WEIGHT, TEXT_WEIGHT = 2.0, 1.0
#: The most query terms kept; longer queries are cut, to bound the cost of one search.
MAX_QUERY_TERMS = 32

_WORD = re.compile(r"\w+", re.UNICODE)

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents(
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE VIRTUAL TABLE documents_fts USING fts5(
    title, text,
    content='documents', content_rowid='rowid',
    tokenize='porter unicode61 remove_diacritics 2'
);
"""


class SearchIndexError(SaleError):
    """A search index file is missing, unreadable or not a search index."""


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is the BM25 relevance: higher is better."""

    id: str
    title: str
    snippet: str
    score: float


def fts_query(text: str) -> str:
    """Turn arbitrary text into a safe FTS5 query: quoted words OR-ed together.

    Words are runs of letters and digits; FTS5 syntax (quotes, parentheses, ``AND``,
    ``NEAR``, ``*``, ``:``, ``^``) never reaches the parser. Stop words are dropped
    unless the query has nothing else. Returns "" when the text has no words.
    """
    words: list[str] = []
    seen: set[str] = set()
    for word in _WORD.findall(text.lower()):
        if word not in seen:
            seen.add(word)
            words.append(word)
    content = [w for w in words if w not in STOP_WORDS] or words
    return " OR ".join(f'"{w}"' for w in content[:MAX_QUERY_TERMS])


def _as_document(doc: Document | dict[str, Any]) -> Document:
    return doc if isinstance(doc, Document) else Document.model_validate(doc)


class SearchIndex:
    """A BM25 index over documents, deduplicated by id (the first copy of an id wins).

    Build one with `SearchIndex.build` or reopen a saved one with `SearchIndex.open`.
    Searching is thread-safe (one lock around the connection).
    """

    def __init__(self, connection: sqlite3.Connection, path: Path | None = None):
        self._db = connection
        self._lock = threading.Lock()
        self.path = path
        (self._size,) = connection.execute("SELECT count(*) FROM documents").fetchone()

    # -- construction ---------------------------------------------------------------

    @classmethod
    def build(
        cls, docs: Iterable[Document | dict[str, Any]], path: str | Path | None = None
    ) -> SearchIndex:
        """Index ``docs``: in memory when ``path`` is None, else into the file ``path``.

        A file is written to a temporary name beside ``path`` and renamed into place
        when complete, so a reader never sees a half-written index.
        """
        if path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False)
            _fill(db, docs)
            return cls(db)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            db = sqlite3.connect(tmp_name)
            try:
                db.execute("PRAGMA journal_mode=OFF")
                db.execute("PRAGMA synchronous=OFF")
                _fill(db, docs)
            finally:
                db.close()
            os.chmod(tmp_name, 0o644)  # mkstemp makes it private; an index is not secret
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> SearchIndex:
        """Open an index file written by `build`, read-only."""
        path = Path(path)
        if not path.is_file():
            raise SearchIndexError(f"{path}: no such search index file")
        db = sqlite3.connect(
            path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False
        )
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise SearchIndexError(f"{path}: not a search index ({exc})") from exc
        if row is None or row[0] != str(INDEX_FORMAT):
            db.close()
            raise SearchIndexError(
                f"{path}: search index format {row[0] if row else 'unknown'}, "
                f"expected {INDEX_FORMAT}; rebuild it"
            )
        # Map the file and cache its pages: a whole collection is tens of MB at most.
        db.execute("PRAGMA mmap_size = 268435456")
        db.execute("PRAGMA cache_size = -65536")
        return cls(db, path)

    def close(self) -> None:
        """Close the underlying SQLite connection."""
        self._db.close()

    # -- queries --------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` best documents for ``query`` by BM25, best first.

        Any text is accepted: it is reduced to its words (see `fts_query`); a query
        without words, or ``k < 1``, gives [].
        """
        match = fts_query(query if isinstance(query, str) else str(query))
        if not match or k < 1:
            return []
        sql = (
            "SELECT d.id, d.title, snippet(documents_fts, 1, '', '', ' ... ', 64),"
            f" bm25(documents_fts, {TITLE_WEIGHT}, {TEXT_WEIGHT}) AS rank"
            " FROM documents_fts JOIN documents AS d ON d.rowid = documents_fts.rowid"
            " WHERE documents_fts MATCH ? ORDER BY rank LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, (match, int(k))).fetchall()
        return [Hit(id=r[0], title=r[1], snippet=r[2].strip(), score=-r[3]) for r in rows]

    def get(self, doc_id: str) -> Document | None:
        """The document with this id, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, title, text FROM documents WHERE id = ?", (doc_id,)
            ).fetchone()
        return Document(id=row[0], title=row[1], text=row[2]) if row else None

    def __iter__(self) -> Iterator[Document]:
        with self._lock:
            rows = self._db.execute("SELECT id, title, text FROM documents ORDER BY rowid").fetchall()
        return (Document(id=i, title=t, text=x) for i, t, x in rows)


def _fill(db: sqlite3.Connection, docs: Iterable[Document | dict[str, Any]]) -> None:
    """Create the schema in an empty database and index ``docs`` into it."""
    with db:
        db.executescript(_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('format', ?)", (str(INDEX_FORMAT),))
        db.executemany(
            "INSERT OR IGNORE INTO documents(id, title, text) VALUES (?, ?, ?)",
            ((d.id, d.title, d.text) for d in map(_as_document, docs)),
        )
        db.execute(
            "INSERT INTO documents_fts(rowid, title, text)"
            " SELECT rowid, title, text FROM documents"
        )
        db.execute("INSERT INTO documents_fts(documents_fts) VALUES ('optimize')")


# -- collections ------------------------------------------------------------------------


def load_collection(paths: Iterable[str | Path]) -> Iterator[Document]:
    """Read documents from JSON Lines files of ``{"id", "title", "text"}`` objects.

    Blank lines are skipped. A malformed line raises `TaskFileError` naming the file
    and line. Numeric ids are read as strings.
    """
    for path in map(Path, paths):
        try:
            handle = path.open(encoding="utf-8")
        except OSError as exc:
            raise TaskFileError(f"{path}: cannot read document file ({exc.strerror})") from exc
        with handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TaskFileError(f"{where}: not valid JSON ({exc.msg})") from exc
                if not isinstance(record, dict):
                    raise TaskFileError(
                        f"{where}: expected an object with id, title and text, "
                        f"got {type(record).__name__}"
                    )
                if isinstance(record.get("id"), int):
                    record["id"] = str(record["id"])
                try:
                    yield Document.model_validate(record)
                except ValidationError as exc:
                    problems = "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}"
                        for e in exc.errors()
                    )
                    raise TaskFileError(f"{where}: bad document ({problems})") from exc


def default_cache_dir() -> Path:
    """Where built indexes are cached: $XDG_CACHE_HOME/sale/indexes or ~/.cache/..."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sale" / "indexes"


def _search_data_dir(data_dir: Path) -> Path:
    """Accept the data root (with a search/ folder) or the search folder itself."""
    if (data_dir / "search" / DEFAULT_COLLECTION_FILES[0]).is_file():
        return data_dir / "search"
    return data_dir


def _task_documents(tasks: Iterable[Task]) -> list[Document]:
    return [doc for task in tasks for doc in task.documents]


def collection_key(files: Iterable[Path], documents: Iterable[Document]) -> str:
    """A hash of everything that shapes an index: format, file contents, documents."""
    digest = hashlib.sha256(f"sale-search-index/{INDEX_FORMAT}\n".encode())
    for path in files:
        digest.update(b"file\n")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    for doc in documents:
        digest.update(json.dumps([doc.id, doc.title, doc.text]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def default_collection(
    data_dir: str | Path,
    tasks: Iterable[Task] = (),
    *,
    cache_dir: str | Path | None = None,
) -> SearchIndex:
    """The project's search collection: MuSiQue facts, Wikipedia summaries, task paragraphs.

    ``data_dir`` is the shared data folder (../shared/data) or its search/ subfolder.
    The built index is cached in ``cache_dir`` (default `default_cache_dir()`) under a
    name derived from a hash of its inputs, so a second call with the same inputs only
    opens the file. Where the cache cannot be written the index is built in memory.
    """
    search_dir = _search_data_dir(Path(data_dir))
    files = [search_dir / name for name in DEFAULT_COLLECTION_FILES]
    for path in files:
        if not path.is_file():
            raise TaskFileError(
                f"{path}: missing; the default search collection needs "
                f"{', '.join(DEFAULT_COLLECTION_FILES)} in {search_dir}"
            )
    extra = _task_documents(tasks)

    def documents() -> Iterator[Document]:
        yield from load_collection(files)
        yield from extra

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / f"search-{collection_key(files, extra)[:24]}.sqlite"
    if target.is_file():
        try:
            return SearchIndex.open(target)
        except SearchIndexError as exc:
            log.warning("rebuilding the search index: %s", exc)
    try:
        return SearchIndex.build(documents(), target)
    except OSError as exc:
        log.warning("cannot cache the search index in %s (%s); building it in memory", cache, exc)
        return SearchIndex.build(documents())


# -- the environment ---------------------------------------------------------------------


def _clamp_k(k: Any, default: int, most: int) -> int:
    try:
        value = int(k)
    except (TypeError, ValueError):
        value = default
    return max(1, min(most, value))


class SearchEnvironment:
    """Deep search over a `SearchIndex`: tools ``search`` and ``open``, short-answer grading.

    Answers are graded by a named rule (`sale.envs.grading`): ``rule_override`` (from
    ``--grade``) where set, else the task's ``grading.rule``, else ``rule`` (the pool
    file's, default ``match``). The ``judge`` rule asks ``judge`` (a `Judge`).
    """

    name = "search"

    def __init__(
        self,
        index: SearchIndex,
        judge: Any = None,
        *,
        rule: str | GradeRule = DEFAULT_RULE,
        rule_override: str | GradeRule | None = None,
        default_k: int = 5,
        max_k: int = 10,
        open_max_chars: int = 4000,
    ):
        self.index = index
        self.judge = judge
        self.rule = GradeRule.parse(rule, "search environment: rule")
        self.rule_override = GradeRule.parse(rule_override, "--grade") if rule_override is not None else None
        self.default_k = default_k
        self.max_k = max_k
        self.open_max_chars = open_max_chars

    def rule_for(self, task: Task) -> GradeRule:
        """The pass rule of ``task`` (see the class docstring)."""
        return resolve_rule(self.rule_override, (task.grading or {}).get("rule"), self.rule, task.id)

    def describe(self, task: Task) -> str:
        return (
            f"Deep search over a collection of {len(self.index):,} documents (Wikipedia "
            "paragraphs and short fact notes), ranked by keyword relevance (BM25). Tools:\n"
            f"- search(query, k={self.default_k}): the k best documents (k at most "
            f"{self.max_k}), each with its id, title and a snippet. Queries are keywords, "
            "not questions; no operators.\n"
            "- open(id): the full text of the document with that id.\n"
            "A question may need several hops: find one fact, then search for the entity "
            "it names. " + self.answer_instructions(task)
        )

    def answer_instructions(self, task: Task) -> str:
        return (
            "The final answer must be a short phrase only: a name, a date, a number, or "
            "yes/no. No sentence and no explanation."
        )

    def tools(self, task: Task) -> list[Tool]:
        """search and open, for one episode: open(N) can name the N-th result of the
        episode's last search."""
        shown: list[str] = []

        async def run_search(query: Any = "", k: Any = None, **extra: Any) -> str:
            return await self._run_search(query, k, shown=shown, **extra)

        async def run_open(id: Any = "", **extra: Any) -> str:  # noqa: A002
            return await self._run_open(id, shown=shown, **extra)

        return [
            Tool(
                name="search",
                description=(
                    "Search the document collection by keywords. Returns the best "
                    "documents with their id, title and a snippet."
                ),
                parameters={
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "keywords to search for"},
                        "k": {
                            "type": "integer", "minimum": 1, "maximum": self.max_k,
                            "default": self.default_k,
                            "description": "how many results to return",
                        },
                    },
                    "required": ["query"],
                },
                run=run_search,
            ),
            Tool(
                name="open",
                description="Read the full text of a document, by the id a search returned.",
                parameters={
                    "type": "object",
                    "properties": {"id": {"type": "string", "description": "a document id"}},
                    "required": ["id"],
                },
                run=run_open,
            ),
        ]

    async def _run_search(self, query: Any = "", k: Any = None, *, shown: list[str] | None = None, **_ignored: Any) -> str:
        """Search; with ``shown``, the ids listed are recorded there, best first."""
        query = query if isinstance(query, str) else json.dumps(query)
        hits = self.index.search(query, _clamp_k(k, self.default_k, self.max_k))
        if not hits:
            return f"No documents match {query!r}. Try other keywords."
        if shown is not None:
            shown[:] = [hit.id for hit in hits]
        lines = []
        for rank, hit in enumerate(hits, 1):
            snippet = " ".join(hit.snippet.split())
            lines.append(f"{rank}. [{hit.id}] {hit.title}\n   {snippet}")
        return "\n".join(lines)

    async def _run_open(self, id: Any = "", *, shown: list[str] | None = None, **extra: Any) -> str:  # noqa: A002
        """Open a document by id; a bare number that is no id opens the result of that
        rank in the episode's last search (small models write open(1) for the first)."""
        raw = str(id or extra.get("doc_id") or "").strip()
        doc = self.index.get(raw) or self.index.get(raw.strip("[]\"'` "))
        rank = raw.strip("[]\"'` #.")
        if doc is None and shown and rank.isdigit() and 1 <= int(rank) <= len(shown):
            doc = self.index.get(shown[int(rank) - 1])
        if doc is None:
            return f"No document has the id {raw!r}. Use an id shown in [brackets] by search."
        text = doc.text
        if len(text) > self.open_max_chars:
            text = text[: self.open_max_chars] + " ... [truncated]"
        return f"[{doc.id}] {doc.title}\n\n{text}"

    async def grade(self, task: Task, answer: str) -> Grade:
        """Score the answer against ``task.grading["answers"]`` (em, f1, match, and the
        judge's verdict under the judge rule) and pass it by the task's rule."""
        return await grade_short_answer(answer, golds_of(task), task.prompt, self.rule_for(task), self.judge)


__all__ = [
    "Hit", "SearchEnvironment", "SearchIndex", "SearchIndexError", "collection_key",
    "default_cache_dir", "default_collection", "fts_query",
    "load_collection",
]
