"""Dynamic int8 weights for a causal LM in PyTorch, saved as plain safetensors (no pickle).

Every ``nn.Linear`` (the attention and MLP projections and the LM head) becomes PyTorch's
dynamically quantized linear (``torch.ao.nn.quantized.dynamic.Linear``, fbgemm): weights int8
per output channel, activations quantized per call, int8 matmuls. Measured on a 576x49152 layer
(SmolLM2's LM head) on one core: about 10x fp32 at batch 1, where decoding is bound by reading
the weights. ``torch.ao.quantization`` is marked deprecated; its warnings are silenced here, and
the format below does not depend on it (any int8 kernel can read int8 weights and scales).

A quantized module's state dict holds a packed parameter that safetensors cannot store, so the
folder holds, for each quantized linear ``NAME``, ``NAME.weight`` (int8, out x in),
``NAME.weight_scale`` (float64, per output row; 0-d where PyTorch kept one scale for the
tensor), ``NAME.weight_zero_point`` (int64) and
``NAME.bias`` when it has one, and every other tensor of the model as it is. ``lmforge_model.json``
lists the quantized modules (``quantization.modules``); loading rebuilds the model from its
config, quantizes those modules, and sets their weights from the file: the loaded model computes
what the saved one did, bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.errors import RunDirError
from lmforge.rundir import WEIGHTS

__all__ = ["INT8_DYNAMIC", "load_int8_causal_lm", "quantize_int8_dynamic", "save_int8_causal_lm"]

INT8_DYNAMIC = "torch-dynamic-int8"
"""``quantization.method`` in ``lmforge_model.json`` of a folder saved by :func:`save_int8_causal_lm`."""


@contextmanager
def _quiet_ao() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantized tensor creation.*")
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize_per_(tensor|channel).*")
        yield


def _quantize(model: Any, names: list[str]) -> Any:
    torch = require("torch", extra="train", purpose="int8 quantization")
    with _quiet_ao():
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = {n: per_channel_dynamic_qconfig for n in names}
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)  # type: ignore[no-untyped-call]


def quantize_int8_dynamic(model: Any) -> tuple[Any, list[str]]:
    """``model`` (changed in place) with every ``nn.Linear`` dynamically quantized, and their names."""
    torch = require("torch", extra="train", purpose="int8 quantization")
    names = sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    return _quantize(model, names), names


def _quantized_modules(model: Any) -> dict[str, Any]:
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return {n: m for n, m in model.named_modules() if isinstance(m, QLinear)}


def save_int8_causal_lm(model: Any, out: Path) -> list[str]:
    """Write ``model`` (from :func:`quantize_int8_dynamic`) as ``out/model.safetensors`` + ``config.json``.

    Returns:
        The names of the quantized modules, for ``lmforge_model.json``.
    """
    torch = require("torch", extra="train", purpose="Saving an int8 model")
    safetensors_torch = require("safetensors.torch", extra="train", purpose="Saving an int8 model")
    quantized = _quantized_modules(model)
    state: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        if any(key.startswith(f"{name}.") for name in quantized) or not isinstance(value, torch.Tensor):
            continue
        state[key] = value.detach().clone().contiguous()
    with _quiet_ao():
        for name, module in quantized.items():
            weight, bias = module._weight_bias()
            state[f"{name}.weight"] = weight.int_repr().contiguous()
            if weight.qscheme() == torch.per_tensor_affine:  # 0-d scale and zero point
                scale, zero = torch.tensor(weight.q_scale()), torch.tensor(weight.q_zero_point())
            else:
                scale, zero = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
            state[f"{name}.weight_scale"] = scale.to(torch.float64).contiguous()
            state[f"{name}.weight_zero_point"] = zero.to(torch.int64).contiguous()
            if bias is not None:
                state[f"{name}.bias"] = bias.detach().clone().contiguous()
    safetensors_torch.save_file(state, str(out / WEIGHTS), metadata={"format": "pt", "quantization": INT8_DYNAMIC})
    model.config.save_pretrained(out)
    return sorted(quantized)


def load_int8_causal_lm(folder: Path, modules: list[str]) -> Any:
    """The causal LM saved by :func:`save_int8_causal_lm` in ``folder``, in eval mode.

    Raises:
        RunDirError: the file lacks a tensor the listed modules need, or holds tensors the model does not.
    """
    torch = require("torch", extra="train", purpose="Loading an int8 model")
    transformers = require("transformers", extra="train", purpose="Loading an int8 model")
    safetensors_torch = require("safetensors.torch", extra="train", purpose="Loading an int8 model")
    hint = "re-run `lmforge compress`."
    config = transformers.AutoConfig.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = safetensors_torch.load_file(str(folder / WEIGHTS))
    present = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if unknown := sorted(set(modules) - present):
        raise RunDirError(f"{folder} lists int8 modules its model does not have ({', '.join(unknown[:5])}); {hint}")
    int8: dict[str, tuple[Any, Any, Any, Any]] = {}
    for name in modules:
        try:
            ints, scale, zero = (state.pop(f"{name}.{k}") for k in ("weight", "weight_scale", "weight_zero_point"))
        except KeyError:
            raise RunDirError(f"{folder / WEIGHTS} lacks the int8 weight of {name}; {hint}") from None
        int8[name] = (ints, scale, zero, state.pop(f"{name}.bias", None))
    # the float tensors first: a quantized module's own state-dict loader wants its packed form
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not any(k.startswith(f"{name}.") for name in modules)]
    if missing or unexpected:
        raise RunDirError(f"{folder / WEIGHTS} does not match its config (missing {missing[:5]}, unexpected "
                          f"{unexpected[:5]}); {hint}")
    model = _quantize(model, list(modules))
    with _quiet_ao():
        for name, module in _quantized_modules(model).items():
            ints, scale, zero, bias = int8[name]
            if scale.dim() == 0:
                weight = torch._make_per_tensor_quantized_tensor(ints, float(scale), int(zero))
            else:
                weight = torch._make_per_channel_quantized_tensor(ints, scale, zero, 0)
            module.set_weight_bias(weight, bias)
    return model.eval()
