"""The answer's side of a grading run, in the answer's sandbox: imported there (compiled,
as module ``_sale_answer``) by its ``main.py``; never imported by the project.

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
    os.chdir(path)
    os.environ["TMPDIR"] = path  # read by tempfile when first used
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = path


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
    if type(obj) is TestsObject:
        return {"$": "tref", "id": object.__getattribute__(obj, "_sale_tref")}
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


class _Reply(Exception):
    """An exception raised in the tests' process, for a call the answer made there."""


def _ask_tests(message):
    """Send the tests' process a request and wait for its reply, serving the requests
    it makes meanwhile (a test function that calls the answer again)."""
    _wire.send(_RESP, message)
    while True:
        reply = _wire.receive(_REQ)
        if reply is None:
            _finish(0)
        if "op" not in reply:
            break
        _answer(reply)
    if "exc" in reply:
        info = reply["exc"]
        for module, qualname in info.get("type") or []:
            cls = getattr(sys.modules.get(module), qualname, None) if "." not in qualname else None
            if isinstance(cls, type) and issubclass(cls, Exception):
                try:
                    exc = cls(*_decoder.decode(info.get("args") or []))
                except Exception:  # noqa: BLE001
                    break
                raise exc
        raise _Reply(str(info.get("text", ""))[-2000:])
    return _decoder.decode(reply.get("ok"))


class TestsObject(_wire.Proxy):
    """An object of the tests' (a mock they patched in, a function they passed): each
    use of it is a request to the tests' process."""

    __slots__ = ("_sale_tref",)

    def __init__(self, number):
        object.__setattr__(self, "_sale_tref", number)

    def _ask(self, op, **more):
        return _ask_tests({"op": op, "tref": self._sale_tref, **more})

    def _encode(self, value):
        return _encoder.encode(value)

    def __setattr__(self, name, value):
        if name.startswith("__") and name.endswith("__"):
            return  # e.g. matplotlib setting __signature__ on a function the tests patched
        raise AttributeError("the tests' objects cannot be changed from the answer")

    def __enter__(self):
        return self._ask("enter")

    def __exit__(self, *exc):
        return self._ask("exit")

    def __next__(self):
        return self._ask("next")


def _decode_ref(x):
    if x.get("$") == "tref":
        return TestsObject(x.get("id"))
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
    while tb is not None and tb.tb_frame.f_code.co_filename == _exception.__code__.co_filename:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))[-4000:]
    return {"type": _type_names(type(exc)), "args": args, "text": text, "limit": _limit_of(exc)}


_patches = {}


def _patch(message):
    """Put what the tests patched (``random.choice``, ``builtins.open``, a name of the
    tests' module, which is this answer's module here) in place here too."""
    import importlib

    module = message["module"]
    if module == "graded_tests":
        module = "solution_under_test"
    target = sys.modules.get(module) or importlib.import_module(module)
    for part in message.get("qualname") or []:
        target = getattr(target, part)
    name = message["attribute"]
    missing = object()
    original = vars(target).get(name, missing) if hasattr(target, "__dict__") else getattr(target, name, missing)
    setattr(target, name, _decoder.decode(message["value"]))
    number = len(_patches) + 1
    _patches[number] = (target, name, original, missing)
    return number


def _unpatch(message):
    target, name, original, missing = _patches.pop(message["token"])
    if original is missing:
        try:
            delattr(target, name)
        except AttributeError:
            pass
    else:
        setattr(target, name, original)


def _serve(message):
    op = message.get("op")
    if op == "patch":
        return _patch(message)
    if op == "unpatch":
        return _unpatch(message)
    target = _find(message)
    if op == "call":
        args = _decoder.decode(message.get("args", []))
        kwargs = {k: _decoder.decode(v) for k, v in message.get("kwargs", [])}
        if isinstance(message.get("rng"), dict):
            _set_rng_state(message["rng"])
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
    _reply({"names": names, "modules": _library_modules()})
    while True:
        try:
            message = _wire.receive(_REQ)
        except (OSError, ValueError):
            message = None
        if message is None:
            _finish(0)
        _answer(message)


def _set_rng_state(state):
    """Take over the tests' random generators' states (see the tests' side)."""
    import random

    random.setstate(_decoder.decode(state["random"]))
    if "numpy" in state:
        import numpy

        numpy.random.set_state(_decoder.decode(state["numpy"]))


def _rng_state():
    import random

    state = {"random": _encoder.encode(random.getstate())}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state["numpy"] = _encoder.encode(numpy.random.get_state())
    return state


_seen_modules = [0]


def _library_modules():
    """The data libraries' public modules imported here (the tests import them too)."""
    _seen_modules[0] = len(sys.modules)
    libraries = ("numpy", "pandas", "scipy", "matplotlib")
    return sorted((n for n in list(sys.modules) if n.split(".")[0] in libraries
                   and not any(p.startswith("_") for p in n.split("."))),
                  key=lambda n: (n.count("."), n))


def _answer(message):
    try:
        result = {"ok": _encoder.encode(_serve(message))}
    except BaseException as exc:  # noqa: BLE001 - the answer's failure, sent as data
        result = {"exc": _exception(exc)}
    if message.get("op") == "call" and isinstance(message.get("rng"), dict):
        try:
            result["rng"] = _rng_state()
        except Exception:  # noqa: BLE001
            pass
    if len(sys.modules) != _seen_modules[0]:
        result["modules"] = _library_modules()
    _reply(result)


main()
