"""Walk one pickle stream symbolically and turn what it imports and does into findings."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from modelward.config import Limits
from modelward.findings import Location, Severity
from modelward.formats.base import ScanContext
from modelward.pickle.machine import MAX_MARK_DEPTH, ImportedGlobal, SymbolicMachine
from modelward.pickle.policy import GlobalPolicy, Verdict, default_policy, dunder_parts
from modelward.pickle.walker import ByteSource, PickleDamage, iter_opcodes

#: What a GLOBAL/INST module or name line of an importable object looks like.
_IMPORT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class StreamOutcome:
    """How a walk ended: at STOP (`damage` is None) or at damage; `opcodes` walked."""

    damage: PickleDamage | None
    opcodes: int
    start: int


def _no_deadline() -> None:
    """Tick used where there is no scan context (sniffing a head)."""


def analyse_stream(source: ByteSource, location: Location, ctx: ScanContext) -> StreamOutcome:
    """Walk one stream from `source`'s position; report its findings, damage included.

    Findings for what was seen are reported even when a limit or the deadline
    ends the walk (the `ScanAborted` then propagates).
    """
    policy = default_policy().with_allowed(ctx.config.allow_globals)
    machine = SymbolicMachine(policy, ctx.config.limits.max_pickle_bytes)
    start = source.offset
    count = 0
    damage: PickleDamage | None = None
    try:
        for offset, opcode, arg in iter_opcodes(source, ctx.config.limits, ctx.check_deadline):
            count += 1
            machine.feed(offset, opcode, arg)
    except PickleDamage as exc:
        damage = exc
    finally:
        _report(machine, policy, ctx, location, frozenset(ctx.config.allow_globals))
    if damage is not None:
        what = "hit a scan limit" if damage.rule_id == "MW-PICKLE-LIMIT" else "is malformed"
        ctx.report(
            damage.rule_id,
            Severity.MEDIUM,
            location.at(damage.offset),
            f"pickle stream {what}: {damage.message}; anything after this point was not analysed",
            evidence=f"stream starting at offset {start}, {count} opcodes read",
        )
    return StreamOutcome(damage, count, start)


def parses_cleanly(head: bytes, min_opcodes: int) -> bool:
    """True when `head` reads as a pickle up to STOP, or up to its end after `min_opcodes`.

    Used to sniff protocol 0/1 pickles, which have no magic number: text
    rarely survives the symbolic stack (a stray `o` or `t` needs a MARK).
    """
    limits = Limits()
    source = ByteSource(io.BytesIO(head), _no_deadline, limits)
    machine = SymbolicMachine(default_policy(), limits.max_pickle_bytes)
    count = 0
    try:
        for offset, opcode, arg in iter_opcodes(source, limits, _no_deadline):
            count += 1
            if isinstance(arg, tuple) and not all(_IMPORT_NAME.match(part) for part in arg):
                return False  # GLOBAL/INST lines that no import could name: prose
            machine.feed(offset, opcode, arg)
    except PickleDamage as exc:
        return exc.truncated and count >= min_opcodes
    return True


def _report(
    machine: SymbolicMachine,
    policy: GlobalPolicy,
    ctx: ScanContext,
    location: Location,
    user_allowed: frozenset[str],
) -> None:
    for imported in machine.imports:
        _report_import(imported, policy, ctx, location, user_allowed)
    for write in machine.writes:
        ctx.report(
            "MW-PICKLE-DUNDER",
            Severity.CRITICAL,
            location.at(write.offset),
            f"{write.opcode} writes dunder attribute(s) {', '.join(write.keys)} on"
            f" {write.target}: the usual road from an allowed object to builtins or code"
            " objects; do not load this file",
            evidence=f"{write.target} <- {', '.join(write.keys)}",
        )
    if machine.too_deep_at is not None:
        ctx.report(
            "MW-PICKLE-NESTING",
            Severity.MEDIUM,
            location.at(machine.too_deep_at),
            f"pickle nests {machine.deepest_marks} MARKs deep (more than {MAX_MARK_DEPTH});"
            " real checkpoints nest far less, this is crafted to exhaust a loader or scanner",
            evidence=f"{machine.deepest_marks} open MARKs",
        )


def _use(imported: ImportedGlobal) -> str:
    if imported.called:
        args = "; ".join(imported.call_args)
        times = "" if len(imported.call_offsets) == 1 else f" {len(imported.call_offsets)} times"
        return f"called{times} with {args}" if args else f"called{times}"
    if imported.mutation_offsets:
        return "mutated"
    return "referenced only"


def _report_import(
    imported: ImportedGlobal,
    policy: GlobalPolicy,
    ctx: ScanContext,
    location: Location,
    user_allowed: frozenset[str],
) -> None:
    where = location.at(imported.offset)
    path = imported.path
    evidence = f"{path} {_use(imported)}"
    if imported.extension_code is not None:
        evidence = f"{imported.opcode} code {imported.extension_code} {_use(imported)}"
    if imported.extension_code is not None:
        ctx.report(
            "MW-PICKLE-EXTENSION",
            Severity.HIGH,
            where,
            f"{imported.opcode} imports extension code {imported.extension_code}: the loading"
            " process's copyreg registry decides what is imported, so it cannot be vetted;"
            " do not load this file unless you know who registered that code",
            evidence=evidence,
        )
    elif imported.dynamic:
        ctx.report(
            "MW-PICKLE-DYNAMIC-GLOBAL",
            Severity.HIGH,
            where,
            "STACK_GLOBAL imports a name that is computed or too long to read, so the import"
            " cannot be vetted; do not load this file",
            evidence=evidence,
        )
    else:
        _report_verdict(imported, policy.verdict(path), where, evidence, ctx, user_allowed)
        dunders = dunder_parts(imported.module, imported.name)
        if dunders:
            ctx.report(
                "MW-PICKLE-DUNDER",
                Severity.CRITICAL,
                where,
                f"import path {path} goes through dunder attribute(s) {', '.join(dunders)}:"
                " a way to reach builtins or code objects from an innocent-looking module;"
                " do not load this file",
                evidence=evidence,
            )
    _report_mutation(imported, where, ctx)


def _report_verdict(
    imported: ImportedGlobal,
    verdict: Verdict,
    where: Location,
    evidence: str,
    ctx: ScanContext,
    user_allowed: frozenset[str],
) -> None:
    path = imported.path
    if verdict is Verdict.DENIED:
        note = (
            " (it is in your allow_globals, but the deny-list always wins)"
            if path in user_allowed
            else ""
        )
        ctx.report(
            "MW-PICKLE-DANGEROUS-GLOBAL",
            Severity.CRITICAL,
            where,
            f"pickle imports {path}, which can execute code or reach the system when the file"
            f" is loaded{note}; do not load this file",
            evidence=evidence,
        )
    elif verdict is Verdict.UNKNOWN:
        called = imported.called
        ctx.report(
            "MW-PICKLE-UNKNOWN-GLOBAL",
            Severity.HIGH if called else Severity.MEDIUM,
            where,
            f"pickle {'calls' if called else 'references'} {path}, which is on neither the"
            " allow- nor the deny-list; review it, and if it is safe add the exact name to"
            " allow_globals in your modelward config",
            evidence=evidence,
        )
    elif path in user_allowed:
        ctx.report(
            "MW-PICKLE-ALLOWED-BY-CONFIG",
            Severity.INFO,
            where,
            f"{path} is accepted because your allow_globals lists it",
            evidence=evidence,
        )


def _report_mutation(imported: ImportedGlobal, where: Location, ctx: ScanContext) -> None:
    if not imported.mutation_offsets:
        return
    first = imported.mutation_offsets[0]
    called_after = [o for o in imported.call_offsets if o > first]
    severity = Severity.CRITICAL if called_after else Severity.HIGH
    then = f" and then calls it at offset {called_after[0]}" if called_after else ""
    ctx.report(
        "MW-PICKLE-GLOBAL-MUTATION",
        severity,
        where,
        f"pickle changes the imported class or module {imported.path} (BUILD/SETITEM at"
        f" offset {first}){then}: a loader would patch live code; do not load this file",
        evidence=f"{imported.path} mutated at offset {first}"
        + (f", called at offset {called_after[0]}" if called_after else ""),
    )
