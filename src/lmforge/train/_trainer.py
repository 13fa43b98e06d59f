"""The Hugging Face Trainer with lmforge's additions: seeded length-grouped sampling,
FGM adversarial training, and atomic checkpoints."""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from lmforge.rundir import fsync_tree
from lmforge.train._encode import SeededLengthSampler
from lmforge.train._vocab import NO_DECAY_ATTR

__all__ = ["LmforgeTrainer", "latest_checkpoint"]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_STAGING = ".staging"


def _checkpoints(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint below ``root`` (only complete ones are ever renamed in)."""
    found = _checkpoints(root)
    return found[-1][1] if found else None


class LmforgeTrainer(Trainer):
    """Trainer with a seeded sampler, optional FGM, and checkpoints written atomically.

    Args:
        fgm_epsilon: L2 size of the FGM perturbation of the word embeddings; None turns FGM off.
        group_by_length: batch texts of similar length together.
        keep_checkpoints: how many recent checkpoints stay on disk (the best one always stays).
    """

    def __init__(
        self,
        *args: Any,
        fgm_epsilon: float | None = None,
        group_by_length: bool = True,
        keep_checkpoints: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fgm_epsilon = fgm_epsilon
        self.group_by_length = group_by_length
        self.keep_checkpoints = keep_checkpoints

    # -- sampling ------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        dataset: Any = train_dataset if train_dataset is not None else self.train_dataset
        return SeededLengthSampler(
            dataset.lengths, self.args.train_batch_size, seed=self.args.seed, group=self.group_by_length
        )

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """Trainer's choice, less the parameters marked to take no decay (partly frozen embeddings)."""
        skip = {name for name, p in model.named_parameters() if getattr(p, NO_DECAY_ATTR, False)}
        return [name for name in super().get_decay_parameter_names(model) if name not in skip]

    # -- FGM -----------------------------------------------------------------------------
    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        kwargs = {"num_items_in_batch": num_items_in_batch}
        if self.fgm_epsilon is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        embeddings = model.get_input_embeddings()
        probe: dict[str, torch.Tensor] = {}

        def add_probe(_mod: torch.nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            # A zero added to the embeddings gives their gradient even where they are frozen (LoRA).
            probe["delta"] = torch.zeros_like(out, requires_grad=True)
            return out + probe["delta"]

        handle = embeddings.register_forward_hook(add_probe)
        try:
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)  # type: ignore[misc]
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(loss, probe["delta"], retain_graph=True)
        # Per-example L2 normalization: r = eps * g / ||g||  (B, T, C)
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        perturbation = (self.fgm_epsilon * grad / norm).detach()

        handle = embeddings.register_forward_hook(lambda _m, _i, out: out + perturbation)
        try:
            adv_loss = super().compute_loss(model, inputs, return_outputs=False, **kwargs)
        finally:
            handle.remove()
        total = loss + adv_loss  # type: ignore[operator]
        return (total, outputs) if return_outputs else total

    # -- atomic checkpoints --------------------------------------------------------------
    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        """Write the checkpoint into a staging folder, fsync it, then rename it into place.

        A kill at any moment leaves either the complete ``checkpoint-N`` or none; resume
        takes the newest complete one.
        Under torchrun every process writes its own RNG state into the staging folder; rank 0
        alone renames it, between barriers, so no process sees a half-moved checkpoint.
        """
        main = self.is_world_process_zero()
        final_root = Path(str(self.args.output_dir))
        staging_root = final_root / _STAGING
        if main:
            shutil.rmtree(staging_root, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.args.output_dir = str(staging_root)
        try:
            with warnings.catch_warnings():
                # An extended vocabulary (model.extend_vocab) under LoRA: peft notices the resized
                # embeddings and keeps a full copy in the checkpoint, as a resume needs; expected.
                warnings.filterwarnings("ignore", message="Setting `save_embedding_layers` to `True`")
                super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = str(final_root)
        self.accelerator.wait_for_everyone()
        name = f"checkpoint-{self.state.global_step}"
        staged = staging_root / name
        best = self.state.best_model_checkpoint
        if best and Path(best).parent == staging_root:
            self.state.best_model_checkpoint = str(final_root / Path(best).name)
            if main:
                self.state.save_to_json(str(staged / "trainer_state.json"))
        if main:
            for callback in self.callback_handler.callbacks:
                # A callback with state of its own (AdaLoRA's importance averages) saves it inside
                # the staged checkpoint, so it is renamed in with the rest or not at all.
                save_state = getattr(callback, "save_state", None)
                if save_state is not None:
                    save_state(staged, self.model)
            fsync_tree(staged)
            final = final_root / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(staged, final)
            shutil.rmtree(staging_root, ignore_errors=True)
            self._rotate(final_root)
        self.accelerator.wait_for_everyone()

    def _rotate(self, root: Path) -> None:
        best = self.state.best_model_checkpoint
        found = _checkpoints(root)
        for _step, path in found[: max(0, len(found) - self.keep_checkpoints)]:
            if best is None or Path(best).name != path.name:
                shutil.rmtree(path, ignore_errors=True)
