"""ONNX Runtime backend: ``tokenizers`` + ``onnxruntime`` only. Never imports torch or transformers.

A process serving an ONNX variant stays around 100 MB; importing torch would add ~500 MB.
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
from lmforge.guard import FileStamps, IntegrityError
from lmforge.predict._meta import read_model_meta
from lmforge.predict._protocol import batched_proba, softmax, to_predictions
from lmforge.predict._tokenizer import FastTokenizer
from lmforge.rundir import ONNX_FILE

__all__ = ["OnnxPredictor", "load", "onnx_session"]


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

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        """Raw (B, C) logits of one batch."""
        enc = self.tokenizer(texts)
        feed = {name: enc[name] for name in self._inputs}
        return np.asarray(self.session.run(None, feed)[0])

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Raw logits of shape (N, C), columns in ``self.labels`` order (length-sorted batches, input order out).

        The exported graph has the logits as its only output, so an ONNX variant offers no
        ``embed``: what needs the encoder's embeddings loads the run's ``fp32`` model for them.
        """
        return batched_proba(texts, len(self.labels), batch_size, False, self._run)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities of shape (N, C), columns in ``self.labels`` order."""
        return batched_proba(texts, len(self.labels), batch_size, progress, lambda b: softmax(self._run(b)))

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """Per text: ``label``, ``score`` and ``scores`` (every label's probability)."""
        return to_predictions(self.labels, self.predict_proba(texts, batch_size, progress))


def load(folder: Path) -> OnnxPredictor:
    """The backend's entry point for :func:`lmforge.predict.load_model_folder`."""
    return OnnxPredictor(folder)
