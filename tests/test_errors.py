"""Every error a user can act on derives from `ModelwardError`; the CLI prints it once."""

from __future__ import annotations

import pytest

from modelward.cli import main as cli_main
from modelward.config import ConfigError
from modelward.distributed.ray_scan import RayConnectionError
from modelward.errors import ModelwardError
from modelward.hf_cache import HfCacheError
from modelward.integrity.errors import IntegrityError, SignatureError
from modelward.modeldiff import DiffError
from modelward.provenance.bom import BomError
from modelward.provenance.lock import LockError
from modelward.remote.http import RemoteError
from modelward.safe_loading import UnsafeModelError
from modelward.store.errors import StoreError


@pytest.mark.parametrize(
    ("error", "old_base"),
    [
        (ConfigError, ValueError),
        (StoreError, Exception),
        (RemoteError, OSError),
        (HfCacheError, Exception),
        (IntegrityError, Exception),
        (SignatureError, IntegrityError),
        (LockError, IntegrityError),
        (DiffError, ValueError),
        (BomError, ValueError),
        (RayConnectionError, ConnectionError),
        (UnsafeModelError, Exception),
    ],
)
def test_user_errors_share_the_base_and_keep_their_old_one(
    error: type[Exception], old_base: type[Exception]
) -> None:
    assert issubclass(error, ModelwardError) and issubclass(error, old_base)


def test_main_prints_a_modelward_error_once_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: object) -> int:
        raise ConfigError("cfg.toml: unknown key 'x'")

    import modelward.cli.keygen as keygen

    monkeypatch.setattr(keygen, "run", broken)
    assert cli_main.main(["keygen", "--out", "k.pem"]) == cli_main.EXIT_ERROR
    assert capsys.readouterr().err == "modelward: cfg.toml: unknown key 'x'\n"
