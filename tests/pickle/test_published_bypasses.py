"""The published bypasses of the peer scanners, rebuilt at test time.

Each case below is one published bypass of picklescan, modelscan or fickling (GHSA/CVE
advisories and issues of 2025-2026) or nullifAI (ReversingLabs, February 2025). Its builder's
docstring records the advisory and the trick. For each:

- where practical a harmless twin goes through the real loader (`pickle.loads`, `torch.load`)
  by the same path, proving the loader reaches it: its payload is a data marker
  (`builtins.str('marker')`, an `OrderedDict`, a module `mw_probe` that does not exist), or
  the twin only resolves the bypass's global, never calling it;
- the malicious version (`os.system('true')`, `print`, never loaded) must be flagged by
  modelward at medium or worse, and at critical where it is code execution at load.

Container-level bypasses (picklescan's ZIP flag bit, local file name and CRC tricks,
modelscan #354's corrupt entry, 7z) are rebuilt by tests/formats/test_container_parity.py
and tests/formats/test_sevenzip.py; `CONTAINER_BYPASSES` names the case there and a test
keeps the reference alive. The benchmark (bench/scan/evasions.py) loads `BYPASSES` from this
module to put the same bytes in the scanner corpus.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import marshal
import pickle
import pickletools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import modelward
from fixtures.pickles import (
    APPENDS,
    BUILD,
    DICT,
    EMPTY_DICT,
    EMPTY_LIST,
    MARK,
    MEMOIZE,
    NONE,
    POP,
    REDUCE,
    SETITEM,
    STOP,
    TUPLE1,
    TUPLE2,
    global_,
    proto,
    stack_global,
    text,
)
from modelward.findings import ScanResult, Severity

REPO = Path(__file__).resolve().parents[2]
MARKER = "mw-bypass-marker"


def args(*values: object) -> bytes:
    """Opcodes pushing `tuple(values)`, without PROTO, STOP or memo writes (which would
    collide with the MEMOIZE indices the hand-written pickles use)."""
    return pickletools.optimize(pickle.dumps(tuple(values), protocol=2))[2:-1]


def binget(index: int) -> bytes:
    return b"h" + bytes([index])


def call(module: str, name: str, *values: object) -> bytes:
    """Protocol 4: `module.name(*values)` through STACK_GLOBAL (dotted names allowed)."""
    return proto(4) + stack_global(module, name) + args(*values) + REDUCE + STOP


def resolve(module: str, name: str) -> object:
    """What the real unpickler finds for `module.name`: the twin of a blocklist bypass (the
    global is resolved as `pickle.loads` resolves it, never called)."""
    return pickle.loads(proto(4) + stack_global(module, name) + STOP)


# -- the catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bypass:
    """One published bypass. `build()` gives the malicious bytes (never loaded)."""

    build: Callable[[], bytes]
    #: Code execution at load: modelward must say critical (else medium or worse).
    critical: bool = True
    #: The file name the bytes are scanned under (the bypass may depend on it).
    name: str = "model.pkl"
    #: The harmless twin: builds, loads with the real loader and checks the marker.
    twin: Callable[[Path], None] | None = None
    #: A module the real loader must be able to import for `resolve` twins.
    needs: str | None = None

    @property
    def doc(self) -> str:
        return " ".join((self.build.__doc__ or "").split())


def _blocklist(module: str, name: str, *values: object) -> Callable[[], bytes]:
    def build() -> bytes:
        return call(module, name, *values)

    return build


def _documented(doc: str, build: Callable[[], bytes]) -> Callable[[], bytes]:
    build.__doc__ = doc
    return build


def _resolving(module: str, name: str) -> Callable[[Path], None]:
    def twin(tmp_path: Path) -> None:
        del tmp_path
        found = resolve(module, name)
        assert callable(found), (module, name, found)

    return twin


def _global_call(
    doc: str, module: str, name: str, *values: object, critical: bool = True
) -> Bypass:
    return Bypass(
        _documented(doc, _blocklist(module, name, *values)),
        critical=critical,
        twin=_resolving(module, name),
        needs=module,
    )


# --- picklescan: names missing from the blocklist -----------------------------------------------

PICKLESCAN = "https://github.com/mmaitre314/picklescan/security/advisories/"

BLOCKLIST_CASES: dict[str, Bypass] = {
    "picklescan-CVE-2025-1716-pip-main": _global_call(
        f"CVE-2025-1716 / GHSA-655q-fx9r-782v ({PICKLESCAN}GHSA-655q-fx9r-782v): `pip.main` was"
        " not an unsafe global; `pip.main(['install', ...])` installs and runs any package.",
        "pip",
        "main",
        ["--version"],
    ),
    "picklescan-CVE-2025-10157-asyncio-submodule": _global_call(
        "CVE-2025-10157 (JFrog, fixed by https://github.com/mmaitre314/picklescan/pull/50):"
        " `asyncio` was blocked by exact module name, so its submodule"
        " `asyncio.unix_events._UnixSubprocessTransport._start` (a dotted protocol 4 name)"
        " passed; called with a shell command it spawns a process.",
        "asyncio.unix_events",
        "_UnixSubprocessTransport._start",
        None,
        "true",
        True,
        None,
        None,
        None,
        0,
    ),
    "picklescan-GHSA-4whj-rm5r-c2v8-torch-bottleneck": Bypass(
        _documented(
            f"GHSA-4whj-rm5r-c2v8 ({PICKLESCAN}GHSA-4whj-rm5r-c2v8):"
            " `torch.utils.bottleneck.__main__.run_autograd_prof(code, globs)` exec()s its"
            " code argument. (No twin: torch 2.13 no longer ships torch.utils.bottleneck.)",
            _blocklist("torch.utils.bottleneck.__main__", "run_autograd_prof", "print('hi')", {}),
        )
    ),
    "picklescan-GHSA-xp4f-hrf8-rxw7-ensurepip": _global_call(
        f"GHSA-xp4f-hrf8-rxw7 ({PICKLESCAN}GHSA-xp4f-hrf8-rxw7): `ensurepip._run_pip(args)`"
        " runs pip, which runs setup code of what it installs.",
        "ensurepip",
        "_run_pip",
        ["--version"],
    ),
    "picklescan-GHSA-p9w7-82w4-7q8m-lib2to3-make-label": _global_call(
        f"GHSA-p9w7-82w4-7q8m ({PICKLESCAN}GHSA-p9w7-82w4-7q8m):"
        " `lib2to3.pgen2.pgen.ParserGenerator.make_label(self, c, label)` eval()s a quoted"
        " label.",
        "lib2to3.pgen2.pgen",
        "ParserGenerator.make_label",
        None,
        None,
        "\"__import__('os').system('true')\"",
    ),
    "picklescan-GHSA-f54q-57x4-jg88-lib2to3-grammar-loads": _global_call(
        f"GHSA-f54q-57x4-jg88 ({PICKLESCAN}GHSA-f54q-57x4-jg88):"
        " `lib2to3.pgen2.grammar.Grammar.loads(self, pkl)` unpickles its argument: a nested"
        " pickle behind a name that is not `pickle.loads`.",
        "lib2to3.pgen2.grammar",
        "Grammar.loads",
        None,
        b"cos\nsystem\n(S'true'\ntR.",
    ),
    "picklescan-GHSA-m869-42cg-3xwr-idlelib-runcode": _global_call(
        f"GHSA-m869-42cg-3xwr ({PICKLESCAN}GHSA-m869-42cg-3xwr):"
        " `idlelib.run.Executive.runcode(self, code)` exec()s code.",
        "idlelib.run",
        "Executive.runcode",
        None,
        "print('hi')",
    ),
    "picklescan-GHSA-3gf5-cxq9-w223-idlelib-pyshell": _global_call(
        f"GHSA-3gf5-cxq9-w223 / GHSA-j343-8v2j-ff7w ({PICKLESCAN}GHSA-3gf5-cxq9-w223):"
        " `idlelib.pyshell.ModifiedInterpreter.runcode/runcommand` exec code.",
        "idlelib.pyshell",
        "ModifiedInterpreter.runcommand",
        None,
        "print('hi')",
    ),
    "picklescan-GHSA-6w4w-5w54-rjvr-idlelib-autocomplete": _global_call(
        f"GHSA-6w4w-5w54-rjvr ({PICKLESCAN}GHSA-6w4w-5w54-rjvr):"
        " `idlelib.autocomplete.AutoComplete.get_entity(self, name)` eval()s `name`.",
        "idlelib.autocomplete",
        "AutoComplete.get_entity",
        None,
        "__import__('os').system('true')",
    ),
    "picklescan-GHSA-fqq6-7vqf-w3fg-doctest-debug-script": _global_call(
        f"GHSA-fqq6-7vqf-w3fg ({PICKLESCAN}GHSA-fqq6-7vqf-w3fg): `doctest.debug_script(src)`"
        " exec()s the source under pdb.",
        "doctest",
        "debug_script",
        "print('hi')",
    ),
    "picklescan-GHSA-9w88-8rmg-7g2p-cprofile-runctx": _global_call(
        f"GHSA-9w88-8rmg-7g2p ({PICKLESCAN}GHSA-9w88-8rmg-7g2p): `cProfile.runctx(code, g, l)`"
        " (and `cProfile.run`) exec() code under the profiler.",
        "cProfile",
        "runctx",
        "print('hi')",
        {},
        {},
    ),
    "picklescan-GHSA-x696-vm39-cp64-profile-run": _global_call(
        f"GHSA-x696-vm39-cp64 ({PICKLESCAN}GHSA-x696-vm39-cp64): `profile.Profile.run(self, cmd)`"
        " (and `profile.run`) exec code.",
        "profile",
        "run",
        "print('hi')",
    ),
    "picklescan-GHSA-5qwp-399c-mjwf-trace-run": _global_call(
        f"GHSA-5qwp-399c-mjwf / GHSA-g344-hcph-8vgg ({PICKLESCAN}GHSA-5qwp-399c-mjwf):"
        " `trace.Trace.run(self, cmd)` / `runctx` exec code.",
        "trace",
        "Trace.runctx",
        None,
        "print('hi')",
        {},
        {},
    ),
    "picklescan-pr48-code-interactive-interpreter": _global_call(
        "picklescan PR #48 (https://github.com/mmaitre314/picklescan/pull/48):"
        " `code.InteractiveInterpreter.runcode(self, code)` exec()s code.",
        "code",
        "InteractiveInterpreter.runsource",
        None,
        "print('hi')",
    ),
    "picklescan-GHSA-4675-36f9-wf6r-bdb-run": _global_call(
        f"GHSA-4675-36f9-wf6r ({PICKLESCAN}GHSA-4675-36f9-wf6r) and fickling PR #210:"
        " debugger entry points (`bdb.Bdb.run(self, cmd)`, `pdb.run`) exec code.",
        "bdb",
        "Bdb.run",
        None,
        "print('hi')",
    ),
    "picklescan-timeit": _global_call(
        "picklescan PR #49 (https://github.com/mmaitre314/picklescan/pull/49) and fickling"
        " PR #210: `timeit.timeit(stmt)` compiles and exec()s its statement.",
        "timeit",
        "timeit",
        "print('hi')",
    ),
    "picklescan-pydoc-pipepager": _global_call(
        "picklescan PR #49 (https://github.com/mmaitre314/picklescan/pull/49):"
        " `pydoc.pipepager(text, cmd)` runs `cmd` through a shell.",
        "pydoc",
        "pipepager",
        "",
        "true",
    ),
    "picklescan-GHSA-vqmv-47xg-9wpr-venv": _global_call(
        f"GHSA-vqmv-47xg-9wpr ({PICKLESCAN}GHSA-vqmv-47xg-9wpr): package tooling (`venv.create`"
        " with pip, `pip`, `ensurepip`) runs installers.",
        "venv",
        "create",
        "/nonexistent/mw-venv",
        False,
        False,
        False,
        False,
        None,
        True,
    ),
    "picklescan-distutils-write-file": _global_call(
        "CVE-2025-10155/10156 family, fickling PR #210"
        " (https://github.com/trailofbits/fickling/pull/210): `distutils.file_util.write_file"
        "(path, lines)` writes any file (a .pth or shell profile runs later).",
        "distutils.file_util",
        "write_file",
        "/nonexistent/mw.pth",
        ["import os"],
        critical=False,
    ),
    "picklescan-setuptools-spawn": Bypass(
        _documented(
            "picklescan PR #53 (https://github.com/mmaitre314/picklescan/pull/53): setuptools'"
            " vendored distutils helpers (`setuptools._distutils.spawn.spawn(cmd)`) run a"
            " process. No twin: importing setuptools._distutils beside the stdlib distutils"
            " that `distutils-write-file` imports trips setuptools' own import guard.",
            _blocklist("setuptools._distutils.spawn", "spawn", ["true"]),
        )
    ),
    "picklescan-numpy-f2py-getlincoef": _global_call(
        "fickling PR #210 (https://github.com/trailofbits/fickling/pull/210), from picklescan:"
        " `numpy.f2py.crackfortran.getlincoef(e, xset)` eval()s the expression.",
        "numpy.f2py.crackfortran",
        "getlincoef",
        "__import__('os').system('true')",
        {},
    ),
    "picklescan-ctypes-cdll": _global_call(
        "picklescan PR #53 (https://github.com/mmaitre314/picklescan/pull/53): `ctypes.CDLL`"
        " loads a native library, whose constructors run.",
        "ctypes",
        "CDLL",
        "/nonexistent/libmw.so",
    ),
    "picklescan-pty-spawn": _global_call(
        "fickling GHSA-r7v6-mfhq-g3m2 (https://github.com/trailofbits/fickling/security/"
        "advisories/GHSA-r7v6-mfhq-g3m2) and picklescan: `pty.spawn(argv)` runs a process.",
        "pty",
        "spawn",
        "true",
    ),
    "picklescan-smtplib-network": _global_call(
        "picklescan GHSA-hgrh-qx5j-jfwx (network modules: `smtplib`, `http`, `ssl`...):"
        " `smtplib.SMTP(host, port)` opens a connection at load.",
        "smtplib",
        "SMTP",
        "127.0.0.1",
        9,
        critical=False,
    ),
    "picklescan-GHSA-vvpj-8cmc-gx39-pkgutil-resolve-name": _global_call(
        f"GHSA-vvpj-8cmc-gx39 ({PICKLESCAN}GHSA-vvpj-8cmc-gx39), 2026-03: one unblocked"
        " resolver, `pkgutil.resolve_name('os:system')`, returns any blocked function; the"
        " pickle then calls it.",
        "pkgutil",
        "resolve_name",
        "os:system",
    ),
    "picklescan-CVE-2026-56315-imaplib-stream": _global_call(
        "CVE-2026-56315 (picklescan < 1.0.4, https://aithreatalert.com/cve/CVE-2026-56315):"
        " stdlib modules that run commands were unblocked; `imaplib.IMAP4_stream(cmd)` spawns"
        " `cmd` through a shell.",
        "imaplib",
        "IMAP4_stream",
        "true",
    ),
    "picklescan-CVE-2026-56315-uuid": _global_call(
        "CVE-2026-56315 and fickling GHSA-5hwf-rc88-82xm"
        " (https://github.com/trailofbits/fickling/pull/240): `uuid._get_command_stdout(cmd)`"
        " runs a command.",
        "uuid",
        "_get_command_stdout",
        "true",
    ),
    "picklescan-CVE-2026-56315-osx-support": _global_call(
        "CVE-2026-56315 and fickling GHSA-5hwf-rc88-82xm"
        " (https://github.com/trailofbits/fickling/pull/240): `_osx_support._read_output(cmd)`"
        " runs a shell command.",
        "_osx_support",
        "_read_output",
        "true",
    ),
    "picklescan-CVE-2026-56315-aix-support": Bypass(
        _documented(
            "CVE-2026-56315 and fickling GHSA-5hwf-rc88-82xm"
            " (https://github.com/trailofbits/fickling/pull/240): `_aix_support."
            "_read_cmd_output(cmd)` (Python 3.12+) runs a shell command. No twin: Python 3.11"
            " has no such function.",
            _blocklist("_aix_support", "_read_cmd_output", "true"),
        )
    ),
    "picklescan-CVE-2026-56304-logging-filehandler": _global_call(
        "CVE-2026-56304 (picklescan < 1.0.1, https://aithreatalert.com/cve/CVE-2026-56304):"
        " `logging.FileHandler(path)` creates (truncates) a file at load.",
        "logging",
        "FileHandler",
        "/nonexistent/mw.log",
        critical=False,
    ),
    "picklescan-pr74-importlib-import-module": _global_call(
        "picklescan PR #74 (https://github.com/mmaitre314/picklescan/pull/74), 2026-05:"
        " `importlib.import_module` imports any module at load (here `this`, whose import"
        " prints; in the advisory it is chained with getattr to reach `os.system`).",
        "importlib",
        "import_module",
        "this",
    ),
    "fickling-GHSA-m6fh-58r7-x697-posixsubprocess": _global_call(
        "fickling GHSA-m6fh-58r7-x697 (https://github.com/trailofbits/fickling/pull/272),"
        " 2026-05: `_posixsubprocess.fork_exec` spawns a process without `subprocess`.",
        "_posixsubprocess",
        "fork_exec",
        ["true"],
        [b"/bin/true"],
        True,
        (),
        None,
        None,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        False,
        False,
        None,
        None,
        None,
        -1,
        None,
        False,
    ),
    "fickling-GHSA-m6fh-58r7-x697-site-addsitedir": _global_call(
        "fickling GHSA-m6fh-58r7-x697 (https://github.com/trailofbits/fickling/pull/272):"
        " `site.addsitedir(dir)` executes the `import` lines of every .pth file there.",
        "site",
        "addsitedir",
        "/nonexistent/mw-site",
    ),
    "fickling-GHSA-6ggj-6f2q-f7mx-subinterpreters": _global_call(
        "fickling GHSA-6ggj-6f2q-f7mx (https://github.com/trailofbits/fickling/pull/302),"
        " 2026-07: `_xxsubinterpreters.run_string(id, source)` (`_interpreters` on 3.13)"
        " runs Python source in a subinterpreter.",
        "_xxsubinterpreters",
        "run_string",
        0,
        "print('hi')",
    ),
    "fickling-q5qq-mvfm-j35x-submodule-of-blocked-package": _global_call(
        "fickling GHSA-q5qq-mvfm-j35x (https://github.com/trailofbits/fickling/pull/195),"
        " 2026-01: the full dotted module name was compared with the blocklist, so a"
        " submodule of a blocked package passed (here `multiprocessing.util.spawnv_passfds`;"
        " also modelscan #338).",
        "multiprocessing.util",
        "spawnv_passfds",
        b"/bin/true",
        ["true"],
        (),
    ),
    "modelscan-338-collect-env-run": _global_call(
        "modelscan #338 (https://github.com/protectai/modelscan/issues/338), 2026-03, seen on"
        " Hugging Face: `torch.utils.collect_env.run(cmd)` runs a shell command.",
        "torch.utils.collect_env",
        "run",
        "true",
    ),
    "modelscan-338-urlopen": _global_call(
        "modelscan #338 (https://github.com/protectai/modelscan/issues/338):"
        " `urllib.request.urlopen(url)` fetches at load (download, exfiltration).",
        "urllib.request",
        "urlopen",
        "http://127.0.0.1:9/",
        critical=False,
    ),
}


# --- structural tricks: the dangerous global is never named where a scanner looks ---------------


def modelscan_85(module: str = "os", name: str = "system", value: object = "true") -> bytes:
    """modelscan #85 (https://github.com/protectai/modelscan/issues/85): BUILD with a slot state
    sets `numpy.prod.a = 'os'` and `numpy.prod.b = 'system'`; GLOBAL `numpy prod.a` / `prod.b`
    (protocol 5 resolves dotted names) push those strings, PUT/GET move them, and a
    STACK_GLOBAL whose arguments are not literals imports `os.system`."""
    slot = b"V"
    return (
        proto(5)
        + global_("numpy", "prod")
        + NONE
        + MARK
        + slot
        + b"a\n"
        + slot
        + module.encode()
        + b"\n"
        + DICT
        + TUPLE2
        + BUILD
        + NONE
        + MARK
        + slot
        + b"b\n"
        + slot
        + name.encode()
        + b"\n"
        + DICT
        + TUPLE2
        + BUILD
        + POP
        + global_("numpy", "prod.a")
        + b"p0\n"
        + global_("numpy", "prod.b")
        + b"p1\n"
        + POP
        + POP
        + b"g0\ng1\n"
        + b"\x93"
        + args(value)
        + REDUCE
        + STOP
    )


def modelscan_330(key: str = "eval", value: object = "__import__('os').system('true')") -> bytes:
    """modelscan #330 (https://github.com/protectai/modelscan/issues/330): BUILD sets
    `numpy.size.shape = numpy.__builtins__`; `numpy.size(numpy.size, 'eval')` returns
    `numpy.size.shape['eval']`, i.e. builtins `eval`, which is then called. Only allow-listed
    numpy names are imported."""
    return (
        proto(4)
        + stack_global("numpy", "size")
        + MEMOIZE
        + stack_global("numpy", "__builtins__")
        + MEMOIZE
        + binget(0)
        + EMPTY_DICT
        + EMPTY_DICT
        + text("shape")
        + binget(1)
        + SETITEM
        + TUPLE2
        + BUILD
        + POP
        + binget(0)
        + binget(0)
        + text(key)
        + TUPLE2
        + REDUCE
        + args(value)
        + REDUCE
        + STOP
    )


def _joined(word: str) -> bytes:
    """`str.join('', [chars])` with `str.join` at memo 3."""
    chars = b"".join(text(c) for c in word)
    return binget(3) + text("") + EMPTY_LIST + MARK + chars + APPENDS + TUPLE2 + REDUCE


def modelscan_331(
    module: str = "os", name: str = "system", arguments: bytes = args("true")
) -> bytes:
    """modelscan #331 (https://github.com/protectai/modelscan/issues/331):
    `importlib.import_module('builtins')`, then `getattr(getattr(builtins, 'str'), 'join')`
    spells the module and function names from single characters at load time;
    `getattr(import_module(''.join([...])), ''.join([...]))(...)`. No string in the file is
    'os' or 'system'."""
    return (
        proto(4)
        + stack_global("importlib", "import_module")
        + MEMOIZE  # 0
        + text("builtins")
        + TUPLE1
        + REDUCE
        + MEMOIZE  # 1: the builtins module
        + stack_global("builtins", "getattr")
        + MEMOIZE  # 2
        + binget(2)
        + binget(2)
        + binget(1)
        + text("str")
        + TUPLE2
        + REDUCE
        + text("join")
        + TUPLE2
        + REDUCE
        + MEMOIZE  # 3: str.join
        + POP
        + binget(0)
        + _joined(module)
        + TUPLE1
        + REDUCE
        + MEMOIZE  # 4: the module
        + POP
        + binget(2)
        + binget(4)
        + _joined(name)
        + TUPLE2
        + REDUCE
        + arguments
        + REDUCE
        + STOP
    )


def modelscan_267(
    inner: bytes = b"cbuiltins\nprint\n(S'This pickle has been exploited!'\ntR.",
) -> bytes:
    """modelscan #267 (https://github.com/protectai/modelscan/issues/267): `pickle.loads` of a
    nested pickle held as bytes; the outer pickle only imports `pickle.loads` (listed, but not
    flagged by modelscan 0.8.4), the payload sits in a BINBYTES argument."""
    return call("pickle", "loads", inner)


def fickling_builtins_import(
    module: str = "os", name: str = "system", arguments: bytes = args("true")
) -> bytes:
    """fickling GHSA-h4rm-mm56-xf63 / CVE-2026-22612
    (https://github.com/trailofbits/fickling/security/advisories/GHSA-h4rm-mm56-xf63):
    imports from `builtins` produced no AST node, so `builtins.__import__('os')` followed by
    `builtins.getattr(module, 'system')(...)` left no unsafe import for fickling to see."""
    return (
        proto(4)
        + stack_global("builtins", "__import__")
        + text(module)
        + TUPLE1
        + REDUCE
        + MEMOIZE  # 0: the module
        + POP
        + stack_global("builtins", "getattr")
        + binget(0)
        + text(name)
        + TUPLE2
        + REDUCE
        + arguments
        + REDUCE
        + STOP
    )


def operator_methodcaller(
    holder: tuple[str, str] = ("pathlib", "os"), method: str = "system", value: str = "true"
) -> bytes:
    """picklescan GHSA-m273-6v24-x4m4 and GHSA-955r-x9j8-7rhh
    (https://github.com/mmaitre314/picklescan/pull/54), fickling PR #210: `operator` was
    blocked but `_operator` (the C module it re-exports) was not; `_operator.methodcaller(
    'system', 'true')` applied to the `os` module reached as an attribute of an innocuous
    module (`pathlib.os`) calls `os.system` without naming it."""
    return (
        proto(4)
        + stack_global("_operator", "methodcaller")
        + args(method, value)
        + REDUCE
        + stack_global(*holder)
        + TUPLE1
        + REDUCE
        + STOP
    )


def operator_attrgetter() -> bytes:
    """picklescan GHSA-m273-6v24-x4m4 (https://github.com/mmaitre314/picklescan/pull/53):
    `_operator.attrgetter('system')(pathlib.os)` returns `os.system`, then called."""
    return (
        proto(4)
        + stack_global("_operator", "attrgetter")
        + args("system")
        + REDUCE
        + stack_global("pathlib", "os")
        + TUPLE1
        + REDUCE
        + args("true")
        + REDUCE
        + STOP
    )


def marshal_function() -> bytes:
    """fickling GHSA-565g-hwwr-4pp3 (https://github.com/trailofbits/fickling/pull/186) and
    picklescan PR #74: `types.FunctionType(marshal.loads(bytecode), {})()` builds a function
    from marshalled bytecode and calls it: no import of the code's own target appears."""
    code = marshal.dumps(compile("print('hi')", "<mw>", "exec"))
    return (
        proto(4)
        + stack_global("types", "FunctionType")
        + stack_global("marshal", "loads")
        + args(code)
        + REDUCE
        + EMPTY_DICT
        + TUPLE2
        + REDUCE
        + b")"
        + REDUCE
        + STOP
    )


#: After the call the stream breaks: BINUNICODE announces more bytes than follow, no STOP.
BROKEN_TAIL = b"X\xff\xff\x00\x00broken"


def nullifai_stream(head: bytes | None = None) -> bytes:
    """nullifAI (ReversingLabs, 2025-02; write-up:
    https://safeguard.sh/resources/blog/nullifai-broken-pickles-huggingface-attack):
    the payload call sits at the start of the pickle and the stream breaks right after it
    (here a BINUNICODE whose length runs past the end, no STOP). The unpickler has run the
    call before it fails; a scanner that rejects the broken stream reports nothing."""
    payload = head if head is not None else global_("os", "system") + args("true") + REDUCE
    return proto(2) + payload + BROKEN_TAIL


def nullifai_torch() -> bytes:
    """nullifAI (ReversingLabs, 2025-02;
    https://safeguard.sh/resources/blog/nullifai-broken-pickles-huggingface-attack)
    as found on Hugging Face: a PyTorch checkpoint whose `data.pkl` is the broken
    stream above (they were shipped 7z-compressed, which `torch.load` does not open; the 7z
    wrapping is tests/formats/test_sevenzip.py and the `nullifai-7z` case)."""
    return _torch_checkpoint(nullifai_stream())


def nullifai_7z() -> bytes:
    """nullifAI's outer layer
    (https://safeguard.sh/resources/blog/nullifai-broken-pickles-huggingface-attack):
    the broken-stream checkpoint inside a 7z archive (py7zr)."""
    import py7zr

    out = io.BytesIO()
    with py7zr.SevenZipFile(out, "w") as archive:
        archive.writestr(nullifai_torch(), "ballr7/pytorch_model.bin")
    return out.getvalue()


def _torch_checkpoint(data_pkl: bytes) -> bytes:
    from fixtures.containers import build_zip, torch_entries

    return build_zip(torch_entries(data_pkl))


# --- twins of the structural tricks ----------------------------------------------------------


def _twin_85(tmp_path: Path) -> None:
    import numpy

    try:
        assert pickle.loads(modelscan_85("builtins", "str", MARKER)) == MARKER
    finally:
        for attr in ("a", "b"):
            if hasattr(numpy.prod, attr):
                delattr(numpy.prod, attr)


def _twin_331(tmp_path: Path) -> None:
    loaded = pickle.loads(modelscan_331("collections", "OrderedDict", args([(MARKER, 1)])))
    assert loaded == collections.OrderedDict([(MARKER, 1)])


def _twin_267(tmp_path: Path) -> None:
    assert pickle.loads(modelscan_267(pickle.dumps({"marker": MARKER}))) == {"marker": MARKER}


def _twin_builtins_import(tmp_path: Path) -> None:
    loaded = pickle.loads(
        fickling_builtins_import("collections", "OrderedDict", args([(MARKER, 1)]))
    )
    assert loaded == collections.OrderedDict([(MARKER, 1)])


def _twin_methodcaller(tmp_path: Path) -> None:
    # The same shape, a data method on a string: methodcaller('upper')(str('marker')).
    data = (
        proto(4)
        + stack_global("_operator", "methodcaller")
        + args("upper")
        + REDUCE
        + stack_global("builtins", "str")
        + args(MARKER)
        + REDUCE
        + TUPLE1
        + REDUCE
        + STOP
    )
    assert pickle.loads(data) == MARKER.upper()


def _twin_attrgetter(tmp_path: Path) -> None:
    data = (
        proto(4)
        + stack_global("_operator", "attrgetter")
        + args("OrderedDict")
        + REDUCE
        + stack_global("collections", "abc")  # any module reached as an attribute: its package
        + TUPLE1
        + REDUCE
        + STOP
    )
    with pytest.raises(AttributeError, match="OrderedDict"):
        pickle.loads(data)  # attrgetter ran on the module object at load time
    assert resolve("pathlib", "os").__name__ == "os"  # type: ignore[attr-defined]


def _twin_marshal(tmp_path: Path) -> None:
    # The twin stops before calling: the function object built from bytecode is the result.
    code = marshal.dumps(compile("x = 1", "<mw>", "exec"))
    data = (
        proto(4)
        + stack_global("types", "FunctionType")
        + stack_global("marshal", "loads")
        + args(code)
        + REDUCE
        + EMPTY_DICT
        + TUPLE2
        + REDUCE
        + STOP
    )
    assert callable(pickle.loads(data))


_PROBE = global_("mw_probe", "Marker") + args(MARKER) + REDUCE


def _twin_nullifai(tmp_path: Path) -> None:
    # The loader imports (and would call) before it meets the broken bytes.
    with pytest.raises(ModuleNotFoundError, match="mw_probe"):
        pickle.loads(nullifai_stream(_PROBE))
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(nullifai_stream(global_("builtins", "str") + args(MARKER) + REDUCE))


def _twin_nullifai_torch(tmp_path: Path) -> None:
    path = tmp_path / "twin.pt"
    path.write_bytes(_torch_checkpoint(nullifai_stream(_PROBE)))
    with pytest.raises(ModuleNotFoundError, match="mw_probe"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _torch_load(path)


def _twin_extension(tmp_path: Path) -> None:
    """torch.load unpickles the first pickle of any file that is not a zip, whatever its name."""
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(proto(2) + _PROBE + STOP)
    with pytest.raises(ModuleNotFoundError, match="mw_probe"):
        _torch_load(path)
    other = tmp_path / "weights.ckpt_v2"
    other.write_bytes(pickle.dumps({"marker": MARKER}, protocol=2))
    with other.open("rb") as stream:
        assert pickle.load(stream) == {"marker": MARKER}


def _torch_load(path: Path) -> object:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, weights_only=False)


def _system_p2() -> bytes:
    return proto(2) + global_("os", "system") + args("true") + REDUCE + STOP


def extension_bin() -> bytes:
    """picklescan CVE-2025-10155 (JFrog, https://github.com/mmaitre314/picklescan/pull/50):
    a plain pickle named `pytorch_model.bin` went to the PyTorch (zip) parser, which failed,
    and the error was not followed by a pickle scan; torch.load unpickles it anyway."""
    return _system_p2()


def extension_other() -> bytes:
    """picklescan CVE-2025-1889 / GHSA-769v-p64c-89pr
    (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-769v-p64c-89pr):
    only standard pickle extensions were scanned; the same pickle named `weights.ckpt_v2`
    (loaded by a custom loader with `pickle.load`) was skipped."""
    return _system_p2()


STRUCTURAL_CASES: dict[str, Bypass] = {
    "picklescan-CVE-2025-10155-extension-bin": Bypass(
        extension_bin, name="pytorch_model.bin", twin=_twin_extension
    ),
    "picklescan-CVE-2025-1889-extension-other": Bypass(
        extension_other, name="weights.ckpt_v2", twin=_twin_extension
    ),
    "picklescan-GHSA-955r-x9j8-7rhh-operator-methodcaller": Bypass(
        operator_methodcaller, twin=_twin_methodcaller
    ),
    "picklescan-GHSA-m273-6v24-x4m4-operator-attrgetter": Bypass(
        operator_attrgetter, twin=_twin_attrgetter
    ),
    "fickling-GHSA-565g-hwwr-4pp3-marshal-function": Bypass(marshal_function, twin=_twin_marshal),
    "fickling-GHSA-h4rm-mm56-xf63-builtins-import": Bypass(
        fickling_builtins_import, twin=_twin_builtins_import
    ),
    "modelscan-85-build-setattr-stack-global": Bypass(modelscan_85, twin=_twin_85),
    "modelscan-267-nested-pickle-loads": Bypass(modelscan_267, twin=_twin_267),
    # No twin: numpy >= 2.3 normalises `axis` to integers in `numpy.size`, so the published
    # chain no longer runs with the numpy installed here (2.4); older numpy runs it.
    "modelscan-330-numpy-size-builtins-eval": Bypass(modelscan_330),
    "modelscan-331-import-module-joined-names": Bypass(modelscan_331, twin=_twin_331),
    "nullifai-broken-stream": Bypass(nullifai_stream, twin=_twin_nullifai),
    "nullifai-broken-stream-in-checkpoint": Bypass(
        nullifai_torch, name="pytorch_model.bin", twin=_twin_nullifai_torch
    ),
    "nullifai-7z": Bypass(nullifai_7z, name="ballr7.7z"),
}

#: Every published bypass rebuilt here: id -> case.
BYPASSES: dict[str, Bypass] = {**BLOCKLIST_CASES, **STRUCTURAL_CASES}

#: Container-level bypasses and the case of tests/formats/test_container_parity.py's
#: `ZIP_CASES` that rebuilds each (twin through torch.load, payload critical).
CONTAINER_BYPASSES: dict[str, tuple[str, str]] = {
    "picklescan CVE-2025-1945 / GHSA-w8jq-xcqf-f792 (ZIP flag bits)": (
        "encryption-flag-local-only",
        f"{PICKLESCAN}GHSA-w8jq-xcqf-f792",
    ),
    "picklescan CVE-2025-1944 / GHSA-7q5r-7gvp-wc82 (local file name differs)": (
        "local-name-differs",
        f"{PICKLESCAN}GHSA-7q5r-7gvp-wc82",
    ),
    "picklescan CVE-2025-10156 (bad CRC)": (
        "bad-crc",
        "https://github.com/mmaitre314/picklescan/pull/50",
    ),
    "modelscan #354 (corrupt entry before data.pkl)": (
        "corrupt-entry-before-data-pkl",
        "https://github.com/protectai/modelscan/issues/354",
    ),
}


# -- the tests ---------------------------------------------------------------------------------


def scan_case(tmp_path: Path, case: Bypass) -> ScanResult:
    path = tmp_path / case.name
    path.write_bytes(case.build())
    report = modelward.scan(path)
    return report.results[0]


def _worst(result: ScanResult) -> Severity | None:
    return result.max_severity


@pytest.mark.parametrize("name", sorted(BYPASSES))
def test_bypass_is_flagged(tmp_path: Path, name: str) -> None:
    case = BYPASSES[name]
    result = scan_case(tmp_path, case)
    needed = Severity.CRITICAL if case.critical else Severity.MEDIUM
    worst = _worst(result)
    assert worst is not None and worst >= needed, (
        name,
        result.format,
        [(f.rule_id, f.severity.name, f.message[:120]) for f in result.findings],
        result.errors,
    )


def _twin_ids() -> list[str]:
    return sorted(n for n, c in BYPASSES.items() if c.twin is not None)


@pytest.mark.parametrize("name", _twin_ids())
def test_twin_reaches_the_loader(tmp_path: Path, name: str) -> None:
    case = BYPASSES[name]
    assert case.twin is not None
    if case.needs is not None and importlib.util.find_spec(case.needs.split(".")[0]) is None:
        pytest.skip(f"{case.needs} is not installed here")  # never the case in the dev venv
    case.twin(tmp_path)


def test_every_case_records_its_advisory() -> None:
    for name, case in BYPASSES.items():
        assert "http" in case.doc, name
        assert any(tag in case.doc for tag in ("GHSA", "CVE", "#", "PR", "nullifAI")), name


def _load_test_module(relative: str) -> ModuleType:
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem + "_for_bypasses", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_container_bypasses_are_rebuilt_by_the_parity_tests() -> None:
    parity = _load_test_module("tests/formats/test_container_parity.py")
    for advisory, (case, _link) in CONTAINER_BYPASSES.items():
        assert case in parity.ZIP_CASES, advisory
    sevenzip = (REPO / "tests/formats/test_sevenzip.py").read_text(encoding="utf-8")
    assert "nullifai" in sevenzip  # the 7z wrapping of a payload checkpoint
