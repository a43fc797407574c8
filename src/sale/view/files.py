"""Reading a folder that may still be written: JSON Lines indexed by byte offset.

`LineIndex` reads a JSONL file from where it stopped last time and hands each complete
line (with its offset) to a callback; an incomplete last line (a record being
written, or a run killed mid-write) is left for the next refresh and reported. A file
that shrank or was replaced is read again from the start. Nothing here writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

CHUNK = 4 << 20


class LineIndex:
    """Complete lines of ``path`` seen so far; ``on_line(offset, raw)`` for each new one,
    ``on_reset()`` when the file was replaced or cut and is read again from the start."""

    def __init__(self, path: Path, on_line: Callable[[int, bytes], None], on_reset: Callable[[], None] | None = None):
        self.path = Path(path)
        self.on_line = on_line
        self.on_reset = on_reset
        self.pos = 0  # bytes consumed (complete lines)
        self.tail = 0  # bytes after the last newline (an incomplete line)
        self.ident: tuple[int, int] | None = None
        self.lines = 0
        self.exists = False

    def refresh(self) -> bool:
        """Read what was appended; True when anything changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            changed = self.exists
            if self.exists:
                self._reset()
            self.exists = False
            return changed
        self.exists = True
        ident = (st.st_dev, st.st_ino)
        if self.ident is not None and (ident != self.ident or st.st_size < self.pos):
            self._reset()
        self.ident = ident
        if st.st_size == self.pos + self.tail:
            return False
        changed = False
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                pending = b""
                while True:
                    chunk = fh.read(CHUNK)
                    if not chunk:
                        break
                    data = pending + chunk
                    end = data.rfind(b"\n")
                    if end < 0:
                        pending = data
                        continue
                    start = 0
                    base = self.pos
                    while start <= end:
                        nl = data.index(b"\n", start)
                        raw = data[start:nl]
                        if raw.strip():
                            self.on_line(base + start, raw)
                            self.lines += 1
                        start = nl + 1
                    self.pos = base + end + 1
                    pending = data[end + 1 :]
                    changed = True
                self.tail = len(pending)
        except OSError:
            return changed
        return changed

    def _reset(self) -> None:
        self.pos = self.tail = self.lines = 0
        self.ident = None
        if self.on_reset:
            self.on_reset()

    def read_at(self, offset: int) -> dict[str, Any] | None:
        """The record on the line that starts at ``offset`` (None if unreadable)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                raw = fh.readline()
        except OSError:
            return None
        return parse_line(raw)


def parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(raw.decode("utf-8", errors="replace"))
    except (json.JSONDecodeError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def read_json(path: Path) -> tuple[Any, str]:
    """(data, problem): the JSON file's contents, or None and why it could not be read."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except OSError as exc:
        return None, f"{path.name} could not be read: {exc.strerror or exc}"
    try:
        return json.loads(text), ""
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON (line {exc.lineno}: {exc.msg}); it may be half-written"


def read_trajectory(path: Path) -> dict[str, Any]:
    """A trajectory file as {header, steps, outcome, problems}."""
    out: dict[str, Any] = {"header": None, "steps": [], "outcome": None, "problems": [], "path": str(path)}
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        out["problems"].append(f"the trajectory file {path.name} is missing")
        return out
    except OSError as exc:
        out["problems"].append(f"the trajectory file {path.name} could not be read: {exc.strerror or exc}")
        return out
    lines = data.split(b"\n")
    if lines and lines[-1].strip():
        out["problems"].append("its last line is incomplete (the execution was killed mid-write or is still going)")
    for n, raw in enumerate(lines[:-1], start=1):
        if not raw.strip():
            continue
        rec = parse_line(raw)
        if rec is None:
            out["problems"].append(f"line {n} is not a JSON object and was skipped")
            continue
        kind = rec.get("type")
        if kind == "header":
            out["header"] = rec
        elif kind == "outcome":
            out["outcome"] = rec
        else:
            out["steps"].append(rec)
    if out["outcome"] is None:
        out["problems"].append("no outcome recorded yet: the execution was interrupted or is still going")
    return out


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (resolved) lies inside ``root``."""
    try:
        Path(path).resolve().relative_to(root)
        return True
    except (ValueError, OSError):
        return False
