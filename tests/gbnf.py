"""A checker for the subset of GBNF the project's grammars use, for the tests.

Parses rules of literals, character classes (``[...]``, ``[^...]``), rule references,
groups, alternation and the repetitions ``? * + {m} {m,} {m,n}`` (no recursion). It
answers two questions about a grammar: does it accept a string (through an equivalent
Python regex), and what strings does it produce (random ones, for property tests).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "]": "]", "[": "[", "-": "-", "^": "^"}


@dataclass
class Node:
    kind: str  # lit, cls, ref, seq, alt, rep
    value: object = None
    items: list | None = None
    lo: int = 0
    hi: int | None = None


class Grammar:
    def __init__(self, text: str):
        self.rules: dict[str, Node] = {}
        for name, body in _split_rules(text):
            self.rules[name] = _Parser(body).parse()
        self._regex: dict[str, str] = {}

    # ---------------------------------------------------------------- matching
    def regex(self, name: str = "root") -> str:
        if name not in self._regex:
            self._regex[name] = "<busy>"
            self._regex[name] = self._re(self.rules[name])
        if self._regex[name] == "<busy>":
            raise ValueError(f"rule {name} is recursive")
        return self._regex[name]

    def _re(self, node: Node) -> str:
        if node.kind == "lit":
            return re.escape(node.value)
        if node.kind == "cls":
            negated, parts = node.value
            inner = "".join(re.escape(a) if a == b else f"{re.escape(a)}-{re.escape(b)}" for a, b in parts)
            return f"[{'^' if negated else ''}{inner}]"
        if node.kind == "ref":
            return f"(?:{self.regex(node.value)})"
        if node.kind == "seq":
            return "".join(self._re(n) for n in node.items)
        if node.kind == "alt":
            return "(?:" + "|".join(self._re(n) for n in node.items) + ")"
        hi = "" if node.hi is None else str(node.hi)
        return f"(?:{self._re(node.items[0])}){{{node.lo},{hi}}}"

    def accepts(self, text: str) -> bool:
        return re.fullmatch(self.regex(), text, re.DOTALL) is not None

    # ---------------------------------------------------------------- sampling
    def sample(self, rng: random.Random, alphabet: str, name: str = "root") -> str:
        return self._gen(self.rules[name], rng, alphabet)

    def _gen(self, node: Node, rng: random.Random, alphabet: str) -> str:
        if node.kind == "lit":
            return node.value
        if node.kind == "cls":
            negated, parts = node.value
            inside = lambda ch: any(a <= ch <= b for a, b in parts)  # noqa: E731
            pool = [ch for ch in alphabet if inside(ch) != negated]
            return rng.choice(pool)
        if node.kind == "ref":
            return self._gen(self.rules[node.value], rng, alphabet)
        if node.kind == "seq":
            return "".join(self._gen(n, rng, alphabet) for n in node.items)
        if node.kind == "alt":
            return self._gen(rng.choice(node.items), rng, alphabet)
        hi = node.hi if node.hi is not None else node.lo + 8
        count = rng.choice([node.lo, hi, rng.randint(node.lo, hi)])
        return "".join(self._gen(node.items[0], rng, alphabet) for _ in range(count))


def _split_rules(text: str) -> list[tuple[str, str]]:
    rules = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z0-9-]+)\s*::=\s*(.*)$", line)
        if not match:
            raise ValueError(f"not a rule: {line!r}")
        rules.append((match.group(1), match.group(2)))
    return rules


class _Parser:
    def __init__(self, text: str):
        self.s, self.i = text, 0

    def parse(self) -> Node:
        node = self.alt()
        self.ws()
        if self.i != len(self.s):
            raise ValueError(f"trailing text at {self.i}: {self.s[self.i:]!r}")
        return node

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def alt(self) -> Node:
        items = [self.seq()]
        while True:
            self.ws()
            if self.i < len(self.s) and self.s[self.i] == "|":
                self.i += 1
                items.append(self.seq())
            else:
                return items[0] if len(items) == 1 else Node("alt", items=items)

    def seq(self) -> Node:
        items = []
        while True:
            self.ws()
            if self.i >= len(self.s) or self.s[self.i] in "|)":
                return Node("seq", items=items)
            items.append(self.postfix(self.atom()))

    def atom(self) -> Node:
        c = self.s[self.i]
        if c == '"':
            self.i += 1
            out = ""
            while self.s[self.i] != '"':
                out += self.char()
            self.i += 1
            return Node("lit", out)
        if c == "[":
            self.i += 1
            negated = self.s[self.i] == "^"
            self.i += negated
            parts = []
            while self.s[self.i] != "]":
                a = self.char()
                if self.s[self.i] == "-" and self.s[self.i + 1] != "]":
                    self.i += 1
                    parts.append((a, self.char()))
                else:
                    parts.append((a, a))
            self.i += 1
            return Node("cls", (negated, parts))
        if c == "(":
            self.i += 1
            node = self.alt()
            self.ws()
            assert self.s[self.i] == ")", self.s[self.i:]
            self.i += 1
            return node
        match = re.compile(r"[a-zA-Z0-9-]+").match(self.s, self.i)
        if not match:
            raise ValueError(f"unexpected {c!r} at {self.i} in {self.s!r}")
        self.i = match.end()
        return Node("ref", match.group())

    def char(self) -> str:
        if self.s[self.i] == "\\":
            kind = self.s[self.i + 1]
            if kind in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[kind]
                code = self.s[self.i + 2 : self.i + 2 + width]
                self.i += 2 + width
                return chr(int(code, 16))
            self.i += 2
            return _ESC[kind]
        self.i += 1
        return self.s[self.i - 1]

    def postfix(self, node: Node) -> Node:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in "?*+":
                self.i += 1
                lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}[c]
                node = Node("rep", items=[node], lo=lo, hi=hi)
            elif c == "{":
                end = self.s.index("}", self.i)
                lo_text, _, hi_text = self.s[self.i + 1 : end].partition(",")
                lo = int(lo_text)
                hi = lo if "," not in self.s[self.i + 1 : end] else (int(hi_text) if hi_text.strip() else None)
                self.i = end + 1
                node = Node("rep", items=[node], lo=lo, hi=hi)
            else:
                return node
        return node
