"""The progress line: counts, elapsed time and the estimate of the time left."""

from __future__ import annotations

import io

import pytest

from sale import progress
from sale.progress import Progress, duration


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (44.6, "45s"), (60, "1m"), (719, "12m"), (7500, "2h05m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_progress_line_estimates_the_time_left(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = Progress(4, "rounds", stream=out, width=8)
    now[0] += 120.0  # one item in two minutes: six minutes for the other three
    bar.update(1, "task-1")
    now[0] += 240.0
    bar.update(4, "task-4")
    first, last = out.getvalue().splitlines()
    assert first == "rounds [##------] 1/4   120s eta 6m task-1"
    assert last == "rounds [########] 4/4   360s task-4"  # done: no estimate
