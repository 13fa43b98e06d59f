"""Fine-tuning on the Hugging Face Trainer (+ peft): the train stage and its method registry.

- :func:`train`: prepared splits + spec -> ``RUN/model/`` (``_stage.py``); the Trainer subclass
  with atomic checkpoints, the seeded sampler and FGM lives in ``_trainer.py``.
- :data:`METHODS` / :func:`register_method`: full fine-tuning and LoRA, by name.
- Loading the trained model back is the inference layer's job: :func:`lmforge.predict.load_predictor`.

Importing this package is cheap; torch and transformers load when a function runs.
"""

from __future__ import annotations

from lmforge.train._hardware import fast_bf16, resolve_precision
from lmforge.train._methods import METHODS, Method, get_method, register_method
from lmforge.train._stage import per_process_batch, train

__all__ = [
    "METHODS",
    "Method",
    "fast_bf16",
    "get_method",
    "per_process_batch",
    "register_method",
    "resolve_precision",
    "train",
]
