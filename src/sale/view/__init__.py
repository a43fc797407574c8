"""The web viewer of run and bench folders: ``sale view DIR``.

    from sale.view import create_app
    app = create_app("runs/he")          # a FastAPI app; serve it, or mount it:
    parent.mount("/ui", create_app(folder))

It reads what a run or a bench wrote (results, auction records, trajectories, the
ledger, the bench's orderings and summary) and computes nothing the run did not
record: figures shown are the recorded ones, or sums and counts of them. It never
writes into the folder. Files are indexed incrementally (byte offsets, re-read as they
grow), so a run that is still going shows its new tasks, and a page of a 10,000-task
run reads one task's files, not the whole folder.

The web packages (FastAPI, uvicorn, Jinja2) are the ``view`` extra, imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sale.errors import SaleError

INSTALL_HINT = "the viewer needs FastAPI, uvicorn and Jinja2: pip install 'sale[view]'"


class ViewError(SaleError):
    """The viewer cannot start (missing packages, a folder that is not there)."""


def create_app(folder: str | Path) -> Any:
    """A FastAPI app that shows the run or bench folder ``folder`` (read-only)."""
    try:
        from sale.view.app import build_app
    except ImportError as exc:
        raise ViewError(f"{INSTALL_HINT} ({exc})") from None
    return build_app(folder)
