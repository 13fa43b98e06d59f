"""AdaLoRA's rank allocation under the HF Trainer.

peft reallocates AdaLoRA's rank budget only in ``update_and_allocate(global_step)``, to be
called after each backward pass and before the gradients are zeroed; the Trainer never calls
it, so without this callback AdaLoRA silently trains as LoRA at ``init_r``. The hook is
``on_optimizer_step``: in transformers 5.x ``Trainer._inner_training_loop`` runs clipping,
``on_pre_optimizer_step``, ``optimizer.step()``, ``on_optimizer_step``, the scheduler step and
only then ``model.zero_grad()``, so the gradients (which the importance scores read) are still
there, and a triplet masked here stays at zero until the next optimizer step (masking before
the step, as ``on_pre_optimizer_step`` would, lets AdamW's momentum move it off zero at once).

The schedule (peft's ``total_step``, ``tinit``, ``tfinal``) comes from the run: ``state.max_steps``
at ``on_train_begin`` (epochs x batches, or ``train.max_steps``), with ``train.adalora.tinit`` and
``tfinal`` as fractions of it.

peft keeps the current ``rank_pattern`` in the adapter's config, and a checkpoint saved with
one holds only the kept triplets, which the Trainer then cannot load back into the full-size
modules (loading the best model at the end, or ``--resume``). So the callback keeps the pattern
itself and clears the config's after every allocation: checkpoints hold every triplet (the
pruned ones at exactly zero) and load back as they are; :meth:`AdaLoRA.save` writes the kept
ones only. The allocator's importance averages (and the pattern) go into each checkpoint too
(:data:`STATE_FILE`, written by ``LmforgeTrainer`` inside the staged folder), so a resumed run
allocates exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import TrainerCallback

from lmforge.config import AdaLoraConfig
from lmforge.errors import ConfigError

__all__ = ["STATE_FILE", "RankAllocationCallback", "kept_triplets", "schedule"]

STATE_FILE = "adalora_state.safetensors"
"""In a checkpoint: the allocator's importance averages and the kept pattern, so ``--resume`` is bit-exact."""
_TABLES = ("ipt", "exp_avg_ipt", "exp_avg_unc")


def schedule(cfg: AdaLoraConfig, total: int) -> tuple[int, int]:
    """``(tinit, tfinal)`` in optimizer steps for a run of ``total`` steps.

    ``tfinal`` is at least one step: peft fixes the final ranks at step ``total - tfinal``, and the
    last step the Trainer reports is ``total - 1``.

    Raises:
        ConfigError: the run is too short to leave a step between the two in which ranks are cut.
    """
    tinit = int(round(cfg.tinit * total))
    tfinal = max(1, int(round(cfg.tfinal * total)))
    if tinit >= total - tfinal:
        raise ConfigError(
            f"train.adalora: a run of {total} optimizer steps is too short for AdaLoRA's schedule (tinit "
            f"{tinit} + tfinal {tfinal} steps leave none to reallocate ranks in); train for more steps or "
            "lower train.adalora.tinit / train.adalora.tfinal."
        )
    return tinit, tfinal


def kept_triplets(tuner: Any, adapter: str = "default") -> dict[str, list[bool]]:
    """peft's ``rank_pattern`` of ``tuner`` (an ``AdaLoraModel``): which triplets have a non-zero singular value."""
    marker = f"lora_E.{adapter}"
    with torch.no_grad():
        return {name: (param.view(-1) != 0).tolist() for name, param in tuner.model.named_parameters()
                if marker in name}


class RankAllocationCallback(TrainerCallback):
    """Calls peft's ``update_and_allocate`` after every optimizer step, on the run's own schedule."""

    def __init__(self, cfg: AdaLoraConfig) -> None:
        self.cfg = cfg
        self.pattern: dict[str, list[bool]] | None = None

    @staticmethod
    def _tuner(model: Any) -> tuple[Any, Any]:
        tuner = model.base_model
        return tuner, tuner.peft_config[tuner.trainable_adapter_name]

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        _, config = self._tuner(model)
        total = int(state.max_steps)
        config.tinit, config.tfinal = schedule(self.cfg, total)
        config.total_step = total

    def on_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        tuner, config = self._tuner(model)
        step = int(state.global_step)  # steps completed before this one: 0 at the first
        if step > config.total_step - config.tfinal:
            # The final phase masks with the fixed pattern; after a resume it is read off the weights.
            config.rank_pattern = self.pattern or kept_triplets(tuner, tuner.trainable_adapter_name)
        tuner.update_and_allocate(step)
        if config.rank_pattern:
            self.pattern = config.rank_pattern
        config.rank_pattern = None

    def save_state(self, folder: Path, model: Any) -> None:
        """Write the importance averages and the kept pattern into the checkpoint ``folder``."""
        allocator = model.base_model.rankallocator
        tensors = {f"{table}/{name}": value.detach().contiguous()
                   for table in _TABLES for name, value in getattr(allocator, table).items()}
        save_file(tensors, str(folder / STATE_FILE), metadata={"pattern": json.dumps(self.pattern)})

    def load_state(self, folder: Path, model: Any) -> None:
        """Restore what :meth:`save_state` wrote (a checkpoint without it restarts the averages)."""
        path = folder / STATE_FILE
        if not path.is_file():
            return
        allocator = model.base_model.rankallocator
        device = next(model.parameters()).device
        with safe_open(str(path), framework="pt") as fh:
            self.pattern = json.loads((fh.metadata() or {}).get("pattern") or "null")
            for key in fh.keys():  # noqa: SIM118 (safe_open is no dict)
                table, name = key.split("/", 1)
                getattr(allocator, table)[name] = fh.get_tensor(key).to(device)
