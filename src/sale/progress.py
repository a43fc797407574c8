"""A one-line progress bar on stderr (no dependency), redrawn in place on a terminal."""

from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    """``seconds`` for a reader: "45s", "12m", "2h05m"."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class Progress:
    """``label [####----] done/total elapsed eta status``: the estimate of the time left
    is the mean time per item so far times the items left."""

    def __init__(self, total: int, label: str = "", stream=None, width: int = 24):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.started = time.monotonic()
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, done: int, status: str = "") -> None:
        self.done = done
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self.started
        eta = f" eta {duration(elapsed / done * (self.total - done))}" if 0 < done < self.total else ""
        line = f"{self.label} [{bar}] {done}/{self.total} {elapsed:5.0f}s{eta} {status}"
        if self.tty:
            self.stream.write("\r" + line[:200].ljust(120))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
