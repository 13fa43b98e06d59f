"""The peft methods besides LoRA that fold into the base weights: ``adalora`` and ``ia3``.

Both save a peft adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``, the
classifier head included) that the inference layer loads on its base model and merges
(``PeftModel.from_pretrained(...).merge_and_unload()``), exactly as a LoRA run's; ``lmforge
compress``'s ``merged`` variant merges them the same way. A classifier's head trains fully
(peft's ``SEQ_CLS`` task type); a causal LM keeps its LM head frozen (``CAUSAL_LM``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge._extras import require
from lmforge.errors import ConfigError
from lmforge.train._methods import lora_targets, peft_task_type, register_method, save_peft_adapter, wrap_peft

if TYPE_CHECKING:
    import torch

    from lmforge.config import TrainConfig

__all__ = ["IA3", "AdaLoRA", "ia3_targets"]


@register_method("adalora")
class AdaLoRA:
    """LoRA whose rank budget is reallocated while it trains (Zhang et al., 2023), via peft.

    Every adapted matrix starts as ``init_r`` SVD-shaped triplets (``P diag(E) Q``); the least
    important triplets are pruned on a cubic schedule until ``target_r`` per matrix remain on
    average. peft does that only when ``update_and_allocate`` is called after each optimizer step,
    which the HF Trainer never does: :meth:`callbacks` gives the callback that does, its
    schedule taken from the run's total optimizer steps (``_adalora.py``).
    """

    name = "adalora"

    def wrap(self, model: torch.nn.Module, cfg: TrainConfig, *,
             new_token_ids: Sequence[int] = ()) -> torch.nn.Module:
        peft = require("peft", extra="train", purpose="AdaLoRA fine-tuning")
        ada = cfg.adalora
        config = peft.AdaLoraConfig(
            task_type=peft_task_type(model),
            init_r=ada.init_r,
            target_r=ada.target_r,
            lora_alpha=ada.alpha,
            lora_dropout=ada.dropout,
            target_modules=lora_targets(model, ada.target_modules, "train.adalora.target_modules"),
            beta1=ada.beta1,
            beta2=ada.beta2,
            orth_reg_weight=ada.orth_reg_weight,
            deltaT=ada.delta_t,
            # A placeholder schedule: the run's step count is known only when training starts, where
            # the callback sets total_step, tinit and tfinal (peft reads them at each allocation).
            total_step=1,
            tinit=0,
            tfinal=0,
            trainable_token_indices=list(new_token_ids) or None,
        )
        return wrap_peft(model, config, "train.adalora.target_modules")

    def callbacks(self, cfg: TrainConfig) -> list[Any]:
        """The rank-allocation callback (without it AdaLoRA trains as plain LoRA at ``init_r``)."""
        from lmforge.train._adalora import RankAllocationCallback  # transformers at its top

        return [RankAllocationCallback(cfg.adalora)]

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        """The adapter with only its kept triplets (peft's ``rank_pattern``), read off the weights.

        A pruned triplet has its singular value at exactly zero, so the triplets kept are those
        with a non-zero one: the pattern fits the weights being saved, also when they are the best
        checkpoint's rather than the last step's, and dropping the rest changes no output.
        """
        from lmforge.train._adalora import kept_triplets  # torch at its top

        tuner = model.base_model  # type: ignore[union-attr]
        tuner.peft_config["default"].rank_pattern = kept_triplets(tuner)  # type: ignore[union-attr,index]
        with warnings.catch_warnings():
            # A matrix left with no triplet saves as (0, n): peft takes that for an unsharded ZeRO-3 tensor.
            warnings.filterwarnings("ignore", message=r"Adapter '.*': \d+ LoRA tensor\(s\) have invalid shape")
            save_peft_adapter(model, out_dir)


# Attention key/value projections and each FFN's output projection, by their usual names.
_KEY_VALUE = ("key", "value", "k_proj", "v_proj", "k_lin", "v_lin")
_FFN_OUT = ("down_proj", "lin2", "fc2")


def ia3_targets(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """The modules (IA)^3 rescales by default, and those of them rescaled at their input.

    Full module names, since BERT's FFN output (``layer.N.output.dense``) and its attention
    output (``layer.N.attention.output.dense``) share their last names: the keys and values (output
    rescaled) and each FFN's output projection (input rescaled: the FFN's inner activations).
    """
    torch = require("torch", extra="train", purpose="IA3")
    targets: list[str] = []
    feedforward: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or "classifier" in name or "pooler" in name:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf in _KEY_VALUE:
            targets.append(name)
        elif leaf in _FFN_OUT or (name.endswith(".output.dense") and not name.endswith("attention.output.dense")):
            targets.append(name)
            feedforward.append(name)
    if not targets:
        raise ConfigError(
            "IA3 found no attention key/value or FFN output layers it knows by name in this model; set "
            "train.ia3.target_modules (and train.ia3.feedforward_modules) to some of its linear layers."
        )
    return targets, feedforward


@register_method("ia3")
class IA3:
    """(IA)^3 (Liu et al., 2022), via peft: one learned vector per adapted layer, rescaling the
    attention keys and values and the FFN's inner activations; by far the fewest parameters.

    A vector times a weight is a weight, so it merges into the base model exactly.
    """

    name = "ia3"

    def wrap(self, model: torch.nn.Module, cfg: TrainConfig, *,
             new_token_ids: Sequence[int] = ()) -> torch.nn.Module:
        peft = require("peft", extra="train", purpose="IA3 fine-tuning")
        if new_token_ids:
            raise ConfigError(
                "train.method ia3 cannot train the tokens model.extend_vocab added (peft's IA3 has no "
                "trainable token rows); set model.extend_vocab: false, or use train.method lora or full."
            )
        if cfg.ia3.target_modules:
            targets, feedforward = list(cfg.ia3.target_modules), list(cfg.ia3.feedforward_modules or [])
        else:
            targets, feedforward = ia3_targets(model)
        config = peft.IA3Config(task_type=peft_task_type(model), target_modules=targets,
                                feedforward_modules=feedforward)
        return wrap_peft(model, config, "train.ia3.target_modules")

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        save_peft_adapter(model, out_dir)
