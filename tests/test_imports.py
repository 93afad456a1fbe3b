"""What each path through modelward imports, checked in fresh interpreters.

Start-up is most of a small scan, so heavy packages are imported only by the formats and
commands that need them; and the scan core, the runner and the store import one another
in one direction only (scanner <- runner -> store), so no circle can come back. These are
import checks, not timings: they cannot flake on a loaded machine.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from modelward.cli import main as cli_main

#: Never imported by a scan of pickles: other formats' libraries, migration and ORM tooling,
#: the process pool (only `-j`), and rich (a clean report in a pipe is plain text).
NOT_FOR_PICKLES = (
    "onnx",
    "google.protobuf",
    "h5py",
    "numpy",
    "sqlalchemy",
    "alembic",
    "concurrent.futures",
    "multiprocessing",
    "rich",
    "modelward.formats.onnx",
    "modelward.formats.hdf5",
    "modelward.formats.compressed",
    "modelward.formats.tar",
    "modelward.formats.zip",
    "modelward.formats.keras",
    "modelward.analysis.keras_config",
)


def _modules_after(code: str, tmp_path: Path) -> set[str]:
    """`sys.modules` after running `code` in a fresh interpreter (the store in `tmp_path`)."""
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    env = {"MODELWARD_STORE": f"sqlite:///{tmp_path / 'store.db'}", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**_inherited_env(), **env},
    )
    last = out.stdout.strip().splitlines()[-1]
    return set(json.loads(last))


def _inherited_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("MODELWARD_STORE", "HOME")}


def _heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


@pytest.fixture
def pickles(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "a.pkl").write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    (folder / "b.pkl").write_bytes(pickle.dumps(list(range(10)), protocol=2))
    return folder


def test_a_pickle_scan_with_the_store_imports_no_heavy_package(
    pickles: Path, tmp_path: Path
) -> None:
    scan = f"from modelward.cli.main import main; main(['scan', {str(pickles)!r}])"
    # The first run creates the store (and may migrate it with Alembic); the second is the
    # everyday run: a store at its newest schema.
    _modules_after(
        f"import contextlib\nwith contextlib.suppress(SystemExit):\n    {scan}", tmp_path
    )
    modules = _modules_after(scan, tmp_path)
    assert _heavy(modules, NOT_FOR_PICKLES) == []


def test_the_scan_core_imports_neither_the_store_nor_the_runner(tmp_path: Path) -> None:
    modules = _modules_after("import modelward.scanner", tmp_path)
    assert _heavy(modules, ("modelward.store", "modelward.runner", "modelward.integrity")) == []
    assert _heavy(modules, ("concurrent.futures", "multiprocessing", "sqlalchemy")) == []


def test_the_store_does_not_import_the_scan_core(tmp_path: Path) -> None:
    modules = _modules_after("import modelward.store.sql, modelward.store.history", tmp_path)
    assert _heavy(modules, ("modelward.scanner", "modelward.runner", "modelward.formats")) == []


@pytest.mark.parametrize(
    "first",
    [
        "modelward.store",
        "modelward.store.sql",
        "modelward.runner",
        "modelward.scanner",
        "modelward.formats",
        "modelward.formats.keras",
        "modelward.formats.hdf5",
        "modelward.analysis.keras_config",
        "modelward.analysis.pycode",
        "modelward.analysis.jinja_template",
        "modelward.formats.hf_folder",
        "modelward.integrity.cache",
        "modelward.distributed.tasks",
        "modelward.service.api",
        "modelward.cli.scan",
    ],
)
def test_each_module_imports_first_in_a_fresh_interpreter(first: str, tmp_path: Path) -> None:
    """A module that only imports when something else came first is in a circle."""
    if first.startswith("modelward.service"):
        pytest.importorskip("fastapi")
    _modules_after(f"import {first}", tmp_path)


def test_every_command_is_registered_by_its_module() -> None:
    parser = cli_main.build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    assert list(subparsers.choices) == list(cli_main.COMMANDS)  # type: ignore[attr-defined]
    for name in cli_main.COMMANDS:
        alone = cli_main.build_parser(name)
        [only] = [a for a in alone._actions if a.dest == "command"]
        assert list(only.choices) == [name]  # type: ignore[attr-defined]
