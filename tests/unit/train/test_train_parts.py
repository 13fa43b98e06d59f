from __future__ import annotations

import re

import pytest

from lmforge.config import TrainConfig, spec_from_dict
from lmforge.errors import ConfigError
from lmforge.train import METHODS, get_method, resolve_precision
from lmforge.train import _hardware as hardware
from lmforge.train._encode import SeededLengthSampler


def test_registry_lists_methods_on_unknown_name() -> None:
    assert {"adalora", "full", "ia3", "lora"} <= set(METHODS)
    # Every registered name, sorted (methods merged from other modules join the list).
    listed = re.escape(f"Unknown train.method 'qlora'. Available: {', '.join(sorted(METHODS))}.")
    with pytest.raises(ConfigError, match=f"^{listed}$"):
        get_method("qlora")


def test_spec_with_unknown_method_fails_at_train_time_not_load_time() -> None:
    # Methods are plugins: the spec holds a name, the registry decides.
    assert spec_from_dict({"train": {"method": "adapters"}}).train.method == "adapters"


def test_precision_auto_follows_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("fp32") == "fp32"


def _padding(order: list[int], lengths: list[int], batch: int) -> int:
    total = 0
    for i in range(0, len(order), batch):
        chunk = [lengths[j] for j in order[i : i + batch]]
        total += max(chunk) * len(chunk) - sum(chunk)
    return total


def test_sampler_is_a_seeded_permutation_per_epoch() -> None:
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    a = SeededLengthSampler(lengths, batch_size=16, seed=3)
    b = SeededLengthSampler(lengths, batch_size=16, seed=3)
    first = list(a)
    assert sorted(first) == list(range(1000))
    assert list(b) == first
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(b) == list(a)
    assert list(SeededLengthSampler(lengths, batch_size=16, seed=4)) != first


def test_length_grouping_cuts_padding() -> None:
    lengths = [(i * 37) % 101 + 1 for i in range(3200)]
    grouped = list(SeededLengthSampler(lengths, batch_size=32, seed=0, group=True))
    plain = list(SeededLengthSampler(lengths, batch_size=32, seed=0, group=False))
    assert _padding(grouped, lengths, 32) < 0.2 * _padding(plain, lengths, 32)
    # The longest batch comes first, so running out of memory shows at step one.
    assert max(lengths[i] for i in grouped[:32]) == max(lengths)


def test_train_config_checkpoint_steps() -> None:
    assert TrainConfig(eval_steps=10).checkpoint_steps == 10
    assert TrainConfig(save_steps=7).checkpoint_steps == 7
    assert TrainConfig().checkpoint_steps is None


def test_device_auto_and_cuda_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from lmforge.train._hardware import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
