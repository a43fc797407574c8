"""A chat request's task key, its task text and its environment description.

The key of a request is, in order:

1. the ``X-SALE-Task`` header;
2. a session header a harness already sends (`SESSION_HEADERS`);
3. ``metadata.session_id`` or ``user`` in the body;
4. else ``h-`` and a hash of the system prompt, the tool names and the first user
   message, taken on the client's own messages (before any plan is added), so every
   turn of one agent loop gets the same key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

TASK_HEADER = "x-sale-task"
#: Session headers harnesses and gateways send, in the order they are looked at.
SESSION_HEADERS = (
    "x-session-id",
    "session-id",
    "session_id",  # Codex CLI
    "x-conversation-id",
    "helicone-session-id",
    "x-litellm-session-id",
)
#: The longest key taken from a header or the body.
MAX_KEY_CHARS = 200


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def system_prompt(messages: list[dict[str, Any]]) -> str:
    """The system (or developer) messages' text, joined."""
    return "\n\n".join(text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))


def first_user_message(messages: list[dict[str, Any]]) -> str:
    return next((text_of(m.get("content")) for m in messages if m.get("role") == "user"), "")


def tool_names(tools: Any) -> list[str]:
    names = []
    for t in tools or []:
        fn = t.get("function") if isinstance(t, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else (t.get("name") if isinstance(t, dict) else None)
        if isinstance(name, str):
            names.append(name)
    return names


def content_hash(messages: list[dict[str, Any]], tools: Any) -> str:
    """``h-`` and 24 hex digits of SHA-256 over the system prompt, tool names and first user message."""
    data = json.dumps([system_prompt(messages), tool_names(tools), first_user_message(messages)], ensure_ascii=False)
    return "h-" + hashlib.sha256(data.encode("utf-8")).hexdigest()[:24]


def task_key(headers: Mapping[str, str], body: dict[str, Any]) -> tuple[str, str]:
    """(key, where it came from: "header:NAME", "metadata.session_id", "user" or "hash")."""
    for name in (TASK_HEADER, *SESSION_HEADERS):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()[:MAX_KEY_CHARS], f"header:{name}"
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("session_id"), str) and metadata["session_id"].strip():
        return metadata["session_id"].strip()[:MAX_KEY_CHARS], "metadata.session_id"
    user = body.get("user")
    if isinstance(user, str) and user.strip():
        return user.strip()[:MAX_KEY_CHARS], "user"
    return content_hash(body.get("messages") or [], body.get("tools")), "hash"


def describe_environment(messages: list[dict[str, Any]], tools: Any) -> str:
    """What bidders are told of the environment: the system prompt and the tools offered."""
    parts = []
    system = system_prompt(messages).strip()
    if system:
        parts.append(system)
    lines = []
    for t in tools or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            desc = fn.get("description") if isinstance(fn.get("description"), str) else ""
            lines.append(f"- {fn['name']}: {desc.strip()}" if desc.strip() else f"- {fn['name']}")
    if lines:
        parts.append("Tools:\n" + "\n".join(lines))
    return "\n\n".join(parts) or "A chat with tools the client runs itself."


def with_plan(messages: list[dict[str, Any]], plan: str) -> list[dict[str, Any]]:
    """``messages`` with ``Your plan: PLAN`` added to the first system message (or a
    system message put first when there is none); the client's list is not changed."""
    plan = plan.strip()
    if not plan:
        return messages
    note = f"Your plan: {plan}"
    out = list(messages)
    for i, m in enumerate(out):
        if m.get("role") in ("system", "developer"):
            content = m.get("content")
            if isinstance(content, list):
                content = [*content, {"type": "text", "text": "\n\n" + note}]
            else:
                content = f"{text_of(content).rstrip()}\n\n{note}".lstrip()
            out[i] = {**m, "content": content}
            return out
    return [{"role": "system", "content": note}, *out]
