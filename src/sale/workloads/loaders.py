"""Load tasks from the project's own JSONL files and from public benchmark files.

A task source is addressed as ``FORMAT:PATH`` (``mbpp:data/coding/mbpp_sanitized.jsonl``)
or as a plain path to a task file in the project's own format (one `Task` per line).
Formats:

- ``jsonl``: the project's own format, one `Task` object per line.
- ``humaneval``: HumanEval (task_id, prompt, entry_point, test).
- ``mbpp``: MBPP sanitized (task_id, prompt, code, test_imports, test_list).
- ``dataframebench``: DataFrameBench, with its library placeholders filled for pandas.
- ``hotpotqa``: HotpotQA in its original format (context is [[title, [sentences]]]).
- ``hotpotqa-ircot``: HotpotQA in IRCoT's processed format (question_id,
  question_text, answers_objects, contexts).
- ``musique``: MuSiQue questions, with or without their ``paragraphs``.
- ``musique-single``: the single-hop steps of MuSiQue question decompositions, each
  asked as a question of its own, deduplicated by sub-question id.

Every loader returns `Task` objects in the normalised form the environments expect
(see `sale.workloads.task.Task`): coding tasks carry ``grading = {"style", "tests",
"entry_point", "setup"}`` with style ``humaneval`` (tests define ``check(candidate)``),
``asserts`` (tests are assert statements) or ``unittest`` (tests define TestCase
classes); search tasks carry ``grading = {"answers": [answer, *aliases]}`` and their
paragraphs as `Document` objects whose ids are a hash of title and text, so the same
paragraph carried by two tasks is one document. A malformed file raises
`TaskFileError` naming the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sale.errors import TaskFileError
from sale.workloads.task import Document, Task
from sale.workloads.tiers import coding_tier, search_tier, tier_name

#: What DataFrameBench's placeholders become: this project solves it with pandas.
DATAFRAMEBENCH_LIBRARY_INSTRUCTION = "Use pandas for the dataframe operations."
DATAFRAMEBENCH_LIBRARY_IMPORT = "import pandas as pd"


# --------------------------------------------------------------------------- records


class _Record:
    """One JSON value read from ``path`` at ``line``, with checked field access.

    Every error it raises names the file, the line and the field's path inside the
    record (``question_decomposition[1].answer``).
    """

    def __init__(self, data: Any, path: Path, line: int, where: str = ""):
        self.data = data
        self.path = path
        self.line = line
        self.where = where

    def _field(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def error(self, field: str | None, problem: str) -> TaskFileError:
        place = f"{self.path}, line {self.line}"
        if field is not None:
            place += f", field '{self._field(field)}'"
        return TaskFileError(f"{place}: {problem}")

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        """The field ``name``, which must be of ``kind``; ``default`` if given and absent."""
        if name not in self.data:
            if default is not ...:
                return default
            raise self.error(name, "is missing")
        value = self.data[name]
        if not _is_kind(value, kind):
            raise self.error(name, f"must be {_kind_name(kind)}, got {_describe(value)}")
        return value

    def objects(self, name: str) -> list[_Record]:
        """The field ``name`` as a list of JSON objects, each wrapped as a record."""
        items = self.get(name, list)
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(f"{name}[{i}]", f"must be an object, got {_describe(item)}")
            out.append(_Record(item, self.path, self.line, self._field(f"{name}[{i}]")))
        return out

    def strings(self, name: str, default: Any = ...) -> list[str]:
        """The field ``name`` as a list of strings."""
        items = self.get(name, list, default)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(name, f"item {i} must be a string, got {_describe(item)}")
        return list(items)


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", list: "a list", dict: "an object",
             bool: "true or false", float: "a number", type(None): "null"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _read_jsonl(path: Path) -> Iterator[_Record]:
    """Yield each non-blank line of a JSONL file as a record of a JSON object."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise TaskFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise TaskFileError(f"{path}: cannot be read ({exc.strerror})") from None
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TaskFileError(
                    f"{path}, line {line_no}: not UTF-8 text (byte {exc.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(
                    f"{path}, line {line_no}: not valid JSON ({exc.msg} at column"
                    f" {exc.colno})"
                ) from None
            except (ValueError, RecursionError) as exc:  # a huge number, deep nesting
                raise TaskFileError(f"{path}, line {line_no}: not usable JSON ({exc})") from None
            if not isinstance(data, dict):
                raise TaskFileError(
                    f"{path}, line {line_no}: expected a JSON object, got {_describe(data)}"
                )
            yield _Record(data, path, line_no)


# ------------------------------------------------------------------------- documents


def document_id(title: str, text: str) -> str:
    """A stable id for a paragraph: a short hash of its title and whitespace-normalised
    text, so one paragraph carried by several tasks (or files) gets one id."""
    normal = " ".join(title.split()) + "\n" + " ".join(text.split())
    return "p" + hashlib.sha256(normal.encode("utf-8")).hexdigest()[:16]


def _paragraph(title: str, text: str) -> Document:
    return Document(id=document_id(title, text), title=title, text=text)


def load_documents(path: str | Path) -> list[Document]:
    """Read a document collection file: JSONL with ``id``, ``title`` and ``text``."""
    path = Path(path)
    docs = []
    for rec in _read_jsonl(path):
        docs.append(Document(id=rec.get("id", str), title=rec.get("title", str, ""),
                             text=rec.get("text", str)))
    return docs


# ------------------------------------------------------------------- the project JSONL


def _project_jsonl(path: Path) -> Iterator[Task]:
    """The project's own format: one `Task` per line, validated field by field."""
    seen: dict[str, int] = {}
    for rec in _read_jsonl(path):
        try:
            task = Task.model_validate(rec.data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "(record)"
                problems.append(f"field '{field}': {err['msg']}")
            raise TaskFileError(f"{path}, line {rec.line}: " + "; ".join(problems)) from None
        if task.id in seen:
            raise rec.error("id", f"'{task.id}' repeats the task on line {seen[task.id]}")
        seen[task.id] = rec.line
        if not task.tier_name:
            task.tier_name = tier_name(task.domain, task.tier)
        yield task


def write_tasks(path: str | Path, tasks: Iterable[Task]) -> Path:
    """Write tasks to ``path`` in the project's own JSONL format; returns the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        for task in tasks:
            out.write(task.model_dump_json() + "\n")
    return path


# ---------------------------------------------------------------------------- coding


def _coding_task(dataset: str, ident: str, prompt: str, grading: dict[str, Any],
                 metadata: dict[str, Any]) -> Task:
    tier, name = coding_tier(dataset)
    return Task(id=f"{dataset}/{ident}", domain="coding", prompt=prompt, tier=tier,
                tier_name=name, grading=grading,
                metadata={"source": dataset, **metadata})


_IMPORT_LINE = re.compile(r"^(?:from\s+\S+\s+import\s+.+|import\s+.+)$")


def _humaneval(path: Path) -> Iterator[Task]:
    """HumanEval: the prompt is a function stub; ``test`` defines ``check(candidate)``."""
    for rec in _read_jsonl(path):
        task_id = rec.get("task_id", str)
        stub = rec.get("prompt", str)
        entry = rec.get("entry_point", str)
        tests = rec.get("test", str)
        # The whole stub is the setup, run before the answer as the official harness
        # runs prompt + completion: its imports (``from typing import List``) and the
        # helpers it defines (``is_palindrome`` next to ``make_palindrome``) are in
        # scope for an answer that leaves them out; the answer's own definitions win.
        prompt = (f"Complete the Python function `{entry}` below so that it does what its"
                  f" docstring says.\n\n```python\n{stub.rstrip()}\n```")
        grading = {"style": "humaneval", "tests": tests, "entry_point": entry,
                   "setup": stub}
        yield _coding_task("humaneval", task_id, prompt, grading,
                           {"original_id": task_id, "stub": stub})


_DEF = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")


def _mbpp_entry_point(code: str, tests: list[str]) -> str | None:
    """The function the asserts exercise: the first def they call, else the first def,
    else the first name the first assert calls."""
    defs = _DEF.findall(code)
    joined = "\n".join(tests)
    for name in defs:
        if re.search(rf"\b{re.escape(name)}\s*\(", joined):
            return name
    if defs:
        return defs[0]
    skip = {"assert", "set", "sorted", "list", "tuple", "abs", "round", "math", "isclose"}
    for name in _CALL.findall(tests[0] if tests else ""):
        if name not in skip:
            return name
    return None


def _mbpp(path: Path) -> Iterator[Task]:
    """MBPP sanitized: a one-sentence request; the asserts in test_list grade it."""
    for rec in _read_jsonl(path):
        task_id = rec.get("task_id", (int, str))
        request = rec.get("prompt", str)
        code = rec.get("code", str)
        imports = rec.strings("test_imports", [])
        tests = rec.strings("test_list")
        if not tests:
            raise rec.error("test_list", "is empty; an MBPP task needs at least one assert")
        entry = _mbpp_entry_point(code, tests)
        if entry is None:
            raise rec.error("code", "defines no function and the asserts call none")
        prompt = (f"{request.strip()}\n\nName the function `{entry}`. It must pass tests"
                  f" such as:\n\n```python\n{tests[0].strip()}\n```")
        grading = {"style": "asserts", "tests": "\n".join(tests), "entry_point": entry,
                   "setup": "\n".join(imports)}
        yield _coding_task("mbpp", str(task_id), prompt, grading,
                           {"original_id": task_id})


def _fill_library(text: str) -> str:
    return (text.replace("{library_instruction}", DATAFRAMEBENCH_LIBRARY_INSTRUCTION)
            .replace("{library_import}", DATAFRAMEBENCH_LIBRARY_IMPORT))


def _dataframebench(path: Path) -> Iterator[Task]:
    """DataFrameBench: the prompt with its library placeholders filled for pandas;
    ``test_code`` is a unittest suite that calls the entry point."""
    for rec in _read_jsonl(path):
        task_id = rec.get("task_id", str)
        prompt = rec.get("prompt", str)
        entry = rec.get("entry_point", str)
        tests = rec.get("test_code", str)
        libs = rec.strings("libs", [])
        if "{library_" in tests:
            tests = _fill_library(tests)
        grading = {"style": "unittest", "tests": tests, "entry_point": entry, "setup": ""}
        metadata = {"original_id": task_id, "libs": ["pandas", *libs],
                    "category": rec.get("category", str, ""),
                    "seed_id": rec.get("seed_id", str, "")}
        yield _coding_task("dataframebench", task_id, _fill_library(prompt), grading,
                           metadata)


# ---------------------------------------------------------------------------- search


def _search_task(dataset: str, ident: str, question: str, answers: list[str], hops: int,
                 documents: list[Document], metadata: dict[str, Any]) -> Task:
    tier, name = search_tier(hops)
    unique = list(dict.fromkeys(a for a in answers if a.strip()))
    return Task(id=f"{dataset}/{ident}", domain="search", prompt=question, tier=tier,
                tier_name=name, grading={"answers": unique}, documents=documents,
                metadata={"source": dataset, "hops": hops, **metadata})


def _unique_documents(docs: Iterable[Document]) -> list[Document]:
    return list({d.id: d for d in docs}.values())


def _hotpotqa(path: Path) -> Iterator[Task]:
    """HotpotQA, original format: ``context`` is a list of [title, [sentences]]."""
    for rec in _read_jsonl(path):
        qid = rec.get("_id", str)
        question = rec.get("question", str)
        answer = rec.get("answer", str)
        docs, titles = [], {}
        for i, item in enumerate(rec.get("context", list)):
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                    or not isinstance(item[1], list)
                    or not all(isinstance(s, str) for s in item[1])):
                raise rec.error(f"context[{i}]", "must be [title, [sentences]]")
            doc = _paragraph(item[0], "".join(item[1]).strip())
            docs.append(doc)
            titles[item[0]] = doc.id
        supporting = []
        for i, fact in enumerate(rec.get("supporting_facts", list, [])):
            if not isinstance(fact, list) or not fact or not isinstance(fact[0], str):
                raise rec.error(f"supporting_facts[{i}]", "must be [title, sentence index]")
            if fact[0] in titles and titles[fact[0]] not in supporting:
                supporting.append(titles[fact[0]])
        metadata = {"original_id": qid, "supporting": supporting,
                    "type": rec.get("type", str, ""), "level": rec.get("level", str, "")}
        yield _search_task("hotpotqa", qid, question, [answer], 2, _unique_documents(docs),
                           metadata)


def _hotpotqa_ircot(path: Path) -> Iterator[Task]:
    """HotpotQA in IRCoT's processed format: contexts with paragraph_text."""
    for rec in _read_jsonl(path):
        qid = rec.get("question_id", str)
        question = rec.get("question_text", str)
        answer_objects = rec.objects("answers_objects")
        if not answer_objects:
            raise rec.error("answers_objects", "is empty")
        answers = answer_objects[0].strings("spans")
        if not answers:
            raise answer_objects[0].error("spans", "is empty")
        docs, supporting = [], []
        for ctx in rec.objects("contexts"):
            doc = _paragraph(ctx.get("title", str), ctx.get("paragraph_text", str))
            docs.append(doc)
            if ctx.get("is_supporting", bool, False):
                supporting.append(doc.id)
        yield _search_task("hotpotqa", qid, question, answers, 2, _unique_documents(docs),
                           {"original_id": qid, "supporting": supporting})


def _musique_paragraphs(rec: _Record) -> list[Document]:
    """The candidate paragraphs of a MuSiQue record, in idx order (absent: none)."""
    if "paragraphs" not in rec.data:
        return []
    return [_paragraph(p.get("title", str), p.get("paragraph_text", str))
            for p in rec.objects("paragraphs")]


def _musique_steps(rec: _Record) -> list[_Record]:
    steps = rec.objects("question_decomposition")
    if not steps:
        raise rec.error("question_decomposition", "is empty")
    for step in steps:
        step.get("id", (int, str))
        step.get("question", str)
        step.get("answer", str)
    return steps


def _musique(path: Path) -> Iterator[Task]:
    """MuSiQue questions; the hop count is the length of the decomposition."""
    for rec in _read_jsonl(path):
        qid = rec.get("id", str)
        question = rec.get("question", str)
        answers = [rec.get("answer", str), *rec.strings("answer_aliases", [])]
        steps = _musique_steps(rec)
        docs = _musique_paragraphs(rec)
        supporting = []
        for step in steps:
            idx = step.get("paragraph_support_idx", (int, type(None)), None)
            if docs and idx is not None:
                if not 0 <= idx < len(docs):
                    raise step.error("paragraph_support_idx",
                                     f"{idx} is not a paragraph index (0..{len(docs) - 1})")
                supporting.append(docs[idx].id)
        metadata = {"original_id": qid, "reasoning_type": qid.split("__")[0],
                    "subquestion_ids": [step.data["id"] for step in steps],
                    "supporting": supporting}
        yield _search_task("musique", qid, question, answers, len(steps),
                           _unique_documents(docs), metadata)


# How a MuSiQue relation ("SUBJECT >> RELATION") reads as a question. Relations not
# listed read "What is the <relation> of <subject>?" ("Who is ..." for the relations in
# _PERSON_RELATIONS, whose values are people or organisations), or "Who is <subject>
# <relation>?" for relations ending in "by" ("owned by").
_RELATION_QUESTIONS = {
    "located in the administrative territorial entity":
        "In which administrative territorial entity is {s} located?",
    "contains administrative territorial entity":
        "Which administrative territorial entity is contained in {s}?",
    "place of birth": "Where was {s} born?",
    "place of death": "Where did {s} die?",
    "headquarters location": "Where is the headquarters of {s}?",
    "country": "Which country is {s} in?",
    "shares border with": "Which place shares a border with {s}?",
    "educated at": "Where was {s} educated?",
    "member of sports team": "Which sports team was {s} a member of?",
    "member of": "What is {s} a member of?",
    "member of political party": "Which political party is {s} a member of?",
    "work location": "Where did {s} work?",
    "location": "Where is {s} located?",
    "location of formation": "Where was {s} formed?",
    "licensed to broadcast to": "Which place is {s} licensed to broadcast to?",
    "part of": "What is {s} part of?",
    "capital of": "What is {s} the capital of?",
    "instance of": "What is {s} an instance of?",
    "located on terrain feature": "On which terrain feature is {s} located?",
    "located in or next to body of water": "Which body of water is {s} in or next to?",
    "named after": "What is {s} named after?",
    "part of the series": "Which series is {s} part of?",
    "has part": "What is a part of {s}?",
    "award received": "Which award did {s} receive?",
    "participant in": "What did {s} take part in?",
    "conflict": "Which conflict did {s} take part in?",
    "followed by": "What came after {s}?",
    "follows": "What came before {s}?",
    "present in work": "In which work does {s} appear?",
    "mouth of the watercourse": "What does {s} flow into?",
    "based on": "What is {s} based on?",
    "drafted by": "Which team drafted {s}?",
    "league": "Which league does {s} play in?",
    "instrument": "Which instrument does {s} play?",
    "platform": "On which platform is {s} available?",
    "winner": "Who won {s}?",
    "cast member": "Who is a cast member of {s}?",
    "child": "Who is a child of {s}?",
    "sibling": "Who is a sibling of {s}?",
    "participant": "Who took part in {s}?",
    "occupant": "Who occupies {s}?",
}
_PERSON_RELATIONS = {
    "performer", "spouse", "author", "creator", "composer", "father", "mother",
    "director", "screenwriter", "producer", "developer", "publisher", "employer",
    "operator", "manufacturer", "production company", "original broadcaster",
}
_STEP_REF = re.compile(r"#(\d+)")


def subquestion_text(step: str, earlier_answers: list[str]) -> str:
    """A MuSiQue decomposition step as a plain question.

    ``#k`` becomes the answer of step k; a step written as ``SUBJECT >> RELATION``
    becomes a question about SUBJECT's RELATION (``"Where was X born?"``); a step
    already written as a question is capitalised and ends with a question mark.
    Raises ValueError for a ``#k`` that names no earlier step.
    """

    def answer_of(match: re.Match[str]) -> str:
        k = int(match.group(1))
        if not 1 <= k <= len(earlier_answers):
            raise ValueError(f"'#{k}' names no earlier step")
        return earlier_answers[k - 1]

    text = " ".join(_STEP_REF.sub(answer_of, step).split())
    if ">>" in text:
        subject, relation = (part.strip() for part in text.split(">>", 1))
        template = _RELATION_QUESTIONS.get(relation)
        if template is None and relation.endswith(" by"):
            template = "Who is {s} " + relation + "?"
        elif template is None:
            wh = "Who" if relation in _PERSON_RELATIONS else "What"
            template = wh + " is the " + relation + " of {s}?"
        return template.format(s=subject)
    text = text.rstrip(" ?.")
    return text[:1].upper() + text[1:] + "?"


def _musique_single(path: Path) -> Iterator[Task]:
    """Single-hop sub-questions of MuSiQue, first occurrence of each sub-question id.

    Each keeps its own answer; the final step of a question also accepts the question's
    answer aliases. With paragraphs, the parent question's paragraphs come along (the
    supporting one and its distractors).
    """
    seen: set[str] = set()
    for rec in _read_jsonl(path):
        qid = rec.get("id", str)
        final_answer = rec.get("answer", str)
        aliases = rec.strings("answer_aliases", [])
        steps = _musique_steps(rec)
        docs = _musique_paragraphs(rec)
        answers_so_far: list[str] = []
        for k, step in enumerate(steps):
            sub_id = str(step.data["id"])
            raw = step.data["question"]
            answer = step.data["answer"]
            try:
                question = subquestion_text(raw, answers_so_far)
            except ValueError as exc:
                raise step.error("question", str(exc)) from None
            answers_so_far.append(answer)
            if sub_id in seen:
                continue
            seen.add(sub_id)
            answers = [answer]
            if k == len(steps) - 1 and answer == final_answer:
                answers += aliases
            supporting = []
            idx = step.data.get("paragraph_support_idx")
            if docs and isinstance(idx, int) and 0 <= idx < len(docs):
                supporting.append(docs[idx].id)
            metadata = {"original_id": sub_id, "parent_id": qid, "step": k + 1,
                        "step_text": raw, "supporting": supporting}
            yield _search_task("musique-single", sub_id, question, answers, 1,
                               _unique_documents(docs), metadata)


# -------------------------------------------------------------------------- dispatch

#: Task formats by name: each reads a path and yields tasks in file order.
FORMATS: dict[str, Callable[[Path], Iterator[Task]]] = {
    "jsonl": _project_jsonl,
    "humaneval": _humaneval,
    "mbpp": _mbpp,
    "dataframebench": _dataframebench,
    "hotpotqa": _hotpotqa,
    "hotpotqa-ircot": _hotpotqa_ircot,
    "musique": _musique,
    "musique-single": _musique_single,
}

_FORMAT_PREFIX = re.compile(r"^([a-z][a-z0-9-]*):(.+)$", re.DOTALL)


def parse_spec(spec: str) -> tuple[str, Path]:
    """Split a task source into (format, path); a plain path means ``jsonl``."""
    match = _FORMAT_PREFIX.match(spec)
    if match and match.group(1) in FORMATS:
        return match.group(1), Path(match.group(2))
    if match and not Path(spec).exists():
        known = ", ".join(FORMATS)
        raise TaskFileError(
            f"'{spec}': unknown task format '{match.group(1)}' (known: {known})"
        )
    return "jsonl", Path(spec)


def task_folders(specs: Iterable[str]) -> set[Path]:
    """The folders of task files given as ``FORMAT:PATH`` or paths: they hold the hidden
    tests, so model-written code must not see them."""
    return {parse_spec(spec)[1].resolve().parent for spec in specs}


def load_tasks(spec: str | Path, *, limit: int | None = None) -> list[Task]:
    """Load tasks from ``FORMAT:PATH`` or a plain path to a project JSONL task file.

    ``limit`` keeps the first ``limit`` tasks in file order (reading stops there).
    Raises `TaskFileError` for a missing or malformed file, naming file, line and field.
    """
    if limit is not None and limit < 0:
        raise TaskFileError(f"'{spec}': limit must be >= 0, got {limit}")
    fmt, path = parse_spec(str(spec))
    tasks = list(islice(FORMATS[fmt](path), limit))
    if fmt != "jsonl":
        for task in tasks:
            task.metadata["source_file"] = path.name
    return tasks
