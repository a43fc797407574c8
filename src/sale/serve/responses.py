"""``POST /v1/responses`` (the OpenAI Responses API) as a chat-completions request.

A Responses request becomes a chat request: ``instructions`` a system message, the
``input`` items messages (``function_call`` items an assistant message with tool calls,
``function_call_output`` items tool messages), function ``tools`` chat tools; then it
takes the chat path (task key, auction or binding, forwarding). The completion comes
back as a Response object: a ``message`` output item with the text and one
``function_call`` item per tool call. Served: text and function tools, not streamed;
``previous_response_id`` (server-kept conversations) and built-in tools are refused
with 400 naming the field.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sale.llm.client import Completion
from sale.serve.service import ApiError

PASSED_ON = ("temperature", "top_p", "parallel_tool_calls", "metadata", "user", "seed")


def _bad(param: str, why: str) -> ApiError:
    return ApiError(400, f"{param}: {why}", param=param)


def _text(content: Any, where: str) -> str | list:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
                raise _bad(f"{where}[{j}]", "only text parts (input_text, output_text) are served")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise _bad(where, f"expected a string or a list of text parts, got {type(content).__name__}")


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions request equivalent to the Responses request ``body``."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("model", f"required, a model name; got {body.get('model')!r}")
    if body.get("previous_response_id"):
        raise _bad("previous_response_id", "not served: send the whole conversation in input")
    if body.get("stream"):
        raise _bad("stream", "not served on /v1/responses; use /v1/chat/completions for streaming")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("instructions", f"expected a string, got {type(instructions).__name__}")
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise _bad("input", "required, a string or a non-empty list of input items")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(where, f"expected an object, got {type(item).__name__}")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("system", "developer", "user", "assistant"):
                raise _bad(f"{where}.role", f"got {role!r}; expected system, developer, user or assistant")
            messages.append({"role": role, "content": _text(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            for field in ("call_id", "name", "arguments"):
                if not isinstance(item.get(field), str):
                    raise _bad(f"{where}.{field}", "required, a string")
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}  # fmt: skip
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
                last["tool_calls"].append(call)  # parallel calls: one assistant message
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _bad(f"{where}.call_id", "required, a string")
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": output if isinstance(output, str) else _text(output, f"{where}.output")})  # fmt: skip
        else:
            raise _bad(f"{where}.type", f"{kind!r} is not served (message, function_call, function_call_output)")
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise _bad("tools", f"expected a list, got {type(tools).__name__}")
        chat["tools"] = []
        for i, t in enumerate(tools):
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("name"), str):
                raise _bad(f"tools[{i}]", "only function tools ({type: function, name, parameters}) are served")
            fn = {k: t[k] for k in ("name", "description", "parameters", "strict") if k in t}
            chat["tools"].append({"type": "function", "function": fn})
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for name in PASSED_ON:
        if body.get(name) is not None:
            chat[name] = body[name]
    return chat


def response_json(c: Completion, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The completion ``c`` as a Response object."""
    output: list[dict[str, Any]] = []
    if c.text or not c.tool_calls:
        output.append({
            "type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": c.text, "annotations": []}],
        })  # fmt: skip
    for t in c.tool_calls:
        output.append({"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}", "call_id": t.id,
                       "name": t.name, "arguments": t.arguments, "status": "completed"})  # fmt: skip
    incomplete = c.finish_reason == "length"
    return {
        "id": f"resp_{uuid.uuid4().hex[:24]}", "object": "response", "created_at": int(time.time()),
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None, "model": model, "output": output,
        "instructions": body.get("instructions"), "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice", "auto"), "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "metadata": body.get("metadata") or {}, "temperature": body.get("temperature"), "top_p": body.get("top_p"),
        "usage": {"input_tokens": c.input_tokens, "output_tokens": c.output_tokens,
                  "total_tokens": c.input_tokens + c.output_tokens,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
    }  # fmt: skip
