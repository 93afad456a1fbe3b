"""Pickles the test fixtures do not have: calls to callables missing from common deny-lists.

Each calls a function that runs code, spawns or fetches, as in published scanner bypasses,
with a harmless argument. The bytes are assembled here because the modules (pandas, pip)
need not be importable to name them; nothing is ever unpickled.
"""

from __future__ import annotations

import pickle


def call(module: str, name: str, args: tuple[object, ...]) -> bytes:
    """A protocol-2 pickle that calls `module.name(*args)` through GLOBAL + REDUCE."""
    head = b"\x80\x02c" + f"{module}\n{name}\n".encode()
    arguments = pickle.dumps(args, protocol=2)[2:-1]  # without its PROTO and STOP
    return head + arguments + b"R."


#: name -> (module, callable, harmless arguments).
UNLISTED_CALLABLES: dict[str, tuple[str, str, tuple[object, ...]]] = {
    "spawnv_passfds": ("multiprocessing.util", "spawnv_passfds", ("/bin/true", ["true"], ())),
    "pandas_read_csv": ("pandas.io.parsers.readers", "read_csv", ("http://127.0.0.1:9/x.csv",)),
    "pandas_read_pickle": ("pandas.io.pickle", "read_pickle", ("http://127.0.0.1:9/x.pkl",)),
    "urlopen": ("urllib.request", "urlopen", ("http://127.0.0.1:9/",)),
    "numpy_runstring": ("numpy.testing._private.utils", "runstring", ("print('hi')", {})),
    "pty_spawn": ("pty", "spawn", ("true",)),
    "timeit": ("timeit", "timeit", ("print('hi')",)),
    "pip_main": ("pip", "main", (["--version"],)),
    "runpy_run_path": ("runpy", "run_path", ("/dev/null",)),
    "torch_hub_load": ("torch.hub", "load", ("example/repo", "model")),
}
