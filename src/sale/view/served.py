"""A `sale serve` state folder as the viewer shows it: its live tasks.

The folder holds ``bindings.sqlite`` (task key -> winner, plan, auction id, uses, the
outcome the harness reported), ``ledger.jsonl`` (every call, tagged with its task key)
and ``auctions/<auction id>.json`` (one auction record per auction). The viewer reads
them while the server writes: SQLite is opened read-only (``mode=ro``) for each read
and closed at once, so the server's writes never wait on it; the ledger is indexed by
byte offset as it grows, with each task's dollars by phase summed from its lines.
Nothing is computed that the server did not record, beyond those sums and counts.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sale.view.files import LineIndex, parse_line, read_json

AUCTION_ID = re.compile(r"^auc-[0-9a-f]{16}$")
COLUMNS = ("key", "winner", "plan", "auction", "fallback", "created", "last_used", "requests", "passed")
SORTS = ("last_used", "created", "key", "winner", "requests", "dollars", "outcome")


def is_serve_folder(path: Path) -> bool:
    return (path / "bindings.sqlite").is_file()


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


class ServeFolder:
    """A `sale serve` state folder: one row per task key (its binding), its ledger calls
    and its auction record."""

    kind = "serve"

    def __init__(self, path: Path, root: Path, fid: str):
        self.path, self.root, self.fid = path, root, fid
        self.name = path.name
        self.db_path = path / "bindings.sqlite"
        self._lock = threading.Lock()
        self.ledger_path = path / "ledger.jsonl"
        self.ledger = LineIndex(self.ledger_path, self._on_ledger, self._reset_ledger)
        self._reset_ledger()
        self.db_problem = ""

    # -- the ledger: offsets and dollars by phase, per task key

    def _reset_ledger(self) -> None:
        self.ledger_offsets: dict[str, list[int]] = {}
        self.spent: dict[str, dict[str, float]] = {}
        self.ledger_bad = 0

    def _on_ledger(self, offset: int, raw: bytes) -> None:
        rec = parse_line(raw)
        if rec is None:
            self.ledger_bad += 1
            return
        task = str(rec.get("task") or "")
        self.ledger_offsets.setdefault(task, []).append(offset)
        dollars = _num(rec.get("dollars"))
        if dollars is not None:
            phases = self.spent.setdefault(task, {})
            phase = str(rec.get("phase") or "(none)")
            phases[phase] = phases.get(phase, 0.0) + dollars

    def refresh(self) -> None:
        with self._lock:
            self.ledger.refresh()

    def warm_ledger(self) -> None:
        """The ledger is indexed on each refresh (a served folder's ledger grows with
        its requests); nothing to start ahead."""

    # -- the bindings, read-only

    def connect(self) -> sqlite3.Connection:
        """A read-only connection to bindings.sqlite (SQLite refuses any write on it)."""
        uri = "file:" + quote(str(self.db_path.resolve())) + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=1.0)

    def bindings(self) -> list[dict[str, Any]]:
        try:
            db = self.connect()
        except sqlite3.Error as exc:
            self.db_problem = f"bindings.sqlite cannot be opened read-only: {exc}"
            return []
        try:
            rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM bindings").fetchall()
        except sqlite3.Error as exc:
            self.db_problem = f"bindings.sqlite cannot be read: {exc}"
            return []
        finally:
            db.close()
        self.db_problem = ""
        return [self._row(dict(zip(COLUMNS, r))) for r in rows]

    def _row(self, b: dict[str, Any]) -> dict[str, Any]:
        key = str(b["key"])
        phases = dict(self.spent.get(key, {}))
        passed = None if b["passed"] is None else bool(b["passed"])
        return {
            "key": key, "winner": b["winner"], "auction": b["auction"] or None, "fallback": b["fallback"] or "",
            "plan": (b["plan"] or "")[:300], "created": _num(b["created"]), "last_used": _num(b["last_used"]),
            "requests": b["requests"], "passed": passed,
            "outcome": "absent" if passed is None else ("passed" if passed else "failed"),
            "phases": phases, "dollars": sum(phases.values()) if phases else None,
            "calls": len(self.ledger_offsets.get(key, ())),
        }  # fmt: skip

    def binding(self, key: str) -> dict[str, Any] | None:
        return next((b for b in self.bindings() if b["key"] == key), None)

    # -- reading a task

    def auction(self, auction_id: str | None) -> tuple[dict[str, Any] | None, str]:
        if not auction_id:
            return None, "no auction record: the auction failed and the fallback agent took this task"
        if not AUCTION_ID.match(auction_id):
            return None, f"the binding names the auction {auction_id!r}, which is not an auction id"
        data, problem = read_json(self.path / "auctions" / f"{auction_id}.json")
        if problem:
            return None, f"auction record auctions/{auction_id}.json: {problem}"
        if not isinstance(data, dict):
            return None, f"auction record auctions/{auction_id}.json is not a JSON object"
        return data, ""

    def ledger_calls(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            self.ledger.refresh()
            offsets = list(self.ledger_offsets.get(key, ()))
        return [rec for rec in (self.ledger.read_at(off) for off in offsets) if rec is not None]

    # -- the page

    def query(self, params: dict[str, str]) -> dict[str, Any]:
        rows = self.bindings()
        q = (params.get("q") or "").strip().lower()
        if q:
            rows = [r for r in rows if q in r["key"].lower() or q in str(r["winner"]).lower()]
        if params.get("winner"):
            rows = [r for r in rows if r["winner"] == params["winner"]]
        sort = params.get("sort") if params.get("sort") in SORTS else "last_used"
        desc = params.get("desc", "1") in ("1", "true", "yes")
        present = [r for r in rows if r[sort] is not None]
        absent = [r for r in rows if r[sort] is None]
        present.sort(key=lambda r: (r[sort] if isinstance(r[sort], (int, float)) else str(r[sort]).lower(), r["key"]), reverse=desc)
        rows = present + absent
        try:
            offset = max(0, int(params.get("offset") or 0))
            limit = min(1000, max(1, int(params.get("limit") or 100)))
        except ValueError:
            offset, limit = 0, 100
        return {"total": len(rows), "offset": offset, "limit": limit, "rows": rows[offset : offset + limit],
                "totals": self.totals(), "problems": self.problems()}  # fmt: skip

    def totals(self) -> dict[str, Any]:
        phases: dict[str, float] = {}
        for by_phase in self.spent.values():
            for p, v in by_phase.items():
                phases[p] = phases.get(p, 0.0) + v
        return {"phases": phases, "dollars": sum(phases.values()), "calls": sum(len(v) for v in self.ledger_offsets.values())}

    def problems(self) -> list[str]:
        out = [self.db_problem] if self.db_problem else []
        if self.ledger.tail:
            out.append(f"the last line of ledger.jsonl is incomplete ({self.ledger.tail} bytes): a call being written")
        if self.ledger_bad:
            out.append(f"{self.ledger_bad} line(s) of ledger.jsonl are not JSON records and were skipped")
        return out

    def state(self) -> dict[str, Any]:
        return {"tasks": len(self.bindings()), "ledger_bytes": self.ledger.pos + self.ledger.tail, "problems": self.problems()}
