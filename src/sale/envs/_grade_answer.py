"""The answer's side of a grading run: ``main.py`` of the answer's sandbox, never imported.

Reads its settings (two pipe descriptors) from the first line of stdin, imports the
answer (module ``solution_under_test``: the task's setup, then the answer's code),
sends the tests' process a manifest of the names the module defines, then serves the
tests' requests (call, attribute, length, items, item, str, repr, truth) until the
tests' process closes its end. Results go back as data (`_sale_wire`); what is not
data stays here and goes back as a numbered reference. Nothing here decides a
verdict, so nothing the answer changes in this process can forge one.
"""

import json
import os
import sys

_cfg = json.loads(sys.stdin.readline())
_REQ, _RESP = _cfg["req"], _cfg["resp"]
sys.stdin = open(os.devnull)  # the answer reads no input of the grader's

def _enter_shared(path):
    """Work in the directory shared with the other process (files the tests make are
    the answer's to read, and the other way round); temporary files go there too."""
    import tempfile

    os.chdir(path)
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path


import _sale_wire as _wire  # noqa: E402

_objects = {}
_ids = {}


def _limit_of(exc):
    if isinstance(exc, MemoryError):
        return "memory"
    text = str(exc)
    if isinstance(exc, BlockingIOError) or "can't start new thread" in text:
        return "process_limit"
    if isinstance(exc, RecursionError):
        return None
    return None


def _type_names(cls):
    names = []
    for base in cls.__mro__:
        names.append([getattr(base, "__module__", "") or "", getattr(base, "__qualname__", base.__name__)])
    return names


def _register(obj):
    key = id(obj)
    number = _ids.get(key)
    if number is None or _objects.get(number) is not obj:
        number = len(_objects) + 1
        _objects[number] = obj
        _ids[key] = number
    kind = "class" if isinstance(obj, type) else ("callable" if callable(obj) else "object")
    cls = obj if isinstance(obj, type) else type(obj)
    out = {"$": "ref", "id": number, "kind": kind, "type": _type_names(type(obj))}
    if kind == "class":
        out["mro"] = _type_names(cls)
    return out


_encoder = _wire.Encoder(ref=_register)


def _find(message):
    number = message.get("ref")
    if number not in _objects:
        raise LookupError(f"no object #{number} in the answer's process")
    return _objects[number]


def _decode_ref(x):
    return _find({"ref": x.get("id")})


_decoder = _wire.Decoder(ref=_decode_ref)


def _exception(exc):
    import traceback

    try:
        args = _encoder.encode(list(exc.args))
        json.dumps(args)
    except Exception:  # noqa: BLE001
        args = [str(exc)]
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))[-4000:]
    return {"type": _type_names(type(exc)), "args": args, "text": text, "limit": _limit_of(exc)}


def _serve(message):
    op = message.get("op")
    target = _find(message)
    if op == "call":
        args = _decoder.decode(message.get("args", []))
        kwargs = {k: _decoder.decode(v) for k, v in message.get("kwargs", [])}
        return target(*args, **kwargs)
    if op == "getattr":
        return getattr(target, message["name"])
    if op == "len":
        return len(target)
    if op == "items":
        return list(target)
    if op == "getitem":
        return target[_decoder.decode(message["key"])]
    if op == "str":
        return str(target)
    if op == "repr":
        return repr(target)
    if op == "bool":
        return bool(target)
    raise ValueError(f"unknown request {op!r}")


def _reply(message):
    try:
        _wire.send(_RESP, message)
    except (OSError, ValueError):
        _finish(1)


def _finish(status):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(status)


def main():
    _enter_shared(_cfg["cwd"])
    try:
        import solution_under_test as module
    except BaseException as exc:  # noqa: BLE001 - reported to the tests as the answer's failure
        report = _exception(exc)
        sys.stderr.write(report["text"])
        _reply({"error": report})
        _finish(1)
    names = {}
    for name, value in list(vars(module).items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if type(value).__name__ == "module" and isinstance(getattr(value, "__name__", None), str):
            names[name] = {"$": "module", "v": value.__name__}
            continue
        try:
            names[name] = _encoder.encode(value)
        except Exception:  # noqa: BLE001 - a name that cannot be offered is left out
            continue
    _reply({"names": names})
    while True:
        try:
            message = _wire.receive(_REQ)
        except (OSError, ValueError):
            message = None
        if message is None:
            _finish(0)
        try:
            result = {"ok": _encoder.encode(_serve(message))}
        except BaseException as exc:  # noqa: BLE001 - the answer's failure, sent as data
            result = {"exc": _exception(exc)}
        _reply(result)


main()
