from __future__ import annotations

import pytest

from sale.config import default_pool_path, load_pool_config
from sale.errors import ConfigError

MINIMAL = """
agents:
  - name: small
    model: qwen2.5-coder-0.5b            # a catalogue name or a GGUF file path
    price: {input: 0.02, output: 0.02}   # dollars per million tokens
  - name: big
    endpoint: {base_url: "http://127.0.0.1:8000/v1", model: "Qwen/Qwen3-32B", api_key_env: "VLLM_API_KEY"}
    price: {input: 0.36, output: 0.36}
"""


def write(tmp_path, text):
    p = tmp_path / "pool.yaml"
    p.write_text(text)
    return p


def test_minimal_form_loads(tmp_path):
    cfg = load_pool_config(write(tmp_path, MINIMAL))
    small, big = cfg.agents
    assert small.is_local and small.model == "qwen2.5-coder-0.5b"
    assert not big.is_local and big.endpoint.model == "Qwen/Qwen3-32B"
    assert big.endpoint.api_key_env == "VLLM_API_KEY"
    assert big.price.dollars(1_000_000, 0) == pytest.approx(0.36)
    assert small.concurrency >= 1 and small.generation.max_tokens > 0


@pytest.mark.parametrize("name", ["local-ladder", "tiny"])
def test_shipped_pools_are_valid(name):
    cfg = load_pool_config(default_pool_path(name))
    prices = [a.price.input for a in cfg.agents]
    assert prices == sorted(prices)


BAD = [
    ("agents: []", "agents", "at least 1"),
    ("agents:\n  - name: a\n    price: {input: 1, output: 1}", "agents[0]", "exactly one of 'model'"),
    ("agents:\n  - name: a\n    model: m\n    price: {input: -1, output: 1}", "agents[0].price.input", "-1"),
    ("agents:\n  - name: a\n    model: m\n    price: {input: cheap, output: 1}", "agents[0].price.input", "'cheap'"),
    ("agents:\n  - name: a\n    model: m", "agents[0].price", "missing"),
    ("agents:\n  - name: a\n    model: m\n    prise: {input: 1, output: 1}\n    price: {input: 1, output: 1}", "agents[0].prise", "unknown field"),
    ("agents:\n  - name: a\n    endpoint: {base_url: ftp://x, model: m}\n    price: {input: 1, output: 1}", "agents[0].endpoint.base_url", "ftp://x"),
    ("agents:\n  - {name: a, model: m, price: {input: 1, output: 1}}\n  - {name: a, model: m, price: {input: 1, output: 1}}", "agents", "used twice"),
    ("agents:\n  - {name: a, model: m, price: {input: 1, output: 1}, concurrency: 0}", "agents[0].concurrency", "0"),
    ("agents: [", "line", "not valid YAML"),
    ("- just a list", "", "expected a mapping"),
]


@pytest.mark.parametrize("text,field,why", BAD)
def test_malformed_pool_names_file_field_and_reason(tmp_path, text, field, why):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_pool_config(path)
    msg = str(info.value)
    assert str(path) in msg
    assert field in msg
    assert why in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read pool file"):
        load_pool_config(tmp_path / "nope.yaml")
