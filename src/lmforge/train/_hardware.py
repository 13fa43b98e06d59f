"""What the CPU runs fast: bf16 pays off only where the CPU has AMX (or AVX512-BF16) units."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from lmforge.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["cpu_flags", "fast_bf16", "resolve_device", "resolve_precision", "world"]


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def fast_bf16() -> bool:
    """True where bf16 matmuls run faster than fp32 on this CPU: AMX tiles or AVX512-BF16 units.

    Measured 2026-12-02 on a 2-core AMD EPYC with avx512_bf16 and no AMX (fp32 vs bf16
    autocast, one training step, side by side): SmolLM2-135M with LoRA, batch 8 x 200 tokens,
    9.1 s vs 5.7 s; MiniLM-L6, batch 32 x 64, 1.15 s vs 0.83 s. Without either flag bf16 is
    emulated (AVX2 only) and slower than fp32, so it is not chosen automatically.
    """
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(requested: str) -> str:
    """``cpu`` or ``cuda`` for a spec's ``train.device`` (``auto``: a GPU when torch sees one)."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but torch sees no CUDA GPU here. Use train.device=auto or cpu.")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def resolve_precision(requested: str, device: str = "cpu") -> str:
    """``fp32`` or ``bf16`` for a spec's ``train.precision`` (``auto`` picks by hardware)."""
    if requested == "auto":
        if device == "cuda":
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        chosen = "bf16" if fast_bf16() else "fp32"
        logger.info("precision auto -> %s (amx_bf16 or avx512_bf16 %s)", chosen, "present" if chosen == "bf16" else "absent")
        return chosen
    return requested


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: set by ``torchrun`` / ``accelerate launch``; (0, 1) alone."""
    import os

    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
