"""``adapter-houlsby`` and ``adapter-pfeiffer``: bottleneck adapters, written in lmforge.

Not the ``adapters`` library: it pins transformers 4.57 and does not run on 5.x. The module
itself (down-projection, non-linearity, up-projection starting at zero, residual) and where it
goes are in :mod:`lmforge.predict` (``_modules.py``), which loads the run back.

- Houlsby et al. (2019): an adapter after each layer's attention output and after its FFN
  output; the LayerNorms train too, as in the paper.
- Pfeiffer et al. (2021, AdapterFusion): one adapter after the FFN output only; LayerNorms stay
  frozen (the paper's configuration).

Both train the classifier head; everything else is frozen. Settings: ``train.adapter``
(``reduction_factor``, ``non_linearity``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmforge._extras import require
from lmforge.train._methods import register_method
from lmforge.train._module_methods import ModulesMethod

if TYPE_CHECKING:
    import torch

    from lmforge.config import TrainConfig

__all__ = ["HoulsbyAdapter", "PfeifferAdapter"]


def _bottleneck(cfg: TrainConfig, placement: str) -> dict[str, Any]:
    return {"kind": "bottleneck", "placement": placement, "reduction_factor": cfg.adapter.reduction_factor,
            "non_linearity": cfg.adapter.non_linearity}


@register_method("adapter-houlsby")
class HoulsbyAdapter(ModulesMethod):
    """Adapters after the attention and the FFN output of every layer; LayerNorms and head train."""

    name = "adapter-houlsby"

    def layout(self, cfg: TrainConfig) -> dict[str, Any]:
        return _bottleneck(cfg, "attention+ffn")

    def extra_trainable(self, model: torch.nn.Module) -> list[str]:
        torch = require("torch", extra="train", purpose="Bottleneck adapters")
        return [f"{name}.{p}" for name, mod in model.named_modules() if isinstance(mod, torch.nn.LayerNorm)
                for p, _ in mod.named_parameters(recurse=False)]


@register_method("adapter-pfeiffer")
class PfeifferAdapter(ModulesMethod):
    """One adapter after the FFN output of every layer; the head trains."""

    name = "adapter-pfeiffer"

    def layout(self, cfg: TrainConfig) -> dict[str, Any]:
        return _bottleneck(cfg, "ffn")
