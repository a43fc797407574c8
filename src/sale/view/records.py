"""An auction record as the task page shows it: bids, the jury matrix, C, V and C - V.

Everything comes from the record as written (`sale.auction.record.AuctionResult.to_dict`);
fields are read with defaults, so an older record (no refinement reference, no
pruning marks) and a newer one (marks and fields this version does not know) both show.
"""

from __future__ import annotations

from typing import Any

#: Bid fields the bid table shows in columns of their own.
BID_FIELDS = ("agent", "kind", "text", "output_tokens", "entropy", "entropy_k", "jury", "price", "length", "cost",
              "jury_term", "value", "total", "dollars")  # fmt: skip
#: A jury score's fields shown in the cell; other fields are listed beside the score.
SCORE_FIELDS = ("score", "imputed", "raw", "reason")
# the usage of the call that gave a score (shown with the auction's calls, not per cell)
USAGE_FIELDS = ("input_tokens", "cached_tokens", "output_tokens", "dollars", "latency_s")
#: Bid-level maps (juror -> reason) of jurors not asked about this bid.
SKIP_MAPS = ("pruned", "skipped", "jury_pruned", "jury_skipped", "not_asked")


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _skip_mark(entry: dict[str, Any]) -> str | None:
    """Why a juror's score of a bid was pruned or skipped (None: it was asked)."""
    for key in ("pruned", "skipped"):
        v = entry.get(key)
        if v:
            reason = entry.get(f"{key}_reason") or entry.get("skip_reason") or entry.get("why")
            return str(reason or (v if isinstance(v, str) else key))
    if entry.get("asked") is False:
        return str(entry.get("why") or entry.get("skip_reason") or "not asked")
    return None


def jury_cell(bid: dict[str, Any], juror: str) -> dict[str, Any]:
    """One cell of the jury matrix: the score used, what the juror wrote, and marks."""
    entry = _dict(bid.get("jury")).get(juror)
    skipped = None
    for key in SKIP_MAPS:
        m = bid.get(key)
        if isinstance(m, dict) and juror in m:
            skipped = str(m[juror] or key)
        elif isinstance(m, list) and juror in m:
            skipped = key
    if entry is None:
        if skipped:
            return {"state": "pruned", "why": skipped}
        return {"state": "absent"}
    if not isinstance(entry, dict):  # a bare number (a reference's scores)
        return {"state": "scored", "score": entry}
    mark = _skip_mark(entry) or skipped
    cell = {
        "state": "pruned" if mark and entry.get("score") is None else "scored",
        "score": entry.get("score"), "raw": entry.get("raw"), "imputed": bool(entry.get("imputed")),
        "reason": str(entry.get("reason") or ""), "why": mark,
        "other": {k: v for k, v in entry.items() if k not in SCORE_FIELDS + USAGE_FIELDS and k not in ("pruned", "skipped", "asked")},
    }  # fmt: skip
    return cell


def auction_view(rec: dict[str, Any]) -> dict[str, Any]:
    """The figures of one auction record, arranged for the task page."""
    bids = [b for b in _list(rec.get("bids")) if isinstance(b, dict)]
    weights = _dict(rec.get("weights"))
    w_jury = _dict(weights.get("w_jury"))
    provisional = rec.get("provisional_winner")
    winner, winner_kind = rec.get("winner"), rec.get("winner_kind")
    refinement = _dict(rec.get("refinement"))
    reference = _dict(refinement.get("reference")) or None

    rows = []
    marked_provisional = False
    for i, b in enumerate(bids):
        is_prov = not marked_provisional and b.get("agent") == provisional and b.get("kind", "original") == "original"
        marked_provisional |= is_prov
        rows.append({
            "i": i, "agent": b.get("agent"), "kind": b.get("kind"), "text": b.get("text"),
            "label": f"{b.get('agent')} ({b.get('kind') or '?'})",
            "fields": {k: b.get(k) for k in BID_FIELDS}, "present": {k for k in BID_FIELDS if k in b},
            "provisional": is_prov, "winner": b.get("agent") == winner and b.get("kind") == winner_kind,
            "other": {k: v for k, v in b.items() if k not in BID_FIELDS and k not in SKIP_MAPS},
        })  # fmt: skip
    jurors = list(w_jury)
    for b in bids:
        for j in _dict(b.get("jury")):
            if j not in jurors:
                jurors.append(j)
        for key in SKIP_MAPS:
            m = b.get(key)
            for j in m if isinstance(m, (dict, list)) else ():
                if isinstance(j, str) and j not in jurors:
                    jurors.append(j)
    ref_scores = _dict(reference.get("jury")) if reference else {}
    matrix = [
        {"juror": j, "weight": w_jury.get(j), "cells": [jury_cell(b, j) for b in bids],
         "reference": ref_scores.get(j) if reference else None}
        for j in jurors
    ]  # fmt: skip
    dropped = [d for d in _list(rec.get("dropped")) if isinstance(d, dict)]
    known = {"task_id", "bids", "provisional_winner", "winner", "winner_kind", "refinement", "dropped", "phases",
             "settings", "weights", "original_reused", "wall_s"}  # fmt: skip
    return {
        "task_id": rec.get("task_id"), "bids": rows, "jurors": jurors, "matrix": matrix, "reference": reference,
        "provisional": provisional, "winner": winner, "winner_kind": winner_kind,
        "weights": weights, "w_cost": weights.get("w_cost"), "w_entropy": weights.get("w_entropy"),
        "refinement": refinement, "has_refinement": "refinement" in rec,
        "refined_bids": [r for r in rows if r["kind"] == "refined"],
        "dropped": dropped, "refine_dropped": [d for d in dropped if d.get("role") == "refiner"],
        "phases": _dict(rec.get("phases")), "settings": _dict(rec.get("settings")),
        "original_reused": rec.get("original_reused"), "wall_s": rec.get("wall_s"),
        "details": {"settings": rec.get("settings"), "weights": weights, "wall_s": rec.get("wall_s"),
                    **{k: v for k, v in rec.items() if k not in known}},
    }  # fmt: skip


def columns(rows: list[dict[str, Any]], first: tuple[str, ...] = ()) -> list[str]:
    """The keys of ``rows`` in order of first appearance, ``first`` leading."""
    out = [k for k in first if any(k in r for r in rows)]
    for r in rows:
        for k in r:
            if k not in out:
                out.append(k)
    return out
