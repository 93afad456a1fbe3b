"""Verdicts from the shipped lists: deny is broad, allow is exact, suffixes cannot hide deny."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fixtures.pickles import scan_bytes
from modelward.findings import Severity
from modelward.pickle.policy import Verdict, default_policy, dunder_parts


@pytest.mark.parametrize(
    ("path", "verdict"),
    [
        ("posix.system", Verdict.DENIED),
        ("os.path.join", Verdict.DENIED),  # whole module tree
        ("subprocess.Popen", Verdict.DENIED),
        ("builtins.eval", Verdict.DENIED),
        ("torch.load", Verdict.DENIED),
        ("torch.hub.load", Verdict.DENIED),
        ("mypkg.helpers.os.system", Verdict.DENIED),  # a re-export of os
        ("torch._utils._rebuild_tensor_v2", Verdict.ALLOWED),
        ("collections.OrderedDict", Verdict.ALLOWED),
        ("numpy.random._pickle.__randomstate_ctor", Verdict.ALLOWED),
        ("torch.Size", Verdict.ALLOWED),
        ("torch.nn.modules.linear.Linear", Verdict.ALLOWED),
        ("sklearn.linear_model._logistic.LogisticRegression", Verdict.ALLOWED),
        ("torch", Verdict.UNKNOWN),
        ("torch._utils._rebuild_tensor_v2x", Verdict.UNKNOWN),  # exact, not a prefix
        ("builtins.print", Verdict.UNKNOWN),
    ],
)
def test_verdicts(path: str, verdict: Verdict) -> None:
    assert default_policy().verdict(path) is verdict


def test_user_allow_never_beats_deny() -> None:
    policy = default_policy().with_allowed({"os.system", "mypkg.Block"})
    assert policy.verdict("os.system") is Verdict.DENIED
    assert policy.verdict("mypkg.Block") is Verdict.ALLOWED


def test_dunder_parts() -> None:
    assert dunder_parts("builtins", "__import__") == ["__import__"]
    assert dunder_parts("__main__", "Net") == []
    assert dunder_parts("numpy.random._pickle", "__randomstate_ctor") == []


@pytest.mark.parametrize("protocol", [2, 5])
def test_numpy_random_state_is_allowed(protocol: int) -> None:
    states = [np.random.RandomState(0), np.random.default_rng(0)]
    findings = scan_bytes(pickle.dumps(states, protocol=protocol))[1]
    assert [f for f in findings if f.severity > Severity.INFO] == []
