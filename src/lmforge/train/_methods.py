"""Fine-tuning methods, by registry name.

Each method is registered in its own module-level call to :func:`register_method`; a new
method (bottleneck adapters, prefix or prompt tuning...) is one class with ``wrap`` and
``save`` and one registration. Unknown names fail loudly and list what exists. ``full`` and
``lora`` live here; the other peft methods that merge into the base weights (``adalora``,
``ia3``) in ``_peft_methods.py``, imported by the package for their registration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lmforge._extras import require
from lmforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from lmforge.config import TrainConfig

__all__ = [
    "METHODS",
    "Method",
    "get_method",
    "is_causal_lm",
    "lora_targets",
    "peft_task_type",
    "register_method",
    "save_peft_adapter",
    "wrap_peft",
]


class Method(Protocol):
    """How a pretrained model (a classifier or a causal LM) is adapted, saved and loaded back."""

    name: str

    def wrap(self, model: torch.nn.Module, cfg: TrainConfig, *,
             new_token_ids: Sequence[int] = ()) -> torch.nn.Module:
        """Return the model to train (the same one, or one wrapped with trainable adapters).

        ``new_token_ids`` (given only when ``model.extend_vocab`` added tokens) are embedding
        rows that must train whatever else is frozen.
        """
        ...

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Write the trained weights as safetensors into ``out_dir``."""
        ...

    # Optional: ``callbacks(cfg) -> list`` of Trainer callbacks the method needs while it trains
    # (AdaLoRA's rank allocation); the train stage adds them. Not part of the Protocol, so a
    # method without any needs no stub. Optional too: ``format``, what ``save`` writes, recorded in
    # ``lmforge_model.json`` for the loaders (``transformers``, ``lmforge-modules``; unset: a peft
    # adapter, ``peft-adapter``).


METHODS: dict[str, Callable[[], Method]] = {}


def register_method(name: str) -> Callable[[Callable[[], Method]], Callable[[], Method]]:
    """Class decorator registering a fine-tuning method under ``name``."""

    def deco(factory: Callable[[], Method]) -> Callable[[], Method]:
        if name in METHODS:
            raise ValueError(f"fine-tuning method '{name}' is registered twice")
        METHODS[name] = factory
        return factory

    return deco


def get_method(name: str) -> Method:
    """The registered method ``name``; unknown names list the registered ones."""
    factory = METHODS.get(name)
    if factory is None:
        raise ConfigError(f"Unknown train.method '{name}'. Available: {', '.join(sorted(METHODS))}.")
    return factory()


@register_method("full")
class FullFineTuning:
    """Every weight trains (but the word embeddings when ``train.freeze_embeddings`` is on)."""

    name = "full"
    format = "transformers"  # a save_pretrained folder

    def wrap(self, model: torch.nn.Module, cfg: TrainConfig, *,
             new_token_ids: Sequence[int] = ()) -> torch.nn.Module:
        if cfg.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)  # type: ignore[operator]
            if new_token_ids:
                from lmforge.train._vocab import freeze_old_rows  # torch at its top

                freeze_old_rows(model, min(new_token_ids))
        return model

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)  # type: ignore[operator]


def _default_lora_targets(model: torch.nn.Module, key: str = "train.lora.target_modules") -> list[str]:
    """Attention and FFN linear layers by their usual names across encoder families."""
    known = ("query", "key", "value", "dense", "q_proj", "k_proj", "v_proj", "o_proj", "q_lin", "k_lin",
             "v_lin", "out_lin", "lin1", "lin2", "gate_proj", "up_proj", "down_proj", "qkv_proj")
    torch = require("torch", extra="train", purpose="LoRA")
    leaves = {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear) and "classifier" not in name and "pooler" not in name
    }
    targets = sorted(leaves.intersection(known))
    if not targets:
        raise ConfigError(
            "Found no attention or FFN linear layers known by name in this model to adapt; "
            f"set {key} to some of: {', '.join(sorted(leaves))}."
        )
    return targets


# A causal LM's attention and MLP projections (Llama, Mistral, Qwen, SmolLM, Gemma, Phi-3 naming).
_CAUSAL_LM_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def is_causal_lm(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a ``*ForCausalLM`` / ``*LMHeadModel`` (it generates; it has no classifier)."""
    return type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))


@register_method("lora")
class LoRA:
    """Low-rank adapters on the attention and FFN projections (Hu et al., 2021), via peft.

    For a classifier the head trains fully (peft's ``modules_to_save`` for sequence
    classification); a causal LM (peft task type ``CAUSAL_LM``) adapts its q/k/v/o and
    gate/up/down projections and keeps its LM head frozen. The saved folder is a peft adapter
    plus a reference to the base model.
    """

    name = "lora"

    def wrap(self, model: torch.nn.Module, cfg: TrainConfig, *,
             new_token_ids: Sequence[int] = ()) -> torch.nn.Module:
        peft = require("peft", extra="train", purpose="LoRA fine-tuning")
        config = peft.LoraConfig(
            task_type=peft_task_type(model),
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=lora_targets(model, cfg.lora.target_modules),
            # Added tokens' rows train as a small delta saved in the adapter (peft's TrainableTokens).
            trainable_token_indices=list(new_token_ids) or None,
        )
        return wrap_peft(model, config, "train.lora.target_modules")

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        save_peft_adapter(model, out_dir)


def lora_targets(model: torch.nn.Module, configured: list[str] | None,
                 key: str = "train.lora.target_modules") -> list[str]:
    """``configured``, else the known attention/FFN projections (a causal LM: only q/k/v/o, gate/up/down)."""
    if configured:
        return list(configured)
    targets = _default_lora_targets(model, key)
    if is_causal_lm(model):
        targets = [t for t in targets if t in _CAUSAL_LM_TARGETS] or targets
    return targets


def peft_task_type(model: torch.nn.Module) -> object:
    """peft's ``CAUSAL_LM`` for a causal LM, else ``SEQ_CLS`` (the classifier head then trains fully)."""
    peft = require("peft", extra="train", purpose="Parameter-efficient fine-tuning")
    return peft.TaskType.CAUSAL_LM if is_causal_lm(model) else peft.TaskType.SEQ_CLS


def wrap_peft(model: torch.nn.Module, config: object, key: str) -> torch.nn.Module:
    """``peft.get_peft_model``; a target module that is not there is a ConfigError naming ``key``."""
    peft = require("peft", extra="train", purpose="Parameter-efficient fine-tuning")
    try:
        return peft.get_peft_model(model, config)
    except ValueError as exc:  # peft names the missing target modules
        raise ConfigError(f"{key}: {exc}") from None


def save_peft_adapter(model: torch.nn.Module, out_dir: Path) -> None:
    """A peft model's adapter (and trained head) as ``adapter_model.safetensors`` + ``adapter_config.json``."""
    config = model.peft_config["default"]  # type: ignore[index]
    # With trainable tokens the adapter holds the new rows; peft's "auto" would also copy the
    # whole resized embedding matrix (it sees a vocabulary larger than the base's).
    extra = {"save_embedding_layers": False} if getattr(config, "trainable_token_indices", None) else {}
    model.save_pretrained(out_dir, safe_serialization=True, **extra)  # type: ignore[operator]
