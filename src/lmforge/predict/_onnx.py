"""ONNX Runtime backend: ``tokenizers`` + ``onnxruntime`` only. Never imports torch or transformers.

A process serving an ONNX variant stays around 100 MB; importing torch would add ~500 MB.
Graphs exported since the classifier outputs grew (:data:`CLASSIFIER_OUTPUTS`: ``logits`` and
``pooled``) also give the mean-pooled last hidden states from the same pass
(:meth:`OnnxPredictor.encode`); older ones have the logits alone (:attr:`OnnxPredictor.pools`).
ONNX Runtime reads the whole model file into its session, so a loaded session no longer
depends on the file; :meth:`OnnxPredictor.set_threads` opens a new one, and refuses it when
``model.onnx`` changed since the first (verified) load.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.errors import RunDirError
from lmforge.guard import FileStamps, IntegrityError
from lmforge.predict._meta import read_model_meta
from lmforge.predict._protocol import batched_proba, softmax, to_predictions
from lmforge.predict._tokenizer import FastTokenizer
from lmforge.rundir import ONNX_FILE

__all__ = ["CLASSIFIER_OUTPUTS", "OnnxPredictor", "load", "onnx_session"]

CLASSIFIER_OUTPUTS = ("logits", "pooled")
"""The outputs of a classifier graph ``lmforge.compress`` exports: the logits (B, C) and the mean of
the last hidden states over real tokens (B, H), unnormalized: what the support bot's embedding
detectors and FAQ retrieval read, so one pass of a compressed graph serves them all."""
LOGITS, POOLED = CLASSIFIER_OUTPUTS


def onnx_session(path: str | Path, threads: int | None = None, *, spinning: bool = True) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU, full graph optimization, quiet logs.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (None: one per physical core).
        spinning: let idle intra-op threads busy-wait for the next op (lowest latency for a
            process that only runs the model); off, they sleep, leaving the cores to other
            work in the process, such as a server's event loop.
    """
    ort = require("onnxruntime", extra="compress", purpose="Running an ONNX model")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initializers etc. are not the user's concern
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxPredictor:
    """A classifier exported to ONNX, run by ONNX Runtime.

    Args:
        folder: a variant folder with ``model.onnx``, ``tokenizer.json`` and ``lmforge_model.json``.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
    """

    backend = "onnxruntime"

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        folder = Path(folder)
        meta = read_model_meta(folder)
        self.folder = folder
        self.labels: list[str] = list(meta["labels"])
        self.max_length = int(meta.get("max_length", 128))
        self.tokenizer = FastTokenizer(folder, self.max_length)
        self._stamps = FileStamps(folder)
        self._stamps.add(folder / ONNX_FILE)  # before the file is read: set_threads reads it again
        self.session = onnx_session(folder / ONNX_FILE, threads)
        self._inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self.pools = POOLED in outputs
        """Whether the graph outputs the pooled hidden states (:meth:`encode`)."""
        self._logits = [LOGITS] if LOGITS in outputs else [outputs[0]]  # a graph exported with other names

    def set_threads(self, threads: int, *, spinning: bool = True) -> None:
        """Re-open the session with ``threads`` intra-op threads (idle threads sleep when not ``spinning``).

        Raises:
            IntegrityError: ``model.onnx`` changed since this predictor first loaded it (the
                new session is dropped; the old one keeps serving).
        """
        session = onnx_session(self.folder / ONNX_FILE, threads, spinning=spinning)
        if self._stamps.changed():
            raise IntegrityError(f"{self.folder / ONNX_FILE} changed since it was loaded (and verified); "
                                 "not opening it again. Verify and load the run again.")
        self.session = session
        self._inputs = [i.name for i in self.session.get_inputs()]

    def _run(self, texts: Sequence[str], outputs: list[str] | None = None) -> np.ndarray:
        """Raw (B, C) logits of one batch; with ``outputs``, those outputs side by side (B, sum of widths)."""
        enc = self.tokenizer(texts)
        feed = {name: enc[name] for name in self._inputs}
        return np.concatenate(self.session.run(outputs or self._logits, feed), axis=1)

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Raw logits of shape (N, C), columns in ``self.labels`` order (length-sorted batches, input order out)."""
        return batched_proba(texts, len(self.labels), batch_size, False, self._run)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, C) and the mean-pooled last hidden states (N, H) from one pass, as
        ``TorchPredictor.encode`` gives them.

        Raises:
            RunDirError: the graph has no ``pooled`` output (exported before it had one):
                compress the run again, or read the embeddings from its ``fp32`` model.
        """
        if not self.pools:
            raise RunDirError(f"{self.folder / ONNX_FILE} outputs only logits (it was exported before the pooled "
                              "output existed); run `lmforge compress` on the run again.")
        n, width = len(self.labels), self._pooled_width()
        both = batched_proba(texts, n + width, batch_size, False, lambda b: self._run(b, [*self._logits, POOLED]))
        return both[:, :n], both[:, n:]

    def _pooled_width(self) -> int:
        """H of the pooled output: its static width in the graph, else read off one probe text."""
        (out,) = [o for o in self.session.get_outputs() if o.name == POOLED]
        if len(out.shape) == 2 and isinstance(out.shape[1], int):
            return int(out.shape[1])
        return int(self._run(["a"], [POOLED]).shape[1])

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities of shape (N, C), columns in ``self.labels`` order."""
        return batched_proba(texts, len(self.labels), batch_size, progress, lambda b: softmax(self._run(b)))

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """Per text: ``label``, ``score`` and ``scores`` (every label's probability)."""
        return to_predictions(self.labels, self.predict_proba(texts, batch_size, progress))


def load(folder: Path) -> OnnxPredictor:
    """The backend's entry point for :func:`lmforge.predict.load_model_folder`."""
    return OnnxPredictor(folder)
