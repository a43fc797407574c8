"""One run per folder: an OS file lock on ``RUN_DIR/.lock``.

The lock is ``flock`` on an open file, so it dies with the process that holds it
(kill -9 included) and never goes stale. The holder writes its pid into the file, so
a second run can say who holds it. Within one process the lock is re-entrant: the
command line takes it before starting the pool, and the runner takes it again.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from sale.errors import RunLockedError

_HELD: dict[str, list] = {}  # resolved path -> [file object, depth]
_GUARD = threading.Lock()


class RunLock:
    """``with RunLock(run_dir):`` holds the folder's lock (raises RunLockedError)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / ".lock"

    def acquire(self) -> "RunLock":
        key = str(self.path.resolve())
        with _GUARD:
            held = _HELD.get(key)
            if held is not None:
                held[1] += 1
                return self
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                pid = fh.read().strip() or "unknown"
                fh.close()
                raise RunLockedError(
                    f"{self.run_dir} is in use by another run (pid {pid}); wait for it to end or use another --out"
                ) from None
            except BaseException:
                fh.close()
                raise
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            _HELD[key] = [fh, 1]
        return self

    def release(self) -> None:
        key = str(self.path.resolve())
        with _GUARD:
            held = _HELD.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                held[0].close()  # closing the file releases the lock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
