"""What the compressors of a generative run read: its fp32 generator and test split, loaded once."""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np

from lmforge.compress._context import weights_fingerprint
from lmforge.compress._options import CompressOptions
from lmforge.errors import DataError, RunDirError
from lmforge.evaluate import GenExample, read_generation_split
from lmforge.predict import TorchGenerator, load_generator, read_generator_meta
from lmforge.rundir import FP32, RunDir
from lmforge.train import encode_example

__all__ = ["GenContext"]

_TRAIN_HINT = "Run `lmforge train RUN` first."


class GenContext:
    """A generative run's model metadata, fp32 generator (a peft adapter merged in) and test examples.

    Args:
        run: a trained generative run.
        options: the stage's options.

    Raises:
        RunDirError: the run has no trained causal LM (or its ``lmforge_model.json`` breaks the contract).
    """

    def __init__(self, run: RunDir, options: CompressOptions) -> None:
        self.run = run
        self.options = options
        if not run.root.is_dir():
            raise RunDirError(f"Run directory {run.root} does not exist. Run `lmforge run --out {run.root}` first.")
        if not run.model_meta_path.is_file():
            raise RunDirError(f"{run.root} has no trained model ({run.model_meta_path} is missing). {_TRAIN_HINT}")
        self.meta: dict[str, Any] = read_generator_meta(run.model_dir)
        self.is_adapter = self.meta["format"] == "peft-adapter"
        self.compressed_dir = run.compressed_dir

    @functools.cached_property
    def model_fingerprint(self) -> str:
        return weights_fingerprint(self.run.model_dir)

    @functools.cached_property
    def fp32(self) -> TorchGenerator:
        """The run's own model in float32 (``load_generator(run, "fp32")``)."""
        generator = load_generator(self.run, FP32)
        if not isinstance(generator, TorchGenerator):
            raise RunDirError(f"{self.run.model_dir} is not a PyTorch causal LM; compress starts from one.")
        return generator

    def torch_model(self) -> Any:
        """A fresh float32 copy of the run's model (a peft adapter already merged)."""
        return copy.deepcopy(self.fp32.model)

    @functools.cached_property
    def examples(self) -> list[GenExample]:
        """The first ``gen_max_test`` test examples: what every variant is scored on."""
        examples = read_generation_split(self.run, "test")
        if not examples:
            raise DataError(f"The test split {self.run.split_path('test')} is empty, so variants cannot be scored. "
                            "Set data.test_fraction above 0 and run `lmforge prepare` again.")
        return examples[: self.options.gen_max_test]

    def calibration_ids(self, limit: int = 512) -> list[list[int]]:
        """Token ids of a seeded sample of ``calibration_size`` training examples, rendered as training
        rendered them (prompt, answer, EOS), at most ``limit`` tokens each (the prompt cut on the left).
        Empty where the run has no train split (a model folder compressed without its data): the
        int8 variant is then built without smoothing and its record says why."""
        if not self.run.split_path("train").exists():
            return []
        examples = read_generation_split(self.run, "train")
        n = min(self.options.calibration_size, len(examples))
        pick = np.random.default_rng(self.options.seed).choice(len(examples), size=n, replace=False)
        generator = self.fp32
        limit = min(limit, generator.max_length)
        return [encode_example(generator.tokenizer, examples[i].prompt, examples[i].reference, system=generator.system,
                               limit=limit, truncate="left")[0] for i in sorted(pick)]

    def timing_prompts(self, batch: int) -> list[Any]:
        """``batch`` test prompts (repeated when the split is smaller) for the speed measurements."""
        prompts = [e.prompt for e in self.examples]
        while len(prompts) < batch:
            prompts.extend(prompts[: batch - len(prompts)])
        return prompts[:batch]
