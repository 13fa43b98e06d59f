"""What a server loads is what it verified: variant names at registration, a file swapped while a
version loads, and Ray replicas, which load the run in a process of their own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests._runs import copy_run

from lmforge.errors import ConfigError, RunDirError
from lmforge.guard import IntegrityError

pytest.importorskip("sqlalchemy")

from lmforge.serve import ServeSettings, open_stores  # noqa: E402
from lmforge.serve._loading import VersionLoader  # noqa: E402
from lmforge.serve._runs import manifest_sha256  # noqa: E402


@pytest.fixture
def run(trained_full: Path, tmp_path: Path) -> Path:
    return copy_run(trained_full, tmp_path / "sentiment").root


def test_register_refuses_malformed_and_symlinked_variants(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(run / "model", outside)
    (outside / "variant.json").write_text("{}", encoding="utf-8")
    (run / "compressed").mkdir()
    (run / "compressed" / "evil").symlink_to(outside)
    with open_stores(ServeSettings(state_dir=str(tmp_path / "state"))) as stores:
        for name in ("../outside", "a/b", ".evil"):
            with pytest.raises(ConfigError, match="is not valid"):
                stores.registry.register("sentiment", run, variant=name, allow_unsigned=True, actor="t")
        with pytest.raises(RunDirError, match="compressed/evil is a symlink"):
            stores.registry.register("sentiment", run, variant="evil", allow_unsigned=True, actor="t")
        with pytest.raises(IntegrityError, match="symlink: compressed/evil"):
            stores.registry.register("sentiment", run, allow_unsigned=True, actor="t")  # fp32, same run
        assert stores.registry.list_models() == []


class _Engine:
    closed = False

    async def close(self) -> None:
        _Engine.closed = True


class _SwappingBackend:
    """Loads nothing; replaces a verified file the way an attacker racing the load would."""

    def load(self, model: str, version: int, run: Path, variant: str) -> Any:
        weights = run / "model" / "model.safetensors"
        shutil.copy(weights, run / "w.tmp")
        os.replace(run / "w.tmp", weights)
        return _Engine()


def test_a_file_swapped_while_a_version_loads_is_refused(run: Path, tmp_path: Path) -> None:
    settings = ServeSettings(state_dir=str(tmp_path / "state"), allow_unsigned=True)
    with open_stores(settings) as stores:
        info = stores.registry.register("sentiment", run, allow_unsigned=True, actor="t")
        loader = VersionLoader(settings, registry=stores.registry, backend=_SwappingBackend(), admission=None,
                               metrics=None)  # type: ignore[arg-type]
        with pytest.raises(IntegrityError, match=r"model/model.safetensors \(replaced"):
            loader._load_blocking(info)
    assert _Engine.closed


def test_ray_replicas_verify_the_run_themselves(run: Path) -> None:
    from lmforge.serve._ray import PredictorReplica

    digest = manifest_sha256(run)
    replica = PredictorReplica(str(run), "fp32", 1, None, True, digest)
    assert replica.labels() == ["negative", "positive"]
    with pytest.raises(IntegrityError, match="the run is unsigned"):
        PredictorReplica(str(run), "fp32", 1, None, False, digest)
    with pytest.raises(IntegrityError, match="changed since it was registered"):
        PredictorReplica(str(run), "fp32", 1, None, True, "0" * 64)
    (run / "model" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(IntegrityError, match="tampered file: model/config.json"):
        PredictorReplica(str(run), "fp32", 1, None, True, digest)


def test_a_served_source_with_a_malformed_variant_is_refused(run: Path, tmp_path: Path) -> None:
    from lmforge.serve._source import ensure_source

    settings = ServeSettings(state_dir=str(tmp_path / "state"), source=str(run), variant="../model",
                             allow_unsigned=True)
    with open_stores(settings) as stores, pytest.raises(ConfigError, match="Variant name '../model' is not valid"):
        ensure_source(settings, stores.registry, "t")
