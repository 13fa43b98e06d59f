"""The inference layer: load a run's model, whatever runs it, behind one interface.

- :class:`Predictor`: the Protocol of a text classifier (``labels``, ``max_length``,
  ``predict_proba``, ``predict``). Both backends add ``logits(texts)`` and ``encode(texts)``
  (logits and unnormalized mean-pooled embeddings from one forward pass; an ONNX graph exported
  before it had the ``pooled`` output says so in :attr:`OnnxPredictor.pools`), for out-of-scope
  scores and retrieval; :class:`TorchPredictor` also ``embed(texts)`` (the encoder's mean-pooled,
  L2-normalized embeddings); :func:`unit_rows` normalizes rows.
- :class:`Generator`: the Protocol of a causal LM (``generate`` -> :class:`Generation`,
  ``stream``, ``loglikelihood``, ``tokenizer``, ``max_length``, ``system``);
  :func:`load_generator` loads a generative run (full weights or a peft adapter merged into
  its checked base) or a plain causal LM folder, and :func:`run_kind` says which a run holds.
  :class:`TorchGenerator` is its PyTorch backend.
- :func:`load_predictor`: a run's selected variant, a named one or ``fp32`` (its ``model/``),
  optionally checked against the run's verification (``verified=``) once loaded;
  :func:`resolve_variant` (which validates variant names), :func:`read_selected` and
  :func:`available_variants` say which.
- :func:`base_model_digest`: what an adapter run records of its base model, checked when it loads.
- :func:`load_model_folder`: one folder, by the first backend of :data:`BACKENDS` that
  recognizes it: ONNX Runtime (``tokenizers`` + ``onnxruntime`` only, never torch), then torch
  (safetensors, or a PEFT adapter merged into its base model).
- The modules of the methods that do not merge (bottleneck adapters, prefix, prompt):
  :func:`attach_modules` (training and loading alike), :func:`save_modules`, :func:`load_modules`,
  :func:`model_layout`; a run saved so has ``format`` :data:`MODULES_FORMAT`.
- :func:`explain`: per-word attributions toward a label (integrated gradients on a torch model's
  input embeddings, occlusion for any backend): :class:`Explanation`, :class:`WordAttribution`.
- :class:`TextEmbedder`: unit-length sentence embeddings (:func:`mean_pool`) from an encoder
  folder, for the recommender's towers; :class:`OnnxEmbedder` the same from an ONNX (int8)
  export of one (a folder with :data:`EMBEDDER_META`), without torch.
- :class:`FastTokenizer`: ``tokenizer.json`` with per-batch padding, no transformers.
- A causal LM's int8 variant: :func:`quantize_int8_dynamic` and :func:`save_int8_causal_lm`
  (int8 weights and scales as plain safetensors; :func:`load_generator` reads them back).
- The torch variant format (:func:`load_torch_model` / :func:`save_torch_model`) and the
  structured-pruning shapes it is rebuilt with (:func:`apply_pruning_shapes`).

No backend unpickles: ONNX, safetensors and JSON. Importing this package is cheap (NumPy);
torch, transformers and onnxruntime load when a model is loaded.
"""

from __future__ import annotations

from lmforge.predict._chat import Messages, render_prompt, to_messages
from lmforge.predict._embed import TextEmbedder, mean_pool
from lmforge.predict._embed_onnx import EMBEDDER_META, OnnxEmbedder
from lmforge.predict._explain import EXPLAIN_METHODS, Explanation, WordAttribution, explain
from lmforge.predict._generate import TorchGenerator, read_answer, top_p_filter
from lmforge.predict._int8 import INT8_DYNAMIC, quantize_int8_dynamic, save_int8_causal_lm
from lmforge.predict._kvcache import growing_cache
from lmforge.predict._meta import (
    BASE_DIGEST,
    CAUSAL_LM,
    GENERATOR_FORMATS,
    base_model_digest,
    read_generator_meta,
    read_model_meta,
)
from lmforge.predict._modules_io import (
    MODULES_CONFIG,
    MODULES_FORMAT,
    MODULES_WEIGHTS,
    attach_modules,
    load_modules,
    model_layout,
    save_modules,
)
from lmforge.predict._onnx import CLASSIFIER_OUTPUTS, OnnxPredictor, onnx_session
from lmforge.predict._protocol import (
    Generation,
    Generator,
    Predictor,
    PromptLike,
    batched_proba,
    softmax,
    to_predictions,
    unit_rows,
)
from lmforge.predict._pruning import (
    PRUNABLE_TYPES,
    apply_pruning_shapes,
    check_prunable,
    encoder_layers,
    head_size,
    prune_layer,
    pruning_shapes,
)
from lmforge.predict._tokenizer import TOKENIZER_FILES, FastTokenizer
from lmforge.predict._torch import TorchPredictor, load_torch_model, save_torch_model
from lmforge.predict._variants import (
    BACKENDS,
    Backend,
    available_variants,
    load_generator,
    load_model_folder,
    load_predictor,
    read_selected,
    resolve_variant,
    run_kind,
)

__all__ = [
    "BACKENDS",
    "BASE_DIGEST",
    "CAUSAL_LM",
    "CLASSIFIER_OUTPUTS",
    "EMBEDDER_META",
    "EXPLAIN_METHODS",
    "GENERATOR_FORMATS",
    "INT8_DYNAMIC",
    "MODULES_CONFIG",
    "MODULES_FORMAT",
    "MODULES_WEIGHTS",
    "PRUNABLE_TYPES",
    "TOKENIZER_FILES",
    "Backend",
    "Explanation",
    "FastTokenizer",
    "Generation",
    "Generator",
    "Messages",
    "OnnxEmbedder",
    "OnnxPredictor",
    "Predictor",
    "PromptLike",
    "TextEmbedder",
    "TorchGenerator",
    "TorchPredictor",
    "WordAttribution",
    "apply_pruning_shapes",
    "attach_modules",
    "available_variants",
    "base_model_digest",
    "batched_proba",
    "check_prunable",
    "encoder_layers",
    "explain",
    "growing_cache",
    "head_size",
    "load_generator",
    "load_model_folder",
    "load_modules",
    "load_predictor",
    "load_torch_model",
    "mean_pool",
    "model_layout",
    "onnx_session",
    "prune_layer",
    "pruning_shapes",
    "quantize_int8_dynamic",
    "read_answer",
    "read_generator_meta",
    "read_model_meta",
    "read_selected",
    "render_prompt",
    "resolve_variant",
    "run_kind",
    "save_int8_causal_lm",
    "save_modules",
    "save_torch_model",
    "softmax",
    "to_messages",
    "to_predictions",
    "top_p_filter",
    "unit_rows",
]
