"""What the methods that do not merge share: wrap (attach, freeze), save, and the virtual-token check.

Bottleneck adapters (``_adapters.py``), prefix and prompt tuning (``_prompting.py``) add modules
that stay beside the base weights (``lmforge.predict.attach_modules``: the inference layer
attaches the same modules again when it loads the run). Each of those methods is a
:class:`ModulesMethod` with a ``layout`` (where its modules go, with their settings); the base
model is frozen, and what trains is the added modules, the classifier head (every parameter
outside ``model.base_model``) and whatever ``extra_trainable`` names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import ConfigError
from lmforge.predict import MODULES_FORMAT, attach_modules, save_modules
from lmforge.rundir import read_json
from lmforge.train._methods import is_causal_lm

if TYPE_CHECKING:
    import torch

    from lmforge.config import Spec, TrainConfig

__all__ = ["ModulesMethod", "check_virtual_tokens", "position_limit", "virtual_token_problem"]

# Models whose positions start after the padding index (position = padding_idx + 1 + i).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")

# Methods that take a causal LM (`task: generate`), named in the refusal below.
_CAUSAL_LM_METHODS = "full, lora"


def position_limit(config: Mapping[str, Any]) -> int | None:
    """How many tokens a model has positions for (None: no absolute position embeddings)."""
    limit = config.get("max_position_embeddings")
    if not isinstance(limit, int) or config.get("position_embedding_type", "absolute") != "absolute":
        return None
    if config.get("model_type") in _OFFSET_POSITIONS:
        limit -= int(config.get("pad_token_id") or 0) + 1
    return limit


def virtual_token_problem(method: str, cfg: TrainConfig, max_length: int, config: Mapping[str, Any],
                          model_name: str) -> str | None:
    """Why ``method``'s virtual tokens and ``max_length`` text tokens do not fit the model, or None.

    A soft prompt takes positions of its own: ``max_length`` + ``num_virtual_tokens`` must fit
    the position embeddings. A prefix takes no positions, but every text token attends over it
    as over that many more tokens; the same budget keeps the attention span within what the
    model was pretrained on (and is what the spec promises: virtual tokens count against
    ``model.max_length``).
    """
    if method not in ("prefix", "prompt"):
        return None
    limit = position_limit(config)
    virtual = getattr(cfg, method).num_virtual_tokens
    if limit is None or max_length + virtual <= limit:
        return None
    fit = limit - virtual
    length_fix = f"lower model.max_length to {fit}" if fit >= 8 else "lower model.max_length"
    return (
        f"train.{method}.num_virtual_tokens ({virtual}) + model.max_length ({max_length}) = {max_length + virtual} "
        f"tokens, more than the {limit} positions {model_name} has. {length_fix.capitalize()}, or "
        f"train.{method}.num_virtual_tokens to {max(1, limit - max_length)} or fewer."
    )


def check_virtual_tokens(spec: Spec, model_path: Path) -> str | None:
    """:func:`virtual_token_problem` for a spec and the model folder it names (its ``config.json``);
    the train stage raises it before loading anything, ``lmforge validate`` lists it."""
    config_file = Path(model_path) / "config.json"
    if spec.train.method not in ("prefix", "prompt") or not config_file.is_file():
        return None
    config = read_json(config_file, hint="reinstall the model.")
    if not isinstance(config, dict):
        return None
    return virtual_token_problem(spec.train.method, spec.train, spec.model.max_length, config, spec.model.name)


class ModulesMethod:
    """Base of the methods whose modules stay beside the base weights; subclasses set the layout."""

    name = ""
    format = MODULES_FORMAT
    """``format`` of ``lmforge_model.json``: the base model plus lmforge modules."""

    def layout(self, cfg: TrainConfig) -> dict[str, Any]:
        """Where the modules go and their settings (``kind`` and the kind's keys)."""
        raise NotImplementedError

    def extra_trainable(self, model: torch.nn.Module) -> list[str]:
        """Parameters of the base model that train too (none unless the method says so)."""
        return []

    def wrap(self, model: torch.nn.Module, cfg: TrainConfig, *,
             new_token_ids: Sequence[int] = ()) -> torch.nn.Module:
        if is_causal_lm(model):
            raise ConfigError(
                f"train.method {self.name} adapts encoder classifiers only; for task: generate use one of: "
                f"{_CAUSAL_LM_METHODS}."
            )
        if new_token_ids:
            raise ConfigError(
                f"train.method {self.name} keeps the word embeddings frozen, so the {len(new_token_ids)} tokens "
                "model.extend_vocab added would never train. Set model.extend_vocab: false, or use "
                "train.method full or lora."
            )
        layout = {"method": self.name, **self.layout(cfg)}
        added = attach_modules(model, layout)
        prefix = str(getattr(model, "base_model_prefix", "")) + "."
        head = [n for n, _ in model.named_parameters() if not n.startswith(prefix)]
        trainable = set(added) | set(head) | set(self.extra_trainable(model))
        for name, param in model.named_parameters():
            param.requires_grad_(name in trainable)
        layout["trainable"] = sorted(trainable)
        return model

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        save_modules(model, out_dir)
