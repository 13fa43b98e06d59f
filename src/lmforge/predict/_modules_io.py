"""Attach, save and load the modules of the methods that do not merge (bottleneck adapters, prefix, prompt).

A method's *layout* is a JSON-able dict: ``{"kind": "bottleneck" | "prefix" | "prompt",
"method": name, its settings (``reduction_factor``, ``non_linearity``, ``placement``;
``num_virtual_tokens``), "targets": [module names], "trainable": [parameter names]}``. Training
attaches it (``train`` calls :func:`attach_modules`), the model carries it in
``config.lmforge_modules`` (so a torch variant saved from it, whose ``config.json`` keeps the key,
is rebuilt the same way), and :func:`save_modules` writes ``lmforge_modules.json`` (the layout
plus the base model and its digest, as a peft adapter folder names its base) and
``lmforge_modules.safetensors`` (the ``trainable`` tensors only: the modules and the classifier
head). :func:`load_modules` re-attaches the layout to a freshly loaded base model and fills it,
with every key checked both ways. No pickle: JSON and safetensors.

torch loads with the first call, not with this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.errors import RunDirError
from lmforge.predict._meta import BASE_DIGEST, base_model_digest
from lmforge.rundir import atomic_write_json, read_json

__all__ = ["MODULES_CONFIG", "MODULES_FORMAT", "MODULES_WEIGHTS", "attach_modules", "load_modules", "model_layout",
           "save_modules"]

MODULES_CONFIG = "lmforge_modules.json"
"""In a model folder: where the modules go (the layout), and the base model and its digest."""
MODULES_WEIGHTS = "lmforge_modules.safetensors"
"""In a model folder: the modules' and the classifier head's tensors (nothing of the base model)."""
MODULES_FORMAT = "lmforge-modules"
"""``format`` in ``lmforge_model.json`` of a model saved as base model + lmforge modules."""

_CONFIG_KEY = "lmforge_modules"


def attach_modules(model: Any, layout: dict[str, Any]) -> list[str]:
    """Add the modules ``layout`` describes to ``model`` (in place) and record the layout in its config.

    Returns the names of the parameters added. ``layout["targets"]`` is filled in when absent.

    Raises:
        ConfigError: the model has nowhere to put them (an architecture the method does not know).
    """
    require("torch", extra="train", purpose="Adapters, prefix and prompt tuning")
    from lmforge.predict._modules import attach  # torch at its top

    added = attach(model, layout)
    setattr(model.config, _CONFIG_KEY, layout)
    return added


def model_layout(model_or_config: Any) -> dict[str, Any] | None:
    """The layout a model (or its config) carries, or None for a model without lmforge modules."""
    config = getattr(model_or_config, "config", model_or_config)
    layout = getattr(config, _CONFIG_KEY, None)
    return layout if isinstance(layout, dict) else None


def save_modules(model: Any, out_dir: Path) -> None:
    """Write the model's trainable tensors and its layout (with the base model and its digest) to ``out_dir``."""
    safetensors_torch = require("safetensors.torch", extra="train", purpose="Saving adapter weights")
    layout = model_layout(model)
    if layout is None:  # a bug: save is only called on a model the method wrapped
        raise RuntimeError("the model carries no lmforge modules to save")
    params = dict(model.named_parameters())
    state = {name: params[name].detach().contiguous().cpu() for name in layout["trainable"]}
    safetensors_torch.save_file(state, str(out_dir / MODULES_WEIGHTS), metadata={"format": "pt"})
    base = Path(str(getattr(model.config, "_name_or_path", "")))
    record = {**layout, "base_model_path": str(base),
              BASE_DIGEST: base_model_digest(base) if (base / "config.json").is_file() else None}
    atomic_write_json(out_dir / MODULES_CONFIG, record)


def load_modules(model: Any, folder: Path) -> Any:
    """Attach the layout saved in ``folder`` to ``model`` (the base classifier) and load its tensors.

    Raises:
        RunDirError: the files are missing, or their tensors do not match the layout.
    """
    safetensors_torch = require("safetensors.torch", extra="train", purpose="Loading adapter weights")
    hint = "re-run `lmforge train`."
    for name in (MODULES_CONFIG, MODULES_WEIGHTS):
        if not (folder / name).is_file():
            raise RunDirError(f"{folder} has no {name}; {hint}")
    record = read_json(folder / MODULES_CONFIG, hint=hint)
    if not isinstance(record, dict) or not isinstance(record.get("trainable"), list):
        raise RunDirError(f"{folder / MODULES_CONFIG} describes no modules (no 'trainable' list); {hint}")
    layout = {k: v for k, v in record.items() if k not in ("base_model_path", BASE_DIGEST)}
    added = attach_modules(model, layout)
    state = safetensors_torch.load_file(str(folder / MODULES_WEIGHTS))
    expected = set(layout["trainable"])
    problems = sorted(set(state) ^ expected) + sorted(set(added) - expected)
    if problems:
        raise RunDirError(f"{folder / MODULES_WEIGHTS} does not match {MODULES_CONFIG} (first differing tensor: "
                          f"{problems[0]}); {hint}")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape differs
        raise RunDirError(f"{folder / MODULES_WEIGHTS} does not fit the base model ({exc}); {hint}") from None
    if unexpected:
        raise RunDirError(f"{folder / MODULES_WEIGHTS} holds tensors the model has not: {unexpected[:3]}; {hint}")
    return model
