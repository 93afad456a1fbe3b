"""The `modelward-scan` pre-commit hook, run by the real `pre-commit` in a throwaway git repository.

The hook repository is built from this checkout: the committed package (`git archive HEAD` of
`pyproject.toml`, `README.md` and `src/`) plus the working tree's `.pre-commit-hooks.yaml`, so an
edit of the hooks file is tested before it is committed. pre-commit clones it and pip-installs
modelward into its own virtual environment once per test run (about 20 s with a warm pip cache);
every xdist worker shares that one install (`PRE_COMMIT_HOME` and the hook repository live in the
run's shared temporary folder, pre-commit locks its store).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fixtures.pickles import call_system_p4
from fixtures.safetensors_files import benign_numpy
from fixtures.services import service_missing

ROOT = Path(__file__).resolve().parents[2]
HOOK_ID = "modelward-scan"
IDENTITY = "[user]\n\tname = modelward tests\n\temail = tests@modelward.invalid\n"
IDENTITY += "[commit]\n\tgpgsign = false\n[init]\n\tdefaultBranch = main\n"


def _git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of this run that every xdist worker sees."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def git_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Git with only our identity: no system or user config (hooksPath, signing) leaks in."""
    config = tmp_path_factory.mktemp("gitconfig") / "config"
    config.write_text(IDENTITY)
    env = dict(os.environ, GIT_CONFIG_GLOBAL=str(config), GIT_CONFIG_NOSYSTEM="1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory, git_env: dict[str, str]) -> Iterator[str]:
    """The path of a hook repository built from this checkout: once per run, under a lock,
    whatever the number of xdist workers."""
    try:
        import pre_commit  # noqa: F401
    except ImportError:
        service_missing("pre-commit", "it is not installed (pip install -e '.[dev]')")
    root = _shared_root(tmp_path_factory) / "precommit-hook"
    root.mkdir(exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        repo = root / "modelward"
        if not (repo / ".git").is_dir():
            _build_hook_repo(repo, git_env)
        fcntl.flock(lock, fcntl.LOCK_UN)
    yield str(repo)


def _build_hook_repo(repo: Path, env: dict[str, str]) -> None:
    repo.mkdir()
    archive = subprocess.run(
        ["git", "archive", "HEAD", "pyproject.toml", "README.md", "src"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    (repo / ".pre-commit-hooks.yaml").write_bytes((ROOT / ".pre-commit-hooks.yaml").read_bytes())
    _git("init", "-q", cwd=repo, env=env)
    _git("add", "-A", cwd=repo, env=env)
    _git("commit", "-q", "-m", "modelward hooks under test", cwd=repo, env=env)


@pytest.fixture
def project(
    tmp_path: Path,
    hook_repo: str,
    git_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, str]]:
    """A git repository whose commits run the hook (`pre-commit install`)."""
    # Read the environment now, not at session start: the hook's scans must see this test's
    # MODELWARD_STORE (conftest), never the user's results store.
    env = dict(os.environ)
    env |= {name: git_env[name] for name in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM")}
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(name, None)
    env["PRE_COMMIT_HOME"] = str(_shared_root(tmp_path_factory) / "pre-commit-home")
    # No ANSI colours in the log the assertions read.
    env["PRE_COMMIT_COLOR"] = "never"
    rev = _git("rev-parse", "HEAD", cwd=Path(hook_repo), env=env)
    project = tmp_path / "project"
    project.mkdir()
    _git("init", "-q", cwd=project, env=env)
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hook_repo}\n    rev: {rev}\n    hooks:\n      - id: {HOOK_ID}\n"
    )
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    _git("add", ".pre-commit-config.yaml", cwd=project, env=env)
    assert env["MODELWARD_STORE"] == os.environ["MODELWARD_STORE"]
    return project, env


def _commit(project: Path, env: dict[str, str], *paths: str) -> subprocess.CompletedProcess[str]:
    _git("add", *paths, cwd=project, env=env)
    return subprocess.run(
        ["git", "commit", "-m", "add files"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # the first commit of a run installs the hook environment
    )


def test_malicious_pickle_blocks_the_commit(project: tuple[Path, dict[str, str]]) -> None:
    repo, env = project
    (repo / "weights.pkl").write_bytes(call_system_p4("true"))
    np.save(repo / "embeddings.npy", np.arange(12, dtype=np.float32))

    done = _commit(repo, env, "weights.pkl", "embeddings.npy")

    log = done.stdout + done.stderr
    assert done.returncode != 0, log
    assert "Failed" in log
    assert "MW-PICKLE-DANGEROUS-GLOBAL" in log
    assert "weights.pkl" in log
    # The hook's modelward stored its result in this test's store, not the user's.
    assert Path(os.environ["MODELWARD_STORE"].removeprefix("sqlite:///")).is_file()
    # Nothing was committed: the repository still has no HEAD.
    head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=repo, env=env)
    assert head.returncode != 0


def test_clean_models_pass(project: tuple[Path, dict[str, str]]) -> None:
    import torch

    repo, env = project
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    torch.save(model.state_dict(), repo / "model.pt")
    np.save(repo / "embeddings.npy", np.arange(12, dtype=np.float32))
    benign_numpy(repo / "model.safetensors")
    (repo / "notes.txt").write_text("not a model: the hook's file filter leaves it out\n")

    done = _commit(repo, env, ".")

    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "Passed" in log
    committed = _git("ls-files", cwd=repo, env=env).splitlines()
    assert {"model.pt", "embeddings.npy", "model.safetensors", "notes.txt"} <= set(committed)


def test_hook_skips_commits_without_model_files(project: tuple[Path, dict[str, str]]) -> None:
    repo, env = project
    (repo / "README.md").write_text("# a project\n")

    done = _commit(repo, env, "README.md")

    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "Skipped" in log
