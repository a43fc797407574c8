from __future__ import annotations

import json

from sale.jsonl import JsonlWriter, read_jsonl, repair_tail, write_json_atomic
from sale.llm.ledger import Ledger, LedgerEntry


def test_torn_last_line_is_skipped_and_cut_before_append(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "tru')
    assert [r["a"] for r in read_jsonl(p)] == [1, 2]
    with JsonlWriter(p) as w:
        w.write({"a": 4})
    assert [r["a"] for r in read_jsonl(p)] == [1, 2, 4]
    assert p.read_text().endswith('{"a": 4}\n')


def test_repair_tail_on_a_single_torn_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1')
    repair_tail(p)
    assert p.read_text() == ""


def test_ledger_appends_after_a_torn_line(tmp_path):
    p = tmp_path / "ledger.jsonl"
    p.write_text(json.dumps({"agent": "a", "phase": "bid", "input_tokens": 1, "output_tokens": 1,
                             "dollars": 0.1, "latency_s": 0.1}) + '\n{"agent": "b", "pha')
    led = Ledger(p)
    led.record(LedgerEntry("c", "jury", 2, 2, 0.2, 0.1))
    led.close()
    assert [e.agent for e in Ledger.read(p)] == ["a", "c"]


def test_atomic_json(tmp_path):
    p = tmp_path / "s.json"
    write_json_atomic(p, {"x": 1})
    write_json_atomic(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert [q.name for q in tmp_path.iterdir()] == ["s.json"]
