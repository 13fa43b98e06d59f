"""Export a PyTorch classifier to ONNX and optimize the graph with ONNX Runtime's transformer fusions.

``torch.onnx.export(..., dynamo=False)``: the TorchScript exporter. The default (dynamo)
exporter needs ``onnxscript`` and produced graphs 14-21 % slower on this CPU; the
TorchScript one exported in 1.5 s and ran fastest. It warns that it is deprecated; that
warning is silenced here on purpose, and a test pins that this path still works.

After export, ONNX Runtime's transformer optimizer fuses attention, LayerNorm+residual,
GELU and the embedding into single kernels. The fused graph is checked against the plain
export on real inputs; if they disagree (a fusion that misreads an unusual graph, e.g.
layers with different head counts after pruning), the plain graph is kept.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.errors import ConfigError
from lmforge.predict import CLASSIFIER_OUTPUTS, mean_pool, onnx_session

__all__ = ["EXPORTABLE_TYPES", "OPSET", "check_exportable", "export_onnx", "optimize_onnx", "quiet_onnxruntime"]

logger = logging.getLogger(__name__)

OPSET = 17
"""ONNX opset of exported graphs: LayerNormalization is a native op from 17 on."""

EXPORTABLE_TYPES = ("albert", "bert", "camembert", "distilbert", "electra", "mpnet", "roberta", "xlm-roberta")
"""Encoder classifiers whose export (batch and length dynamic) is tested or known to work."""

# Largest difference between an output of the fused and of the plain graph that counts as the same model,
# relative to the output's scale (max |value|, at least 1): hidden states run larger than logits.
_FUSION_ATOL = 1e-3


def check_exportable(model_type: str) -> None:
    """Raise :class:`ConfigError` naming the supported architectures when ``model_type`` is not one."""
    if model_type not in EXPORTABLE_TYPES:
        raise ConfigError(
            f"ONNX export supports the encoder architectures {', '.join(EXPORTABLE_TYPES)}; this run's model "
            f"is '{model_type}'. Build only PyTorch variants, e.g. --only torch-bf16,merged."
        )


def _logits_and_pooled(model: Any) -> Any:
    """Wrap a HF classifier so the exported graph has the two ``lmforge.predict.CLASSIFIER_OUTPUTS``."""
    torch = require("torch", extra="train", purpose="ONNX export")

    class LogitsAndPooled(torch.nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            out = self.inner(**kwargs, output_hidden_states=True)
            return out.logits, mean_pool(out.hidden_states[-1], attention_mask, normalize=False)  # (B, C), (B, H)

    return LogitsAndPooled(model)


def input_names(model: Any) -> list[str]:
    """The inputs the classifier takes: ids, mask, and token types where the architecture has them."""
    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in params:
        names.append("token_type_ids")
    return names


def export_onnx(model: Any, path: Path, *, wrap: Any = None,
                outputs: Sequence[str] = CLASSIFIER_OUTPUTS) -> list[str]:
    """Export ``model`` (fp32, eval) to ``path`` with dynamic batch and sequence axes; return input names.

    ``wrap`` turns the model into the module traced (default: a classifier's logits and pooled
    states) and ``outputs`` names that module's outputs, in order (the recommender's encoder:
    one, the mean-pooled unit ``embeddings``).
    """
    torch = require("torch", extra="train", purpose="ONNX export")
    require("onnx", extra="compress", purpose="ONNX export")
    names = input_names(model)
    model = model.float().eval()
    # Eager attention exports as MatMul/Softmax/MatMul, which ONNX Runtime fuses into one Attention
    # kernel; the SDPA path exports a pattern it does not recognize (measured: 6 Attention ops vs 0).
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"
    # Tracing inputs: any ids inside the vocabulary (a small or an extended one too), one padded row
    # (the mask is explicit: XLM-R pads with id 1, not 0).
    vocab = int(model.get_input_embeddings().num_embeddings)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 2307, 102, 0, 0, 0]], dtype=torch.long) % vocab
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.long)
    args: tuple[Any, ...] = (ids, mask) + ((torch.zeros_like(ids),) if "token_type_ids" in names else ())
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes.update({name: {0: "batch"} for name in outputs})
    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript exporter is deprecated in favour of dynamo, which is slower here (see module doc).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        with contextlib.suppress(AttributeError):
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            (wrap or _logits_and_pooled)(model), args, str(path), input_names=names, output_names=list(outputs),
            dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    return names


@contextlib.contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """Run ONNX Runtime's Python tooling quietly, in a scratch working directory.

    Its optimizer logs every fusion at INFO under bare module names (``fusion_utils``,
    ``onnx_model_bert``...), and its quantizer logs through the root logger, including a
    warning to pre-process graphs that were already optimized on purpose: those loggers go
    to ERROR for the block. Its symbolic shape inference saves ``sym_shape_infer_temp.onnx``
    (+ external data) into the current directory when it gives up: the block runs in a
    temporary directory, removed afterwards, so nothing lands in the user's folder. Pass
    absolute paths inside the block.
    """
    names = [n for n in list(logging.root.manager.loggerDict)
             if n.startswith(("fusion", "onnx", "optimizer", "bert", "shape_infer"))]
    loggers = [logging.getLogger(n) for n in names] + [logging.root]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    cwd = os.getcwd()
    try:
        with tempfile.TemporaryDirectory(prefix="lmforge-ort-") as scratch:
            os.chdir(scratch)
            try:
                yield
            finally:
                os.chdir(cwd)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _sample_feed(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:

    sess = onnx_session(path)
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: feed[n] for n in names})  # type: ignore[no-any-return]


def optimize_onnx(src: Path, dst: Path, feed: dict[str, np.ndarray], num_heads: int, hidden_size: int) -> dict[str, Any]:
    """Fuse ``src`` into ``dst`` with ONNX Runtime's transformer optimizer; keep ``src`` if outputs differ.

    Args:
        src: the plain export.
        dst: where the optimized graph goes.
        feed: a real batch (input name -> int64 array) to compare the two graphs on (every output).
        num_heads: attention heads per layer (0: detect from the graph).
        hidden_size: model width (0: detect).

    Returns:
        ``{"fused": bool, "fused_ops": {op: count}, "max_rel_diff_fused": float}`` for variant.json.
    """
    require("onnxruntime", extra="compress", purpose="ONNX graph optimization")
    from onnxruntime.transformers import optimizer

    src, dst = src.resolve(), dst.resolve()

    with quiet_onnxruntime(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about graphs it does not fully fuse; the check below decides
        opt = optimizer.optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                       opt_level=0)
        opt.save_model_to_file(str(dst))
        fused_ops = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    before, after = _sample_feed(src, feed), _sample_feed(dst, feed)
    diff = max(float(np.abs(b - a).max() / max(1.0, float(np.abs(b).max()))) for b, a in zip(before, after, strict=True))
    if not np.isfinite(diff) or diff > _FUSION_ATOL:
        logger.warning("fused ONNX graph differs from the export by %.3g; keeping the unfused graph", diff)
        shutil.copyfile(src, dst)
        return {"fused": False, "fused_ops": {}, "max_rel_diff_fused": diff}
    return {"fused": True, "fused_ops": fused_ops, "max_rel_diff_fused": diff}
