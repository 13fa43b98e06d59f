"""PyTorch backend: a run's trained model (full weights, a peft adapter or lmforge modules) and torch variants.

Weights load through safetensors only (no pickle). Four kinds of folder:

- the run's ``model/`` with full weights (``save_pretrained``), loaded in float32;
- the run's ``model/`` with a PEFT adapter (LoRA, AdaLoRA, IA3: whatever peft can merge): the
  base model is loaded from the catalog and the adapter merged in (:func:`merge_adapter`), after
  its digest is checked against the one recorded at training (``base_model_sha256``: the base
  lies outside the signed run);
- the run's ``model/`` of a method that does not merge (``format: lmforge-modules``: bottleneck
  adapters, prefix, prompt): the same checked base model, the modules re-attached and filled
  from ``lmforge_modules.safetensors`` (``_modules_io.load_modules``);
- a variant under ``compressed/`` saved by :func:`save_torch_model` (bf16, pruned, distilled,
  merged), which keeps its dtype.
  A pruned variant carries ``pruning.json`` with its per-layer sizes; the model is built
  from the config, shrunk to those sizes, then filled from the safetensors with every key
  and shape checked (``strict=True``).

transformers maps safetensors files and can leave parameters reading from the mapping, so a
later write to a file would change the running model. Every loaded model gets its weights
copied into memory of its own, one tensor at a time (:func:`_own_memory`): the peak is one
extra tensor, not a second model, and the files can be re-checked after loading.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.catalog import resolve_model
from lmforge.errors import RunDirError
from lmforge.guard import FileStamps, IntegrityError
from lmforge.predict._embed import mean_pool
from lmforge.predict._meta import BASE_DIGEST, base_model_digest, read_model_meta
from lmforge.predict._modules_io import MODULES_FORMAT, attach_modules, load_modules, model_layout
from lmforge.predict._protocol import batched_proba, to_predictions, unit_rows
from lmforge.rundir import MODEL, MODEL_META, PRUNING, WEIGHTS, is_adapter_dir

__all__ = ["TorchPredictor", "load", "load_torch_model", "merge_adapter", "save_torch_model"]

logger = logging.getLogger(__name__)


class TorchPredictor:
    """A fine-tuned classifier in PyTorch.

    Texts are sorted by length before batching so each batch pads only to its own longest
    text; results come back in input order.
    """

    backend = "torch"

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], max_length: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length

    def set_threads(self, threads: int, *, spinning: bool = True) -> None:
        """Use ``threads`` intra-op threads (process-wide in torch; ``spinning`` has no meaning here)."""
        torch = require("torch", extra="train", purpose="Prediction")
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities of shape (N, C), columns in ``self.labels`` order."""
        torch = require("torch", extra="train", purpose="Prediction")
        self.model.eval()

        def run_batch(batch: list[str]) -> np.ndarray:
            enc = self.tokenizer(batch, truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt").to(self.model.device)
            logits = self.model(**enc).logits.float()  # (B, C)
            return np.asarray(torch.softmax(logits, dim=-1).cpu().numpy())

        with torch.inference_mode():
            return batched_proba(texts, len(self.labels), batch_size, progress, run_batch)

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """Per text: ``label``, ``score`` and ``scores`` (every label's probability)."""
        return to_predictions(self.labels, self.predict_proba(texts, batch_size=batch_size, progress=progress))

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, C) and the encoder's mean-pooled last hidden states (N, H), from one forward pass.

        What an out-of-scope detector needs of a classifier: the energy and max-probability scores
        read the logits, a Mahalanobis score and FAQ retrieval the pooled embedding. The mean runs
        over the text's real tokens; virtual tokens a prompt-tuned model prepends count as real.
        """
        torch = require("torch", extra="train", purpose="Prediction")
        self.model.eval()
        n_labels, hidden = len(self.labels), int(self.model.config.hidden_size)

        def run_batch(batch: list[str]) -> np.ndarray:
            enc = self.tokenizer(batch, truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt").to(self.model.device)
            out = self.model(**enc, output_hidden_states=True)
            states = out.hidden_states[-1].float()  # (B, T', H); T' = T + virtual tokens, if any
            pooled = mean_pool(states, enc["attention_mask"], normalize=False)  # (B, H)
            return np.asarray(torch.cat([out.logits.float(), pooled], dim=1).cpu().numpy())  # (B, C + H)

        with torch.inference_mode():
            both = batched_proba(texts, n_labels + hidden, batch_size, False, run_batch)
        return both[:, :n_labels], both[:, n_labels:]

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Raw logits of shape (N, C), columns in ``self.labels`` order."""
        return self.encode(texts, batch_size)[0]

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """The encoder's mean-pooled embeddings of ``texts``, L2-normalized: (N, H) float32."""
        return unit_rows(self.encode(texts, batch_size)[1])


def _quiet(transformers: Any) -> None:
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_torch_model(folder: str | Path) -> Any:
    """The ``AutoModelForSequenceClassification`` saved in a torch variant folder, in eval mode."""
    torch = require("torch", extra="train", purpose="Loading a PyTorch variant")
    transformers = require("transformers", extra="train", purpose="Loading a PyTorch variant")
    safetensors_torch = require("safetensors.torch", extra="train", purpose="Loading a PyTorch variant")
    folder = Path(folder)
    meta = read_model_meta(folder)
    dtype = torch.bfloat16 if meta.get("dtype") == "bfloat16" else torch.float32
    _quiet(transformers)
    config = transformers.AutoConfig.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    if (layout := model_layout(config)) is not None:  # a variant of a run with adapters, prefix or prompt
        attach_modules(model, dict(layout))
    if (folder / PRUNING).is_file():
        from lmforge.predict._pruning import apply_pruning_shapes

        apply_pruning_shapes(model, json.loads((folder / PRUNING).read_text(encoding="utf-8")))
    state = safetensors_torch.load_file(str(folder / WEIGHTS))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RunDirError(f"{folder / WEIGHTS} does not match its config ({exc}); re-run `lmforge compress`.") from None
    return model.to(dtype).eval()


def save_torch_model(model: Any, out: Path) -> None:
    """Weights as safetensors (no pickle) plus config.json: a folder :func:`load_torch_model` reads."""
    safetensors_torch = require("safetensors.torch", extra="train", purpose="Saving a PyTorch variant")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors_torch.save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    model.config.save_pretrained(out)


def _own_memory(model: Any) -> Any:
    """Copy every CPU parameter and buffer into memory of its own (tied tensors stay tied)."""
    torch = require("torch", extra="train", purpose="Prediction")
    copies: dict[int, Any] = {}
    with torch.no_grad():
        for module in model.modules():
            for table in (module._parameters, module._buffers):
                for name, tensor in list(table.items()):
                    if tensor is None or tensor.device.type != "cpu":
                        continue
                    if id(tensor) not in copies:
                        if isinstance(tensor, torch.nn.Parameter):
                            tensor.data = tensor.data.clone()  # the same Parameter object: ties are kept
                            copies[id(tensor)] = tensor
                        else:
                            copies[id(tensor)] = tensor.clone()
                    table[name] = copies[id(tensor)]
    return model


def _check_base(base: Path, meta: dict[str, Any], model_dir: Path, stamps: FileStamps) -> None:
    """Refuse a base model whose config and weights are not the ones the adapter was trained on."""
    digest = base_model_digest(base, stamps)
    recorded = meta.get(BASE_DIGEST)
    if recorded is None:
        logger.warning("%s records no digest of its base model (trained before lmforge recorded one): "
                       "loading %s unchecked", model_dir / MODEL_META, base)
    elif digest != recorded:
        what = (f"{meta.get('method')} modules" if meta.get("format") == MODULES_FORMAT
                else f"{meta.get('method') or 'peft'} adapter")
        raise IntegrityError(
            f"The base model {base} of the {what} in {model_dir} changed since training: its config and "
            f"weights hash to {digest[:16]}..., the adapter was trained on {str(recorded)[:16]}... "
            f"({BASE_DIGEST} in {MODEL_META}). Install the base model the run was trained with, or train again."
        )


def merge_adapter(model: Any, folder: Path) -> Any:
    """``model`` with the peft adapter in ``folder`` loaded and merged in (peft's ``merge_and_unload``).

    An AdaLoRA adapter keeps only its kept triplets (``rank_pattern``); peft first builds every
    module at ``init_r``, warns that the pattern names no module it targets (it reads it as
    LoRA's per-module ranks), then cuts each module to its pattern as the weights load: the
    warning is wrong here and is not shown.
    """
    peft = require("peft", extra="train", purpose="Loading a peft adapter")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The following rank_pattern keys did not match",
                                category=RuntimeWarning)
        return _own_memory(peft.PeftModel.from_pretrained(model, folder).merge_and_unload())


def _load_trained(model_dir: Path, meta: dict[str, Any]) -> Any:
    """The model ``lmforge train`` saved: full weights, the base model with the adapter merged in, or the
    base model with lmforge's modules attached and loaded."""
    transformers = require("transformers", extra="train", purpose="Prediction")
    labels = list(meta["labels"])
    modules = meta.get("format") == MODULES_FORMAT
    if not is_adapter_dir(model_dir) and not modules:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
        return _own_memory(model)
    base = resolve_model(meta["base_model"])
    stamps = FileStamps(base)
    _check_base(base, meta, model_dir, stamps)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, use_safetensors=True,
    )
    vocab_size = (meta.get("vocab") or {}).get("vocab_size")
    if vocab_size and vocab_size != model.get_input_embeddings().weight.shape[0]:
        # model.extend_vocab added tokens: their rows come from the adapter (peft trainable tokens).
        model.resize_token_embeddings(int(vocab_size), mean_resizing=False)
    if modules:
        model = _own_memory(load_modules(model, model_dir))
    else:
        model = merge_adapter(model, model_dir)
    if changed := stamps.changed():
        raise IntegrityError(f"The base model {base} changed while it was loaded ({', '.join(changed)}); "
                             "nothing loaded from it is used. Load again.")
    return model


def load(folder: Path) -> TorchPredictor:
    """The backend's entry point for :func:`lmforge.predict.load_model_folder`.

    A run's ``model/`` (the layout names it so) or an adapter folder is the trained model,
    loaded in float32 (on a CUDA GPU when torch sees one, unless ``LMFORGE_PREDICT_DEVICE=cpu``);
    any other folder is a variant and keeps its dtype (bf16 stays bf16).
    """
    torch = require("torch", extra="train", purpose="Prediction")
    transformers = require("transformers", extra="train", purpose="Prediction")
    if not (folder / MODEL_META).is_file() and folder.name == MODEL:
        raise RunDirError(
            f"{folder.parent} has no trained model ({folder / MODEL_META} is missing). Run `lmforge train` first."
        )
    meta = read_model_meta(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    _quiet(transformers)
    max_length = int(meta.get("max_length", 128))
    if folder.name != MODEL and not is_adapter_dir(folder) and meta.get("format") != MODULES_FORMAT:
        return TorchPredictor(load_torch_model(folder), tokenizer, list(meta["labels"]), max_length)
    model = _load_trained(folder, meta).to(torch.float32).eval()
    if torch.cuda.is_available() and os.environ.get("LMFORGE_PREDICT_DEVICE", "auto") != "cpu":
        model.to("cuda")
    return TorchPredictor(model, tokenizer, list(meta["labels"]), max_length)
