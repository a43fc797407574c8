"""Checks made before a run touches its folder or starts a task.

- `check_pool`: every section of the pool file a run reads (auction settings and
  their weights file, execution limits), and every local model file (present, and a
  GGUF file).
- `check_out_dir`: the run folder can be created and written (not a file, not
  read-only).
- `probe_endpoints`: every remote endpoint answers ``GET {base_url}/models`` within a
  timeout (any HTTP answer but 401/403 counts as up: some servers have no /models).

Each raises a `SaleError` whose one-line message names the file, field, agent or URL.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sale.config import PoolConfig
from sale.errors import ConfigError, SaleError


def check_pool(config: PoolConfig, source: str) -> None:
    """The sections of ``config`` a run reads, and its local model files."""
    from sale.agent.modes import execution_config
    from sale.auction.settings import AuctionSettings
    from sale.llm.models import resolve_model

    settings = AuctionSettings.from_pool(config, source)
    weights = settings.weights_path()
    if weights is not None:
        from sale.auction.weights import Weights

        if not weights.is_absolute() and Path(source).is_file():
            weights = Path(source).parent / weights  # as the auction reads it
        Weights.from_file(weights).check_jurors([a.name for a in config.agents])
    execution_config(config.execution, f"{source}: execution")  # settings, constraint and limits
    for agent in config.agents:
        key_env = agent.endpoint.api_key_env if agent.endpoint is not None else None
        if key_env and key_env not in os.environ:
            raise ConfigError(
                f"{source}: agents '{agent.name}'.endpoint.api_key_env: environment variable {key_env} "
                "is not set; export it or remove api_key_env"
            )
        if agent.is_local:
            resolve_model(agent.model)  # in the cache or on disk, and a GGUF file


def check_out_dir(out: Path) -> None:
    """``out`` is a folder that exists or can be created, and can be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SaleError(f"--out {out}: exists and is not a folder; give a folder (a new one, or a run to resume)")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SaleError(f"--out {out}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SaleError(f"--out {out}: {probe} is not writable")


def _probe(url: str, key: str | None, timeout_s: float) -> str:
    """"" when the endpoint answers, else why not."""
    request = urllib.request.Request(url.rstrip("/") + "/models", method="GET")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the client: no proxy
    try:
        with opener.open(request, timeout=timeout_s):
            return ""
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return f"refused the request (HTTP {exc.code}): check the API key"
        return ""  # it answered: the server is up
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"no answer within {timeout_s:g} s"
        if isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror
        return f"unreachable ({reason or type(exc).__name__})"


def probe_endpoints(config: PoolConfig, source: str, timeout_s: float = 5.0) -> None:
    """Every remote agent's endpoint answers within ``timeout_s``; raises a one-line
    error naming the first agent whose endpoint does not."""
    remote = [a for a in config.agents if not a.is_local]
    urls: dict[tuple[str, str | None], list[str]] = {}
    for a in remote:
        key = os.environ.get(a.endpoint.api_key_env) if a.endpoint.api_key_env else None
        urls.setdefault((a.endpoint.base_url, key), []).append(a.name)
    if not urls:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as ex:
        answers = list(ex.map(lambda item: _probe(item[0], item[1], timeout_s), urls))
    for (url, _), names, why in zip(urls, urls.values(), answers):
        if why:
            who = ", ".join(f"'{n}'" for n in names)
            raise ConfigError(
                f"{source}: agent {who} endpoint {url}: {why}; "
                "start the server or fix base_url (--no-probe skips this check)"
            )
