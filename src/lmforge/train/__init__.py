"""Fine-tuning on the Hugging Face Trainer (+ peft): the train stage and its method registry.

- :func:`train`: prepared splits + spec -> ``RUN/model/`` (``_stage.py``); the Trainer subclass
  with atomic checkpoints, the seeded sampler and FGM lives in ``_trainer.py``.
- :data:`METHODS` / :func:`register_method`: full fine-tuning, LoRA, AdaLoRA (with its
  rank-allocation callback, ``_adalora.py``) and (IA)^3, by name (``_methods.py``,
  ``_peft_methods.py``); the methods that do not merge, whose modules stay beside the base
  weights (``_module_methods.py``): bottleneck adapters ``adapter-houlsby`` /
  ``adapter-pfeiffer`` (``_adapters.py``), ``prefix`` and ``prompt`` (``_prompting.py``).
  :func:`check_virtual_tokens` says when a prefix or prompt does not fit ``model.max_length``
  in the model's positions.
- ``task: generate``: :func:`train` fine-tunes a causal LM on question/answer pairs
  (``_sft.py``); :func:`encode_example` renders, tokenizes and masks one example (loss on the
  answer and EOS only), :func:`sft_collator` pads or packs batches, and
  :func:`prompt_length_check` is the prepare stage's check that every prompt fits.
- :func:`train_contrastive`: an encoder fine-tuned on (query, document) pairs with in-batch
  negatives (``_contrastive.py``), for the recommender's text towers (``full`` or ``lora``).
- Loading the trained model back is the inference layer's job: :func:`lmforge.predict.load_predictor`.

Importing this package is cheap; torch and transformers load when a function runs.
"""

from __future__ import annotations

from lmforge.train import _peft_methods  # noqa: F401  (registers adalora and ia3)
from lmforge.train._adapters import HoulsbyAdapter, PfeifferAdapter
from lmforge.train._contrastive import CONTRASTIVE_METHODS, train_contrastive
from lmforge.train._hardware import fast_bf16, resolve_precision
from lmforge.train._methods import METHODS, Method, get_method, is_causal_lm, register_method
from lmforge.train._module_methods import ModulesMethod, check_virtual_tokens
from lmforge.train._prompting import PrefixTuning, PromptTuning
from lmforge.train._sft_data import IGNORE, encode_example, prompt_length_check, sft_collator
from lmforge.train._stage import per_process_batch, train

__all__ = [
    "CONTRASTIVE_METHODS",
    "IGNORE",
    "METHODS",
    "HoulsbyAdapter",
    "Method",
    "ModulesMethod",
    "PfeifferAdapter",
    "PrefixTuning",
    "PromptTuning",
    "check_virtual_tokens",
    "encode_example",
    "fast_bf16",
    "get_method",
    "is_causal_lm",
    "per_process_batch",
    "prompt_length_check",
    "register_method",
    "resolve_precision",
    "sft_collator",
    "train",
    "train_contrastive",
]
