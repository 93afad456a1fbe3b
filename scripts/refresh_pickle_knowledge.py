#!/usr/bin/env python3
"""Regenerate the pickle knowledge base (src/modelward/data/pickle_knowledge/).

For every ``module.qualname`` that a pickle can name in the standard library and in the
installed ML and data packages, this script records what loading would run for each use a
pickle can make of it (construct, call, setstate, items) and whether that code reaches a
dangerous sink. The format is described in docs/pickle.md ("Knowledge base").

It imports the packages it describes, so it runs in a throwaway virtual environment with
pinned versions, never at scan time (the scanner only reads the data files):

    python3 -m venv /tmp/kbenv
    /tmp/kbenv/bin/pip install -r scripts/knowledge-requirements.txt
    /tmp/kbenv/bin/python scripts/refresh_pickle_knowledge.py \
        --out src/modelward/data/pickle_knowledge

How a verdict is decided (statically, by reading source with ``ast``):

- construct: ``cls.__new__``; call: the metaclass ``__call__``, ``__new__`` and ``__init__``
  of a class, or the body of a function; setstate: ``__setstate__`` or the default
  ``__dict__`` update (plus a custom ``__setattr__``/``__getattr__``/``__getattribute__``);
  items: ``append``/``extend``/``__setitem__``/``add``.
- Calls are followed up to MAX_DEPTH levels: module globals and closure cells, attributes of
  modules and classes, ``self.method()`` through the class MRO, ``super()``, constructors of
  classes (``__new__``/``__init__``), locals assigned once from a constructor, properties read
  on ``self``. Calls on objects that cannot be resolved (``self._x.append(v)``) are not sinks:
  they run methods of objects that came from the stream, judged when those are built.
- A sink is a callable on the tables below (matched by identity, so every alias counts),
  any callable of a module on SINK_MODULES, ``getattr``/``setattr``/``delattr`` with a
  non-constant name on something other than ``self``, and ``sys.modules[name]``. Path sinks
  (``open``, ``os.remove``...) do not count when every argument is a constant.
- C and Cython callables have no source: they are safe unless they are on the tables.
  Cython's ``__pyx_unpickle_<Cls>`` is judged as construct + setstate of ``<Cls>``.
- Source-less Python code (dataclass ``__init__``, namedtuple ``__new__``) is read from its
  bytecode: every global or closure callable it loads counts as called.

Each package is imported and analysed in its own worker process, with a time limit;
a module that fails to import is skipped and counted, never fatal.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import collections
import concurrent.futures
import contextlib
import dis
import enum
import functools
import importlib
import importlib.metadata
import inspect
import json
import os
import pkgutil
import re
import signal
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GENERATOR = 1
MAX_DEPTH = 6
USES = ("construct", "call", "setstate", "items")

# ---------------------------------------------------------------------------------------
# Sink tables. Keys are dotted names resolved to objects in the worker, so an alias
# (`os.system` is `posix.system`) is matched by identity.

_POSIX_PROCESS = [
    "system",
    "execv",
    "execve",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execvp",
    "execvpe",
    "fexecve",
    "spawnv",
    "spawnve",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "spawnvp",
    "spawnvpe",
    "fork",
    "forkpty",
    "posix_spawn",
    "posix_spawnp",
    "popen",
    "kill",
    "killpg",
    "register_at_fork",
    "_exit",
    "abort",
]
_POSIX_PATH = [
    "open",
    "remove",
    "unlink",
    "rmdir",
    "mkdir",
    "makedirs",
    "removedirs",
    "rename",
    "renames",
    "replace",
    "chmod",
    "lchmod",
    "chown",
    "lchown",
    "link",
    "symlink",
    "truncate",
    "mkfifo",
    "mknod",
    "utime",
    "chroot",
    "chdir",
    "chflags",
    "lchflags",
    "setxattr",
    "removexattr",
]
_POSIX_OTHER = [
    "write",
    "pwrite",
    "writev",
    "pwritev",
    "putenv",
    "unsetenv",
    "fchmod",
    "fchown",
    "ftruncate",
    "fchdir",
    "dup2",
    "close",
    "closerange",
    "setuid",
    "setgid",
    "seteuid",
    "setegid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "setsid",
    "setpgid",
    "memfd_create",
    "sendfile",
]

SINK_NAMES: dict[str, str] = {
    "builtins.eval": "builtins.eval",
    "builtins.exec": "builtins.exec",
    "builtins.compile": "builtins.compile",
    "builtins.__import__": "builtins.__import__",
    "builtins.breakpoint": "builtins.breakpoint",
    "builtins.getattr": "builtins.getattr",
    "builtins.setattr": "builtins.setattr",
    "builtins.delattr": "builtins.delattr",
    "builtins.open": "builtins.open",
    "_io.open": "builtins.open",
    "_io.open_code": "io.open_code",
    "_io.FileIO": "io.FileIO",
    "marshal.loads": "marshal.loads",
    "marshal.load": "marshal.load",
    "_pickle.loads": "pickle.loads",
    "_pickle.load": "pickle.load",
    "_pickle.Unpickler": "pickle.Unpickler",
    "_pickle.Unpickler.load": "pickle.load",
    "_pickle.Unpickler.find_class": "pickle.find_class",
    "pickle._loads": "pickle.loads",
    "pickle._load": "pickle.load",
    "pickle._Unpickler.load": "pickle.load",
    "pickle._Unpickler.find_class": "pickle.find_class",
    "sys.settrace": "sys.settrace",
    "sys.setprofile": "sys.setprofile",
    "sys.addaudithook": "sys.addaudithook",
    "_thread.start_new_thread": "_thread.start_new_thread",
    "_thread.start_new": "_thread.start_new_thread",
    "threading.Thread.start": "threading.Thread.start",
    "atexit.register": "atexit.register",
    "importlib.import_module": "importlib.import_module",
    "importlib.__import__": "importlib.__import__",
    "importlib.reload": "importlib.reload",
    "importlib.util.find_spec": "importlib.util.find_spec",
    "importlib.util.spec_from_file_location": "importlib.util.spec_from_file_location",
    "importlib.util.module_from_spec": "importlib.util.module_from_spec",
    "importlib.machinery.SourceFileLoader": "importlib.machinery.SourceFileLoader",
    "importlib.machinery.SourcelessFileLoader": "importlib.machinery.SourcelessFileLoader",
    "importlib.machinery.ExtensionFileLoader": "importlib.machinery.ExtensionFileLoader",
    "runpy.run_path": "runpy.run_path",
    "runpy.run_module": "runpy.run_module",
    "shelve.open": "shelve.open",
    "socket.create_connection": "network",
    "socket.create_server": "network",
    "socket.socket": "network",
    "urllib.request.urlopen": "network",
    "urllib.request.urlretrieve": "network",
    "urllib.request.OpenerDirector.open": "network",
    "http.client.HTTPConnection.connect": "network",
    "http.client.HTTPConnection.request": "network",
    "http.client.HTTPConnection.endheaders": "network",
    "ftplib.FTP.connect": "network",
    "smtplib.SMTP.connect": "network",
    "webbrowser.open": "webbrowser.open",
    "requests.api.request": "network",
    "requests.sessions.Session.request": "network",
    "requests.sessions.Session.send": "network",
    "requests.adapters.HTTPAdapter.send": "network",
    "httpx._api.request": "network",
    "httpx._api.stream": "network",
    "httpx._client.Client.send": "network",
    "httpx._client.Client.request": "network",
    "httpx._client.AsyncClient.send": "network",
    "httpx._client.AsyncClient.request": "network",
    "urllib3.connectionpool.HTTPConnectionPool.urlopen": "network",
    "urllib3.poolmanager.PoolManager.urlopen": "network",
    "urllib3._request_methods.RequestMethods.request": "network",
    "aiohttp.client.ClientSession._request": "network",
    "_ctypes.dlopen": "ctypes.dlopen",
    "_ctypes.dlsym": "ctypes.dlsym",
    "_ctypes.dlclose": "ctypes.dlclose",
    "_ctypes.call_function": "ctypes.call_function",
    "_ctypes.call_cdeclfunction": "ctypes.call_function",
    "_ctypes.PyObj_FromPtr": "ctypes.PyObj_FromPtr",
    "_ctypes.Py_INCREF": "ctypes.Py_INCREF",
    "_ctypes.Py_DECREF": "ctypes.Py_DECREF",
    "_ctypes.CFuncPtr": "ctypes function pointer",
    "_ctypes._unpickle": "ctypes raw memory",
    "_ctypes._CData.__setstate__": "ctypes raw memory",
    "ctypes.memmove": "ctypes.memmove",
    "ctypes.memset": "ctypes.memset",
    "ctypes.cast": "ctypes.cast",
    "ctypes._cast": "ctypes.cast",
    "ctypes.string_at": "ctypes.string_at",
    "ctypes._string_at": "ctypes.string_at",
    "ctypes.wstring_at": "ctypes.wstring_at",
    "ctypes._wstring_at": "ctypes.wstring_at",
    "numpy.load": "numpy.load",
    "numpy.fromfile": "numpy.fromfile",
    "numpy.ndarray.tofile": "numpy.ndarray.tofile",
    "numpy.ndarray.dump": "numpy.ndarray.dump",
    "numpy.lib.format.read_array": "numpy.lib.format.read_array",
    "torch.load": "torch.load",
    "torch.serialization._load": "torch.load",
    "torch.serialization._legacy_load": "torch.load",
    "torch.jit.load": "torch.jit.load",
    "torch.from_file": "torch.from_file",
    "torch.UntypedStorage.from_file": "torch.UntypedStorage.from_file",
    "torch._C.import_ir_module": "torch._C.import_ir_module",
    "torch._C.import_ir_module_from_buffer": "torch._C.import_ir_module_from_buffer",
    "torch._C._load_for_lite_interpreter": "torch._C._load_for_lite_interpreter",
    "torch.ops.load_library": "torch.ops.load_library",
    "joblib.load": "joblib.load",
    "joblib.numpy_pickle.load": "joblib.load",
    "yaml.load": "yaml.load",
    "yaml.load_all": "yaml.load",
    "yaml.unsafe_load": "yaml.unsafe_load",
    "yaml.unsafe_load_all": "yaml.unsafe_load",
    "yaml.full_load": "yaml.full_load",
    "yaml.full_load_all": "yaml.full_load",
    "dill._dill.load": "dill.load",
    "dill._dill.loads": "dill.loads",
    "cloudpickle.load": "pickle.load",
    "cloudpickle.loads": "pickle.loads",
}
SINK_NAMES.update({f"posix.{n}": f"os.{n}" for n in _POSIX_PROCESS + _POSIX_PATH + _POSIX_OTHER})
SINK_NAMES.update({f"os.{n}": f"os.{n}" for n in _POSIX_PROCESS + _POSIX_PATH + _POSIX_OTHER})

# Sinks that only count when an argument is not a constant (opening a fixed path is not an
# attacker-chosen path).
PATH_SINK_LABELS = {"builtins.open", "io.FileIO", "io.open_code", "numpy.fromfile"} | {
    f"os.{n}" for n in _POSIX_PATH
}
# Sinks that only count when an argument may carry stream data (code or a module name).
CODE_SINK_LABELS = {
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.__import__",
    "importlib.import_module", "importlib.__import__", "importlib.util.find_spec",
    "os.register_at_fork",
}  # fmt: skip
# Sinks that only count when the attribute name (second argument) may carry stream data.
ATTR_SINK_LABELS = {"builtins.getattr", "builtins.setattr", "builtins.delattr"}

# Every callable of these modules is a sink (C modules without a safe member worth keeping).
SINK_MODULES: dict[str, str] = {
    "_posixsubprocess": "subprocess",
    "_socket": "network",
    "_posixshmem": "shared memory",
    "_imp": "importlib",
    "pty": "pty",
    "_winapi": "process",
    "nt": "os",
}

# Standard-library helpers that analysed library code calls for introspection, bookkeeping
# or messages (inspect.signature, copy.deepcopy, typing, logging, warnings, version checks).
# Calls INTO them from library code are not followed: what they may reach (linecache reading
# a source file, gettext a catalogue, platform running `uname`) is not chosen by the stream.
# Their own names are still judged in full when a pickle names them.
TRUSTED_CALLEES = (
    "inspect", "typing", "typing_extensions", "copy", "functools", "dataclasses", "abc",
    "weakref", "_weakrefset", "warnings", "contextlib", "collections", "enum", "operator",
    "types", "numbers", "re", "sre_compile", "sre_parse", "string", "textwrap", "traceback",
    "linecache", "tokenize", "logging", "reprlib", "pprint", "gettext", "locale", "platform",
    "importlib.metadata", "importlib_metadata", "threading", "difflib", "ast", "dis",
)  # fmt: skip
# C helpers of sink modules that only read local facts.
NOT_SINKS = {
    "_socket.gethostname", "_socket.htons", "_socket.ntohs", "_socket.htonl", "_socket.ntohl",
    "_socket.inet_aton", "_socket.inet_ntoa", "_socket.inet_pton", "_socket.inet_ntop",
    "_socket.getdefaulttimeout", "_socket.setdefaulttimeout", "_socket.if_nameindex",
}  # fmt: skip


def _trusted(obj: Any) -> bool:
    mod = getattr(obj, "__module__", None)
    if not isinstance(mod, str):
        return False
    return any(mod == t or mod.startswith(t + ".") for t in TRUSTED_CALLEES)


SKIP_PARTS = {"tests", "test", "benchmarks", "benchmark", "__main__", "conftest", "setup"}
SKIP_STDLIB = {
    "antigravity", "this", "idlelib", "turtledemo", "test", "__main__", "__phello__",
    "xxlimited", "xxlimited_35", "xxsubtype", "_xxtestfuzz", "_testcapi", "_testinternalcapi",
    "_testbuffer", "_testimportmultiple", "_testmultiphase", "_ctypes_test", "_testclinic",
    "ensurepip", "pydoc_data", "lib2to3", "tkinter", "turtle", "_tkinter", "idle",
}  # fmt: skip
# Heavy trees that no saved model names (test-suite generators, not helpers that run scripts).
SKIP_MODULES = {"torch.testing._internal", "transformers.models.deprecated"}
SKIP_DISTS = {"pip", "setuptools", "wheel"}
BASIC_TYPES = (str, bytes, bytearray, int, float, complex, bool, type(None), tuple, list,
               dict, set, frozenset)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Verdicts: "safe", "unknown" or ("sink", label, chain).

Sink = tuple[str, tuple[str, ...]]
Result = Sink | None  # None: nothing dangerous found
Site = Any  # (Body, ast.Call) of a call inside analysed code, or None


def describe(obj: Any) -> str:
    mod = getattr(obj, "__module__", None) or ""
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "?"
    return f"{mod}.{qual}" if mod else str(qual)


def render(res: Result | str) -> str:
    if isinstance(res, str):
        return res
    if res is None:
        return "safe"
    label, chain = res
    text = f"sink:{label}"
    if len(chain) > 2:
        chain = (chain[0], "...", chain[-1])
    if chain:
        text += " via " + " > ".join(chain)
    return text.replace("\t", " ")


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


# ---------------------------------------------------------------------------------------
# The analyser (runs inside a worker, with the packages imported).


class Analyser:
    def __init__(self) -> None:
        self.sinks: dict[int, str] = {}
        self._keep: list[Any] = []
        self.memo: dict[tuple[Any, ...], Result] = {}
        self.in_progress: set[tuple[Any, ...]] = set()
        self.ast_cache: dict[str, dict[tuple[int, str], list[ast.AST]] | None] = {}
        self.truncated = 0
        self.bytecode = 0
        self.walks: dict[int, list[ast.AST]] = {}
        self.expr_names: dict[int, frozenset[str] | None] = {}
        self.sys_modules_id = id(sys.modules)
        # Results of methods analysed with `self` of class C are shared with every class D
        # that resolves the same `self.<attr>` lookups (transitively) to the same objects:
        # (fn, kind, taint) -> [(((lookup key, provider token), ...), result)]
        self.shared: dict[tuple[Any, ...], list[tuple[tuple[Any, ...], Any]]] = {}
        self.deps_stack: list[tuple[type | None, set[tuple[Any, ...]]]] = []
        self.refresh_sinks()

    # -- class lookups on `self`, recorded so that results can be shared ---------------

    def lookup(self, cls: type, name: str) -> Any:
        self._record(cls, ("attr", name))
        return _static(cls, name)

    def super_lookup(self, cls: type, owner: type, name: str) -> tuple[type, Any] | None:
        self._record(cls, ("super", owner, name))
        return _super_find(cls, owner, name)

    def _record(self, cls: type, key: tuple[Any, ...]) -> None:
        if self.deps_stack and self.deps_stack[-1][0] is cls:
            self.deps_stack[-1][1].add(key)

    def walk(self, node: ast.AST) -> list[ast.AST]:
        """ast.walk(node), cached (bodies are walked once per self class and taint)."""
        got = self.walks.get(id(node))
        if got is None:
            got = self.walks[id(node)] = list(ast.walk(node))
        return got

    def names_in(self, expr: ast.AST) -> frozenset[str] | None:
        """Names an expression reads (None: it unpacks `*x`, so anything)."""
        key = id(expr)
        if key not in self.expr_names:
            names: set[str] = set()
            starred = False
            for sub in self.walk(expr):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
                elif isinstance(sub, ast.Starred):
                    starred = True
            self.expr_names[key] = None if starred else frozenset(names)
        return self.expr_names[key]

    def refresh_sinks(self) -> None:
        for dotted, label in SINK_NAMES.items():
            obj = resolve_dotted(dotted, import_missing=False)
            if obj is not None and not isinstance(obj, BASIC_TYPES):
                self.sinks[id(obj)] = label
                self._keep.append(obj)

    # -- source ------------------------------------------------------------------------

    def nodes_for(self, code: types.CodeType) -> list[ast.AST] | None:
        filename = code.co_filename
        if filename not in self.ast_cache:
            index: dict[tuple[int, str], list[ast.AST]] | None = None
            if filename.endswith(".py") and os.path.isfile(filename):
                try:
                    tree = ast.parse(Path(filename).read_bytes(), filename)
                except (SyntaxError, ValueError, OSError):
                    tree = None
                if tree is not None:
                    index = collections.defaultdict(list)
                    for node in _statements(tree):
                        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            lines = {node.lineno} | {d.lineno for d in node.decorator_list}
                            for line in lines:
                                index[(line, node.name)].append(node)
            self.ast_cache[filename] = index
        index = self.ast_cache[filename]
        if index is None:
            return None
        return index.get((code.co_firstlineno, code.co_name))

    # -- entry points ------------------------------------------------------------------

    def call_object(
        self, obj: Any, depth: int, selfarg: Any = None, site: Site = None
    ) -> Result | str:
        """What calling `obj` runs: with the stream's arguments (site None), or with the
        arguments of a call site inside analysed code."""
        label = self.sinks.get(id(obj))
        if label is not None:
            return (label, ())
        if site is not None and _trusted(obj):
            return None
        if isinstance(obj, type):
            return self.class_call(obj, depth, site)
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if isinstance(obj, functools.partial):
            return self.call_object(obj.func, depth)
        if isinstance(obj, types.MethodType):
            return self.call_object(obj.__func__, depth, ("obj", obj.__self__))
        if isinstance(obj, types.FunctionType):
            return self.function(obj, selfarg, depth, site, bound=False)
        if _is_c_callable(obj):
            return self.c_callable(obj)
        wrapped = _safe_getattr(obj, "__wrapped__")
        if wrapped is not None and wrapped is not obj and callable(wrapped):
            return self.call_object(wrapped, depth)
        if callable(obj):
            call = _static(type(obj), "__call__")
            if isinstance(call, types.FunctionType):
                return self.function(call, ("inst", type(obj)), depth)
            return self.c_type_method(type(obj), "__call__")
        return None  # calling a non-callable raises TypeError

    def c_callable(self, obj: Any) -> Result:
        label = self.sinks.get(id(obj))
        if label is not None:
            return (label, ())
        owner = _safe_getattr(obj, "__objclass__") or _safe_getattr(obj, "__self__")
        try:
            mod = getattr(obj, "__module__", None)
        except Exception:
            mod = None
        if not isinstance(mod, str) and owner is not None:
            mod = (
                owner.__name__
                if isinstance(owner, types.ModuleType)
                else getattr(owner if isinstance(owner, type) else type(owner), "__module__", None)
            )
        if f"{mod}.{getattr(obj, '__name__', '')}" in NOT_SINKS:
            return None
        if isinstance(mod, str) and mod.split(".")[0] in SINK_MODULES:
            return (f"{SINK_MODULES[mod.split('.')[0]]} ({describe(obj)})", ())
        return None

    def c_type_method(self, cls: type, name: str) -> Result:
        """A C-level slot of `cls` (or of the base that defines it)."""
        for base in cls.__mro__:
            if name in vars(base):
                label = self.sinks.get(id(base))
                if label is not None:
                    return (label, ())
                top = (base.__module__ or "").split(".")[0]
                if top in SINK_MODULES:
                    return (f"{SINK_MODULES[top]} ({describe(base)}.{name})", ())
                return None
        return None

    def class_call(self, cls: type, depth: int, site: Site = None) -> Result | str:
        label = self.sinks.get(id(cls))
        if label is not None:
            return (label, ())
        meta_call = _static(type(cls), "__call__")
        if isinstance(meta_call, types.FunctionType):
            res = self.function(meta_call, ("obj", cls), depth, site)
            if res is not None:
                return res
        res = self.construct(cls, depth, site)
        if res is not None:
            return res
        init = _static(cls, "__init__")
        if isinstance(init, types.FunctionType):
            return self.function(init, ("inst", cls), depth, site)
        return self.c_type_method(cls, "__init__")

    def construct(self, cls: type, depth: int, site: Site = None) -> Result | str:
        label = self.sinks.get(id(cls))
        if label is not None and label != "network":
            return (label, ())
        new = _static(cls, "__new__")
        if isinstance(new, staticmethod):
            new = new.__func__
        if isinstance(new, types.FunctionType):
            return self.function(new, ("obj", cls), depth, site)
        return self.c_type_method(cls, "__new__")

    def setstate(self, cls: type, depth: int) -> Result | str:
        hooks = []
        ss = _static(cls, "__setstate__")
        if ss is not None:
            hooks.append("__setstate__")
        else:
            hooks += ["__setattr__", "__getattr__"]
        hooks.append("__getattribute__")
        return self.hooks(cls, hooks, depth)

    def items(self, cls: type, depth: int) -> Result | str:
        hooks = ["append", "extend", "__setitem__", "add"]
        if _static(cls, "extend") is None:
            hooks.append("__getattr__")
        return self.hooks(cls, hooks, depth)

    def hooks(self, cls: type, names: list[str], depth: int) -> Result | str:
        for name in names:
            fn = _static(cls, name)
            if fn is None:
                continue
            if isinstance(fn, (staticmethod, classmethod)):
                fn = fn.__func__
            if isinstance(fn, types.FunctionType):
                # attribute hooks run with names the unpickler chooses (`__setstate__`,
                # `__dict__`, `extend`), not the stream: their name parameter is clean
                clean = name in {"__getattribute__", "__getattr__"}
                res = self.function(fn, ("inst", cls), depth, clean_params=clean)
            elif name in {"__getattribute__", "__setattr__", "__getattr__"}:
                continue  # object's own slots
            else:
                label = self.sinks.get(id(fn))
                res = (label, ()) if label else self.c_type_method(cls, name)
            if res is not None:
                return res
        return None

    # -- function bodies ---------------------------------------------------------------

    def function(
        self,
        fn: types.FunctionType,
        selfarg: Any,
        depth: int,
        site: Site = None,
        bound: bool = True,
        clean_params: bool = False,
    ) -> Result | str:
        """The body of `fn`. `selfarg` is what its first parameter is (bound or not);
        `site` the call inside analysed code whose arguments decide which parameters carry
        stream data (None: all of them)."""
        label = self.sinks.get(id(fn))
        if label == "threading.Thread.start" and selfarg is not None and selfarg[0] == "inst":
            # a thread the library starts runs its own `run`: judge that instead
            run = self.lookup(selfarg[1], "run")
            if isinstance(run, types.FunctionType):
                return self.function(run, selfarg, depth - 1)
            return None
        if label is not None:
            return (label, ())
        if depth <= 0:
            self.truncated += 1
            return None
        if site is not None and _trusted(fn):
            return None
        taint = site[0].arg_taint(site[1], fn, bound and selfarg is not None) if site else None
        if clean_params:
            taint = frozenset()
        selfcls = selfarg[1] if selfarg is not None and isinstance(selfarg[1], type) else None
        base_key = (id(fn), selfarg[0] if selfarg is not None else None, taint)
        if selfcls is not None:
            for deps, found in self.shared.get(base_key, ()):
                if all(_token(selfcls, k) == t for k, t in deps):
                    for k, _ in deps:
                        self._record(selfcls, k)
                    return found  # type: ignore[no-any-return]
        key = (id(fn), _selfkey(selfarg), taint)
        if key in self.memo:
            return self.memo[key]
        if key in self.in_progress:
            return None
        self.in_progress.add(key)
        self.deps_stack.append((selfcls, set()))
        try:
            res = self._function(fn, selfarg, depth, taint)
        except RecursionError:
            res = "unknown"
        finally:
            self.in_progress.discard(key)
            frame = self.deps_stack.pop()
        if isinstance(res, tuple):
            res = (res[0], (_short(fn), *res[1]))
        if selfcls is not None:
            deps = tuple((k, _token(selfcls, k)) for k in frame[1])
            self.shared.setdefault(base_key, []).append((deps, res))
            for k in frame[1]:
                self._record(selfcls, k)
        else:
            self.memo[key] = res  # type: ignore[assignment]
        return res

    def _function(
        self, fn: types.FunctionType, selfarg: Any, depth: int, taint: frozenset[str] | None
    ) -> Result | str:
        code = fn.__code__
        nodes = self.nodes_for(code)
        if not nodes:
            self.bytecode += 1
            return self.from_bytecode(fn, code, depth)
        worst: Result | str = None
        for node in nodes:
            res = Body(self, fn, node, selfarg, depth, taint).run()
            if isinstance(res, tuple):
                return res
            if res == "unknown":
                worst = res
        return worst

    def from_bytecode(self, fn: types.FunctionType, code: types.CodeType, depth: int) -> Result:
        cells: dict[str, Any] = {}
        if fn.__closure__:
            for name, cell in zip(code.co_freevars, fn.__closure__, strict=False):
                with contextlib.suppress(ValueError):  # an empty cell
                    cells[name] = cell.cell_contents
        return self._bytecode(fn, code, cells, depth)

    def _bytecode(
        self, fn: types.FunctionType, code: types.CodeType, cells: dict[str, Any], depth: int
    ) -> Result:
        last: Any = None
        for ins in dis.get_instructions(code):
            obj: Any = None
            if ins.opname in {"LOAD_GLOBAL", "LOAD_NAME"}:
                obj = _lookup_global(fn.__globals__, ins.argval)
            elif ins.opname in {"LOAD_DEREF", "LOAD_CLASSDEREF"}:
                obj = cells.get(ins.argval)
            elif ins.opname in {"LOAD_ATTR", "LOAD_METHOD"} and last is not None:
                obj = _attr_static(last, ins.argval)
            last = obj
            if obj is None or isinstance(obj, (types.ModuleType, *BASIC_TYPES)):
                continue
            if not callable(obj) and not isinstance(obj, (staticmethod, classmethod)):
                continue
            res = self.call_object(obj, depth - 1)
            if isinstance(res, tuple):
                return res
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                res = self._bytecode(fn, const, cells, depth)
                if res is not None:
                    return res
        return None


def _short(fn: Any) -> str:
    return describe(fn)


def _selfkey(selfarg: Any) -> Any:
    if selfarg is None:
        return None
    return (selfarg[0], id(selfarg[1]))


def _safe_getattr(obj: Any, name: str) -> Any:
    try:
        return inspect.getattr_static(obj, name)
    except Exception:
        return None


def _statements(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every statement of a module, nested ones included, without walking expressions
    (a lambda is not indexed: its code is read from bytecode)."""
    stack = list(getattr(tree, "body", []))
    while stack:
        node = stack.pop()
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if children:
                for child in children:
                    if isinstance(child, ast.stmt):
                        stack.append(child)
                    else:  # except handlers, match cases
                        stack.extend(getattr(child, "body", []))


def _super_find(cls: type, owner: type, name: str) -> tuple[type, Any] | None:
    mro = cls.__mro__
    if owner not in mro:
        mro = owner.__mro__ if isinstance(owner, type) else ()
    try:
        start = mro.index(owner) + 1
    except ValueError:
        return None
    for base in mro[start:]:
        if name in vars(base):
            return base, vars(base)[name]
    return None


def _token(cls: type, key: tuple[Any, ...]) -> Any:
    if key[0] == "attr":
        return id(_static(cls, key[1]))
    got = _super_find(cls, key[1], key[2])
    return None if got is None else (id(got[0]), id(got[1]))


def _static(cls: type, name: str) -> Any:
    """Class attribute `name` found through the MRO, without running descriptors."""
    for base in cls.__mro__:
        if name in vars(base):
            found = vars(base)[name]
            if base is object and name in {"__setattr__", "__getattribute__", "__init__"}:
                return None
            return found
    return None


def _is_c_callable(obj: Any) -> bool:
    return isinstance(
        obj,
        (
            types.BuiltinFunctionType,
            types.BuiltinMethodType,
            types.WrapperDescriptorType,
            types.MethodWrapperType,
            types.MethodDescriptorType,
            types.ClassMethodDescriptorType,
        ),
    ) or type(obj).__name__ in {"cython_function_or_method", "fused_cython_function"}


def _lookup_global(glb: dict[str, Any], name: str) -> Any:
    if name in glb:
        return glb[name]
    bi = glb.get("__builtins__", builtins)
    if isinstance(bi, dict):
        return bi.get(name)
    return vars(bi).get(name) if isinstance(bi, types.ModuleType) else None


def _attr_static(base: Any, name: str) -> Any:
    if isinstance(base, types.ModuleType):
        return vars(base).get(name)
    if isinstance(base, type):
        found = _static(base, name)
        if isinstance(found, (staticmethod, classmethod)):
            return found.__func__
        return found
    return None


class Body:
    """One function body, walked once; returns the first sink it reaches."""

    def __init__(
        self,
        an: Analyser,
        fn: types.FunctionType,
        node: ast.AST,
        selfarg: Any,
        depth: int,
        taint: frozenset[str] | None = None,
    ) -> None:
        self.an = an
        self.fn = fn
        self.node = node
        self.depth = depth
        self.glb = fn.__globals__
        code = fn.__code__
        self.localnames = set(code.co_varnames) | set(code.co_cellvars)
        self.cells: dict[str, Any] = {}
        if fn.__closure__:
            for name, cell in zip(code.co_freevars, fn.__closure__, strict=False):
                with contextlib.suppress(ValueError):  # an empty cell
                    self.cells[name] = cell.cell_contents
        self.owner = self.cells.get("__class__")
        self.selfname: str | None = None
        self.selfarg = selfarg
        args = getattr(node, "args", None)
        if selfarg is not None and args is not None:
            params = list(args.posonlyargs) + list(args.args)
            if params:
                self.selfname = params[0].arg
        self.typed: dict[str, Any] = {}
        self.const_names: set[str] = set()
        self._type_locals()
        params = _param_names(args) if args is not None else []
        self.tainted: set[str] = set(params if taint is None else taint)
        if self.selfname is not None:
            self.tainted.discard(self.selfname)
            if selfarg[0] == "inst":
                self.tainted.add(self.selfname)  # an instance built from the stream
        self._propagate_taint()

    def _type_locals(self) -> None:
        assigned: collections.Counter[str] = collections.Counter()
        for_const: collections.Counter[str] = collections.Counter()
        values: dict[str, ast.expr] = {}
        imports: dict[str, Any] = {}
        for sub in self.an.walk(self.node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                for name, obj in self._local_import(sub):
                    assigned[name] += 1
                    if obj is not None:
                        imports[name] = obj
            elif isinstance(sub, ast.Assign):
                for tgt in sub.targets:
                    for name in _names(tgt):
                        assigned[name] += 1
                        values[name] = sub.value if isinstance(tgt, ast.Name) else None  # type: ignore[assignment]
            elif isinstance(sub, (ast.For, ast.AsyncFor)):
                const_iter = self.is_const(sub.iter) or (
                    isinstance(sub.iter, (ast.Name, ast.Attribute))
                    and _const_value(self.resolve(sub.iter))
                )
                for name in _names(sub.target):
                    assigned[name] += 2
                    if const_iter:
                        for_const[name] += 2
            elif isinstance(sub, (ast.AugAssign, ast.AnnAssign)):
                for name in _names(sub.target):
                    assigned[name] += 2
            elif isinstance(sub, (ast.With, ast.AsyncWith)):
                for item in sub.items:
                    if item.optional_vars is not None:
                        for name in _names(item.optional_vars):
                            assigned[name] += 1
                            values[name] = (
                                item.context_expr
                                if isinstance(item.optional_vars, ast.Name)
                                else None
                            )  # type: ignore[assignment]
            elif isinstance(sub, ast.NamedExpr):
                assigned[sub.target.id] += 2
        for name, count in assigned.items():
            if for_const[name] and for_const[name] == count:
                self.const_names.add(name)
            if count == 1 and name in imports:
                self.typed[name] = ("obj", imports[name])
                continue
            value = values.get(name)
            if count != 1 or value is None or name == self.selfname:
                continue
            got = self.resolve(value)
            if got is not None and got[0] in {"obj", "inst", "bound"}:
                self.typed[name] = got

    def _local_import(self, node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, Any]]:
        """Names bound by an `import` inside the function, resolved in sys.modules (the
        worker has imported the package, so what the function would import is there)."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    yield alias.asname, sys.modules.get(alias.name)
                else:
                    top = alias.name.split(".")[0]
                    yield top, sys.modules.get(top)
            return
        base = node.module or ""
        if node.level:
            package = self.glb.get("__package__") or ""
            parts = package.split(".") if package else []
            if node.level > 1:
                parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        mod = sys.modules.get(base)
        for alias in node.names:
            if alias.name == "*":
                continue
            obj = None
            if mod is not None:
                obj = vars(mod).get(alias.name)
            if obj is None:
                obj = sys.modules.get(f"{base}.{alias.name}")
            yield alias.asname or alias.name, obj

    # -- stream data (taint) -----------------------------------------------------------

    def _propagate_taint(self) -> None:
        flows: list[tuple[list[str], ast.AST]] = []
        for sub in self.an.walk(self.node):
            if isinstance(sub, ast.Assign):
                names = [n for t in sub.targets for n in _names(t)]
                flows.append((names, sub.value))
            elif isinstance(sub, (ast.AugAssign, ast.AnnAssign)) and sub.value is not None:
                flows.append((list(_names(sub.target)), sub.value))
            elif isinstance(sub, (ast.For, ast.AsyncFor, ast.comprehension)):
                flows.append((list(_names(sub.target)), sub.iter))
            elif isinstance(sub, (ast.With, ast.AsyncWith)):
                for item in sub.items:
                    if item.optional_vars is not None:
                        flows.append((list(_names(item.optional_vars)), item.context_expr))
            elif isinstance(sub, ast.NamedExpr):
                flows.append(([sub.target.id], sub.value))
            elif (
                isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                and sub is not self.node
            ):  # nested code: its parameters are unknown data
                self.tainted.update(_param_names(sub.args))
        for _ in range(6):
            changed = False
            for names, value in flows:
                if any(n not in self.tainted for n in names) and self.is_tainted(value):
                    self.tainted.update(names)
                    changed = True
            if not changed:
                break

    def is_tainted(self, expr: ast.AST) -> bool:
        """Whether `expr` may carry data from the stream (a parameter, `self`, a local
        computed from them)."""
        names = self.an.names_in(expr)
        return names is None or not names.isdisjoint(self.tainted)

    def arg_taint(
        self, node: ast.Call, fn: types.FunctionType, bound: bool
    ) -> frozenset[str] | None:
        """Parameters of `fn` that receive stream data at this call (None: all)."""
        code = fn.__code__
        npos = code.co_argcount
        names = list(code.co_varnames[:npos])
        kwonly = list(code.co_varnames[npos : npos + code.co_kwonlyargcount])
        extra = npos + code.co_kwonlyargcount
        vararg = code.co_varnames[extra] if code.co_flags & inspect.CO_VARARGS else None
        if code.co_flags & inspect.CO_VARARGS:
            extra += 1
        varkw = code.co_varnames[extra] if code.co_flags & inspect.CO_VARKEYWORDS else None
        if bound and names:
            names = names[1:]
        out: set[str] = set()
        starred_at: int | None = None
        for i, arg in enumerate(node.args):
            if isinstance(arg, ast.Starred):
                starred_at = i if starred_at is None else starred_at
                arg = arg.value
            if not self.is_tainted(arg):
                continue
            if starred_at is not None:  # positions unknown from here on
                out.update(names[starred_at:])
                if vararg:
                    out.add(vararg)
            elif i < len(names):
                out.add(names[i])
            elif vararg:
                out.add(vararg)
        for kw in node.keywords:
            if not self.is_tainted(kw.value):
                continue
            if kw.arg is None:  # **mapping: any parameter not given by position
                out.update(names[len(node.args) :], kwonly)
                if varkw:
                    out.add(varkw)
                continue
            if kw.arg in names or kw.arg in kwonly:
                out.add(kw.arg)  # type: ignore[arg-type]
            elif varkw:
                out.add(varkw)
        return frozenset(out)

    # -- resolution --------------------------------------------------------------------

    def resolve(self, expr: ast.AST) -> Any:
        """What `expr` is: ("obj", x), ("inst", cls), ("bound", fn, selfarg), ("unbound", fn,
        cls), ("const", v), ("prop", descriptor, cls), ("sysmodules", attr) or None."""
        if isinstance(expr, ast.Constant):
            return ("const", expr.value)
        if isinstance(expr, ast.Name):
            name = expr.id
            if name == self.selfname and self.selfarg is not None:
                return self.selfarg
            if name in self.typed:
                return self.typed[name]
            if name in self.localnames:
                return None
            if name in self.cells:
                return ("obj", self.cells[name])
            obj = _lookup_global(self.glb, name)
            if obj is None and name not in self.glb:
                return None
            return ("obj", obj)
        if isinstance(expr, ast.Attribute):
            if (
                isinstance(expr.value, ast.Call)
                and isinstance(expr.value.func, ast.Name)
                and expr.value.func.id == "super"
            ):
                return self.resolve_super(expr.attr)
            base = self.resolve(expr.value)
            if base is None:
                return None
            return self.attribute(base, expr.attr)
        if isinstance(expr, ast.Call):
            callee = self.resolve(expr.func)
            if callee is not None and callee[0] == "obj" and isinstance(callee[1], type):
                if callee[1] in (type, super, getattr):
                    return None
                return ("inst", callee[1])
            return None
        return None

    def attribute(self, base: Any, attr: str) -> Any:
        kind = base[0]
        if kind == "obj":
            obj = base[1]
            if isinstance(obj, types.ModuleType):
                if attr in vars(obj):
                    return ("obj", vars(obj)[attr])
                return None
            if isinstance(obj, type):
                found = self.an.lookup(obj, attr)
                if found is None:
                    return None
                if isinstance(found, classmethod):
                    return ("bound", found.__func__, ("obj", obj))
                if isinstance(found, staticmethod):
                    return ("obj", found.__func__)
                if isinstance(found, types.FunctionType):
                    return ("unbound", found, obj)
                return ("obj", found)
            if id(obj) == self.an.sys_modules_id:
                return ("sysmodules", attr)
            if isinstance(obj, BASIC_TYPES):
                try:
                    return ("obj", getattr(obj, attr))
                except Exception:
                    return None
            return None
        if kind == "inst":
            cls = base[1]
            found = self.an.lookup(cls, attr)
            if found is None:
                return None
            if isinstance(found, classmethod):
                return ("bound", found.__func__, ("obj", cls))
            if isinstance(found, staticmethod):
                return ("obj", found.__func__)
            if isinstance(found, types.FunctionType):
                return ("bound", found, ("inst", cls))
            if isinstance(found, property):
                return ("prop", found, cls)
            if isinstance(found, functools.cached_property):
                return ("prop", found, cls)
            if _is_c_callable(found):
                return ("obj", found)
            return None
        return None

    def resolve_super(self, attr: str) -> Any:
        if self.selfarg is None or not isinstance(self.owner, type):
            return None
        cls = self.selfarg[1]
        if not isinstance(cls, type):
            return None
        got = self.an.super_lookup(cls, self.owner, attr)
        if got is None:
            return None
        base, found = got
        if isinstance(found, classmethod):
            return ("bound", found.__func__, ("obj", cls))
        if isinstance(found, staticmethod):
            return ("obj", found.__func__)
        if isinstance(found, types.FunctionType):
            return ("bound", found, self.selfarg)
        if base is object:
            return None
        return ("obj", found)

    # -- walking -----------------------------------------------------------------------

    def run(self) -> Result | str:
        for sub in self.an.walk(self.node):
            res: Result | str = None
            if isinstance(sub, ast.Call):
                res = self.call(sub)
            elif isinstance(sub, ast.Subscript) and self.is_tainted(sub.slice):
                base = self.resolve(sub.value)
                if base is not None and base[0] == "obj" and id(base[1]) == self.an.sys_modules_id:
                    res = ("sys.modules lookup", ())
            elif isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Load):
                res = self.property_read(sub)
            elif isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store):
                res = self.attribute_store(sub)
            if isinstance(res, tuple):
                return res
        return None

    def property_read(self, sub: ast.Attribute) -> Result | str:
        if not (isinstance(sub.value, ast.Name) and sub.value.id == self.selfname):
            return None
        got = self.resolve(sub)
        if got is None or got[0] != "prop":
            return None
        prop = got[1]
        fget = prop.fget if isinstance(prop, property) else prop.func
        if isinstance(fget, types.FunctionType):
            return self.an.function(fget, ("inst", got[2]), self.depth - 1)
        return None

    def attribute_store(self, sub: ast.Attribute) -> Result | str:
        if not (isinstance(sub.value, ast.Name) and sub.value.id == self.selfname):
            return None
        if self.selfarg is None or self.selfarg[0] != "inst":
            return None
        cls = self.selfarg[1]
        found = self.an.lookup(cls, sub.attr)
        if isinstance(found, property) and isinstance(found.fset, types.FunctionType):
            return self.an.function(found.fset, self.selfarg, self.depth - 1)
        setattr_fn = self.an.lookup(cls, "__setattr__")
        if isinstance(setattr_fn, types.FunctionType) and setattr_fn is not self.fn:
            return self.an.function(setattr_fn, self.selfarg, self.depth - 1)
        return None

    def call(self, node: ast.Call) -> Result | str:
        target = self.resolve(node.func)
        if target is None:
            return None
        kind = target[0]
        depth = self.depth - 1
        if kind == "sysmodules":
            if node.args and self.is_tainted(node.args[0]):
                return ("sys.modules lookup", ())
            return None
        site = (self, node)
        if kind == "bound":
            return self.an.function(target[1], target[2], depth, site)
        if kind == "unbound":
            fn, cls = target[1], target[2]
            first = self.resolve(node.args[0]) if node.args else None
            selfarg = first if first is not None and first[0] == "inst" else ("inst", cls)
            return self.an.function(fn, selfarg, depth, site, bound=False)
        if kind == "inst":
            call = self.an.lookup(target[1], "__call__")
            if isinstance(call, types.FunctionType):
                return self.an.function(call, target, depth, site)
            return None
        if kind == "prop":
            return None
        if kind != "obj":
            return None
        obj = target[1]
        label = self.an.sinks.get(id(obj))
        if label is not None:
            if label in PATH_SINK_LABELS and not self.any_tainted(node):
                return None
            if label in ATTR_SINK_LABELS and self._benign_attr_call(node):
                return None
            if label in CODE_SINK_LABELS and not self.any_tainted(node):
                return None
            return (label, ())
        if isinstance(obj, (types.ModuleType, *BASIC_TYPES)):
            return None
        return self.an.call_object(obj, depth, site=site)

    def is_const(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self.is_const(e) for e in node.elts)
        if isinstance(node, ast.Name) and node.id in self.const_names:
            return True
        if isinstance(node, ast.JoinedStr):
            return all(
                isinstance(v, ast.Constant)
                or (isinstance(v, ast.FormattedValue) and self.is_const(v.value))
                for v in node.values
            )
        if isinstance(node, (ast.Name, ast.Attribute)):
            return _const_value(self.resolve(node))
        return False

    def all_const(self, node: ast.Call) -> bool:
        if any(isinstance(a, ast.Starred) for a in node.args):
            return False
        if any(k.arg is None for k in node.keywords):
            return False
        return all(self.is_const(a) for a in node.args) and all(
            self.is_const(k.value) for k in node.keywords
        )

    def any_tainted(self, node: ast.Call) -> bool:
        return any(self.is_tainted(a) for a in node.args) or any(
            self.is_tainted(k.value) for k in node.keywords
        )

    def _benign_attr_call(self, node: ast.Call) -> bool:
        if len(node.args) < 2:
            return True
        if not self.is_tainted(node.args[1]):
            return True
        first = node.args[0]
        return isinstance(first, ast.Name) and first.id == self.selfname


def _param_names(args: ast.arguments) -> list[str]:
    names = [a.arg for a in list(args.posonlyargs) + list(args.args) + list(args.kwonlyargs)]
    if args.vararg:
        names.append(args.vararg.arg)
    if args.kwarg:
        names.append(args.kwarg.arg)
    return names


def _const_value(got: Any) -> bool:
    if got is None:
        return False
    if got[0] == "const":
        return True
    return got[0] == "obj" and isinstance(got[1], BASIC_TYPES)


def _names(target: ast.AST) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _names(elt)
    elif isinstance(target, ast.Starred):
        yield from _names(target.value)


def resolve_dotted(dotted: str, import_missing: bool) -> Any:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        modname = ".".join(parts[:i])
        mod = sys.modules.get(modname)
        if mod is None and import_missing:
            try:
                mod = importlib.import_module(modname)
            except Exception:
                mod = None
        if mod is None:
            continue
        obj: Any = mod
        try:
            for part in parts[i:]:
                obj = inspect.getattr_static(obj, part)
        except AttributeError:
            return None
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        return obj
    return None


# ---------------------------------------------------------------------------------------
# Worker: import one group of top-level modules, enumerate names, judge them.


def iter_modules(top: str, deadline: float, stats: dict[str, int]) -> Iterator[types.ModuleType]:
    queue = [top]
    seen: set[str] = set()
    while queue:
        name = queue.pop(0)
        if name in seen or name in SKIP_MODULES:
            continue
        seen.add(name)
        if time.monotonic() > deadline:
            stats["modules_skipped_budget"] += 1
            continue
        mod = guarded_import(name, stats)
        if mod is None:
            continue
        yield mod
        path = getattr(mod, "__path__", None)
        if path is None:
            continue
        try:
            children = sorted(pkgutil.iter_modules(list(path), name + "."), key=lambda m: m.name)
        except Exception:
            continue
        for child in children:
            last = child.name.rsplit(".", 1)[-1]
            if last in SKIP_PARTS or last.startswith("test_") or last.endswith("_test"):
                continue
            queue.append(child.name)


def guarded_import(name: str, stats: dict[str, int]) -> types.ModuleType | None:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 240)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(name)
        stats["modules_imported"] += 1
        return mod
    except _Timeout:
        stats["modules_timeout"] += 1
    except BaseException:
        stats["modules_failed"] += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return None


def canonical(obj: Any) -> tuple[str, str] | None:
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if not isinstance(mod, str) or not isinstance(qual, str) or "<" in qual:
        return None
    return mod, qual


def _plain(module: str) -> str:
    parts = [p.lstrip("_") for p in module.split(".")]
    if parts[0] == "posix":
        parts[0] = "os"
    return ".".join(parts)


def is_alias_home(module: str, canonical_module: str) -> bool:
    """Record `module.name` for an object defined in `canonical_module` only where a pickle
    plausibly names it: a package that re-exports its submodule's names (`torch.nn` for
    `torch.nn.modules.linear`) or the public twin of a private module (`os` for `posix`,
    `io` for `_io`, `numpy.core.multiarray` for `numpy._core.multiarray`)."""
    if canonical_module.startswith(module + "."):
        return True
    plain, canon = _plain(module), _plain(canonical_module)
    return plain == canon or canon.startswith(plain + ".")


def group_of(module: str, groups: dict[str, str]) -> str | None:
    return groups.get(module.split(".")[0])


class Collector:
    def __init__(self, group: str, groups: dict[str, str]) -> None:
        self.group = group
        self.groups = groups
        # (module, qualname) -> (kind, object, owner class or None)
        self.names: dict[tuple[str, str], tuple[str, Any, Any]] = {}

    def mine(self, module: str) -> bool:
        return group_of(module, self.groups) == self.group

    def add_module(self, mod: types.ModuleType) -> None:
        modname = mod.__name__
        try:
            items = sorted(vars(mod).items())
        except Exception:
            return
        for attr, obj in items:
            if attr.startswith("__") and attr.endswith("__"):
                continue
            if isinstance(obj, types.ModuleType):
                continue
            canon = canonical(obj) if isinstance(obj, type) or callable(obj) else None
            if isinstance(obj, type):
                if canon is None or not self.mine(canon[0]):
                    continue
                if (
                    canon != (modname, attr)
                    and not is_alias_home(modname, canon[0])
                    and not modname.startswith(canon[0] + ".")
                ):
                    continue
                self.add_class(modname, attr, obj, canon == (modname, attr))
            elif callable(obj):
                if canon is not None and not self.mine(canon[0]):
                    continue
                if (
                    canon is not None
                    and canon != (modname, attr)
                    and not is_alias_home(modname, canon[0])
                    and not modname.startswith(canon[0] + ".")
                ):
                    continue
                if canon is None and not self.mine(type(obj).__module__ or ""):
                    continue
                self.names.setdefault((modname, attr), ("function", obj, None))
            else:
                if isinstance(obj, enum.Enum) or (
                    not isinstance(obj, BASIC_TYPES) and self.mine(type(obj).__module__ or "")
                ):
                    self.names.setdefault((modname, attr), ("value", obj, None))

    def add_class(self, modname: str, qual: str, cls: type, definition: bool) -> None:
        self.names.setdefault((modname, qual), ("class", cls, None))
        if not definition:
            return
        try:
            members = sorted(vars(cls).items())
        except Exception:
            return
        for attr, obj in members:
            if attr.startswith("__") and attr.endswith("__"):
                continue
            if isinstance(obj, type):
                if getattr(obj, "__qualname__", None) == f"{cls.__qualname__}.{attr}":
                    self.add_class(modname, f"{qual}.{attr}", obj, True)
                continue
            if isinstance(obj, enum.Enum) and isinstance(cls, enum.EnumMeta):
                self.names.setdefault((modname, f"{qual}.{attr}"), ("value", obj, None))
                continue
            if isinstance(obj, (types.FunctionType, staticmethod, classmethod)) or _is_c_callable(
                obj
            ):
                self.names.setdefault((modname, f"{qual}.{attr}"), ("method", obj, cls))
        if isinstance(cls, enum.EnumMeta):
            for member_name, member in cls.__members__.items():
                self.names.setdefault((modname, f"{qual}.{member_name}"), ("value", member, None))


def judge(an: Analyser, mod: types.ModuleType | None, kind: str, obj: Any, owner: Any) -> list[str]:
    depth = MAX_DEPTH
    if kind == "value":
        return ["-", "safe", "unknown", "unknown"]
    if kind == "class":
        out = [
            render(an.construct(obj, depth)),
            render(an.class_call(obj, depth)),
            render(an.setstate(obj, depth)),
            render(an.items(obj, depth)),
        ]
        return out
    name = getattr(obj, "__name__", "") or ""
    if name.startswith("__pyx_unpickle_") and mod is not None:
        target = vars(mod).get(name[len("__pyx_unpickle_") :])
        if not isinstance(target, type):
            return ["-", "unknown", "-", "-"]
        res = an.construct(target, depth)
        if res is None:
            res = an.setstate(target, depth)
        return ["-", render(res), "-", "-"]
    if kind == "method" and owner is not None:
        if isinstance(obj, classmethod):
            res = an.call_object(obj.__func__, depth, ("obj", owner))
        elif isinstance(obj, staticmethod):
            res = an.call_object(obj.__func__, depth)
        elif isinstance(obj, types.FunctionType):
            label = an.sinks.get(id(obj))
            res = (label, ()) if label else an.function(obj, ("inst", owner), depth)
        else:
            res = an.call_object(obj, depth)
    else:
        res = an.call_object(obj, depth)
    return ["-", render(res), "-", "-"]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    sys.setrecursionlimit(10000)
    group = spec["group"]
    groups = spec["groups"]
    import_deadline = started + spec["import_budget"]
    stats: collections.Counter[str] = collections.Counter()
    modules: list[types.ModuleType] = []
    for top in spec["tops"]:
        modules.extend(iter_modules(top, import_deadline, stats))
    t_import = time.monotonic() - started
    # shims that forward every name of another module (numpy 1.x paths on numpy 2)
    shims: list[tuple[str, types.ModuleType]] = []
    for mod in list(modules):
        if mod.__name__.startswith("numpy.core.") or mod.__name__ == "numpy.core":
            target = sys.modules.get(mod.__name__.replace("numpy.core", "numpy._core", 1))
            if target is not None:
                shims.append((mod.__name__, target))
    collector = Collector(group, groups)
    for mod in modules:
        collector.add_module(mod)
    for shim, target in shims:
        sub = Collector(group, groups)
        sub.add_module(target)
        for (_, qual), entry in sub.names.items():
            if "." not in qual:
                collector.names.setdefault((shim, qual), entry)
    an = Analyser()
    rows: list[list[str]] = []
    counted = 0
    for (modname, qual), (kind, obj, owner) in sorted(collector.names.items()):
        mod = sys.modules.get(modname)
        try:
            verdicts = judge(an, mod, kind, obj, owner)
        except Exception:
            stats["names_failed"] += 1
            verdicts = ["unknown"] * 4
        counted += 1
        if kind == "class" or kind == "value":
            pass
        if all(v in {"unknown", "-"} for v in verdicts):
            stats["names_all_unknown"] += 1
            continue
        if kind == "method":
            # Methods are kept where a pickle names them by qualname (static and class
            # methods); plain methods are left out (absent = unknown), which keeps the
            # files small. The scanner judges `getattr(obj, name)` by the object.
            if not isinstance(obj, (staticmethod, classmethod)):
                stats["methods_omitted"] += 1
                continue
            kind = "function"
        # the first hop of a path is the name's own code: name it by its last part
        own = f" via {modname}.{qual}."
        verdicts = [v.replace(own, " via ", 1) for v in verdicts]
        rows.append([modname, qual, kind, *verdicts])
    stats["truncated_calls"] = an.truncated
    stats["bytecode_functions"] = an.bytecode
    versions = {}
    for dist in spec["dists"]:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except Exception:
            versions[dist] = "?"
    return {
        "group": group,
        "rows": rows,
        "stats": dict(stats),
        "versions": versions,
        "tops": sorted({r[0].split(".")[0] for r in rows}),
        "seconds_import": round(t_import, 1),
        "seconds": round(time.monotonic() - started, 1),
    }


def run_worker_main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    sys.stderr = sys.stdout
    result = worker(spec)
    Path(out_path).write_text(json.dumps(result))
    os._exit(0)


# ---------------------------------------------------------------------------------------
# Main: plan groups, run workers, write files.


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def plan_groups(only: set[str] | None) -> list[dict[str, Any]]:
    stdlib = sorted(
        n
        for n in set(sys.stdlib_module_names) | set(sys.builtin_module_names)
        if n not in SKIP_STDLIB
    )
    dist_tops: dict[str, set[str]] = collections.defaultdict(set)
    for top, dists in importlib.metadata.packages_distributions().items():
        if not top.isidentifier() or top.startswith("_distutils") or top in stdlib:
            continue
        for dist in dists:
            if norm(dist) not in SKIP_DISTS:
                dist_tops[norm(dist)].add(top)
    # merge distributions that share a top-level name (namespace packages)
    parent: dict[str, str] = {d: d for d in dist_tops}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    owner: dict[str, str] = {}
    for dist in sorted(dist_tops):
        for top in sorted(dist_tops[dist]):
            if top in owner:
                parent[find(dist)] = find(owner[top])
            else:
                owner[top] = dist
    members: dict[str, list[str]] = collections.defaultdict(list)
    for dist in sorted(dist_tops):
        members[find(dist)].append(dist)
    groups = [{"group": "stdlib", "dists": [], "tops": stdlib}]
    for root, dists in sorted(members.items()):
        tops = sorted(set().union(*(dist_tops[d] for d in dists)))
        groups.append({"group": root, "dists": sorted(dists), "tops": tops})
    if only:
        groups = [g for g in groups if g["group"] in only]
    return groups


HEAVY_FIRST = ["transformers", "torch", "stdlib", "diffusers", "jax", "sympy", "scipy",
               "statsmodels", "pandas", "scikit-learn", "keras", "matplotlib", "numpy"]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (pickle_knowledge/)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--only", nargs="*", help="only these groups (distribution names)")
    ap.add_argument(
        "--budget", type=float, default=1800.0, help="seconds per group before it is dropped"
    )
    ap.add_argument(
        "--import-budget",
        type=float,
        default=600.0,
        help="seconds of imports per group (a safety net: output depends on it if reached)",
    )
    ap.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        run_worker_main(*args.worker)
        return 0
    started = time.monotonic()
    groups = plan_groups(set(args.only) if args.only else None)
    top_to_group = {top: g["group"] for g in groups for top in g["tops"]}
    if args.only:  # keep the full map so that aliases are attributed correctly
        top_to_group = {top: g["group"] for g in plan_groups(None) for top in g["tops"]}
    order = {name: i for i, name in enumerate(HEAVY_FIRST)}
    groups.sort(key=lambda g: (order.get(g["group"], len(order)), g["group"]))
    env = dict(os.environ)
    env.update(
        {
            "PYTHONWARNINGS": "ignore",
            "MPLBACKEND": "Agg",
            "KERAS_BACKEND": "torch",
            "JAX_PLATFORMS": "cpu",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "DISPLAY": "",
        }
    )
    tmp = Path(tempfile.mkdtemp(prefix="pickle-kb-"))
    frozen = tmp / "refresh_pickle_knowledge.py"  # workers run this copy, not the live file
    frozen.write_bytes(Path(__file__).read_bytes())
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}

    def run(group: dict[str, Any]) -> None:
        name = group["group"]
        spec = dict(
            group, groups=top_to_group, budget=args.budget, import_budget=args.import_budget
        )
        spec_path = tmp / f"{name}.spec.json"
        out_path = tmp / f"{name}.out.json"
        spec_path.write_text(json.dumps(spec))
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, str(frozen), "--out", str(args.out), "--worker",
                 str(spec_path), str(out_path)],
                env=env, timeout=args.budget, capture_output=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            failures[name] = "timeout"
            print(f"  {name}: timeout", flush=True)
            return
        if proc.returncode != 0 or not out_path.exists():
            failures[name] = f"exit {proc.returncode}"
            print(f"  {name}: failed (exit {proc.returncode})", flush=True)
            return
        results[name] = json.loads(out_path.read_text())
        print(f"  {name}: {len(results[name]['rows'])} names, "
              f"{time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip

    print(f"{len(groups)} groups, {args.jobs} workers", flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(run, groups))
    write_output(args.out, groups, results, failures, only=bool(args.only))
    summary(results, failures)
    spot_checks(args.out)
    print(f"total {time.monotonic() - started:.0f} s", flush=True)
    return 0


def write_output(
    out: Path, groups: list[dict[str, Any]], results: dict[str, Any], failures: dict[str, str],
    only: bool,
) -> None:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, str] = {}
    if only and (out / "index.tsv").exists():
        for line in (out / "index.tsv").read_text().splitlines():
            if line and not line.startswith("#"):
                top, stem = line.split("\t")
                index[top] = stem
    else:
        for old in out.glob("*.tsv"):
            old.unlink()
    for group in groups:
        name = group["group"]
        res = results.get(name)
        if res is None or not res["rows"]:
            continue
        lines = [f"# package {dist} {ver}" for dist, ver in sorted(res["versions"].items())]
        if name == "stdlib":
            lines.append(f"# package python {sys.version.split()[0]}")
        lines.append(f"# generator {GENERATOR}")
        lines.append("# module\tqualname\tkind\tconstruct\tcall\tsetstate\titems")
        rows = sorted({tuple(r) for r in res["rows"]})
        lines += ["\t".join(r) for r in rows]
        (out / f"{name}.tsv").write_text("\n".join(lines) + "\n")
        for top in res["tops"]:
            index[top] = name
    header = [
        "# top-level module -> knowledge file (<stem>.tsv); generated by",
        "# scripts/refresh_pickle_knowledge.py, see docs/pickle.md",
    ]
    body = [f"{top}\t{stem}" for top, stem in sorted(index.items())]
    (out / "index.tsv").write_text("\n".join(header + body) + "\n")


def summary(results: dict[str, Any], failures: dict[str, str]) -> None:
    print("\ngroup                       names  imp/fail  " + "  ".join(
        f"{u:>22}" for u in USES) + "   seconds")  # fmt: skip
    total: dict[str, collections.Counter[str]] = {u: collections.Counter() for u in USES}
    total_names = 0
    for name in sorted(results):
        res = results[name]
        counts = {u: collections.Counter() for u in USES}
        for row in res["rows"]:
            for u, v in zip(USES, row[3:], strict=True):
                counts[u][v.split(":")[0]] += 1
                total[u][v.split(":")[0]] += 1
        total_names += len(res["rows"])
        st = res["stats"]
        cells = "  ".join(
            f"{counts[u]['safe']:>8}/{counts[u]['sink']:>5}/{counts[u]['unknown']:>5}" for u in USES
        )
        print(f"{name:<26} {len(res['rows']):>6}  {st.get('modules_imported', 0):>4}/"
              f"{st.get('modules_failed', 0) + st.get('modules_timeout', 0):<4}  {cells}"
              f"   {res['seconds_import']:>5}/{res['seconds']:<5}")  # fmt: skip
    cells = "  ".join(
        f"{total[u]['safe']:>8}/{total[u]['sink']:>5}/{total[u]['unknown']:>5}" for u in USES
    )
    print(f"{'TOTAL':<26} {total_names:>6}             {cells}")
    print("(per use: safe/sink/unknown)")
    for name, why in sorted(failures.items()):
        print(f"FAILED {name}: {why}")


SPOT_CHECKS = [
    ("torch.nn.modules.module", "Module", "setstate", "safe"),
    ("argparse", "Namespace", "call", "safe"),
    ("pathlib", "PosixPath", "call", "safe"),
    ("collections", "OrderedDict", "call", "safe"),
    ("numpy._core.multiarray", "_reconstruct", "call", "safe"),
    ("numpy.core.multiarray", "_reconstruct", "call", "safe"),
    ("pandas._libs.internals", "_unpickle_block", "call", "safe"),
    ("torch._utils", "_rebuild_tensor_v2", "call", "safe"),
    ("copyreg", "_reconstructor", "call", "safe"),
    ("statsmodels.base.wrapper", "ResultsWrapper", "setstate", "safe"),
    ("numpy", "dtype", "call", "safe"),
    ("pandas.core.indexes.base", "_new_Index", "call", "safe"),
    ("pandas.core.internals.managers", "BlockManager", "setstate", "safe"),
    ("scipy.sparse._csr", "csr_matrix", "setstate", "safe"),
    ("sklearn.linear_model._base", "LinearRegression", "setstate", "safe"),
    ("transformers.training_args", "TrainingArguments", "setstate", "safe"),
    ("enum", "Enum", "call", "safe"),
    ("numpy", "load", "call", "sink"),
    ("torch.serialization", "load", "call", "sink"),
    ("pandas", "read_pickle", "call", "sink"),
    ("numpy.testing._private.utils", "runstring", "call", "sink"),
    ("builtins", "getattr", "call", "sink"),
    ("os", "system", "call", "sink"),
    ("builtins", "eval", "call", "sink"),
    ("subprocess", "Popen", "call", "sink"),
    ("numpy", "save", "call", "sink"),
    ("shutil", "rmtree", "call", "sink"),
    ("pickle", "loads", "call", "sink"),
]


def spot_checks(out: Path) -> None:
    print("\nspot checks:")
    index: dict[str, str] = {}
    path = out / "index.tsv"
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            top, stem = line.split("\t")
            index[top] = stem
    cache: dict[str, dict[tuple[str, str], list[str]]] = {}
    for module, qual, use, want in SPOT_CHECKS:
        stem = index.get(module.split(".")[0])
        if stem is None:
            print(f"  ? {module}.{qual}: not covered")
            continue
        if stem not in cache:
            table: dict[tuple[str, str], list[str]] = {}
            for line in (out / f"{stem}.tsv").read_text().splitlines():
                if line.startswith("#"):
                    continue
                parts = line.split("\t")
                table[(parts[0], parts[1])] = parts[2:]
            cache[stem] = table
        row = cache[stem].get((module, qual))
        got = row[1 + USES.index(use)] if row else "absent"
        ok = got.split(":")[0] == want
        print(f"  {'ok ' if ok else 'BAD'} {module}.{qual} {use}: {got}")


if __name__ == "__main__":
    sys.exit(main())
