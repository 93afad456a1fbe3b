"""Gadgets inside otherwise-trusted packages: names on no deny-list whose code, as the
generated knowledge base read it, reaches a sink when a pickle constructs, calls or sets
the state of them. One per kind of sink; each pickle is assembled here (harmless arguments,
never loaded) and must be CRITICAL, naming the sink. The same packages' ordinary files stay
clean (tests/formats/test_everyday_files.py)."""

from __future__ import annotations

import pytest

from fixtures.pickles import (
    BUILD,
    EMPTY_DICT,
    EMPTY_TUPLE,
    NEWOBJ,
    REDUCE,
    STOP,
    TUPLE1,
    TUPLE2,
    proto,
    scan_bytes,
    stack_global,
    text,
)
from modelward.findings import Severity
from modelward.pickle import knowledge
from modelward.pickle.knowledge import Outcome, Use
from modelward.pickle.policy import GlobalVerdict, default_policy


def _call(module: str, name: str, *args: str) -> bytes:
    pushed = b"".join(text(a) for a in args)
    tuple_op = {1: TUPLE1, 2: TUPLE2}[len(args)]
    return proto(4) + stack_global(module, name) + pushed + tuple_op + REDUCE + STOP


def _construct_and_set_state(module: str, name: str) -> bytes:
    return proto(4) + stack_global(module, name) + EMPTY_TUPLE + NEWOBJ + EMPTY_DICT + BUILD + STOP


GADGETS = {
    # kind of sink: (module, qualname, use, pickle, words the sink is named with)
    "opens a path the pickle chose": (
        "numpy",
        "save",
        Use.CALL,
        _call("numpy", "save", "/tmp/modelward-gadget.npy", "x"),
        "open",
    ),
    "memory-maps a path the pickle chose": (
        "numpy",
        "memmap",
        Use.CALL,
        _call("numpy", "memmap", "/tmp/modelward-gadget.bin"),
        "open",
    ),
    "unpickles bytes the pickle chose": (
        "torch._dynamo.aot_compile",
        "AOTCompiledModel.deserialize",
        Use.CALL,
        _call("torch._dynamo.aot_compile", "AOTCompiledModel.deserialize", "x"),
        "pickle.loads",
    ),
    "starts a process": (
        "torch._dynamo.debug_utils",
        "_cuda_system_info_comment",
        Use.CALL,
        proto(4)
        + stack_global("torch._dynamo.debug_utils", "_cuda_system_info_comment")
        + EMPTY_TUPLE
        + REDUCE
        + STOP,
        "spawn",
    ),
    "loads a native library": (
        "torch",
        "_preload_cuda_lib",
        Use.CALL,
        _call("torch", "_preload_cuda_lib", "x", "y"),
        "dlopen",
    ),
    "imports a module named by the state (__setstate__ path)": (
        "torch.utils._config_module",
        "ConfigModule",
        Use.SETSTATE,
        _construct_and_set_state("torch.utils._config_module", "ConfigModule"),
        "import",
    ),
    "sets attributes the state names (__setstate__ path)": (
        "torch._dynamo.eval_frame",
        "OptimizedModule",
        Use.SETSTATE,
        _construct_and_set_state("torch._dynamo.eval_frame", "OptimizedModule"),
        "setattr",
    ),
}


@pytest.mark.parametrize("kind", sorted(GADGETS))
def test_gadget_in_a_trusted_package_is_critical(kind: str) -> None:
    module, qualname, use, data, sink_word = GADGETS[kind]
    path = f"{module}.{qualname}"
    # A gadget the hand-kept lists do not know: only the knowledge base can catch it.
    assert default_policy().verdict(path) is GlobalVerdict.UNKNOWN
    known = knowledge.lookup(module, qualname)
    assert known is not None, path
    judgement = known.judge(use)
    assert judgement.outcome is Outcome.SINK, (path, judgement)
    findings = scan_bytes(data)[1]
    critical = [f for f in findings if f.severity is Severity.CRITICAL]
    assert any(
        f.rule_id == "MW-PICKLE-DANGEROUS-GLOBAL" and sink_word in f.message for f in critical
    ), [(f.rule_id, f.severity, f.message) for f in findings]


def test_ufunc_reconstruct_is_the_name_it_imports() -> None:
    """Older pickles of ufuncs (`FunctionTransformer(np.log1p)`) name
    `numpy.core._ufunc_reconstruct(module, name)`: that is `module.name`, judged as such."""
    ordinary = _call("numpy.core", "_ufunc_reconstruct", "numpy", "log1p")
    assert [f for f in scan_bytes(ordinary)[1] if f.severity >= Severity.MEDIUM] == []
    dangerous = (
        proto(4)
        + stack_global("numpy.core", "_ufunc_reconstruct")
        + text("os")
        + text("system")
        + TUPLE2
        + REDUCE
        + text("true")
        + TUPLE1
        + REDUCE
        + STOP
    )
    findings = scan_bytes(dangerous)[1]
    assert any(
        f.severity is Severity.CRITICAL and (f.evidence or "").startswith("os.system called")
        for f in findings
    ), [(f.rule_id, f.evidence) for f in findings]
