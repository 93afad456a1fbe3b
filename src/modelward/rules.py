"""Every rule a finding can carry: its id, severity, title, ATLAS technique and help.

A finding names its rule by id (`Finding.rule_id`); this registry says what the id means.
SARIF's rule metadata (`report/sarif.py`), the rules reference (`docs/rules.md`, written
by `scripts/render_rules_doc.py`) and the rule-set version that keys stored results
(`store/ruleset.py`) all read it, and `tests/test_rules.py` checks that every rule id in
the code is here, that every rule here is used, and that the reference agrees.

`severity` is the severity the rule is usually reported with (the reference's), or None
when the reference lists several (`severities` then lists them; it is empty for
`MW-GATE-SCAN`, which takes the severity of the finding it gates on). The help says when
evidence raises or lowers it, and a user's configuration (`--strict`) can raise it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from modelward.findings import ATLAS_MODEL_SUPPLY_CHAIN, ATLAS_MODIFY_ARCHITECTURE, Severity

#: MITRE ATLAS techniques: AML.T0010.003 (ML supply chain compromise: model), AML.T0018.001
#: (backdoor ML model: modify architecture), AML.T0018 (manipulate AI model), AML.T0020 (poison
#: training data), AML.T0010.001 (ML supply chain compromise: software).
MODEL_SUPPLY_CHAIN = ATLAS_MODEL_SUPPLY_CHAIN
MODIFY_ARCHITECTURE = ATLAS_MODIFY_ARCHITECTURE
MANIPULATE_MODEL = "AML.T0018"
POISON_TRAINING_DATA = "AML.T0020"
SOFTWARE_SUPPLY_CHAIN = "AML.T0010.001"

INFO = Severity.INFO
LOW = Severity.LOW
MEDIUM = Severity.MEDIUM
HIGH = Severity.HIGH
CRITICAL = Severity.CRITICAL


@dataclass(frozen=True)
class Rule:
    """One rule: what a finding with this id means and what to do about it."""

    id: str
    #: The severity its findings usually have; None when it varies with the evidence.
    severity: Severity | None
    #: A short name (SARIF `shortDescription`).
    title: str
    #: The MITRE ATLAS technique its findings carry; None when it varies by finding.
    technique: str | None
    #: What a finding means and what to do (SARIF `help`, the reference's description).
    help: str
    #: Every severity it can be reported with, as the reference lists them (filled from
    #: `severity` when that is set).
    severities: tuple[Severity, ...] = ()

    def __post_init__(self) -> None:
        if self.severity is not None:
            if self.severities not in ((), (self.severity,)):
                raise ValueError(f"{self.id}: severities disagree with severity")
            object.__setattr__(self, "severities", (self.severity,))

    @property
    def severity_text(self) -> str:
        """The severity as the rules reference shows it: `high`, `medium / low`."""
        if not self.severities:
            return "the finding's"
        return " / ".join(s.label for s in self.severities)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "severity": self.severity.label if self.severity is not None else None,
            "severities": [s.label for s in self.severities],
            "title": self.title,
            "technique": self.technique,
            "help": self.help,
        }


def _index(*rules: Rule) -> dict[str, Rule]:
    index: dict[str, Rule] = {}
    for r in rules:
        if r.id in index:
            raise ValueError(f"rule {r.id} is registered twice")
        index[r.id] = r
    return index


def rule(rule_id: str) -> Rule:
    """The registered rule `rule_id`; a KeyError naming it when there is none."""
    try:
        return RULES[rule_id]
    except KeyError:
        raise KeyError(f"no rule {rule_id!r} in modelward.rules.RULES") from None


def registry_json() -> str:
    """The whole registry, serialised deterministically (the rule-set version hashes it)."""
    rules = [r.to_dict() for r in RULES.values()]
    return json.dumps(rules, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


#: Every rule, in the order of the rules reference (by area).
RULES: dict[str, Rule] = _index(
    Rule(
        "MW-FORMAT-UNKNOWN",
        MEDIUM,
        "Unrecognised binary format",
        MODEL_SUPPLY_CHAIN,
        "An unrecognised binary format: not scanned, so not passed (fail closed). Text and empty "
        "files are not findings.",
    ),
    Rule(
        "MW-FORMAT-NOT-MODEL",
        INFO,
        "Not a model file",
        MODEL_SUPPLY_CHAIN,
        "A file no format scanner claims (so no pickle reader would reach an import or a call in "
        "it) is, by its magic bytes, an image, document, audio/video or font file (PNG, JPEG, "
        "WebP, TIFF, PDF, WAV, FLAC, Ogg, MP3, MP4, WOFF) or a data file that no code-running "
        "loader opens (Parquet, Arrow/Feather, netCDF classic, MATLAB v5, CatBoost `.cbm`, "
        "fastText `.bin`), whatever it is called (instead of `MW-FORMAT-UNKNOWN`).",
    ),
    Rule(
        "MW-SCAN-ERROR",
        MEDIUM,
        "Scanner failed on this input",
        MODEL_SUPPLY_CHAIN,
        "A scanner failed on this input (malformed or crafted to evade); the exception is the "
        "evidence.",
    ),
    Rule(
        "MW-LIMIT-TIME",
        MEDIUM,
        "Scan time limit reached",
        MODEL_SUPPLY_CHAIN,
        "The file took longer than `max_seconds_per_file`; the rest was not scanned.",
    ),
    Rule(
        "MW-LIMIT-SIZE",
        MEDIUM,
        "Stream size limit reached",
        MODEL_SUPPLY_CHAIN,
        "A stream (decompressed member, joblib, gzip ...) passed `max_decompressed_bytes`: a "
        "decompression bomb or an oversized member.",
    ),
    Rule(
        "MW-LIMIT-DECOMPRESSED",
        MEDIUM,
        "Total decompression limit reached",
        MODEL_SUPPLY_CHAIN,
        "All decompressing streams of one file together (zip members, gzip/bzip2/xz layers, "
        "compressed joblib, at every nesting level, re-reads and seeks included) passed "
        "`max_total_decompressed_bytes`: a nested bomb (42.zip) whose every stream is under "
        "`max_decompressed_bytes`. Reported once per file, where the budget ran out; nothing more "
        "of the file is decompressed or scanned.",
    ),
    Rule(
        "MW-LIMIT-DEPTH",
        MEDIUM,
        "Nesting depth limit reached",
        MODEL_SUPPLY_CHAIN,
        "Containers nested deeper than `max_nesting_depth`; inner content not scanned.",
    ),
    Rule(
        "MW-LIMIT-MEMORY",
        MEDIUM,
        "Scan ran out of memory",
        MODEL_SUPPLY_CHAIN,
        "The scan ran out of memory or stack on this input.",
    ),
    Rule(
        "MW-EXTERNAL-DATA",
        INFO,
        "ONNX external tensor data file",
        MODEL_SUPPLY_CHAIN,
        "A binary file a scanned ONNX model names as its external tensor data (instead of "
        "`MW-FORMAT-UNKNOWN`).",
    ),
    Rule(
        "MW-FILE-BROKEN-LINK",
        LOW,
        "Broken symbolic link",
        MODEL_SUPPLY_CHAIN,
        "A symbolic link whose target does not exist; reported so a dangling link never ends or "
        "hides a scan.",
    ),
    Rule(
        "MW-FILE-SPECIAL",
        MEDIUM,
        "Special file not read",
        MODEL_SUPPLY_CHAIN,
        "A FIFO, socket or device file (or a link to one) among the files scanned: its bytes are "
        "produced when it is read, so they cannot be scanned, and reading it could block; it is "
        "not read.",
    ),
    Rule(
        "MW-SAFETENSORS-HEADER-SIZE",
        MEDIUM,
        "Bad safetensors header length",
        MODEL_SUPPLY_CHAIN,
        "The 8-byte header length runs past the file or over `max_header_bytes` (e.g. 2^63); "
        "nothing is allocated.",
    ),
    Rule(
        "MW-SAFETENSORS-HEADER-JSON",
        MEDIUM,
        "Malformed safetensors header JSON",
        MODEL_SUPPLY_CHAIN,
        "The header is not UTF-8, not JSON, not an object, repeats a key, or uses NaN/Infinity.",
    ),
    Rule(
        "MW-SAFETENSORS-TENSOR",
        MEDIUM,
        "Malformed safetensors tensor entry",
        MODEL_SUPPLY_CHAIN,
        "A tensor entry is not an object, has a missing or unknown dtype, or a shape that is not "
        "non-negative integers.",
    ),
    Rule(
        "MW-SAFETENSORS-OFFSETS",
        MEDIUM,
        "Bad safetensors data offsets",
        MODEL_SUPPLY_CHAIN,
        "`data_offsets` are malformed, run past the data section, or overlap another tensor.",
    ),
    Rule(
        "MW-SAFETENSORS-SIZE-MISMATCH",
        MEDIUM,
        "Safetensors tensor size mismatch",
        MODEL_SUPPLY_CHAIN,
        "dtype × shape does not equal the byte length the offsets give.",
    ),
    Rule(
        "MW-SAFETENSORS-HIDDEN-DATA",
        MEDIUM,
        "Hidden bytes in safetensors data",
        MODEL_SUPPLY_CHAIN,
        "Bytes of the data section (between tensors or after the last) belong to no tensor.",
    ),
    Rule(
        "MW-SAFETENSORS-METADATA",
        MEDIUM,
        "Malformed safetensors metadata",
        MODEL_SUPPLY_CHAIN,
        "`__metadata__` is not a map of strings to strings.",
    ),
    Rule(
        "MW-SAFETENSORS-METADATA-CODE",
        LOW,
        "Code in safetensors metadata",
        MODEL_SUPPLY_CHAIN,
        "A `__metadata__` value looks like code: Python with calls or imports (`lambda`, "
        "`__import__('os')...`, `eval(`), or a pickle (raw, base64 or hex). safetensors never runs"
        " it; code that reads the metadata might. Ordinary metadata (`format`, JSON configs, "
        "versions, digests) is clean.",
    ),
    Rule(
        "MW-SAFETENSORS-UNKNOWN-KEY",
        MEDIUM,
        "Unknown safetensors header key",
        MODEL_SUPPLY_CHAIN,
        "An unknown `__dunder__` top-level key, or unknown keys inside a tensor entry.",
    ),
    Rule(
        "MW-GGUF-MALFORMED",
        MEDIUM,
        "Malformed GGUF header",
        MODEL_SUPPLY_CHAIN,
        "The GGUF header cannot be read: bad version, a string or array longer than the file, "
        "unknown value type, too many dimensions, invalid UTF-8.",
    ),
    Rule(
        "MW-GGUF-COUNT",
        MEDIUM,
        "Impossible GGUF count",
        MODEL_SUPPLY_CHAIN,
        "The tensor or key/value count is more than the rest of the file can hold (e.g. 2^60).",
    ),
    Rule(
        "MW-GGUF-DUPLICATE",
        MEDIUM,
        "Duplicate GGUF key or tensor",
        MODEL_SUPPLY_CHAIN,
        "A metadata key or tensor name appears twice.",
    ),
    Rule(
        "MW-GGUF-ALIGNMENT",
        MEDIUM,
        "Bad GGUF alignment",
        MODEL_SUPPLY_CHAIN,
        "`general.alignment` is not a power-of-two uint32.",
    ),
    Rule(
        "MW-GGUF-TENSOR",
        MEDIUM,
        "Malformed GGUF tensor",
        MODEL_SUPPLY_CHAIN,
        "A tensor has an unknown type, an element count its type cannot hold, a misaligned offset,"
        " or bytes past the data section or overlapping another.",
    ),
    Rule(
        "MW-GGUF-HIDDEN-DATA",
        MEDIUM,
        "Hidden bytes in GGUF data",
        MODEL_SUPPLY_CHAIN,
        "Data-section bytes beyond alignment padding belong to no tensor.",
    ),
    Rule(
        "MW-TEMPLATE-DUNDER",
        HIGH,
        "Chat template reads a dunder attribute",
        MODEL_SUPPLY_CHAIN,
        "A chat template reads a `_private`/`__dunder__` attribute or key, or holds a dunder name "
        "in a string literal (template injection), including names built at render time (`'__cla' "
        "~ 'ss__'`, `|join`, `|reverse`, `|format`, `dict(...)` keys): every value an expression "
        "can take is judged.",
    ),
    Rule(
        "MW-TEMPLATE-ESCAPE-ROOT",
        HIGH,
        "Chat template uses a sandbox-escape global",
        MODEL_SUPPLY_CHAIN,
        "A chat template reads attributes of a Jinja/Flask global used to escape (`cycler`, "
        "`lipsum`, `namespace`, `self`, `config`, ...).",
    ),
    Rule(
        "MW-TEMPLATE-ATTR-FILTER",
        HIGH,
        "Chat template uses the attr filter",
        MODEL_SUPPLY_CHAIN,
        "A chat template uses `|attr(...)`, attribute lookup by a computed name.",
    ),
    Rule(
        "MW-TEMPLATE-COMPUTED-NAME",
        None,
        "Chat template looks up a computed name",
        MODEL_SUPPLY_CHAIN,
        "A chat template uses as an attribute or key a string built at render time that cannot be "
        "resolved to constants: low when built from template text, high when it starts with a "
        "known `_` prefix, medium when it can take more than 64 values or the evaluation budget "
        "runs out. Integer subscripts (`messages[loop.index0 + 1]`) are not names.",
        (LOW, MEDIUM, HIGH),
    ),
    Rule(
        "MW-TEMPLATE-DANGEROUS-NAME",
        HIGH,
        "Chat template names a dangerous function",
        MODEL_SUPPLY_CHAIN,
        "A chat template names `os`, `popen`, `eval`, `__import__`, `getattr` and the like.",
    ),
    Rule(
        "MW-TEMPLATE-IMPORT",
        HIGH,
        "Chat template imports another template",
        MODEL_SUPPLY_CHAIN,
        "A chat template imports, includes or extends another template.",
    ),
    Rule(
        "MW-TEMPLATE-UNPARSED",
        MEDIUM,
        "Chat template not analysed",
        MODEL_SUPPLY_CHAIN,
        "A chat template is not valid Jinja, nests too deeply, or is over 1,000,000 characters; "
        "not analysed.",
    ),
    Rule(
        "MW-ONNX-CUSTOM-OP",
        HIGH,
        "ONNX custom operator domain",
        MODEL_SUPPLY_CHAIN,
        "A node (main graph, If/Loop/Scan body, function, training graph) uses a custom operator "
        "domain; runtimes run those from native libraries.",
    ),
    Rule(
        "MW-ONNX-VENDOR-OP",
        LOW,
        "ONNX runtime vendor operator",
        MODEL_SUPPLY_CHAIN,
        "A node uses an operator built into a runtime (`com.microsoft`, `org.pytorch.aten`, ...).",
    ),
    Rule(
        "MW-ONNX-EXTERNAL-PATH",
        HIGH,
        "ONNX external data path escapes the model folder",
        MODEL_SUPPLY_CHAIN,
        "External tensor data is read from an absolute path, through `..`, or through a symlink "
        "that leaves the model's folder.",
    ),
    Rule(
        "MW-ONNX-EXTERNAL-MISSING",
        MEDIUM,
        "ONNX external data file missing",
        MODEL_SUPPLY_CHAIN,
        "An external data file the model names does not exist.",
    ),
    Rule(
        "MW-ONNX-EXTERNAL-DATA",
        None,
        "ONNX external data not checked",
        MODEL_SUPPLY_CHAIN,
        "External data names no file or bytes outside its file (medium), or sits inside a "
        "container where it cannot be checked (low).",
        (MEDIUM, LOW),
    ),
    Rule(
        "MW-ONNX-MALFORMED",
        MEDIUM,
        "Malformed ONNX protobuf",
        MODEL_SUPPLY_CHAIN,
        "The protobuf is malformed or truncated (anything protobuf's own parser would refuse, "
        "messages nested past its 100 levels included).",
    ),
    Rule(
        "MW-ONNX-TOO-LARGE",
        MEDIUM,
        "ONNX model too large",
        MODEL_SUPPLY_CHAIN,
        "The file is over protobuf's 2 GiB limit (walked field by field), or one "
        "node/function/tensor description is over `max_header_bytes`.",
    ),
    Rule(
        "MW-ONNX-DEPTH",
        MEDIUM,
        "ONNX subgraphs nested too deeply",
        MODEL_SUPPLY_CHAIN,
        "Subgraphs nest deeper than 32 levels; deeper ones are not checked.",
    ),
    Rule(
        "MW-ONNX-INFO",
        INFO,
        "ONNX model information",
        MODEL_SUPPLY_CHAIN,
        "IR version, producer and opsets of the model.",
    ),
    Rule(
        "MW-PICKLE-DANGEROUS-GLOBAL",
        CRITICAL,
        "Pickle runs a dangerous global",
        MODEL_SUPPLY_CHAIN,
        "Loading runs something dangerous: a deny-listed global (os/posix/subprocess, "
        "`builtins.eval`/`exec`, nested `pickle.loads`, `torch.load`, ...) is called, constructed "
        "or handed to something that calls it (a `defaultdict` factory, `functools.partial`, a "
        '`weakref.finalize` callback), directly or through a wrapper (`getattr(os, "system")`); or'
        " the knowledge base says the code a use runs reaches a sink (named in the message). "
        "`allow_globals` cannot override this.",
    ),
    Rule(
        "MW-PICKLE-DANGEROUS-REFERENCE",
        HIGH,
        "Pickle stores a dangerous global",
        MODEL_SUPPLY_CHAIN,
        "A deny-listed global is stored as a value and never called by the stream: loading runs "
        "nothing of it, but code that later uses the loaded object may.",
    ),
    Rule(
        "MW-PICKLE-UNKNOWN-GLOBAL",
        None,
        "Pickle imports an unknown global",
        MODEL_SUPPLY_CHAIN,
        "A name that neither the lists nor the knowledge base vouch for: high when the stream "
        "calls it with arguments it chose, low when it only constructs it or sets its state (its "
        "own `__new__`/`__setstate__` run: a `__main__` class of a training script), info when it "
        "is only referenced. `--strict` (`strict = true`) makes every one at least medium. Review "
        "it, then add the exact `module.qualname` to `allow_globals`.",
        (HIGH, LOW, INFO),
    ),
    Rule(
        "MW-PICKLE-HIDDEN-CALL",
        None,
        "Pickle makes a call that cannot be known",
        MODEL_SUPPLY_CHAIN,
        "What a call runs cannot be known from the file: a wrapper whose target is computed "
        "(`getattr` with a computed name, `type(name, bases, dict)`, an `operator.methodcaller` "
        "built and left for later) is critical; calling a value the stream computed is high.",
        (CRITICAL, HIGH),
    ),
    Rule(
        "MW-PICKLE-SIDE-EFFECT",
        HIGH,
        "Pickle calls a side-effect callable",
        MODEL_SUPPLY_CHAIN,
        "A pickle calls a callable no serializer calls while rebuilding an object "
        "(`builtins.print`): harmless code, but a probe or test payload; referencing one (a stored"
        " callback) is not reported.",
    ),
    Rule(
        "MW-PICKLE-DUNDER",
        CRITICAL,
        "Pickle goes through a dunder attribute",
        MODEL_SUPPLY_CHAIN,
        "An import path goes through a `__dunder__` attribute "
        "(`collections.OrderedDict.__init__.__globals__`, `getattr(x, '__reduce__')`), or "
        "BUILD/SETITEM writes dunder attributes on an object. Exempt: `__main__` as a module, and "
        "a BUILD that sets `__doc__`, `__module__`, `__name__` or `__qualname__` to a constant "
        "string, or `__orig_class__` (typing generics).",
    ),
    Rule(
        "MW-PICKLE-GLOBAL-MUTATION",
        None,
        "Pickle changes an imported global",
        MODEL_SUPPLY_CHAIN,
        "BUILD/SETITEM/APPEND changes an imported class or module itself (high); critical when the"
        " changed global is then called.",
        (HIGH, CRITICAL),
    ),
    Rule(
        "MW-PICKLE-EXTENSION",
        HIGH,
        "Pickle imports through the extension registry",
        MODEL_SUPPLY_CHAIN,
        "EXT1/EXT2/EXT4 import through the loading process's copyreg extension registry: the "
        "target cannot be known from the file.",
    ),
    Rule(
        "MW-PICKLE-DYNAMIC-GLOBAL",
        None,
        "Pickle imports a computed name",
        MODEL_SUPPLY_CHAIN,
        "STACK_GLOBAL's module or name is computed by a call (or too long to read), so the import "
        "cannot be vetted: critical when the stream calls or constructs what it imported, high "
        "when it only holds it.",
        (CRITICAL, HIGH),
    ),
    Rule(
        "MW-PICKLE-ALLOWED-BY-CONFIG",
        INFO,
        "Pickle global allowed by configuration",
        MODEL_SUPPLY_CHAIN,
        "A global that is not on the shipped allow-list was accepted because the user's "
        "`allow_globals` lists it.",
    ),
    Rule(
        "MW-PICKLE-MALFORMED",
        MEDIUM,
        "Malformed pickle stream",
        MODEL_SUPPLY_CHAIN,
        "A pickle stream is truncated or damaged (bad opcode, a length past the data such as 2^63,"
        " stack underflow, missing memo key, unknown protocol); findings before the damage are "
        "kept.",
    ),
    Rule(
        "MW-PICKLE-LIMIT",
        MEDIUM,
        "Pickle scan limit reached",
        MODEL_SUPPLY_CHAIN,
        "A pickle hit `max_pickle_opcodes`, `max_pickle_bytes` (bytes held for analysis) or "
        "`max_pickle_streams`; the rest was not scanned.",
    ),
    Rule(
        "MW-PICKLE-NESTING",
        MEDIUM,
        "Pickle nests too many marks",
        MODEL_SUPPLY_CHAIN,
        "More than 1000 MARKs open at once: crafted to exhaust a loader or scanner.",
    ),
    Rule(
        "MW-PICKLE-TRAILING",
        LOW,
        "Bytes after the pickle stream",
        MODEL_SUPPLY_CHAIN,
        "Bytes after the last pickle stream are not a pickle (a loader ignores them; they can hide"
        " a payload for another tool).",
    ),
    Rule(
        "MW-PICKLE-EMBEDDED",
        MEDIUM,
        "Dangerous pickle embedded as data",
        MODEL_SUPPLY_CHAIN,
        "A pickle carried as data inside a pickle (a bytes or str argument: raw, base64, hex, "
        "zlib, or layers of those, up to 3 pickles deep) imports a deny-listed name or calls one "
        "nothing vouches for; loading the file does not run it, whatever unpickles that data later"
        " does. The evidence names the encoding. Also reported when such a payload is over 16 MiB "
        "and was not read.",
    ),
    Rule(
        "MW-ARCHIVE-PATH-TRAVERSAL",
        HIGH,
        "Member or listed path escapes its folder",
        MODEL_SUPPLY_CHAIN,
        "A tar or 7z member's path, or a file path a remote listing gives (Hub, S3), is absolute"
        " or climbs out of its folder with `..`; a remote file so named is scanned but never"
        " written to disk.",
    ),
    Rule(
        "MW-ARCHIVE-LINK-ESCAPE",
        HIGH,
        "Archive link points outside the archive",
        MODEL_SUPPLY_CHAIN,
        "A tar symlink or hard link points outside the archive (absolute, or `..` past its root).",
    ),
    Rule(
        "MW-ARCHIVE-LINK",
        LOW,
        "Archive holds a link",
        MODEL_SUPPLY_CHAIN,
        "A tar holds a symlink or hard link that stays inside the archive, or a 7z holds a symlink"
        " (a note; the target is scanned as its own member).",
    ),
    Rule(
        "MW-ARCHIVE-SPECIAL-MEMBER",
        MEDIUM,
        "Archive holds a device or FIFO",
        MODEL_SUPPLY_CHAIN,
        "A tar holds a device or FIFO member; no model needs one.",
    ),
    Rule(
        "MW-ARCHIVE-UNSUPPORTED-MEMBER",
        MEDIUM,
        "Unsupported archive member",
        MODEL_SUPPLY_CHAIN,
        "A sparse tar member (its holes can expand without limit); not scanned.",
    ),
    Rule(
        "MW-ARCHIVE-BOMB",
        MEDIUM,
        "Archive or compression bomb",
        MODEL_SUPPLY_CHAIN,
        "A gzip/bzip2/xz stream expands past `max_compression_ratio` × its size (once over 1 MiB) "
        "or past `max_decompressed_bytes`, or a tar's members add up past "
        "`max_decompressed_bytes`, or a 7z's members declare more than `max_decompressed_bytes` "
        "(one or all) or `max_compression_ratio` × the archive size; the content is not scanned.",
    ),
    Rule(
        "MW-ARCHIVE-TOO-MANY-MEMBERS",
        MEDIUM,
        "Archive holds too many members",
        MODEL_SUPPLY_CHAIN,
        "A tar or 7z holds more than `max_members` members; the rest are not scanned.",
    ),
    Rule(
        "MW-ARCHIVE-MALFORMED",
        MEDIUM,
        "Malformed archive or compressed stream",
        MODEL_SUPPLY_CHAIN,
        "A tar, 7z or compressed stream is corrupt or truncated (or a 7z uses a method py7zr "
        "cannot decode), a tar member claims more bytes than the archive holds, or a tar extended "
        "header (GNU long name, pax) is over 1 MiB; what follows is not scanned.",
    ),
    Rule(
        "MW-ARCHIVE-TRAILING-DATA",
        MEDIUM,
        "Data after the end of a tar archive",
        MODEL_SUPPLY_CHAIN,
        "Non-zero bytes follow a tar's end-of-archive blocks: tar readers ignore them, zip readers"
        " (`torch.load`) may load them; scanned as the member `<after-tar>`.",
    ),
    Rule(
        "MW-ARCHIVE-ENCRYPTED",
        LOW,
        "Encrypted 7z archive",
        MODEL_SUPPLY_CHAIN,
        "A 7z archive is encrypted (its content, or its header too): its members cannot be "
        "scanned, and no loader opens them without the password.",
    ),
    Rule(
        "MW-ARCHIVE-POLYGLOT",
        HIGH,
        "Tar archive that is also a pickle",
        MODEL_SUPPLY_CHAIN,
        "A tar's first header is also a pickle (protocol 0 fits in the name field): `pickle.load` "
        "would run it; it is scanned as a pickle too.",
    ),
    Rule(
        "MW-HF-CUSTOM-CODE",
        MEDIUM,
        "Repository runs its own code when loaded",
        MODEL_SUPPLY_CHAIN,
        "The repository runs its own code when loaded: `auto_map` in any loader config (also "
        "tokenizer- or processor-only folders), `custom_pipelines`, `custom_generate/generate.py`."
        " Medium at least; graded up to the worst use in the modules it names and their relative "
        "imports. Missing modules are listed (fetched at load time, unscanned).",
    ),
    Rule(
        "MW-HF-REMOTE-CODE",
        HIGH,
        "Repository loads code from another repository",
        MODEL_SUPPLY_CHAIN,
        "An `auto_map` entry (`org/repo--module.Class`) imports code from another repository, "
        "downloaded and run at load time.",
    ),
    Rule(
        "MW-HF-CODE-PATH",
        HIGH,
        "Bad auto_map module path",
        MODEL_SUPPLY_CHAIN,
        "An `auto_map` module is not a Python module name (`../../x`, `/abs`): loaders build "
        "download and copy paths from it.",
    ),
    Rule(
        "MW-HF-PICKLE-WEIGHTS",
        LOW,
        "Pickle weights beside safetensors",
        MODEL_SUPPLY_CHAIN,
        "Pickle-based files (`pytorch_model.bin`, `*.pt`, `*.ckpt`, `*.pkl`, `*.joblib`...) sit "
        "next to safetensors weights: prefer safetensors.",
    ),
    Rule(
        "MW-HF-SYMLINK-ESCAPE",
        HIGH,
        "Symlink escapes the model folder",
        MODEL_SUPPLY_CHAIN,
        "A symlink in a model folder resolves outside it (outside `blobs/` for a hub cache "
        "snapshot).",
    ),
    Rule(
        "MW-HF-CONFIG-MALFORMED",
        MEDIUM,
        "Malformed loader config",
        MODEL_SUPPLY_CHAIN,
        "A model folder's loader config (`config.json`, tokenizer/processor configs), chat "
        "template file or their `auto_map`/`custom_pipelines`/`chat_template` does not parse or is"
        " over 16 MiB; what it names is not checked.",
    ),
    Rule(
        "MW-KERAS-LAMBDA",
        None,
        "Keras Lambda carries Python code",
        MODEL_SUPPLY_CHAIN,
        "A Keras `Lambda` (or any `__lambda__` function) carries marshalled Python bytecode "
        "(base64 or raw), read by our own marshal reader, or its `function`/`output_shape` is "
        "Python source (Keras 3, tf.keras `lambda`/`raw`, `.keras` and `.h5`); critical when its "
        "names reach the OS or run code (`os`, `system`, `eval`, `__import__`...), high otherwise "
        "or when unreadable. Runs with `safe_mode=False` and in legacy tf.keras.",
        (HIGH, CRITICAL),
    ),
    Rule(
        "MW-KERAS-FUNCTION",
        None,
        "Keras config names a function outside Keras",
        MODEL_SUPPLY_CHAIN,
        'A config names a plain function outside Keras (`{"class_name": "function", "module": '
        "...}`, legacy `function_type: function`); critical when it is dangerous (`os.system`, "
        "`builtins.eval`...) or one of Keras's own that downloads, writes files or turns safe_mode"
        " off (`keras.utils.get_file`, `enable_unsafe_deserialization`; `data/keras.toml`).",
        (HIGH, CRITICAL),
    ),
    Rule(
        "MW-KERAS-TORCH-MODULE",
        HIGH,
        "Keras TorchModuleWrapper embeds a pickle",
        MODEL_SUPPLY_CHAIN,
        "A `TorchModuleWrapper` embeds a base64 `torch.save` pickle that "
        "`torch.load(weights_only=False)` unpickles with safe_mode off; the pickle is scanned as a"
        " member.",
    ),
    Rule(
        "MW-KERAS-CUSTOM-OBJECT",
        None,
        "Keras custom object imports outside code",
        MODEL_SUPPLY_CHAIN,
        "A class from a module outside Keras or a registered `package>Name`: custom code is "
        "imported at load time; critical when the module is a dangerous one (`subprocess`...).",
        (MEDIUM, CRITICAL),
    ),
    Rule(
        "MW-KERAS-CONFIG-MALFORMED",
        MEDIUM,
        "Malformed Keras config",
        MODEL_SUPPLY_CHAIN,
        "A Keras config (`config.json`, `model_config`, keras_metadata JSON) is not JSON or not "
        "text; not analysed.",
    ),
    Rule(
        "MW-KERAS-CONFIG-TOO-LARGE",
        MEDIUM,
        "Keras config too large",
        MODEL_SUPPLY_CHAIN,
        "A Keras config is over `max_header_bytes` or 2,000,000 JSON values; (the rest) not "
        "analysed.",
    ),
    Rule(
        "MW-HDF5-MALFORMED",
        MEDIUM,
        "Malformed HDF5 file",
        MODEL_SUPPLY_CHAIN,
        "An HDF5 file cannot be opened or its root attributes read (what the HDF5 library would "
        "refuse: bad checksum, truncated, unknown versions), or it breaks a reader bound (cycles, "
        "sizes past the file).",
    ),
    Rule(
        "MW-HDF5-TOO-LARGE",
        MEDIUM,
        "HDF5 member too large",
        MODEL_SUPPLY_CHAIN,
        "An HDF5 member of a container is over `max_header_bytes`, the most read into memory to "
        "open it; attributes not checked.",
    ),
    Rule(
        "MW-HDF5-NO-KERAS-CONFIG",
        INFO,
        "HDF5 file without a Keras config",
        MODEL_SUPPLY_CHAIN,
        "HDF5 without `model_config`/`training_config` (weights or data only); datasets are never "
        "read.",
    ),
    Rule(
        "MW-TF-DANGEROUS-OP",
        None,
        "SavedModel uses a dangerous op",
        MODEL_SUPPLY_CHAIN,
        "A SavedModel graph or function uses an op that reaches files, processes or Python "
        "(`ReadFile`, `WriteFile`, `PyFunc`, `ImmutableConst`, ...; severities in "
        "`data/tf_ops.toml`).",
        (LOW, MEDIUM, HIGH),
    ),
    Rule(
        "MW-TF-CUSTOM-OP",
        MEDIUM,
        "SavedModel uses a custom op",
        MODEL_SUPPLY_CHAIN,
        "A SavedModel op is not a standard TensorFlow op: a custom op library (native code) must "
        "be loaded.",
    ),
    Rule(
        "MW-TF-SAVER-OP-OUTSIDE-SAVER",
        LOW,
        "Checkpoint op outside the saver",
        MODEL_SUPPLY_CHAIN,
        "A checkpoint op (`SaveV2`, `RestoreV2`...) outside the standard traced save/restore "
        "functions or `save/` scope.",
    ),
    Rule(
        "MW-TF-MALFORMED",
        MEDIUM,
        "Malformed SavedModel protobuf",
        MODEL_SUPPLY_CHAIN,
        "`saved_model.pb` / `keras_metadata.pb` is not a well-formed protobuf, or has no meta "
        "graph.",
    ),
    Rule(
        "MW-TF-UNSUPPORTED",
        MEDIUM,
        "Text-format SavedModel not parsed",
        MODEL_SUPPLY_CHAIN,
        "A text-format `saved_model.pbtxt`, which TensorFlow loads, is not parsed; its ops were "
        "not checked.",
    ),
    Rule(
        "MW-TF-TOO-LARGE",
        MEDIUM,
        "SavedModel protobuf too large",
        MODEL_SUPPLY_CHAIN,
        "A SavedModel protobuf is over `max_header_bytes`; not scanned.",
    ),
    Rule(
        "MW-TORCHSCRIPT-CUSTOM-OP",
        None,
        "TorchScript calls a custom op namespace",
        MODEL_SUPPLY_CHAIN,
        "TorchScript code calls `ops.<namespace>` / `torch.ops.<namespace>` outside PyTorch's own "
        "namespaces (`data/torchscript.toml`): native code from an outside library. Critical in "
        "code `torch.jit.load` runs (`__setstate__` and what it calls), high in methods that run "
        "when called.",
        (CRITICAL, HIGH),
    ),
    Rule(
        "MW-TORCHSCRIPT-CUSTOM-CLASS",
        None,
        "TorchScript uses a custom class namespace",
        MODEL_SUPPLY_CHAIN,
        "A custom class `torch.classes.<namespace>` outside PyTorch's own namespaces "
        "(`data/torchscript.toml`): an object of it in a pickle, or a reference in code that runs "
        "at load, is critical (its native `__setstate__` runs in `torch.jit.load`); a reference "
        "only in methods that run when called is high.",
        (CRITICAL, HIGH),
    ),
    Rule(
        "MW-TORCHSCRIPT-EXEC",
        None,
        "TorchScript runs or loads code",
        MODEL_SUPPLY_CHAIN,
        "TorchScript code runs or loads code (`eval`, `__import__`, `torch.jit.load`, `torch.hub`,"
        " `torch.package`...): critical in code `torch.jit.load` runs (`__setstate__` and what it "
        "calls), high in methods that run when called.",
        (CRITICAL, HIGH),
    ),
    Rule(
        "MW-TORCHSCRIPT-PROCESS",
        None,
        "TorchScript starts processes or native code",
        MODEL_SUPPLY_CHAIN,
        "TorchScript code starts processes or loads native code (`os.system`, `subprocess`, "
        "`torch.ops.load_library`, `cpp_extension`...): critical in code `torch.jit.load` runs "
        "(`__setstate__` and what it calls), high in methods that run when called.",
        (CRITICAL, HIGH),
    ),
    Rule(
        "MW-TORCHSCRIPT-NETWORK",
        None,
        "TorchScript opens network connections",
        MODEL_SUPPLY_CHAIN,
        "TorchScript code opens network connections or calls RPC (`socket`, "
        "`torch.distributed.rpc`...): critical in code `torch.jit.load` runs (`__setstate__` and "
        "what it calls), high in methods that run when called.",
        (CRITICAL, HIGH),
    ),
    Rule(
        "MW-TORCHSCRIPT-DESERIALISE",
        None,
        "TorchScript deserialises data",
        MODEL_SUPPLY_CHAIN,
        "TorchScript code deserialises data (`pickle.loads`, `torch.jit._pickle.loads`...): "
        "critical in code `torch.jit.load` runs (`__setstate__` and what it calls), high in "
        "methods that run when called.",
        (CRITICAL, HIGH),
    ),
    Rule(
        "MW-TORCHSCRIPT-FILESYSTEM",
        None,
        "TorchScript reads or writes files",
        MODEL_SUPPLY_CHAIN,
        "TorchScript code reads or writes files (`torch.save`, `torch.from_file`, `open`...): high"
        " in code `torch.jit.load` runs, medium in methods that run when called.",
        (HIGH, MEDIUM),
    ),
    Rule(
        "MW-TORCHSCRIPT-REFLECTION",
        None,
        "TorchScript looks up a computed name",
        MODEL_SUPPLY_CHAIN,
        "TorchScript code looks names up by computed value (`getattr` with a computed name...): "
        "high in code `torch.jit.load` runs, medium in methods that run when called.",
        (HIGH, MEDIUM),
    ),
    Rule(
        "MW-TORCHSCRIPT-IMPORT",
        None,
        "TorchScript imports an OS module",
        MODEL_SUPPLY_CHAIN,
        "TorchScript code imports an OS module (`subprocess`, `socket`, `ctypes`...): high in code"
        " `torch.jit.load` runs, medium in methods that run when called.",
        (HIGH, MEDIUM),
    ),
    Rule(
        "MW-TORCHSCRIPT-CODE-UNPARSEABLE",
        MEDIUM,
        "TorchScript code not analysed",
        MODEL_SUPPLY_CHAIN,
        "A TorchScript code member does not parse or is over 4 MiB; not analysed.",
    ),
    Rule(
        "MW-PYCODE-EXEC",
        CRITICAL,
        "Python source runs or loads code",
        MODEL_SUPPLY_CHAIN,
        "Python source runs or loads code: `exec`/`eval`/`compile` (folded strings analysed too), "
        "`runpy`, `code`, `marshal`, `torch.hub.load`, `timeit` statements, `logging.config` (high"
        ' unless a `"()"` factory), import hooks, a write into site-packages '
        "(`.pth`/sitecustomize), `__subclasses__`/`__globals__`/`__builtins__`; names written "
        "indirectly are resolved. `trust_remote_code=True` is medium.",
    ),
    Rule(
        "MW-PYCODE-PROCESS",
        CRITICAL,
        "Python source starts processes or native code",
        MODEL_SUPPLY_CHAIN,
        "Python source starts processes or native code (`os.system`, `subprocess.*`, `pty`, "
        "`ctypes`, `pydoc` pagers, `cpp_extension.load[_inline]`, `torch.ops.load_library`...); "
        "worker pools (`multiprocessing`) medium.",
    ),
    Rule(
        "MW-PYCODE-NETWORK",
        HIGH,
        "Python source opens network connections",
        MODEL_SUPPLY_CHAIN,
        "Python source opens network connections (`socket`, `urllib`, `requests`...).",
    ),
    Rule(
        "MW-PYCODE-DESERIALISE",
        HIGH,
        "Python source unpickles data",
        MODEL_SUPPLY_CHAIN,
        "Python source unpickles (`pickle.loads`, `torch.load`, `joblib.load`...).",
    ),
    Rule(
        "MW-PYCODE-FILESYSTEM",
        LOW,
        "Python source opens or changes files",
        MODEL_SUPPLY_CHAIN,
        "Python source opens or changes files (`open`, `os.remove`, `shutil`...); high when it "
        "writes to the home folder, an absolute path or beside its own module.",
    ),
    Rule(
        "MW-PYCODE-REFLECTION",
        LOW,
        "Python source looks up a computed name",
        MODEL_SUPPLY_CHAIN,
        "`getattr`/`setattr`/`globals()`... with a computed name; medium for a module imported by "
        "a run-time name; high for a computed attribute of an OS module (`getattr(os, name)`).",
    ),
    Rule(
        "MW-PYCODE-IMPORT",
        LOW,
        "Python source imports an OS module",
        MODEL_SUPPLY_CHAIN,
        "Python source imports a module whose whole purpose reaches the OS (`subprocess`, "
        "`socket`, `ctypes`...).",
    ),
    Rule(
        "MW-PYCODE-UNPARSEABLE",
        MEDIUM,
        "Python source not analysed",
        MODEL_SUPPLY_CHAIN,
        "Python source does not parse, nests too deeply or is over 4 MiB; not analysed.",
    ),
    Rule(
        "MW-ZIP-CORRUPT",
        MEDIUM,
        "Corrupt zip",
        MODEL_SUPPLY_CHAIN,
        "The zip's End Of Central Directory or central directory is inconsistent (entries past the"
        " file, bad signatures, truncated), a member cannot be opened or decompressed, or a stored"
        " member's sizes differ; members not scanned.",
    ),
    Rule(
        "MW-ZIP-TOO-MANY-MEMBERS",
        MEDIUM,
        "Zip holds too many members",
        MODEL_SUPPLY_CHAIN,
        "The zip declares more members than `max_members`; not scanned.",
    ),
    Rule(
        "MW-ZIP-PATH-TRAVERSAL",
        HIGH,
        "Zip member path escapes the extraction folder",
        MODEL_SUPPLY_CHAIN,
        "A member name is absolute, has a drive letter, a NUL or a `..` component: extraction "
        "writes outside the target.",
    ),
    Rule(
        "MW-ZIP-DUPLICATE-NAME",
        MEDIUM,
        "Zip members with indistinguishable names",
        MODEL_SUPPLY_CHAIN,
        "Two members a loader's reader cannot tell apart (same name; for `zipfile` the same name "
        "up to a NUL, for torch's miniz the same name in any ASCII case); readers may use "
        "different copies. Every copy is scanned.",
    ),
    Rule(
        "MW-ZIP-READERS-DISAGREE",
        HIGH,
        "Zip readers see different members",
        MODEL_SUPPLY_CHAIN,
        "Python's `zipfile` and torch's miniz read different central directories from the file (a "
        "second end record in the comment, a ZIP64 locator pointing elsewhere, offsets only one "
        "reader adjusts): crafted to show a scanner other members than a loader. The members of "
        "both readings are scanned.",
    ),
    Rule(
        "MW-ZIP-OVERLAP",
        HIGH,
        "Overlapping zip members",
        MODEL_SUPPLY_CHAIN,
        "Member data overlap each other (non-recursive zip bombs, evasion).",
    ),
    Rule(
        "MW-ZIP-BOMB",
        MEDIUM,
        "Zip bomb",
        MODEL_SUPPLY_CHAIN,
        "A member's declared compression ratio exceeds `max_compression_ratio`, or all members "
        "together declare more than `max_decompressed_bytes`. Reading is capped anyway "
        "(`MW-LIMIT-SIZE`).",
    ),
    Rule(
        "MW-ZIP-ENCRYPTED",
        LOW,
        "Encrypted zip member",
        MODEL_SUPPLY_CHAIN,
        "An encrypted member cannot be scanned; no model loader opens it without the password "
        "(`torch.load`, `np.load`, Keras and `zipfile` all fail), so nothing in it runs by loading"
        " the file.",
    ),
    Rule(
        "MW-ZIP-UNSUPPORTED",
        MEDIUM,
        "Unsupported zip compression method",
        MODEL_SUPPLY_CHAIN,
        "A member uses a compression method other than stored/deflate/bzip2/lzma; not scanned.",
    ),
    Rule(
        "MW-ZIP-SYMLINK",
        MEDIUM,
        "Zip member is a symbolic link",
        MODEL_SUPPLY_CHAIN,
        "A member is a symbolic link (Unix mode in its external attributes).",
    ),
    Rule(
        "MW-ZIP-PREFIX",
        MEDIUM,
        "Bytes before the zip",
        MODEL_SUPPLY_CHAIN,
        "Bytes precede the zip (polyglot or self-extracting stub); other readers may load them "
        "instead. The prefix is scanned as its own member `<zip-prefix>`.",
    ),
    Rule(
        "MW-TORCH-UNEXPECTED-MEMBER",
        MEDIUM,
        "Unexpected member in a torch.save zip",
        MODEL_SUPPLY_CHAIN,
        "A `torch.save` zip holds a member it never writes (code, another pickle, a binary); every"
        " `*.pkl` member is scanned as a pickle, other extras by content.",
    ),
    Rule(
        "MW-PT2-UNEXPECTED-MEMBER",
        LOW,
        "Unexpected member in a torch.export archive",
        MODEL_SUPPLY_CHAIN,
        "A `torch.export` archive holds a member `torch.export.save` does not write and "
        "`torch.export.load` does not read; it is scanned by content.",
    ),
    Rule(
        "MW-PT2-MALFORMED",
        LOW,
        "Malformed torch.export member",
        MODEL_SUPPLY_CHAIN,
        "A `torch.export` member the loader reads is not what it expects (a payload config or "
        "graph that is not JSON, a pickled member with no pickle): the loader refuses the archive.",
    ),
    Rule(
        "MW-PT2-NATIVE-CODE",
        MEDIUM,
        "Native code in a torch.export archive",
        MODEL_SUPPLY_CHAIN,
        "A `torch.export` archive holds AOTInductor native code (a shared library) that loading "
        "runs; it cannot be analysed.",
    ),
    Rule(
        "MW-TORCH-MALFORMED",
        MEDIUM,
        "Malformed PyTorch checkpoint",
        MODEL_SUPPLY_CHAIN,
        "A legacy checkpoint has fewer than its five leading pickles, a zip checkpoint's pickle "
        "member holds no pickle, or a legacy tar checkpoint's `storages`/`tensors` record cannot "
        "be followed the way `torch.load` reads it (unknown storage type, a count that is no plain"
        " integer, raw bytes past the record); the pickles after that point are not scanned.",
    ),
    Rule(
        "MW-JOBLIB-LAYOUT",
        MEDIUM,
        "Unreadable joblib array layout",
        MODEL_SUPPLY_CHAIN,
        "A joblib array wrapper's shape/dtype cannot be read or the pickle is damaged, so where "
        "raw array bytes end is unknown; the rest of the file is not scanned.",
    ),
    Rule(
        "MW-JOBLIB-CORRUPT",
        None,
        "Corrupt joblib stream",
        MODEL_SUPPLY_CHAIN,
        "Medium: a compressed joblib stream (zlib, gzip, bz2, xz, lzma, `ZF`) is corrupt or "
        "truncated; what decompressed before the damage is scanned. Low: a joblib < 0.10 `ZF` "
        "array file whose content is longer or shorter than its header declares (joblib's "
        "`read_zfile` refuses it).",
        (MEDIUM, LOW),
    ),
    Rule(
        "MW-JOBLIB-EXTERNAL-ARRAY",
        None,
        "Joblib loads an external array file",
        MODEL_SUPPLY_CHAIN,
        "A legacy `NDArrayWrapper` (joblib < 0.10) makes `joblib.load` call `np.load(..., "
        "allow_pickle=True)` on a file the pickle names (`ZNDArrayWrapper`: a zlib read): critical"
        " (high for `ZNDArrayWrapper`) when the path is absolute, climbs out with `..` or is "
        "computed; low for a sibling file of a multi-file dump, which should be scanned too.",
        (CRITICAL, HIGH, LOW),
    ),
    Rule(
        "MW-NUMPY-HEADER",
        MEDIUM,
        "Malformed NumPy header",
        MODEL_SUPPLY_CHAIN,
        "An `.npy` header is not a dict literal with exactly `descr`, `fortran_order`, `shape`, "
        "its length runs past the file or `max_header_bytes`, or its dtype is not understood.",
    ),
    Rule(
        "MW-NUMPY-TRUNCATED",
        MEDIUM,
        "Truncated NumPy array",
        MODEL_SUPPLY_CHAIN,
        "shape × itemsize needs more bytes than the file holds.",
    ),
    Rule(
        "MW-NUMPY-TRAILING",
        LOW,
        "Bytes after the NumPy array",
        MODEL_SUPPLY_CHAIN,
        "Bytes follow the array data; `np.load` ignores them.",
    ),
    Rule(
        "MW-NUMPY-OBJECT",
        None,
        "NumPy object array",
        MODEL_SUPPLY_CHAIN,
        "Low: an object array (its pickle is scanned; loading needs `allow_pickle=True`). Medium: "
        "an object array with no pickle after its header.",
        (LOW, MEDIUM),
    ),
    Rule(
        "MW-GATE-SCAN",
        None,
        "Gate: scan finding over the policy threshold",
        None,
        "`modelward gate`: a scan finding at or above the policy's `fail_on`, or a file the scan "
        "could not read (see docs/policy.md).",
        (),
    ),
    Rule(
        "MW-GATE-LOCK-DRIFT",
        HIGH,
        "Gate: model differs from its lock entry",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: the model differs from its `models.lock` entry, or the entry cannot be "
        "checked.",
    ),
    Rule(
        "MW-GATE-LOCK-INVALID",
        HIGH,
        "Gate: invalid lock file",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: the lock file is malformed or of an unsupported version.",
    ),
    Rule(
        "MW-GATE-UNLOCKED",
        HIGH,
        "Gate: model not locked",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: a lock is required but there is no lock file or no entry for the model.",
    ),
    Rule(
        "MW-GATE-UNSIGNED",
        HIGH,
        "Gate: model not signed",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: a signature is required (or `--signature` given) but the bundle does "
        "not exist.",
    ),
    Rule(
        "MW-GATE-SIGNATURE-INVALID",
        HIGH,
        "Gate: invalid signature",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: the bundle is malformed or does not verify with any trusted key.",
    ),
    Rule(
        "MW-GATE-SIGNATURE-MISMATCH",
        HIGH,
        "Gate: model differs from what was signed",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: a trusted key signed the bundle but the model differs from what it "
        "signed.",
    ),
    Rule(
        "MW-GATE-SOURCE",
        HIGH,
        "Gate: source not allowed",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: hub organisation not in `allowed_orgs`, or a local model outside "
        "`allowed_paths`.",
    ),
    Rule(
        "MW-GATE-PICKLE-FORBIDDEN",
        HIGH,
        "Gate: pickle weights forbidden",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: a pickle-family weight file where `forbid_pickle` or `safetensors_only`"
        " is set.",
    ),
    Rule(
        "MW-GATE-NOT-SAFETENSORS",
        HIGH,
        "Gate: weights are not safetensors",
        MODEL_SUPPLY_CHAIN,
        "`modelward gate`: a non-safetensors weight file where `safetensors_only` is set.",
    ),
    Rule(
        "MW-NAME-TYPOSQUAT",
        None,
        "Look-alike hub organisation",
        MODEL_SUPPLY_CHAIN,
        "`modelward names`: a hub organisation (or a known organisation's model) close to a "
        "well-known one: edit distance 1 (high) or 2 (medium), other separators "
        "(`openai_community`), or an official-looking affix (`meta-llama-official`, `real-openai`,"
        " `google-ai`).",
        (HIGH, MEDIUM),
    ),
    Rule(
        "MW-NAME-HOMOGLYPH",
        HIGH,
        "Homoglyph name",
        None,
        "`modelward names`: a hub id or PyPI name that renders like a well-known one: "
        "Cyrillic/Greek look-alikes, full-width forms, `rn`→`m`, `l`/`1`/`I`, `0`/`o`; the "
        "evidence names the character and its position.",
    ),
    Rule(
        "MW-NAME-NON-ASCII",
        MEDIUM,
        "Non-ASCII name",
        None,
        "`modelward names`: a hub id or PyPI name with non-ASCII characters that resembles no "
        "known name (neither registry allows them).",
    ),
    Rule(
        "MW-NAME-ORG-CONFUSION",
        MEDIUM,
        "Well-known model under an unknown organisation",
        MODEL_SUPPLY_CHAIN,
        "`modelward names`: a well-known model's name under an organisation that is not known "
        "(`someone/Llama-3-8B` for `meta-llama/Meta-Llama-3-8B`): a re-upload or an impersonation.",
    ),
    Rule(
        "MW-NAME-PACKAGE-TYPOSQUAT",
        None,
        "Look-alike PyPI package",
        SOFTWARE_SUPPLY_CHAIN,
        "`modelward names`: a requirement close to a popular PyPI project (`reqeusts`, `numpyy`): "
        "edit distance 1 (high) or 2 (medium), or other separators. Names are compared after PEP "
        "503 normalisation, so `scikit_learn` is clean.",
        (HIGH, MEDIUM),
    ),
    Rule(
        "MW-NAME-PACKAGE-ALIAS",
        LOW,
        "PyPI name that is not the project meant",
        SOFTWARE_SUPPLY_CHAIN,
        "`modelward names`: a PyPI name that is not the project usually meant (`pytorch` is a "
        "placeholder for `torch`, `sklearn` for `scikit-learn`).",
    ),
    Rule(
        "MW-DIFF-TENSOR-ADDED",
        HIGH,
        "Tensor added",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: the candidate has a tensor (or ONNX initializer) the reference does not"
        " (ATLAS AML.T0018.001).",
    ),
    Rule(
        "MW-DIFF-TENSOR-REMOVED",
        HIGH,
        "Tensor removed",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: a tensor of the reference is missing from the candidate.",
    ),
    Rule(
        "MW-DIFF-SHAPE",
        HIGH,
        "Tensor shape changed",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: a tensor of the same name has a different shape.",
    ),
    Rule(
        "MW-DIFF-DTYPE",
        MEDIUM,
        "Tensor dtype changed",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: a tensor of the same name has a different dtype.",
    ),
    Rule(
        "MW-DIFF-NODE-ADDED",
        HIGH,
        "Node or layer added",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: an ONNX node or Keras layer that matches nothing in the reference (by "
        "name or structure); pre/post-processing roles are named.",
    ),
    Rule(
        "MW-DIFF-NODE-REMOVED",
        HIGH,
        "Node or layer removed",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: a node or layer of the reference matches nothing in the candidate.",
    ),
    Rule(
        "MW-DIFF-NODE-CHANGED",
        None,
        "Node or layer changed",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: a matched node's op type, attributes (subgraph bodies included) or "
        "inputs changed; high when it reads a model input or writes a model output.",
        (MEDIUM, HIGH),
    ),
    Rule(
        "MW-DIFF-IO",
        MEDIUM,
        "Model inputs or outputs changed",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: model inputs or outputs were added or removed.",
    ),
    Rule(
        "MW-DIFF-OUTPUT-REWIRED",
        CRITICAL,
        "Model output rewired",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: a model output now depends on nodes, initializers or inputs it did not "
        "depend on in the reference (a spliced-in branch).",
    ),
    Rule(
        "MW-DIFF-WEIGHT-DRIFT",
        None,
        "Tensor values changed",
        MODIFY_ARCHITECTURE,
        "`modelward diff --weights`: a tensor's values changed; max abs diff, relative L2 and, for"
        " a float matrix, the numerical rank of the change in the message; low above relative L2 "
        "0.5.",
        (INFO, LOW),
    ),
    Rule(
        "MW-DIFF-SURGICAL-EDIT",
        HIGH,
        "Surgical low-rank model edit",
        MANIPULATE_MODEL,
        "`modelward diff --weights`: a few matrices (at most max(5, 5 %) of them, in at most half "
        "the layers) changed, each by a low-rank update, the rest identical: a ROME/MEMIT-style "
        "model edit (PoisonGPT), not a fine-tune of the reference; the layers, tensors and ranks "
        "are named (ATLAS AML.T0018).",
    ),
    Rule(
        "MW-DIFF-LORA-MERGE",
        INFO,
        "Merged LoRA adapter",
        MANIPULATE_MODEL,
        "`modelward diff --weights`: most changed matrices changed by low-rank updates, across "
        "many layers: a merged LoRA adapter; roles and ranks in the message (AML.T0018).",
    ),
    Rule(
        "MW-DIFF-FINE-TUNE",
        INFO,
        "Fine-tune of the reference",
        MANIPULATE_MODEL,
        "`modelward diff --weights`: most changed matrices changed at (near) full rank: a "
        "fine-tune (AML.T0018).",
    ),
    Rule(
        "MW-DIFF-SUMMARY",
        INFO,
        "Diff summary",
        MODIFY_ARCHITECTURE,
        "`modelward diff`: the verdict (identical, weights only, architecture changed) and the "
        "counts (and the change pattern with `--weights`).",
    ),
    Rule(
        "MW-DATA-POISON-CLASS",
        HIGH,
        "Likely poisoned training samples",
        POISON_TRAINING_DATA,
        "`scan-data`: part of a label's training samples form a cluster that looks like other "
        "labels in input space, or respond like inputs stamped with the trigger reverse-engineered"
        " from the model (likely poison; technique AML.T0020).",
    ),
    Rule(
        "MW-DATA-TRIGGER-TOKEN",
        HIGH,
        "Likely text trigger",
        POISON_TRAINING_DATA,
        "`scan-text`: a token or phrase whose records carry one label beyond chance (binomial "
        "test, Bonferroni, purity ≥ 95 %): a likely text trigger (AML.T0020).",
    ),
    Rule(
        "MW-DATA-DUPLICATE",
        None,
        "Duplicate records",
        POISON_TRAINING_DATA,
        "`scan-text`: exact (normalised) or near (MinHash, Jaccard ≥ 0.8) duplicate records; "
        "medium when their labels conflict.",
        (MEDIUM, LOW),
    ),
    Rule(
        "MW-DATA-MALFORMED",
        MEDIUM,
        "Malformed dataset records",
        POISON_TRAINING_DATA,
        "`scan-text`: records that are not JSON objects, not CSV, or lack the text or label field "
        "were not checked.",
    ),
    Rule(
        "MW-DATA-LIMIT",
        MEDIUM,
        "Dataset record limit reached",
        POISON_TRAINING_DATA,
        "`scan-text`: the dataset has more records than `max_records`; only the first were "
        "checked.",
    ),
)
