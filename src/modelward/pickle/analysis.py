"""Walk one pickle stream symbolically and turn what it imports and does into findings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelward.findings import Location, Severity
from modelward.formats.interface import ScanContext
from modelward.pickle import knowledge
from modelward.pickle.embedded import EmbeddedPickles
from modelward.pickle.knowledge import Outcome, Use
from modelward.pickle.machine import (
    MAX_MARK_DEPTH,
    Hooks,
    ImportedGlobal,
    Instance,
    PickleMachine,
    Value,
)
from modelward.pickle.policy import (
    GlobalPolicy,
    GlobalVerdict,
    default_policy,
    dunder_parts,
    wrapper_kind,
)
from modelward.pickle.sniff import parses_cleanly
from modelward.pickle.walker import ByteSource, PickleDamage

__all__ = ["StreamOutcome", "analyse_stream", "parses_cleanly"]  # sniffing lives in sniff.py


@dataclass(frozen=True)
class StreamOutcome:
    """How a walk ended: at STOP (`damage` is None) or at damage; `opcodes` walked."""

    damage: PickleDamage | None
    opcodes: int
    start: int
    #: The walk stopped at a joblib array wrapper's BUILD (see `analyse_stream`).
    joblib: bool = False


class _JoblibHooks(Hooks):
    """Notes the BUILD of joblib's inline array wrapper, under any import path to it."""

    def __init__(self) -> None:
        self.seen = False

    def built(self, target: Value, state: Value, offset: int) -> None:
        cls = target.cls if isinstance(target, Instance) else None
        if cls is not None and wrapper_kind(cls.path) == "inline":
            self.seen = True


def analyse_stream(
    source: ByteSource, location: Location, ctx: ScanContext, *, joblib_switch: bool = False
) -> StreamOutcome:
    """Walk one stream from `source`'s position; report its findings, damage included.

    Findings for what was seen are reported even when a limit or the deadline
    ends the walk (the `ScanAborted` then propagates). With `joblib_switch`, a BUILD of
    joblib's array wrapper ends the walk with nothing reported and `joblib` set: raw array
    bytes follow it, which `joblib.load` reads as data, so the file is joblib's to scan.
    """
    policy = default_policy().with_allowed(ctx.config.allow_globals)
    hooks = _JoblibHooks()
    machine = PickleMachine(policy, ctx.config.limits.max_pickle_bytes, hooks)
    embedded = EmbeddedPickles(location, ctx)
    start = source.offset
    damage: PickleDamage | None = None
    try:
        if not embedded.run(machine, source, until=_seen(hooks) if joblib_switch else None):
            return StreamOutcome(None, machine.opcodes, start, joblib=True)
    except PickleDamage as exc:
        damage = exc
    except BaseException:
        _report(machine, policy, ctx, location)
        embedded.finish(machine.loaded)
        raise
    _report(machine, policy, ctx, location)
    embedded.finish(machine.loaded)
    if damage is not None:
        what = "hit a scan limit" if damage.rule_id == "MW-PICKLE-LIMIT" else "is malformed"
        ctx.report(
            damage.rule_id,
            Severity.MEDIUM,
            location.at(damage.offset),
            f"pickle stream {what}: {damage.message}; anything after this point was not analysed",
            evidence=f"stream starting at offset {start}, {machine.opcodes} opcodes read",
        )
    return StreamOutcome(damage, machine.opcodes, start)


def _seen(hooks: _JoblibHooks) -> Callable[[], bool]:
    return lambda: hooks.seen


def _report(
    machine: PickleMachine, policy: GlobalPolicy, ctx: ScanContext, location: Location
) -> None:
    for imported in machine.imports:
        _report_import(imported, policy, ctx, location)
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
    for hidden in machine.unresolved:
        ctx.report(
            "MW-PICKLE-HIDDEN-CALL",
            Severity.CRITICAL if hidden.wrapper else Severity.HIGH,
            location.at(hidden.offset),
            f"pickle {hidden.what}: what loading calls here cannot be known before it runs;"
            " do not load this file",
            evidence=hidden.what,
        )
    for getter in machine.methodcallers:
        if not getter.called:
            method = getter.names[0] if getter.names else "<computed>"
            ctx.report(
                "MW-PICKLE-HIDDEN-CALL",
                Severity.CRITICAL,
                location.at(getter.offset),
                f"pickle builds operator.methodcaller({method!r}, ...), which calls that method"
                " on whatever object it is later given: the target cannot be known from the"
                " file; do not load this file",
                evidence=f"operator.methodcaller({method!r}) built, not called in the stream",
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


#: How each use reads in a message, and what loading runs for it.
_USE_TEXT = {
    Use.CALL: ("calls", "runs it with arguments the file chose"),
    Use.CONSTRUCT: ("constructs", "runs its __new__"),
    Use.SETSTATE: ("sets the state of an instance of", "runs its __setstate__"),
    Use.ITEMS: ("adds items to an instance of", "runs its append/__setitem__"),
}
_USE_LABEL = {
    Use.CALL: "called",
    Use.CONSTRUCT: "constructed",
    Use.SETSTATE: "state set",
    Use.ITEMS: "items added",
}
#: Severity of an unknown name by what the stream does with it (normal, strict).
_UNKNOWN_SEVERITY = {
    Use.CALL: (Severity.HIGH, Severity.HIGH),
    Use.CONSTRUCT: (Severity.LOW, Severity.MEDIUM),
    Use.SETSTATE: (Severity.LOW, Severity.MEDIUM),
    Use.ITEMS: (Severity.LOW, Severity.MEDIUM),
}


def _use(imported: ImportedGlobal) -> str:
    if imported.called:
        args = "; ".join(imported.call_args)
        count = len(imported.uses[Use.CALL])
        times = "" if count == 1 else f" {count} times"
        text = f"called{times} with {args}" if args else f"called{times}"
    elif imported.uses:
        text = ", ".join(_USE_LABEL[use] for use in imported.uses)
    elif imported.mutation_offsets:
        text = "mutated"
    else:
        text = "referenced only"
    return f"{text} (via {imported.via})" if imported.via else text


def _report_import(
    imported: ImportedGlobal, policy: GlobalPolicy, ctx: ScanContext, location: Location
) -> None:
    where = location.at(imported.offset)
    path = imported.path
    evidence = f"{path} {_use(imported)}"
    if imported.extension_code is not None:
        ctx.report(
            "MW-PICKLE-EXTENSION",
            Severity.HIGH,
            where,
            f"{imported.opcode} imports extension code {imported.extension_code}: the loading"
            " process's copyreg registry decides what is imported, so it cannot be vetted;"
            " do not load this file unless you know who registered that code",
            evidence=f"{imported.opcode} code {imported.extension_code} {_use(imported)}",
        )
    elif imported.dynamic:
        # Called or constructed, a name the stream computes runs code nobody can vet.
        ctx.report(
            "MW-PICKLE-DYNAMIC-GLOBAL",
            Severity.CRITICAL if imported.uses else Severity.HIGH,
            where,
            "STACK_GLOBAL imports a name that is computed or too long to read, so the import"
            " cannot be vetted; do not load this file",
            evidence=evidence,
        )
    else:
        _report_verdict(imported, policy, where, evidence, ctx)
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
    policy: GlobalPolicy,
    where: Location,
    evidence: str,
    ctx: ScanContext,
) -> None:
    path = imported.path
    user_allowed = ctx.config.allow_globals
    verdict = policy.verdict(path)
    if verdict is GlobalVerdict.DENIED:
        _report_denied(imported, where, evidence, ctx)
    elif path in user_allowed:
        ctx.report(
            "MW-PICKLE-ALLOWED-BY-CONFIG",
            Severity.INFO,
            where,
            f"{path} is accepted because your allow_globals lists it",
            evidence=evidence,
        )
    elif path in policy.side_effects and imported.called:
        ctx.report(
            "MW-PICKLE-SIDE-EFFECT",
            Severity.HIGH,
            where,
            f"pickle calls {path} while it loads: no serializer writes that call, so this is a"
            " probe or a test payload; whoever made it can make the file run other calls",
            evidence=evidence,
        )
    elif verdict is GlobalVerdict.UNKNOWN:
        _report_by_knowledge(imported, policy, where, evidence, ctx)


def _report_denied(
    imported: ImportedGlobal, where: Location, evidence: str, ctx: ScanContext
) -> None:
    path = imported.path
    note = (
        " (it is in your allow_globals, but the deny-list always wins)"
        if path in ctx.config.allow_globals
        else ""
    )
    if imported.uses:
        ctx.report(
            "MW-PICKLE-DANGEROUS-GLOBAL",
            Severity.CRITICAL,
            where,
            f"pickle imports {path}, which can execute code or reach the system when the file"
            f" is loaded{note}; do not load this file",
            evidence=evidence,
        )
    else:
        ctx.report(
            "MW-PICKLE-DANGEROUS-REFERENCE",
            Severity.HIGH,
            where,
            f"pickle stores a reference to {path}, which can execute code or reach the"
            f" system{note}; loading does not call it, but code that uses the loaded object"
            " may; do not use this file unless you know why it holds that",
            evidence=evidence,
        )


def _report_by_knowledge(
    imported: ImportedGlobal,
    policy: GlobalPolicy,
    where: Location,
    evidence: str,
    ctx: ScanContext,
) -> None:
    """Judge each use of a name the lists do not cover by what the knowledge base says it runs."""
    path = imported.path
    known = knowledge.lookup(imported.module, imported.name)
    strict = ctx.config.strict
    worst: tuple[Severity, Use] | None = None
    for use in imported.uses:
        judgement = known.judge(use) if known is not None else None
        if judgement is not None and judgement.outcome is Outcome.SINK:
            if policy.reviewed_road(judgement.sink):
                continue
            verb, runs = _USE_TEXT[use]
            ctx.report(
                "MW-PICKLE-DANGEROUS-GLOBAL",
                Severity.CRITICAL,
                where,
                f"pickle {verb} {path}, so loading {runs}, which reaches {judgement.sink};"
                " do not load this file",
                evidence=evidence,
            )
            return
        if judgement is not None and judgement.outcome is not Outcome.UNKNOWN:
            continue  # safe, or a use that does not apply to this kind of name
        if known is not None and known.kind == "function" and use in (Use.SETSTATE, Use.ITEMS):
            continue  # the state of what a function returned: its call verdict covers it
        severity = _UNKNOWN_SEVERITY[use][strict]
        if worst is None or severity > worst[0]:
            worst = (severity, use)
    if worst is not None:
        severity, use = worst
        verb, runs = _USE_TEXT[use]
        ctx.report(
            "MW-PICKLE-UNKNOWN-GLOBAL",
            severity,
            where,
            f"pickle {verb} {path}, so loading {runs}; it is on no list and the knowledge base"
            " cannot vouch for that code; review it, and if it is safe add the exact name to"
            " allow_globals in your modelward config",
            evidence=evidence,
        )
    elif not imported.uses and known is None:
        ctx.report(
            "MW-PICKLE-UNKNOWN-GLOBAL",
            Severity.MEDIUM if strict else Severity.INFO,
            where,
            f"pickle references {path} without calling or constructing it, so loading runs"
            " none of its code; it is on no list",
            evidence=evidence,
        )


def _report_mutation(imported: ImportedGlobal, where: Location, ctx: ScanContext) -> None:
    if not imported.mutation_offsets:
        return
    first = imported.mutation_offsets[0]
    called_after = [o for o in imported.uses.get(Use.CALL, []) if o > first]
    called_after += [o for o in imported.uses.get(Use.CONSTRUCT, []) if o > first]
    severity = Severity.CRITICAL if called_after else Severity.HIGH
    then = f" and then uses it at offset {min(called_after)}" if called_after else ""
    ctx.report(
        "MW-PICKLE-GLOBAL-MUTATION",
        severity,
        where,
        f"pickle changes the imported class or module {imported.path} (BUILD/SETITEM at"
        f" offset {first}){then}: a loader would patch live code; do not load this file",
        evidence=f"{imported.path} mutated at offset {first}"
        + (f", used at offset {min(called_after)}" if called_after else ""),
    )
