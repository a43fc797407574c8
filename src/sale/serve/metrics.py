"""Prometheus metrics of `sale serve` (``GET /metrics``).

- ``sale_serve_auctions_total{result}``: auctions held ("won") and tasks the fallback
  agent took after a failed auction ("fallback").
- ``sale_serve_pinned_requests_total{agent}``: requests sent to a task's bound winner.
- ``sale_serve_direct_requests_total{agent}``: requests naming a pool agent as model.
- ``sale_serve_requests_total{endpoint,status}`` and ``sale_serve_request_seconds{endpoint}``
  (a histogram): every request the server answered.
- ``sale_llm_calls_total``, ``sale_llm_failed_calls_total``, ``sale_llm_tokens_total{kind}``,
  ``sale_llm_dollars_total``, all by agent and phase: read from the pool's ledger when
  scraped (this process's calls), so the auction's calls and the forwarded ones count alike.
"""

from __future__ import annotations

from typing import Any

from sale.errors import MissingExtraError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class LedgerCollector:
    """Calls, tokens and dollars by agent and phase, summed from a ledger at scrape time."""

    def __init__(self, ledger: Any):
        self.ledger = ledger

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        labels = ["agent", "phase"]
        calls = CounterMetricFamily("sale_llm_calls", "LLM calls by agent and phase", labels=labels)
        failed = CounterMetricFamily("sale_llm_failed_calls", "Failed LLM calls by agent and phase", labels=labels)
        tokens = CounterMetricFamily("sale_llm_tokens", "LLM tokens by agent, phase and kind", labels=[*labels, "kind"])
        dollars = CounterMetricFamily("sale_llm_dollars", "Dollars by agent and phase", labels=labels)
        sums: dict[tuple[str, str], list[float]] = {}
        for e in list(self.ledger.entries):
            s = sums.setdefault((e.agent, e.phase), [0, 0, 0, 0, 0.0])
            s[0] += 1
            s[1] += 0 if e.ok else 1
            s[2] += e.input_tokens
            s[3] += e.output_tokens
            s[4] += e.dollars
        for (agent, phase), (n, bad, tin, tout, usd) in sorted(sums.items()):
            calls.add_metric([agent, phase], n)
            failed.add_metric([agent, phase], bad)
            tokens.add_metric([agent, phase, "input"], tin)
            tokens.add_metric([agent, phase, "output"], tout)
            dollars.add_metric([agent, phase], usd)
        yield from (calls, failed, tokens, dollars)


class ServeMetrics:
    """The server's own registry (one per app, so several apps can live in one process)."""

    def __init__(self, ledger: Any):
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError:
            raise MissingExtraError("prometheus_client", "serve", "sale serve") from None
        self.registry = CollectorRegistry()
        r = self.registry
        self.auctions = Counter("sale_serve_auctions", "Auctions by result (won, fallback)", ["result"], registry=r)
        self.pinned = Counter("sale_serve_pinned_requests", "Requests sent to a task's bound winner", ["agent"], registry=r)
        self.direct = Counter("sale_serve_direct_requests", "Requests naming a pool agent as model", ["agent"], registry=r)
        self.requests = Counter("sale_serve_requests", "Requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "sale_serve_request_seconds", "Request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        r.register(LedgerCollector(ledger))

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
