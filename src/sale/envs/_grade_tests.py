"""The tests' side of a grading run, in the tests' sandbox: imported there (compiled, as
module ``_sale_tests``) by its ``main.py``; never imported by the project.

Reads its settings from the first line of stdin, runs the task's setup, binds the
names the answer's process offers (data as data; the answer's functions, classes and
other objects as `Remote` references whose calls cross to that process), runs the
tests, and writes the verdict (a JSON object) to its verdict pipe. No code of the
answer runs in this process: what comes back from it is rebuilt from data, and a
`Remote` compares equal only to itself, so the verdict is this process's alone.
"""

import builtins
import json
import os
import sys
import types

_cfg = json.loads(sys.stdin.readline())
_REQ, _RESP, _VERDICT = _cfg["req"], _cfg["resp"], _cfg["verdict"]
sys.stdin = open(os.devnull)

def _enter_shared(path):
    """Work in the directory shared with the other process (files the tests make are
    the answer's to read, and the other way round); temporary files go there too."""
    os.chdir(path)
    os.environ["TMPDIR"] = path  # read by tempfile when first used
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = path

_here = os.getcwd()
sys.path[:] = [p for p in sys.path if p not in (_here, "", ".")] + [_here]  # wire module last

import _sale_wire as _wire  # noqa: E402

sys.path.remove(_here)
# Modules whose classes an answer may not claim: its own, and the grader's.
_ANSWER_MODULES = ("solution_under_test", "__main__", "_sale_tests", "_sale_wire")
_limits_hit = []


class AnswerGone(BaseException):
    """The answer's process ended, so it cannot answer a call."""


class AnswerExit(BaseException):
    """The answer raised SystemExit, KeyboardInterrupt or another non-Exception."""


_LIBRARIES = ("numpy", "pandas", "scipy", "matplotlib")


def _importable(name):
    """Whether the tests' process may import module ``name`` for the answer: the
    standard library and the data libraries, never a file of the answer's."""
    top = name.split(".")[0]
    return name in sys.modules or top in sys.stdlib_module_names or top in _LIBRARIES


def _resolve(module, qualname):
    """The class ``module.qualname`` from a module the tests' process has already
    imported (the answer names it; nothing is imported for it), or None."""
    if not module or module in _ANSWER_MODULES or "<locals>" in qualname:
        return None
    try:
        target = builtins if module == "builtins" else sys.modules[module]
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception:  # noqa: BLE001
        return None
    return target


def _claimed_class(type_names):
    """The library class an object of the answer's says it is an instance of (so that
    ``isinstance(ax, Axes)`` holds), never a builtin, numpy or pandas class: values of
    those cross as data, and a reference must not pass for one."""
    for module, qualname in type_names:
        if not isinstance(module, str) or module == "builtins" or module.split(".")[0] in (
                "numpy", "pandas"):
            continue
        cls = _resolve(module, qualname)
        if isinstance(cls, type) and cls is not object:
            return cls
    return None


def _request(message):
    """Send the answer's process a request and wait for its reply, serving what it asks
    of the tests' objects meanwhile (a mock the tests patched in, a function passed)."""
    try:
        _wire.send(_REQ, message)
        while True:
            reply = _wire.receive(_RESP)
            if reply is None or "op" not in reply:
                break
            _wire.send(_REQ, _serve_answer(reply))
    except OSError:
        reply = None
    if reply is None:
        raise AnswerGone("the answer's process ended before it answered")
    if isinstance(reply.get("rng"), dict):
        _set_rng_state(reply["rng"])
    if isinstance(reply.get("modules"), list):
        _mirror_imports(reply["modules"])
    if "exc" in reply:
        raise _rebuild(reply["exc"])
    return _decoder.decode(reply.get("ok"))


def _rng_state():
    """The global random generators' states (``random``'s, and numpy's, where the tests
    imported them): a call carries them to the answer and back, so that the two
    processes draw from them as one process would (a test seeds, the answer draws)."""
    if "random" not in sys.modules:
        return None
    state = {"random": _encoder.encode(sys.modules["random"].getstate())}
    np = sys.modules.get("numpy")
    if np is not None:
        state["numpy"] = _encoder.encode(np.random.get_state())
    return state


def _set_rng_state(state):
    try:
        if "random" in state:
            __import__("random").setstate(_wire.Decoder().decode(state["random"]))
        np = sys.modules.get("numpy")
        if np is not None and "numpy" in state:
            np.random.set_state(_wire.Decoder().decode(state["numpy"]))
    except Exception:  # noqa: BLE001 - a state that is not one: ignored
        pass


# The tests' objects the answer was handed (arguments that are not data, what the tests
# patched in, and what using those returned), by number. The answer may use only these,
# and only their public attributes and a fixed set of operations.
_own = {}
_DUNDERS = {"len": len, "items": list, "bool": bool, "str": str, "repr": repr,
            "enter": lambda o: o.__enter__(), "exit": lambda o: o.__exit__(None, None, None),
            "next": next}


def _serve_answer(message):
    try:
        number = message.get("tref")
        if number not in _own:
            raise LookupError(f"no object #{number} of the tests'")
        target = _own[number]
        op = message.get("op")
        if op == "call":
            args = _decoder.decode(message.get("args", []))
            kwargs = {k: _decoder.decode(v) for k, v in message.get("kwargs", [])}
            result = target(*args, **kwargs)
        elif op == "getattr":
            name = message.get("name")
            if not isinstance(name, str) or name.startswith("_"):
                raise AttributeError(f"the answer may not read attribute {name!r} of the tests' objects")
            result = getattr(target, name)
        elif op == "getitem":
            result = target[_decoder.decode(message.get("key"))]
        elif op in _DUNDERS:
            result = _DUNDERS[op](target)
        else:
            raise ValueError(f"unknown request {op!r}")
        return {"ok": _encoder.encode(result)}
    except Exception as exc:  # noqa: BLE001 - raised in the answer's process
        try:
            args = _encoder.encode(list(exc.args))
        except Exception:  # noqa: BLE001
            args = [str(exc)]
        return {"exc": {"type": [[c.__module__, c.__qualname__] for c in type(exc).__mro__],
                        "args": args, "text": f"{type(exc).__name__}: {exc}"}}


def _rebuild(info):
    names = info.get("type") or []
    limit = info.get("limit")
    if limit and limit not in _limits_hit:
        _limits_hit.append(limit)
    cls = None
    for module, qualname in names:
        found = _resolve(module, qualname)
        if isinstance(found, type) and issubclass(found, BaseException):
            cls = found
            break
    if cls is None or not issubclass(cls, Exception):
        cls = AnswerExit  # SystemExit and the like: the call did not return
    elif names and [names[0][0], names[0][1]] != [cls.__module__, cls.__qualname__]:
        cls = type(names[0][1].rsplit(".", 1)[-1], (cls,), {"__module__": "answer"})
    try:
        args = _decoder.decode(info.get("args") or [])
        exc = cls(*args)
    except Exception:  # noqa: BLE001
        exc = cls.__new__(cls)
        exc.args = tuple(info.get("args") or ())
    exc.add_note("--- raised in the answer's process ---\n" + str(info.get("text", "")).rstrip())
    return exc


class Remote(_wire.Proxy):
    """An object of the answer's, in the answer's process."""

    __slots__ = ("_sale_ref", "_sale_class", "__weakref__")

    def __init__(self, ref):
        object.__setattr__(self, "_sale_ref", ref)
        object.__setattr__(self, "_sale_class", None)

    def _ask(self, op, **more):
        if op == "call":
            more["rng"] = _rng_state()
        return _request({"op": op, "ref": self._sale_ref["id"], **more})

    def _encode(self, value):
        return _encoder.encode(value)

    @property
    def __class__(self):
        if self._sale_class is None:
            # an instance claims its library class (isinstance(ax, Axes) holds); a class
            # of the answer's is no class here (unittest's loader must not take it for one)
            names = [] if self._sale_ref.get("kind") == "class" else self._sale_ref.get("type", [])
            object.__setattr__(self, "_sale_class", _claimed_class(names) or Remote)
        return self._sale_class

    def __repr__(self):
        try:
            return self._ask("repr")
        except Exception:  # noqa: BLE001
            return f"<answer's object #{self._sale_ref['id']}>"

    def __setattr__(self, name, value):
        raise AttributeError("the answer's objects cannot be changed from the tests")


def _decode_ref(x):
    # Always a reference, even for what the answer says is a library's function or
    # class: a name the answer binds must not turn into code of its choosing here.
    return Remote(x)


def _encode_ref(obj):
    if type(obj) is Remote:
        return {"$": "ref", "id": object.__getattribute__(obj, "_sale_ref")["id"]}
    for number, known in _own.items():
        if known is obj:
            return {"$": "tref", "id": number}
    number = len(_own) + 1
    _own[number] = obj
    return {"$": "tref", "id": number}


class _OnMockImport:
    """An import hook: when the tests import unittest.mock, `_patch_both_sides` wraps
    its patches. Until then it is not imported (with asyncio, which it imports, that
    takes longer than most tasks' tests)."""

    def find_spec(self, name, path=None, target=None):
        if name != "unittest.mock":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                _patch_both_sides(module)

            spec.loader.exec_module = exec_module
        return spec


def _patch_both_sides(mock):
    """Make unittest.mock's patches reach the answer's process too: what a test patches
    in (``random.choice``, ``builtins.open``, a name of the tests' module, which is the
    answer's module there) is put in place there as a reference to the tests' object."""
    enter, leave = mock._patch.__enter__, mock._patch.__exit__

    def __enter__(self):
        result = enter(self)
        try:
            target = self.getter()
            if isinstance(target, types.ModuleType):
                module, qualname = target.__name__, []
            elif isinstance(target, type):
                module, qualname = target.__module__, target.__qualname__.split(".")
            else:
                return result
            value = _encoder.encode(getattr(target, self.attribute))
            self._sale_token = _request({"op": "patch", "ref": None, "module": module,
                                         "qualname": qualname, "attribute": self.attribute,
                                         "value": value})
        except Exception:  # noqa: BLE001 - not there in the answer's process: tests only
            self._sale_token = None
        return result

    def __exit__(self, *exc_info):
        token = getattr(self, "_sale_token", None)
        if token is not None:
            self._sale_token = None
            try:
                _request({"op": "unpatch", "ref": None, "token": token})
            except Exception:  # noqa: BLE001
                pass
        return leave(self, *exc_info)

    mock._patch.__enter__, mock._patch.__exit__ = __enter__, __exit__


def _tuple_class(module, qualname):
    """A library's tuple subclass (matplotlib's BarContainer, scipy's results) that an
    answer's result is an instance of; never one from elsewhere."""
    if not isinstance(module, str) or module.split(".")[0] not in _LIBRARIES:
        return None
    return _resolve(module, qualname)


def _mirror_imports(modules):
    """Import the library submodules the answer imported, in packages the tests use too,
    so that ``matplotlib.axes`` is an attribute here as it is in one process."""
    import importlib

    for name in modules:
        if (isinstance(name, str) and name not in sys.modules
                and name.split(".")[0] in _LIBRARIES and name.split(".")[0] in sys.modules
                and not any(part.startswith("_") for part in name.split("."))):
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001
                continue


_decoder = _wire.Decoder(ref=_decode_ref, tuple_class=_tuple_class)
_encoder = _wire.Encoder(ref=_encode_ref)


def _bind(namespace, names):
    """Bind the answer's names, except builtins (``abs`` stays the tests' ``abs``;
    only the entry point may have a builtin's name) and
    what the setup imported (``math`` stays the tests' ``math``); a module the answer
    imported is imported here, from the standard library or the data libraries."""
    protected = {name for name, value in namespace.items()
                 if isinstance(value, types.ModuleType)
                 or getattr(value, "__module__", "graded_tests") != "graded_tests"}
    for name, value in names.items():
        if name in protected or not isinstance(name, str):
            continue
        if hasattr(builtins, name) and name != _cfg.get("entry_point"):
            continue  # a task may ask for a function named like a builtin (``sum``)
        if isinstance(value, dict) and value.get("$") == "module":
            module = value.get("v")
            if not isinstance(module, str) or not _importable(module):
                continue
            import importlib

            try:
                namespace[name] = importlib.import_module(module)
            except Exception:  # noqa: BLE001 - not installed here
                continue
        else:
            namespace[name] = _decoder.decode(value)


def _run(source, filename, namespace):
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)


def main():
    verdict = {"passed": False}
    module = types.ModuleType("graded_tests")
    module.__builtins__ = builtins
    namespace = module.__dict__
    sys.modules["graded_tests"] = module
    sys.meta_path.insert(0, _OnMockImport())
    try:
        for name in ("setup.py",):
            with open(os.path.join(_here, name), encoding="utf-8") as handle:
                _run(handle.read(), name, namespace)
        first = _wire.receive(_RESP)
        if first is None:
            raise AnswerGone("the answer's process ended before it loaded")
        if "error" in first:
            raise _rebuild(first["error"])
        _bind(namespace, first.get("names", {}))
        with open(os.path.join(_here, "tests.py"), encoding="utf-8") as handle:
            tests = handle.read()
        _enter_shared(_cfg["cwd"])
        style = _cfg["style"]
        _mirror_imports(first.get("modules", []))
        _run(tests, "tests.py", namespace)
        _mirror_imports(first.get("modules", []))
        if style == "humaneval":
            namespace["check"](namespace[_cfg["entry_point"]])
            verdict["passed"] = True
        elif style == "asserts":
            verdict["passed"] = True
        else:
            import unittest

            suite = unittest.defaultTestLoader.loadTestsFromModule(module)
            if suite.countTestCases() == 0:
                raise RuntimeError("grading error: the tests define no test case")
            result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
            verdict.update(passed=result.wasSuccessful(), tests_run=result.testsRun,
                           failures=len(result.failures), errors=len(result.errors))
    except BaseException:  # noqa: BLE001 - any failure of the tests is a failed grade
        import traceback

        traceback.print_exc()
        verdict["passed"] = False
    verdict["limits"] = _limits_hit
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    try:
        os.write(_VERDICT, json.dumps(verdict).encode())
    except OSError:
        os._exit(2)
    os._exit(0 if verdict["passed"] else 1)


main()
