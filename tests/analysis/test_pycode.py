"""The Python source analysis shared by TorchScript and remote-code scanning."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelward.analysis.pycode import find_code_uses, parse_python, scan_python_source
from modelward.config import ScanConfig
from modelward.findings import Location, ScanResult, Severity
from modelward.formats.interface import ScanContext
from modelward.scanner import dispatch

SOURCE = """\
import os
import subprocess as sp
from os import system as run_it
import urllib.request
import pickle


def forward(x, name):
    run_it("true")
    sp.run(["true"])
    os.path.join("a", "b")
    eval("1 + 1")
    getattr(os, "popen")("true")
    getattr(x, name)
    urllib.request.urlopen("http://example.invalid")
    ().__class__.__bases__[0].__subclasses__()
    pickle.loads(b"")
    open("weights.txt")
"""


def _scan(source: str) -> ScanResult:
    result = ScanResult("mem")
    ctx = ScanContext(config=ScanConfig(), result=result, dispatch=dispatch)
    scan_python_source(source, Location("model.py"), ctx, context="remote code")
    return result


def test_calls_are_resolved_through_imports() -> None:
    uses = {(u.category, u.name, u.line) for u in find_code_uses(parse_python(SOURCE))}
    assert ("process", "os.system", 9) in uses
    assert ("process", "subprocess.run", 10) in uses
    assert ("code", "eval", 12) in uses
    assert ("process", "os.popen", 13) in uses
    assert ("reflection", "getattr(...)", 14) in uses
    assert ("network", "urllib.request.urlopen", 15) in uses
    assert ("code", "<expr>.__subclasses__", 16) in uses
    assert ("deserialise", "pickle.loads", 17) in uses
    assert ("filesystem", "open", 18) in uses
    assert not any(name.startswith("os.path") for _, name, _ in uses)


def test_findings_carry_line_numbers_and_severities() -> None:
    findings = _scan(SOURCE).findings
    by_rule = {f.rule_id: f for f in findings}
    assert by_rule["MW-PYCODE-PROCESS"].severity == Severity.CRITICAL
    assert by_rule["MW-PYCODE-EXEC"].severity == Severity.CRITICAL
    assert by_rule["MW-PYCODE-NETWORK"].severity == Severity.HIGH
    assert by_rule["MW-PYCODE-FILESYSTEM"].severity == Severity.LOW
    assert all((f.evidence or "").startswith("line ") for f in findings)
    assert all("remote code" in f.message for f in findings)


def test_ordinary_model_code_is_quiet() -> None:
    benign = (
        "import math\nimport torch\nfrom torch import nn\n\n"
        "class Block(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.relu(x) * math.sqrt(2) + getattr(self, 'scale')\n"
    )
    assert _scan(benign).findings == []


def test_unparseable_and_deeply_nested_source_fail_closed() -> None:
    for source in ("def broken(:\n", "x = " + "(" * 5000 + ")" * 5000):
        [finding] = _scan(source).findings
        assert (finding.rule_id, finding.severity) == ("MW-PYCODE-UNPARSEABLE", Severity.MEDIUM)


@given(st.text(max_size=300))
def test_any_text_yields_findings_or_unparseable_never_an_exception(source: str) -> None:
    result = _scan(source)
    assert all(f.rule_id.startswith("MW-PYCODE-") for f in result.findings)


#: Payloads written indirectly, each graded as its direct spelling. Harmless commands only;
#: nothing here is run, only parsed.
INDIRECT = {
    "concatenated name": "import os\ngetattr(os, 'sys' + 'tem')('true')\n",
    "__import__": "getattr(__import__('os'), 'system')('true')\n",
    "sys.modules": "import sys\nsys.modules['os'].system('true')\n",
    "import_module": "import importlib\nimportlib.import_module('o' + 's').system('true')\n",
    "import_module bound": (
        "import importlib\nm = importlib.import_module(''.join(['o', 's']))\nm.system('true')\n"
    ),
    "torch.hub.load": "import torch\ntorch.hub.load('org/repo', 'model')\n",
    "timeit": "import timeit\ntimeit.timeit(\"__import__('os').system('true')\", number=1)\n",
    "timeit.Timer": "from timeit import Timer\nTimer('print(1)').timeit()\n",
    "pydoc.pipepager": "import pydoc\npydoc.pipepager('x', 'true')\n",
    "pydoc.pager": "import pydoc\npydoc.pager('x')\n",
    ".pth via site": (
        "import os, site\np = os.path.join(site.getsitepackages()[0], 'evil.pth')\n"
        "with open(p, 'w') as f:\n    f.write('import os')\n"
    ),
    ".pth via sysconfig": (
        "import sysconfig\n"
        "open(sysconfig.get_paths()['purelib'] + '/x.pth', 'w').write('import os')\n"
    ),
    "dictConfig factory": (
        "import logging.config\nlogging.config.dictConfig({'version': 1, 'handlers':"
        " {'h': {'()': 'os.system', 'command': 'true'}}})\n"
    ),
    "load_inline": "from torch.utils.cpp_extension import load_inline\nload_inline('m', '')\n",
    "cpp_extension.load": "from torch.utils import cpp_extension\ncpp_extension.load('m', [])\n",
    "ctypes.CDLL": "import ctypes\nctypes.CDLL(None).system(b'true')\n",
    "exec computed": "exec('pr' + 'int(1)')\n",
    "compile": "c = compile('print(1)', 'x', 'exec')\n",
    "subprocess alias": "import subprocess as sp\nsp.run(['true'])\n",
    "from os import system as": "from os import system as s\ns('true')\n",
    "os.popen": "import os\nos.popen('true')\n",
    "pty.spawn": "import pty\npty.spawn('true')\n",
    "runpy": "import runpy\nrunpy.run_path('x.py')\n",
    "code.interact": "import code\ncode.interact()\n",
    "marshal.loads": "import marshal\nmarshal.loads(b'')\n",
    "base64 + exec": (
        "import base64\n"
        "exec(base64.b64decode('aW1wb3J0IG9zOyBvcy5zeXN0ZW0oJ3RydWUnKQ==').decode())\n"
    ),
    "reversed": "import os\ngetattr(os, 'metsys'[::-1])('true')\n",
    "chr generator": (
        "import os\ngetattr(os, ''.join(chr(c) for c in [115, 121, 115, 116, 101, 109]))('t')\n"
    ),
    "map(chr)": "import os\ngetattr(os, ''.join(map(chr, [115, 121, 115, 116, 101, 109])))('t')\n",
    "bytes.fromhex": "import os\ngetattr(os, bytes.fromhex('73797374656d').decode())('true')\n",
    "b64 name": "import os, base64\ngetattr(os, base64.b64decode('c3lzdGVt').decode())('true')\n",
    "percent": "import os\ngetattr(os, '%s%s' % ('sys', 'tem'))('true')\n",
    "format": "import os\ngetattr(os, '{}{}'.format('sys', 'tem'))('true')\n",
    "f-string": "import os\na = 'sys'\ngetattr(os, f'{a}tem')('true')\n",
    "rot13": "import os, codecs\ngetattr(os, codecs.decode('flfgrz', 'rot13'))('true')\n",
    "vars()": "import os\nvars(os)['system']('true')\n",
    "__dict__": "import os\nos.__dict__['system']('true')\n",
    "globals()": "import os\nglobals()['os'].system('true')\n",
    "attrgetter": "import operator, os\noperator.attrgetter('system')(os)('true')\n",
    "builtins getattr": "import builtins\ngetattr(builtins, 'ev' + 'al')('1')\n",
    "passed as callback": "import os, atexit\natexit.register(os.system, 'true')\n",
    "stored on self": (
        "import os\nclass M:\n    def __init__(self):\n        self.r = os.system\n"
        "    def f(self):\n        self.r('true')\n"
    ),
}


def _grade(source: str) -> Severity:
    return max((u.grade for u in find_code_uses(parse_python(source))), default=Severity.INFO)


@pytest.mark.parametrize("name", sorted(INDIRECT))
def test_indirect_spellings_are_graded_as_direct_ones(name: str) -> None:
    assert _grade(INDIRECT[name]) == Severity.CRITICAL


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # A computed attribute of a module that reaches the OS: any of its functions.
        ("import os\ndef f(n):\n    return getattr(os, n)('true')\n", Severity.HIGH),
        ("import os\nopen(os.path.expanduser('~/.bashrc'), 'a').write('x')\n", Severity.HIGH),
        ("import importlib\ndef f(n):\n    return importlib.import_module(n)\n", Severity.MEDIUM),
        (
            "from transformers import AutoModel\n"
            "AutoModel.from_pretrained('org/x', trust_remote_code=True)\n",
            Severity.MEDIUM,
        ),
        ("import logging.config\nlogging.config.dictConfig({'version': 1})\n", Severity.HIGH),
    ],
)
def test_grades_of_less_certain_uses(source: str, expected: Severity) -> None:
    assert _grade(source) == expected


def test_executed_strings_are_analysed_as_code() -> None:
    source = INDIRECT["base64 + exec"]
    names = {u.name for u in find_code_uses(parse_python(source))}
    assert "exec(<os.system>)" in names


@pytest.mark.parametrize(
    "source",
    [
        # A local variable named like a module is not that module.
        "def f(text):\n    code = []\n    code.append(text)\n    return code\n",
        "import importlib.util\nHAS = importlib.util.find_spec('flash_attn') is not None\n",
        "import importlib\nm = importlib.import_module(f'.{name}', 'transformers.models')\n",
        "import importlib\nm = importlib.import_module('math')\n",
        "from urllib.parse import urlparse\nurlparse('http://x')\n",
        "import torch\nstate = torch.load('w.bin', weights_only=True)\n",
        "import numpy as np\na = np.load('a.npy')\n",
        "import timeit\nt = timeit.timeit(lambda: 1 + 1, number=3)\n",
        "import timeit\nstart = timeit.default_timer()\n",
        "import base64\nranks = {base64.b64decode(t): int(r) for t, r in []}\n",
        "def save(d):\n    with open(d + '/vocab.json', 'w') as f:\n        f.write('{}')\n",
        "import multiprocessing\nwith multiprocessing.Pool(2) as p:\n    p.map(abs, [1])\n",
        "import os\nx = getattr(os.environ, 'get')('HOME')\n",
    ],
)
def test_ordinary_idioms_stay_at_most_medium(source: str) -> None:
    assert _grade(source) <= Severity.MEDIUM


def _transformers_sources() -> list[Path]:
    import transformers

    models = Path(transformers.__file__).parent / "models"
    named = [
        models / "gpt2" / "modeling_gpt2.py",
        models / "llama" / "modeling_llama.py",
        models / "gpt2" / "configuration_gpt2.py",
        models / "gpt2" / "tokenization_gpt2.py",
        models / "llama" / "configuration_llama.py",
        models / "auto" / "tokenization_auto.py",
        models / "auto" / "configuration_auto.py",
        models / "marian" / "tokenization_marian.py",
        models / "nougat" / "tokenization_nougat.py",
        models / "bark" / "processing_bark.py",
        models / "idefics" / "processing_idefics.py",
        models / "wav2vec2" / "modeling_wav2vec2.py",
    ]
    # And a deterministic sample of the rest, every kind of file a remote-code repo ships.
    rest = sorted(
        p
        for pattern in ("modeling_*.py", "configuration_*.py", "tokenization_*.py")
        for p in models.glob(f"*/{pattern}")
    )
    return [p for p in named if p.is_file()] + rest[::40]


def test_transformers_own_model_code_stays_at_most_medium() -> None:
    """Real modeling code (getattr(self, name), optional imports, os.path, logging)."""
    sources = _transformers_sources()
    assert len(sources) > 30
    for path in sources:
        uses = find_code_uses(parse_python(path.read_text(encoding="utf-8")))
        loud = [(u.line, u.name) for u in uses if u.grade > Severity.MEDIUM]
        assert loud == [], path.name


@given(st.text(alphabet="'\"+%[]():.,0123456789abcdefosyte_jinchr ", max_size=120))
def test_folding_arbitrary_expressions_never_raises(expression: str) -> None:
    try:
        tree = parse_python(f"import os\ngetattr(os, {expression})()\n")
    except (SyntaxError, ValueError):
        return
    find_code_uses(tree)


def test_folding_is_bounded() -> None:
    huge = "import os\ngetattr(os, 'a' * 10**9 + '%099999999d' % 1)()\n"
    assert _grade(huge) <= Severity.HIGH
    chain = "x0 = 'a'\n" + "".join(f"x{i} = x{i - 1} + x{i - 1}\n" for i in range(1, 60))
    assert _grade(chain + "import os\ngetattr(os, x59)()\n") == Severity.HIGH
