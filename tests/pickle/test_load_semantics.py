"""What loading runs decides the verdict: references, constructions, calls, wrappers, BUILD.

Each case is a pickle the real `pickle.dumps` writes where it can (harmless payloads:
`os.system('true')`), else one assembled opcode by opcode; `pickle.loads` on the harmless
ordinary twins proves the stream means what the test says.
"""

from __future__ import annotations

import collections
import functools
import operator
import os
import pickle

import pytest

from fixtures.pickles import (
    BUILD,
    EMPTY_DICT,
    EMPTY_TUPLE,
    MARK,
    NEWOBJ,
    REDUCE,
    SETITEM,
    STOP,
    TUPLE1,
    TUPLE2,
    TUPLE3,
    global_,
    proto,
    scan_bytes,
    stack_global,
    text,
)
from modelward.findings import Finding, Severity


def _alarms(data: bytes) -> list[Finding]:
    return [f for f in scan_bytes(data)[1] if f.severity >= Severity.MEDIUM]


def _worst(data: bytes) -> Severity:
    return max((f.severity for f in scan_bytes(data)[1]), default=Severity.INFO)


def _evidence(data: bytes) -> list[str]:
    return [f.evidence or "" for f in scan_bytes(data)[1]]


# -- wrappers resolve to what they wrap -------------------------------------------------------


def _getattr_call(module: str, owner: str, attr: str, arg: str) -> bytes:
    """`getattr(module.owner, attr)(arg)`."""
    return (
        proto(4)
        + stack_global("builtins", "getattr")
        + stack_global(module, owner)
        + text(attr)
        + TUPLE2
        + REDUCE
        + text(arg)
        + TUPLE1
        + REDUCE
        + STOP
    )


def test_getattr_of_a_dangerous_attribute_is_that_attribute() -> None:
    data = (
        proto(4)
        + stack_global("builtins", "getattr")
        + stack_global("os", "path")
        + text("exists")
        + TUPLE2
        + REDUCE
        + STOP
    )
    # `getattr(os.path, 'exists')` only referenced: a reference to an os function, not a call.
    assert [(f.rule_id, f.severity) for f in _alarms(data)] == [
        ("MW-PICKLE-DANGEROUS-REFERENCE", Severity.HIGH),
        ("MW-PICKLE-DANGEROUS-REFERENCE", Severity.HIGH),
    ]
    called = _getattr_call("os", "path", "join", "x")
    assert _worst(called) is Severity.CRITICAL
    assert any("os.path.join called" in e and "via getattr" in e for e in _evidence(called))


def test_getattr_with_a_computed_name_stays_critical() -> None:
    data = (
        proto(4)
        + stack_global("builtins", "getattr")
        + stack_global("collections", "OrderedDict")
        + stack_global("builtins", "str")
        + text("x")
        + TUPLE1
        + REDUCE  # the attribute name is the result of a call
        + TUPLE2
        + REDUCE
        + STOP
    )
    hidden = [f for f in scan_bytes(data)[1] if f.rule_id == "MW-PICKLE-HIDDEN-CALL"]
    assert [f.severity for f in hidden] == [Severity.CRITICAL]


def test_getattr_dunder_is_critical() -> None:
    data = _getattr_call("collections", "OrderedDict", "__reduce__", "x")
    assert any(
        f.rule_id == "MW-PICKLE-DUNDER" and f.severity is Severity.CRITICAL
        for f in scan_bytes(data)[1]
    )


def test_getattr_of_an_ordinary_method_is_not_an_alarm() -> None:
    """pandas pickles `zoneinfo.ZoneInfo._unpickle` this way: judged as that method."""
    data = (
        proto(4)
        + stack_global("builtins", "getattr")
        + stack_global("collections", "OrderedDict")
        + text("fromkeys")
        + TUPLE2
        + REDUCE
        + STOP
    )
    assert pickle.loads(data) == collections.OrderedDict.fromkeys
    assert _worst(data) <= Severity.INFO
    assert any("collections.OrderedDict.fromkeys" in e for e in _evidence(data))


def test_partial_is_judged_as_its_function() -> None:
    ordinary = pickle.dumps(functools.partial(int, base=2), protocol=4)
    assert pickle.loads(ordinary)("101") == 5
    assert _alarms(ordinary) == []
    dangerous = pickle.dumps(functools.partial(os.system, "true"), protocol=2)
    assert _worst(dangerous) is Severity.CRITICAL


def test_partial_retargeted_by_build_is_judged_by_the_new_target() -> None:
    """`partial.__setstate__` replaces the function: BUILD state (os.system, ...) counts."""
    # state tuple (os.system, ('true',), {}, None) built with MARK ... TUPLE
    data = (
        proto(2)
        + global_("functools", "partial")
        + global_("builtins", "int")
        + TUPLE1
        + REDUCE
        + MARK
        + global_("os", "system")
        + text("true")
        + TUPLE1
        + EMPTY_DICT
        + b"N"
        + b"t"
        + BUILD
        + STOP
    )
    assert _worst(data) is Severity.CRITICAL


def test_methodcaller_built_but_never_called_is_critical() -> None:
    data = pickle.dumps(operator.methodcaller("system", "true"), protocol=2)
    assert _worst(data) is Severity.CRITICAL


def test_attrgetter_called_on_a_module_resolves_the_attribute() -> None:
    """`attrgetter('system')(os)` is `os.system`, which REDUCE then calls."""
    data = (
        proto(4)
        + stack_global("operator", "attrgetter")
        + text("system")
        + TUPLE1
        + REDUCE
        + stack_global("posixpath", "os")
        + TUPLE1
        + REDUCE
        + text("true")
        + TUPLE1
        + REDUCE
        + STOP
    )
    findings = scan_bytes(data)[1]
    assert any(
        f.severity is Severity.CRITICAL and "posixpath.os.system called" in (f.evidence or "")
        for f in findings
    ), [(f.rule_id, f.evidence) for f in findings]


# -- callables handed to something that calls them later --------------------------------------


def test_defaultdict_factory_is_judged_as_called() -> None:
    ordinary = pickle.dumps(collections.defaultdict(list, {"a": [1]}), protocol=2)
    assert _alarms(ordinary) == []
    dangerous = pickle.dumps(collections.defaultdict(os.getcwd), protocol=2)
    assert _worst(dangerous) is Severity.CRITICAL


def test_weakref_finalize_callback_is_judged_as_called() -> None:
    data = (
        proto(2)
        + global_("weakref", "finalize")
        + MARK
        + global_("builtins", "object")
        + EMPTY_TUPLE
        + REDUCE
        + global_("os", "system")
        + text("true")
        + b"t"
        + REDUCE
        + STOP
    )
    findings = scan_bytes(data)[1]
    assert any(
        f.severity is Severity.CRITICAL and (f.evidence or "").startswith("os.system called")
        for f in findings
    ), [(f.rule_id, f.evidence) for f in findings]


# -- construction, state, and calls of unknown names --------------------------------------------


def test_unknown_construction_is_low_and_names_the_class() -> None:
    data = proto(2) + global_("mypkg.layers", "Block") + EMPTY_TUPLE + NEWOBJ + STOP
    [finding] = scan_bytes(data)[1]
    assert finding.severity is Severity.LOW
    assert "mypkg.layers.Block" in finding.message


def test_calling_a_value_the_stream_computed_is_high() -> None:
    data = (
        proto(2)
        + global_("mypkg", "factory")
        + EMPTY_TUPLE
        + REDUCE
        + text("x")
        + TUPLE1
        + REDUCE
        + STOP
    )
    hidden = [f for f in scan_bytes(data)[1] if f.rule_id == "MW-PICKLE-HIDDEN-CALL"]
    assert [f.severity for f in hidden] == [Severity.HIGH]


def test_type_with_three_arguments_builds_a_class_and_is_critical() -> None:
    data = (
        proto(2)
        + global_("builtins", "type")
        + text("X")
        + global_("builtins", "object")
        + TUPLE1
        + EMPTY_DICT
        + TUPLE3
        + REDUCE
        + STOP
    )
    assert _worst(data) is Severity.CRITICAL


# -- BUILD of dunder attributes is judged by name and value ---------------------------------------


class Documented:
    """Its instances carry their own `__doc__`, as statsmodels results do."""

    def __init__(self) -> None:
        self.__doc__ = "fitted results"
        self.value = 1


@pytest.mark.parametrize("protocol", range(6))
def test_constant_doc_string_in_state_is_ordinary(protocol: int) -> None:
    data = pickle.dumps(Documented(), protocol=protocol)
    assert pickle.loads(data).__doc__ == "fitted results"
    assert _alarms(data) == []


@pytest.mark.parametrize("key", ["__globals__", "__builtins__", "__code__", "__class__"])
def test_reaching_dunders_in_state_stays_critical(key: str) -> None:
    data = (
        proto(2)
        + global_("collections", "OrderedDict")
        + EMPTY_TUPLE
        + REDUCE
        + EMPTY_DICT
        + text(key)
        + global_("builtins", "object")
        + SETITEM
        + BUILD
        + STOP
    )
    assert any(
        f.rule_id == "MW-PICKLE-DUNDER" and f.severity is Severity.CRITICAL
        for f in scan_bytes(data)[1]
    )


def test_doc_set_to_something_that_is_not_a_string_stays_critical() -> None:
    data = (
        proto(2)
        + global_("collections", "OrderedDict")
        + EMPTY_TUPLE
        + REDUCE
        + EMPTY_DICT
        + text("__doc__")
        + global_("os", "system")
        + SETITEM
        + BUILD
        + STOP
    )
    assert any(f.rule_id == "MW-PICKLE-DUNDER" for f in scan_bytes(data)[1])
