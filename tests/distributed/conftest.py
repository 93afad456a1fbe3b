"""One local Ray (2 CPUs) per test process, and a mixed folder to scan on it.

Starting Ray costs ~4 s, so every test of a pytest process (or xdist worker)
shares one; `scan_on_ray` uses a connection it finds instead of starting its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.archives import benign_pickle, malicious_pickle
from fixtures.hf_folders import HOSTILE_TEMPLATE
from fixtures.onnx_models import benign_external_data
from fixtures.pickles import call_system_p4
from fixtures.safetensors_files import benign_numpy


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    ray = pytest.importorskip("ray")
    private = tmp_path_factory.mktemp("ray-workers")
    # Workers inherit the environment Ray starts with, before any per-test isolation:
    # give them their own default store and digest cache, never the real home's.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELWARD_STORE", f"sqlite:///{private / 'store.db'}")
        env.setenv("MODELWARD_CACHE_DIR", str(private / "cache"))
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A malicious pickle, benign weights, ONNX with external data and a hostile HF folder."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "evil.pkl").write_bytes(malicious_pickle())
    (root / "plain.pkl").write_bytes(benign_pickle())
    benign_numpy(root / "weights.safetensors")
    (root / "onnx").mkdir()
    benign_external_data(root / "onnx" / "model.onnx")
    hf = root / "hf-model"
    hf.mkdir()
    config = {"model_type": "gpt2", "auto_map": {"AutoModel": "evil-org/code--modeling.Model"}}
    (hf / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (hf / "pytorch_model.bin").write_bytes(call_system_p4("echo other bytes than evil.pkl"))
    tokenizer = {"chat_template": HOSTILE_TEMPLATE}
    (hf / "tokenizer_config.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    (root / "notes.txt").write_text("not a model\n", encoding="utf-8")
    return root
