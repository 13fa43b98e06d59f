"""Compressed tiny runs shared by the compress tests (built once per session, copied before writing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests._runs import copy_run

from lmforge.compress import CompressOptions
from lmforge.rundir import RunDir


def fast_options(**overrides: object) -> CompressOptions:
    """Options that exercise every code path in seconds (not the defaults' quality)."""
    values: dict = {"calibration_size": 16, "recovery_steps": 3, "distill_steps": 3, "batch_size": 8,
                    "latency_repeats": 2, "warmup": 1, "eval_batch_size": 16}
    values.update(overrides)
    return CompressOptions(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _hermetic_home(_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(_home))


@pytest.fixture(scope="session")
def compressed_full(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, dict]:
    """A copy of the full tiny run with every compressor built (bf16 forced); and the stage summary."""
    from lmforge.compress import compress

    run = copy_run(trained_full, tmp_path_factory.mktemp("compressed") / "run")
    return run, compress(run, fast_options(force_bf16=True))


@pytest.fixture(scope="session")
def compressed_lora(trained_lora: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, dict]:
    """A copy of the LoRA tiny run with the adapter merged (and its int8 ONNX export)."""
    from lmforge.compress import compress

    run = copy_run(trained_lora, tmp_path_factory.mktemp("compressed-lora") / "run")
    return run, compress(run, fast_options(only=("merged", "onnx-int8-dynamic")))
