"""Verdicts from the shipped lists: deny is broad, allow is exact, suffixes cannot hide deny."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch.jit._pickle

from fixtures.pickles import STOP, proto, reduce_pickle, scan_bytes, stack_global
from modelward.findings import Severity
from modelward.pickle.policy import GlobalVerdict, default_policy, dunder_parts


@pytest.mark.parametrize(
    ("path", "verdict"),
    [
        ("posix.system", GlobalVerdict.DENIED),
        ("os.path.join", GlobalVerdict.DENIED),  # whole module tree
        ("subprocess.Popen", GlobalVerdict.DENIED),
        ("builtins.eval", GlobalVerdict.DENIED),
        ("torch.load", GlobalVerdict.DENIED),
        ("torch.hub.load", GlobalVerdict.DENIED),
        ("mypkg.helpers.os.system", GlobalVerdict.DENIED),  # a re-export of os
        ("torch._utils._rebuild_tensor_v2", GlobalVerdict.ALLOWED),
        ("collections.OrderedDict", GlobalVerdict.ALLOWED),
        ("numpy.random._pickle.__randomstate_ctor", GlobalVerdict.ALLOWED),
        ("torch.Size", GlobalVerdict.ALLOWED),
        ("torch.nn.modules.linear.Linear", GlobalVerdict.ALLOWED),
        ("sklearn.linear_model._logistic.LogisticRegression", GlobalVerdict.ALLOWED),
        ("torch", GlobalVerdict.UNKNOWN),
        ("torch._utils._rebuild_tensor_v2x", GlobalVerdict.UNKNOWN),  # exact, not a prefix
        ("builtins.print", GlobalVerdict.UNKNOWN),
        ("copyreg._reconstructor", GlobalVerdict.ALLOWED),  # a trampoline
        # TorchScript's list builders: exact allow pairs pass the `_pickle` suffix match...
        ("torch.jit._pickle.build_intlist", GlobalVerdict.ALLOWED),
        ("torch.jit._pickle.restore_type_tag", GlobalVerdict.ALLOWED),
        # ...their neighbours and every other road to the pickle modules do not.
        ("torch.jit._pickle.loads", GlobalVerdict.DENIED),
        ("torch.jit._pickle.Unpickler", GlobalVerdict.DENIED),
        ("torch.jit._pickle", GlobalVerdict.DENIED),
        ("_pickle.loads", GlobalVerdict.DENIED),
        ("_pickle.Unpickler", GlobalVerdict.DENIED),
        ("pickle.loads", GlobalVerdict.DENIED),
        ("pickle._loads", GlobalVerdict.DENIED),
        ("pickle._Unpickler", GlobalVerdict.DENIED),
        ("some.pkg._pickle.loads", GlobalVerdict.DENIED),
        ("some.pkg.pickle.loads", GlobalVerdict.DENIED),
        ("torch.pickle.loads", GlobalVerdict.DENIED),
        ("torch.serialization.pickle.loads", GlobalVerdict.DENIED),
        ("numpy.random._pickle.loads", GlobalVerdict.DENIED),
    ],
)
def test_verdicts(path: str, verdict: GlobalVerdict) -> None:
    assert default_policy().verdict(path) is verdict


def test_user_allow_never_beats_deny() -> None:
    policy = default_policy().with_allowed({"os.system", "mypkg.Block"})
    assert policy.verdict("os.system") is GlobalVerdict.DENIED
    assert policy.verdict("mypkg.Block") is GlobalVerdict.ALLOWED


def test_dunder_parts() -> None:
    assert dunder_parts("builtins", "__import__") == ["__import__"]
    assert dunder_parts("__main__", "Net") == []
    assert dunder_parts("numpy.random._pickle", "__randomstate_ctor") == []


@pytest.mark.parametrize("protocol", [2, 5])
def test_numpy_random_state_is_allowed(protocol: int) -> None:
    states = [np.random.RandomState(0), np.random.default_rng(0)]
    findings = scan_bytes(pickle.dumps(states, protocol=protocol))[1]
    assert [f for f in findings if f.severity > Severity.INFO] == []


def test_torchscript_list_builder_in_a_plain_pickle_is_allowed() -> None:
    """The ordinary allow-list covers it: no TorchScript-only exception is needed."""
    data = reduce_pickle(torch.jit._pickle.build_intlist, ([1, 2, 3],), protocol=2)
    assert b"torch.jit._pickle" in data
    assert [f for f in scan_bytes(data)[1] if f.severity > Severity.INFO] == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("_pickle", "loads"),
        ("pickle", "_loads"),
        ("torch.jit._pickle", "loads"),
        ("torch.jit", "_pickle.loads"),  # an attribute chain from an allowed package
        ("torch", "jit._pickle.Unpickler"),
    ],
)
def test_pickle_module_evasions_stay_dangerous(module: str, name: str) -> None:
    referenced = proto(4) + stack_global(module, name) + STOP
    findings = scan_bytes(referenced)[1]
    assert [(f.rule_id, f.severity) for f in findings] == [
        ("MW-PICKLE-DANGEROUS-REFERENCE", Severity.HIGH)
    ], [(f.rule_id, f.evidence) for f in findings]
    called = proto(4) + stack_global(module, name) + b"\x8c\x01x\x85R" + STOP
    findings = scan_bytes(called)[1]
    assert any(
        f.rule_id == "MW-PICKLE-DANGEROUS-GLOBAL" and f.severity is Severity.CRITICAL
        for f in findings
    ), [(f.rule_id, f.evidence) for f in findings]
