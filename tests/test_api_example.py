"""The README's API example (examples/quickstart.py, shown verbatim in the README) runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sale.testing.scripted import Reply, ScriptedServer, prompt_text, scripted_pool_yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "quickstart.py"


def test_readme_shows_the_example_verbatim():
    readme = (REPO / "README.md").read_text()
    body = EXAMPLE.read_text().split('"""', 2)[2].strip()  # the code after the docstring
    assert body in readme


def answer(req):
    text = prompt_text(req)
    if "SCORE" in text or "BID 1" in text:
        return Reply("BID 1: 4\nBID 2: 5\nSCORE: 4")
    if "ANSWER:" in text:
        return Reply("Done.\nANSWER:\n```python\ndef add(a, b):\n    return a + b\n```")
    return Reply("Write add with one return statement; check add(2, 3) == 5.")


def test_api_example_runs(tmp_path):
    with ScriptedServer(answer) as srv:
        pool = tmp_path / "pool.yaml"
        pool.write_text(scripted_pool_yaml(srv.base_url, [("small", 0.1), ("big", 1.0)]))
        proc = subprocess.run([sys.executable, str(EXAMPLE), str(pool)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "passed: True" in proc.stdout
    assert "pass@1: 1.0" in proc.stdout
    assert (tmp_path / "quickstart-run" / "results.jsonl").is_file()
