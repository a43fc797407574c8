"""The tiny GGUF through real llama.cpp: the pool starts it, the client calls it, it stops."""

from __future__ import annotations

import pytest
import yaml

from sale.config import parse_pool
from sale.llm.ledger import Ledger
from sale.llm.pool import Pool

pytestmark = pytest.mark.llama


async def test_tiny_model_end_to_end(tiny_model, tmp_path):
    cfg = parse_pool(yaml.safe_load(f"""
agents:
  - name: tiny
    model: {tiny_model}
    price: {{input: 2.0, output: 4.0}}
    context: 512
"""))
    ledger = Ledger(tmp_path / "ledger.jsonl")
    pool = Pool(cfg, ledger=ledger)
    async with pool:
        server = pool["tiny"].server
        assert server.proc.poll() is None
        c = await pool["tiny"].chat([{"role": "user", "content": "Say hi"}], phase="bid", max_tokens=8, top_logprobs=4)
        proc = server.proc
    assert proc.poll() is not None  # stopped with the pool
    assert c.input_tokens > 0 and 0 < c.output_tokens <= 8
    assert c.logprobs and len(c.logprobs) == c.output_tokens
    assert all(len(t.top) == 4 for t in c.logprobs)
    assert all(t.logprob <= 0 for t in c.logprobs)
    assert c.dollars == pytest.approx((c.input_tokens * 2 + c.output_tokens * 4) / 1e6)
    (entry,) = Ledger.read(tmp_path / "ledger.jsonl")
    assert entry.agent == "tiny" and entry.phase == "bid" and entry.output_tokens == c.output_tokens
