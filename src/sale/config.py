"""Pool configuration: one YAML file describes a pool of agents.

Minimal form::

    agents:
      - name: small
        model: qwen2.5-coder-0.5b            # a catalogue name or a GGUF file path
        price: {input: 0.02, output: 0.02}   # dollars per million tokens
      - name: big
        endpoint: {base_url: "http://127.0.0.1:8000/v1", model: "Qwen/Qwen3-32B", api_key_env: "VLLM_API_KEY"}
        price: {input: 0.36, output: 0.36, cached_input: 0.09}   # cached_input: optional

Every agent also accepts ``generation`` (temperature, max_tokens, seed), ``concurrency``,
``timeout_s``, ``max_retries`` and, for local models, ``context`` (tokens per slot) and
``threads``. An optional ``budget: {per_task: 0.01, per_run: 1.0}`` sets hard dollar
limits (see `sale.llm.budget`), and ``grading: {rule: match, judge: {agent: NAME}}`` how
search answers pass (see `sale.envs.grading`). A malformed file raises ConfigError naming the file,
the field, the bad value and what is expected.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sale.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Strict):
    """Dollars per million tokens. ``cached_input``: per million prompt tokens the
    endpoint read from its prompt cache (hosted APIs bill them at a fraction of the
    input price); None: the input price, so cached tokens cost what other input does."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)

    @property
    def cached(self) -> float:
        """The price of a cached prompt token (the input price unless given)."""
        return self.input if self.cached_input is None else self.cached_input

    def dollars(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """``input_tokens`` counts every prompt token, the ``cached_tokens`` among them too."""
        cached = min(max(0, cached_tokens), input_tokens)
        return ((input_tokens - cached) * self.input + cached * self.cached + output_tokens * self.output) / 1e6


_HOST = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Endpoint(_Strict):
    base_url: str = Field(pattern=r"^https?://")
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    # What the server takes to constrain a reply (see sale.agent.constrain): "grammar"
    # (a GBNF grammar field, as llama.cpp servers do) or "json_schema" (response_format
    # with a JSON schema: vLLM, SGLang, hosted APIs); unset: nothing.
    structured_output: Literal["grammar", "json_schema"] | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        """An http(s) URL with a well-formed host and port (whether it answers is
        checked before a run, by `sale.preflight.probe_endpoints`)."""
        try:
            parts = urlsplit(value)
            host = parts.hostname or ""
        except ValueError as exc:
            raise ValueError(f"a well-formed http(s) URL ({exc})") from None
        if not host or not (_HOST.match(host) or _is_ip(host)):
            raise ValueError(f"an http(s) URL with a host name or address, like http://127.0.0.1:8000/v1; the host {host!r} is not one")
        try:
            parts.port
        except ValueError:
            raise ValueError(f"a port between 0 and 65535 in {value!r}") from None
        if parts.query or parts.fragment:
            raise ValueError("a base URL without ?query or #fragment, like http://127.0.0.1:8000/v1")
        return value


class Generation(_Strict):
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=512, gt=0)
    seed: int | None = 0


class AgentConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    model: str | None = None
    endpoint: Endpoint | None = None
    price: Price
    generation: Generation = Field(default_factory=Generation)
    concurrency: int = Field(default=2, gt=0, le=1024)
    timeout_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    context: int = Field(default=4096, ge=256)
    threads: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> "AgentConfig":
        if (self.model is None) == (self.endpoint is None):
            raise ValueError("give exactly one of 'model' (a local GGUF) or 'endpoint' (an OpenAI-compatible server)")
        return self

    @property
    def is_local(self) -> bool:
        return self.model is not None


class BudgetConfig(_Strict):
    """Hard dollar limits (see `sale.llm.budget`); None: no limit."""

    per_task: float | None = Field(default=None, gt=0, allow_inf_nan=False, strict=True)
    per_run: float | None = Field(default=None, gt=0, allow_inf_nan=False, strict=True)


class PoolConfig(_Strict):
    agents: list[AgentConfig] = Field(min_length=1)
    # Calls in flight across all local (llama.cpp) agents, which share this machine.
    local_calls: int = Field(default=1, gt=0, le=64)
    # Sections read by later stages; each stage validates its own section.
    auction: dict[str, Any] = Field(default_factory=dict)
    execution: dict[str, Any] = Field(default_factory=dict)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    # How search answers are graded (rule, judge); validated by sale.envs.grading.
    grading: Any = None
    serve: dict[str, Any] = Field(default_factory=dict)  # `sale serve` (sale.serve.settings)
    # The auction memory of `sale run`: a postgresql:// URL or a SQLite file (relative to
    # the pool file); default the run folder's memory.sqlite. `--memory` overrides it.
    memory: str | None = None

    @field_validator("budget", mode="before")
    @classmethod
    def _empty_budget(cls, value: Any) -> Any:
        return {} if value is None else value  # "budget:" with nothing under it

    @model_validator(mode="after")
    def _unique_names(self) -> "PoolConfig":
        seen = set()
        for a in self.agents:
            if a.name in seen:
                raise ValueError(f"agent name '{a.name}' is used twice; names must be unique")
            seen.add(a.name)
        return self


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _value_at(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 3, 80, 80, 40


def _shown(value: Any) -> str:
    """A bounded repr: a huge or deeply nested value (a YAML alias bomb) stays short."""
    return _SHOWN.repr(value)


def validation_message(source: str, exc: ValidationError, data: Any) -> str:
    """One readable message per error: file, field, bad value, what is expected."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        where = _loc(loc)
        if err["type"] == "missing":
            lines.append(f"{source}: {where}: missing; this field is required")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{source}: {where}: unknown field; check its spelling")
        else:
            got = err.get("input", _value_at(data, loc))
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where}: got {_shown(got)}; expected: {msg}")
    return "\n".join(lines)


def parse_pool(data: Any, source: str = "<pool>") -> PoolConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with an 'agents' list, got {type(data).__name__}")
    try:
        config = PoolConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(source, exc, data)) from None
    if config.grading is not None:
        from sale.envs.grading import GradingConfig

        GradingConfig.from_pool(config.grading, source)  # a bad grading section stops here
    return config


def load_pool_config(path: str | Path) -> PoolConfig:
    """Read and validate a pool file; raises ConfigError with file, field and reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pool file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    return parse_pool(data, str(path))


def default_pool_path(name: str = "local-ladder") -> Path:
    """A pool file shipped with the package ('local-ladder' or 'tiny')."""
    from importlib.resources import files

    return Path(str(files("sale") / "data" / "pools" / f"{name}.yaml"))
