"""Keras model configs: the analysis shared by `.keras` zips, legacy `.h5` and SavedModel.

A Keras config is JSON that names the classes and functions to rebuild at load
time. Code can ride along in three ways, all found here without building a model:
`Lambda` layers carry marshalled Python bytecode (read with our own bounded marshal
reader, never `marshal.loads`), `function` entries name a function in any module
(`os.system`), and custom objects name classes outside Keras that must be imported.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from modelward._datafile import load_table
from modelward.analysis import pycode
from modelward.analysis._marshal import CodeInfo, MarshalError, read_code
from modelward.findings import Location, Severity
from modelward.formats.interface import Blob, ScanContext

#: JSON values walked in one config before the rest is reported as not analysed.
MAX_CONFIG_NODES = 2_000_000
#: Names and strings quoted in a Lambda finding's evidence.
_EVIDENCE_ITEMS = 24
#: Modules a serialised plain function may name when it is really a local (`__main__`) one.
_LOCAL_MODULES = frozenset({"builtins", "__builtin__", "__main__"})


@cache
def _keras_modules() -> tuple[str, ...]:
    return tuple(load_table("keras.toml")["keras_modules"])


@cache
def _dangerous_keras_functions() -> frozenset[str]:
    return frozenset(load_table("keras.toml")["dangerous_keras_functions"])


def is_keras_module(module: str) -> bool:
    """True for Keras itself and the Keras-team libraries (`keras.src.layers`, `tf_keras`...)."""
    return any(module == m or module.startswith(m + ".") for m in _keras_modules())


def function_is_dangerous(module: str, name: str) -> bool:
    """Does calling `module.name` reach processes, the network, code loading or unpickling?"""
    if module in _LOCAL_MODULES:
        return pycode.is_denied_global(f"builtins.{name}") or pycode.classify(name) not in (
            None,
            "filesystem",
        )
    dotted = f"{module}.{name}"
    return (
        pycode.is_dangerous_module(module)
        or pycode.is_denied_global(dotted)
        or pycode.classify(dotted) is not None
    )


@dataclass(frozen=True)
class _Node:
    value: Any
    path: str


def _walk(config: Any, ctx: ScanContext) -> Iterator[_Node]:
    """Every dict in the JSON tree with its path, iteratively and with a node budget."""
    stack = [_Node(config, "$")]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen % 4096 == 0:
            ctx.check_deadline()
        if seen > MAX_CONFIG_NODES:
            raise _TooBig()
        if isinstance(node.value, dict):
            yield node
            items = list(node.value.items())
        elif isinstance(node.value, list):
            items = [(f"[{i}]", v) for i, v in enumerate(node.value)]
        else:
            continue
        for key, value in reversed(items):
            if isinstance(value, dict | list):
                sep = "" if key.startswith("[") else "."
                stack.append(_Node(value, f"{node.path}{sep}{key}"))


class _TooBig(Exception):
    pass


def analyse_keras_config(config: Any, location: Location, ctx: ScanContext, *, source: str) -> None:
    """Report Lambda bytecode, function references and custom objects in a parsed config.

    `source` names where the config came from (`config.json`, `model_config` attribute...).
    """
    try:
        for node in _walk(config, ctx):
            _check_object(node, location, ctx, source)
    except _TooBig:
        ctx.report(
            "MW-KERAS-CONFIG-TOO-LARGE",
            Severity.MEDIUM,
            location,
            f"{source}: more than {MAX_CONFIG_NODES} JSON values; the rest was not analysed",
        )


def analyse_keras_json(
    data: bytes | str, location: Location, ctx: ScanContext, *, source: str
) -> None:
    """Parse (bounded) and analyse a Keras config given as JSON text."""
    limit = ctx.config.limits.max_header_bytes
    if len(data) > limit:
        ctx.report(
            "MW-KERAS-CONFIG-TOO-LARGE",
            Severity.MEDIUM,
            location,
            f"{source}: {len(data)}-byte config over the {limit}-byte limit; not analysed",
        )
        return
    try:
        config = json.loads(data)
    except (ValueError, RecursionError) as exc:
        ctx.report(
            "MW-KERAS-CONFIG-MALFORMED",
            Severity.MEDIUM,
            location,
            f"{source}: Keras config is not valid JSON; not analysed",
            evidence=f"{type(exc).__name__}: {exc}"[:300],
        )
        return
    analyse_keras_config(config, location, ctx, source=source)


def _check_object(node: _Node, location: Location, ctx: ScanContext, source: str) -> None:
    obj: dict[str, Any] = node.value
    class_name = obj.get("class_name")
    config = obj.get("config")
    if not isinstance(class_name, str):
        return
    if class_name == "__lambda__" and isinstance(config, dict):
        _check_lambda(config.get("code"), f"{node.path}.config.code", location, ctx, source)
    elif class_name == "Lambda" and isinstance(config, dict):
        _check_legacy_lambda(config, node.path, location, ctx, source)
    elif class_name == "function":
        module = obj.get("module")
        name = config if isinstance(config, str) else obj.get("registered_name")
        if isinstance(module, str) and isinstance(name, str):
            if not is_keras_module(module):
                _report_function(module, name, node.path, location, ctx, source)
            elif name.rsplit(".", 1)[-1] in _dangerous_keras_functions():
                _report_keras_internal(module, name, node.path, location, ctx, source)
    elif class_name == "TorchModuleWrapper" and isinstance(config, dict):
        _check_torch_module(config.get("module"), node.path, location, ctx, source)
    else:
        _check_custom_object(obj, class_name, node.path, location, ctx, source)


def _check_legacy_lambda(
    config: dict[str, Any], path: str, location: Location, ctx: ScanContext, source: str
) -> None:
    """tf.keras 2 Lambda: `function` is [base64 code, defaults, closure] or a function name."""
    function = config.get("function")
    kind = config.get("function_type")
    if kind == "lambda":
        code = function[0] if isinstance(function, list) and function else function
        _check_lambda(code, f"{path}.config.function", location, ctx, source)
    elif kind == "function" and isinstance(function, str):
        module = config.get("module")
        if not isinstance(module, str) or not is_keras_module(module):
            _report_function(
                str(module), function, f"{path}.config.function", location, ctx, source
            )
    # A function (or output_shape) written as Python source, in any config shape: Keras 3
    # (no function_type), tf.keras `raw`, or edited by hand for a loader that evaluates it.
    for key in ("function", "output_shape"):
        value = config.get(key)
        if isinstance(value, str) and not (key == "function" and kind in ("lambda", "function")):
            _check_lambda_source(value, f"{path}.config.{key}", location, ctx, source)


def _check_lambda(code: Any, path: str, location: Location, ctx: ScanContext, source: str) -> None:
    where = f"{source} {path}"
    if not isinstance(code, str):
        ctx.report(
            "MW-KERAS-LAMBDA",
            Severity.HIGH,
            location,
            "Lambda layer with a function in an unexpected form; it runs code when the model"
            " is built",
            evidence=f"{where}: {type(code).__name__}",
        )
        return
    try:
        info = _read_lambda_code(code)
    except (binascii.Error, ValueError, MarshalError) as exc:
        if _check_lambda_source(code, path, location, ctx, source):
            return  # not bytecode but Python source
        ctx.report(
            "MW-KERAS-LAMBDA",
            Severity.HIGH,
            location,
            "Lambda layer with Python bytecode that could not be read; it runs when the model"
            " is loaded with safe_mode=False (or by legacy tf.keras)",
            evidence=f"{where}: {exc}"[:400],
        )
        return
    names = list(dict.fromkeys(info.all_names()))
    strings = list(dict.fromkeys(info.all_strings()))
    dangerous = sorted(
        {n for n in names if n in pycode.dangerous_modules() or n in pycode.dangerous_leaves()}
    )
    severity = Severity.CRITICAL if dangerous else Severity.HIGH
    message = (
        f"Lambda layer bytecode reaches the OS or runs code ({', '.join(dangerous)})"
        if dangerous
        else "Lambda layer carries Python bytecode"
    )
    ctx.report(
        "MW-KERAS-LAMBDA",
        severity,
        location,
        f"{message}; it runs when the model is loaded with safe_mode=False (or by legacy tf.keras)",
        evidence=(f"{where}: names={names[:_EVIDENCE_ITEMS]} strings={strings[:_EVIDENCE_ITEMS]}")[
            :1000
        ],
    )


def _read_lambda_code(code: str) -> CodeInfo:
    """Marshalled code as `keras.utils.func_load` takes it: base64, else the raw bytes
    spelled as raw-unicode-escape text."""
    try:
        raw = base64.b64decode(code.encode("ascii"), validate=False)
    except (UnicodeEncodeError, binascii.Error):
        raw = code.encode("raw_unicode_escape")
    try:
        return read_code(raw)
    except MarshalError:
        try:
            return read_code(code.encode("raw_unicode_escape"))
        except (MarshalError, UnicodeEncodeError):
            pass
        raise


#: Source nodes that make a string code rather than a name (`relu`, `keras.ops.relu`).
_CODE_NODES = (
    ast.Lambda,
    ast.Call,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Import,
    ast.ImportFrom,
    ast.Assign,
    ast.Subscript,
    ast.BinOp,
    ast.IfExp,
)


def _check_lambda_source(
    code: str, path: str, location: Location, ctx: ScanContext, source: str
) -> bool:
    """Report a Lambda function written as Python source; False when `code` is not source."""
    try:
        tree = pycode.parse_python(code)
    except (SyntaxError, ValueError):
        return False
    if not any(isinstance(node, _CODE_NODES) for node in ast.walk(tree)):
        return False  # a bare name: Keras looks it up, nothing is evaluated
    names = [
        n.id if isinstance(n, ast.Name) else n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Name | ast.Attribute)
    ]
    strings = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    uses = pycode.find_code_uses(tree, ctx)
    risky = pycode.dangerous_modules() | pycode.dangerous_leaves()
    dangerous = sorted({n for n in (*names, *strings) if n in risky} | {u.name for u in uses})
    severity = Severity.CRITICAL if dangerous else Severity.HIGH
    message = (
        f"Lambda layer Python source reaches the OS or runs code ({', '.join(dangerous)})"
        if dangerous
        else "Lambda layer carries Python source"
    )
    ctx.report(
        "MW-KERAS-LAMBDA",
        severity,
        location,
        f"{message}; it runs if a loader evaluates it (safe_mode=False, legacy tf.keras, or"
        " custom loading code)",
        evidence=f"{source} {path}: {code[:300]!r}",
    )
    return True


def _report_function(
    module: str, name: str, path: str, location: Location, ctx: ScanContext, source: str
) -> None:
    dangerous = function_is_dangerous(module, name)
    ctx.report(
        "MW-KERAS-FUNCTION",
        Severity.CRITICAL if dangerous else Severity.HIGH,
        location,
        (
            f"config calls {module}.{name}, which reaches the OS or runs code"
            if dangerous
            else f"config names function {module}.{name} from outside Keras; custom code"
            " is imported and called at load time"
        ),
        evidence=f"{source} {path}: module={module!r} function={name!r}",
    )


def _report_keras_internal(
    module: str, name: str, path: str, location: Location, ctx: ScanContext, source: str
) -> None:
    ctx.report(
        "MW-KERAS-FUNCTION",
        Severity.CRITICAL,
        location,
        f"config calls Keras's own {module}.{name}: loading would download or write files,"
        " or switch safe_mode off (safe_mode bypass)",
        evidence=f"{source} {path}: module={module!r} function={name!r}",
    )


def _check_torch_module(
    encoded: Any, path: str, location: Location, ctx: ScanContext, source: str
) -> None:
    """`TorchModuleWrapper` keeps a `torch.save`d module in base64: `torch.load` unpickles it."""
    where = f"{source} {path}.config.module"
    ctx.report(
        "MW-KERAS-TORCH-MODULE",
        Severity.HIGH,
        location,
        "TorchModuleWrapper embeds a pickled torch module that torch.load(weights_only=False)"
        " unpickles when the model is loaded with safe_mode=False; scanned as a member",
        evidence=where,
    )
    if not isinstance(encoded, str):
        return
    try:
        data = base64.b64decode(encoded.encode("ascii", errors="replace"))
    except (binascii.Error, ValueError) as exc:
        ctx.report(
            "MW-KERAS-CONFIG-MALFORMED",
            Severity.MEDIUM,
            location,
            "TorchModuleWrapper module is not base64; its pickle could not be scanned",
            evidence=f"{where}: {exc}"[:300],
        )
        return
    ctx.scan_member(Blob.from_bytes(location.member(f"{path}.config.module"), data))


def _check_custom_object(
    obj: dict[str, Any],
    class_name: str,
    path: str,
    location: Location,
    ctx: ScanContext,
    source: str,
) -> None:
    module = obj.get("module")
    registered = obj.get("registered_name")
    custom_name = next(
        (n for n in (registered, class_name) if isinstance(n, str) and ">" in n), None
    )
    keras_module = isinstance(module, str) and is_keras_module(module)
    if keras_module and class_name in _dangerous_keras_functions():
        _report_keras_internal(str(module), class_name, path, location, ctx, source)
        return
    if isinstance(module, str) and not is_keras_module(module):
        dangerous = pycode.is_dangerous_module(module)
        ctx.report(
            "MW-KERAS-CUSTOM-OBJECT",
            Severity.CRITICAL if dangerous else Severity.MEDIUM,
            location,
            (
                f"config imports {module}.{class_name}, which reaches the OS or runs code"
                if dangerous
                else f"custom object {class_name} from module {module}: custom code is"
                " needed at load time"
            ),
            evidence=f"{source} {path}: module={module!r} class_name={class_name!r}"
            f" registered_name={registered!r}",
        )
    elif custom_name is not None:
        ctx.report(
            "MW-KERAS-CUSTOM-OBJECT",
            Severity.MEDIUM,
            location,
            f"registered custom object {custom_name}: custom code is needed at load time",
            evidence=f"{source} {path}: class_name={class_name!r} registered_name={registered!r}",
        )
