"""The one LLM client: OpenAI-compatible chat completions over HTTP.

Every LLM call in the project goes through `ChatClient.chat`. It serves llama.cpp
servers (the local default), vLLM, SGLang, Ollama and hosted APIs alike. It returns
text, token usage (with the prompt tokens the endpoint's cache served), per-token log-probabilities with their top-k alternatives (when
asked) and tool calls (when the endpoint makes them). It retries timeouts, connection
failures, 429 (honouring Retry-After) and 5xx with exponential backoff, bounds the
number of calls in flight, and raises typed errors that name the agent, the endpoint
and the reason.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sale.errors import SaleError


# ----------------------------------------------------------------------------- errors


class LLMError(SaleError):
    """A call to an agent's endpoint failed; says which agent, which endpoint, and why."""

    def __init__(self, agent: str, endpoint: str, reason: str):
        super().__init__(f"agent '{agent}' at {endpoint}: {reason}")
        self.agent = agent
        self.endpoint = endpoint
        self.reason = reason


class LLMTimeoutError(LLMError):
    """The endpoint did not answer within the call's timeout (after retries)."""


class LLMConnectionError(LLMError):
    """The endpoint could not be reached (after retries)."""


class LLMHTTPError(LLMError):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, agent: str, endpoint: str, status: int, body: str):
        super().__init__(agent, endpoint, f"HTTP {status}: {body[:300]}")
        self.status = status


class LLMResponseError(LLMError):
    """The endpoint answered 200 with a body that is not a valid chat completion."""


class ContextOverflow(LLMHTTPError):
    """The endpoint refused the call because its prompt does not fit the model's
    context (llama.cpp, vLLM, SGLang and OpenAI each say so in their own words)."""

    def __init__(self, agent: str, endpoint: str, status: int, body: str):
        super().__init__(agent, endpoint, status, body)
        self.reason = f"context overflow: the prompt does not fit this model's context (HTTP {status}: {body[:300]})"
        self.args = (f"agent '{agent}' at {endpoint}: {self.reason}",)


#: What endpoints say when a prompt is larger than the context.
CONTEXT_MARKERS = (
    "exceed_context_size", "exceeds the available context", "maximum context length",
    "context_length_exceeded", "context length", "prompt is too long", "too many tokens",
)  # fmt: skip


def is_context_overflow(status: int, body: str) -> bool:
    low = body.lower()
    return status in (400, 413, 422) and any(m in low for m in CONTEXT_MARKERS)


# ----------------------------------------------------------------------------- results


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)  # top-k alternatives


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text as the endpoint gave it; parse and validate in the caller


@dataclass
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str = ""
    cached_tokens: int = 0  # prompt tokens the endpoint read from its prompt cache (part of input_tokens)
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    latency_s: float = 0.0
    agent: str = ""
    phase: str = ""
    dollars: float = 0.0


# ----------------------------------------------------------------------------- parsing


def parse_completion(body: Any) -> Completion:
    """Turn a chat-completions response body into a Completion; ValueError if malformed."""
    if not isinstance(body, dict):
        raise ValueError("response body is not a JSON object")
    if "error" in body and "choices" not in body:
        raise ValueError(f"endpoint returned an error object: {str(body['error'])[:200]}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("response has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ValueError("choices[0] has no message object")
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise ValueError("choices[0].message.content is not a string")

    tool_calls = []
    for i, tc in enumerate(message.get("tool_calls") or []):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValueError(f"tool_calls[{i}] has no function name")
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            args = json.dumps(args)
        tool_calls.append(ToolCall(id=str(tc.get("id") or f"call_{i}"), name=fn["name"], arguments=args))

    logprobs = None
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("content"), list):
        logprobs = []
        for item in lp["content"]:
            top = [(t.get("token", ""), float(t["logprob"])) for t in item.get("top_logprobs") or [] if "logprob" in t]
            logprobs.append(TokenLogprob(item.get("token", ""), float(item.get("logprob", 0.0)), top))

    usage = body.get("usage") or {}
    try:
        input_tokens = int(usage.get("prompt_tokens", 0) or 0)
        output_tokens = int(usage.get("completion_tokens", 0) or 0)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"usage has non-integer token counts: {usage}") from exc
    if not output_tokens and logprobs:
        output_tokens = len(logprobs)
    return Completion(
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=min(input_tokens, cached_prompt_tokens(body)),
        finish_reason=str(choice.get("finish_reason") or ""),
        logprobs=logprobs,
        tool_calls=tool_calls,
    )


def cached_prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens read from the endpoint's prompt cache: ``usage.prompt_tokens_details
    .cached_tokens`` (OpenAI, vLLM, SGLang, recent llama.cpp), else llama.cpp's own count
    ``timings.cache_n``; 0 when the endpoint reports neither (or nonsense)."""
    usage = body.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    timings = body.get("timings")
    for value in (
        details.get("cached_tokens") if isinstance(details, dict) else None,
        timings.get("cache_n") if isinstance(timings, dict) else None,
    ):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return int(value)
    return 0


def _retry_after(headers: Any, default: float) -> float:
    value = headers.get("Retry-After") if headers else None
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


# ----------------------------------------------------------------------------- client


class ChatClient:
    """An async client for one OpenAI-compatible endpoint (one model).

    ``concurrency`` bounds calls in flight; ``timeout_s`` applies to each attempt;
    ``max_retries`` counts retries after the first attempt.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        agent: str = "",
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.agent = agent or model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._session: aiohttp.ClientSession | None = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            headers = {"Content-Type": "application/json"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(headers=headers, connector=connector)
            self._sem = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            try:
                await self._session.close()
            except RuntimeError:  # the loop that owned it is gone
                pass
        self._session = None

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2**attempt)) * (0.5 + random.random() / 2)

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_logprobs: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
        timeout_s: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Completion:
        """One chat completion. Raises an LLMError subclass when it finally fails."""
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if temperature is not None:
            payload["temperature"] = temperature
        if top_logprobs:
            payload["logprobs"] = True
            payload["top_logprobs"] = top_logprobs
        if tools:
            payload["tools"] = tools
        if stop:
            payload["stop"] = stop
        if seed is not None:
            payload["seed"] = seed
        if extra:
            payload.update(extra)
        data = json.dumps(payload)
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        session = self._ensure_session()
        assert self._sem is not None
        last: LLMError | None = None
        async with self._sem:
            started = time.perf_counter()
            for attempt in range(self.max_retries + 1):
                wait = self._delay(attempt)
                try:
                    async with session.post(self.url, data=data, timeout=timeout) as resp:
                        raw = await resp.read()
                        if resp.status == 200:
                            try:
                                completion = parse_completion(json.loads(raw))
                            except (ValueError, UnicodeDecodeError) as exc:
                                raise LLMResponseError(
                                    self.agent, self.url, f"malformed completion: {exc}; body starts {raw[:200]!r}"
                                ) from None
                            completion.latency_s = time.perf_counter() - started
                            completion.agent = self.agent
                            return completion
                        body = raw.decode("utf-8", "replace")
                        last = LLMHTTPError(self.agent, self.url, resp.status, body)
                        if resp.status == 429:
                            wait = _retry_after(resp.headers, wait)
                        elif resp.status < 500:
                            if is_context_overflow(resp.status, body):
                                raise ContextOverflow(self.agent, self.url, resp.status, body)
                            raise last  # 4xx other than 429: retrying will not help
                except asyncio.TimeoutError:
                    last = LLMTimeoutError(self.agent, self.url, f"no answer within {timeout.total:g} s")
                except aiohttp.ClientError as exc:
                    last = LLMConnectionError(self.agent, self.url, f"{type(exc).__name__}: {exc}")
                if attempt < self.max_retries:
                    await asyncio.sleep(wait)
        assert last is not None
        if self.max_retries:
            last.reason += f" (after {self.max_retries + 1} attempts)"
            last.args = (f"agent '{self.agent}' at {self.url}: {last.reason}",)
        raise last
