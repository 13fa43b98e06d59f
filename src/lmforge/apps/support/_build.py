"""``lmforge bot build``: train the intent classifier as a pipeline run, then calibrate the bot around it.

Order matters for the user: every input the bot section names (the FAQ and out-of-scope files,
the generator and sentiment runs) is checked before training starts, so a wrong column costs
a second, not a training run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.apps.support._faq import FaqEntry, FaqIndex
from lmforge.apps.support._layout import BOT_FORMAT, BOT_MANIFEST, FAQ, OOS_WEIGHTS, RUN
from lmforge.apps.support._models import Models, load_models
from lmforge.apps.support._oos import Mahalanobis, Neighbours, choose_method, oos_scores
from lmforge.apps.support._tables import read_faq, read_oos
from lmforge.compress import CompressOptions, compress
from lmforge.config import Spec, spec_to_dict
from lmforge.errors import ConfigError
from lmforge.pipeline import run_all
from lmforge.predict import CAUSAL_LM, run_kind
from lmforge.rundir import RunDir, atomic_write_json, read_labels, read_split

__all__ = ["build_bot", "calibrate_bot", "check_bot_inputs"]

logger = logging.getLogger(__name__)


def _check_run(path: str, key: str, want: str) -> str:
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"{key} {path} does not exist; point it at a run directory.")
    kind = run_kind(root)
    if want == CAUSAL_LM and kind != CAUSAL_LM:
        raise ConfigError(f"{key} {path} is not a generative run (its model is a classifier); point it at a run "
                          "trained with task: generate, or unset it.")
    if want != CAUSAL_LM and kind == CAUSAL_LM:
        raise ConfigError(f"{key} {path} is a generative run; it must be a sentiment classification run.")
    return str(root.resolve())


def check_bot_inputs(spec: Spec) -> tuple[list[FaqEntry] | None, list[str] | None]:
    """Read and check the bot section's files and runs; returns the FAQ entries and OOS texts."""
    bot = spec.bot
    if spec.task == "generate":
        raise ConfigError("task is 'generate', but the bot's intent classifier is a classification run: "
                          "set task: classify (the generator is bot.generator.run).")
    faq = read_faq(bot.faq) if bot.faq.path else None
    oos = read_oos(bot.oos.path, spec.data.text_column) if bot.oos.path else None
    if bot.oos.method == "knn" and len(oos or []) < 2:
        raise ConfigError(f"bot.oos.method knn needs at least two out-of-scope examples in bot.oos.path "
                          f"{bot.oos.path}; it has {len(oos or [])}. Add examples, or pick another method.")
    if bot.generator.run:
        _check_run(bot.generator.run, "bot.generator.run", CAUSAL_LM)
    if bot.sentiment.run:
        _check_run(bot.sentiment.run, "bot.sentiment.run", "encoder")
        known = read_labels(bot.sentiment.run)
        if not set(bot.sentiment.labels) & set(known):
            raise ConfigError(f"bot.sentiment.labels {bot.sentiment.labels} names none of the labels of "
                              f"{bot.sentiment.run}: {', '.join(known)}.")
    return faq, oos


def build_bot(spec: Spec, out: str | Path, *, compress_options: CompressOptions | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Train the intent classifier into ``out/run`` (prepare -> train -> evaluate), optionally compress
    it, then calibrate the out-of-scope threshold and index the FAQ; returns the bot manifest."""
    faq, oos = check_bot_inputs(spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = run_all(spec, out / RUN, progress=progress)
    if compress_options is not None:
        compress(out / RUN, compress_options)
    return calibrate_bot(spec, out, faq=faq, oos=oos, test_metrics=metrics)


def _resolved(spec: Spec) -> dict[str, Any]:
    """The bot section as stored: run paths made absolute (the bot must not depend on the cwd)."""
    bot = spec_to_dict(spec)["bot"]
    for key in ("generator", "sentiment"):
        if bot[key]["run"]:
            bot[key]["run"] = str(Path(bot[key]["run"]).resolve())
    for key in ("faq", "oos"):
        if bot[key]["path"]:
            bot[key]["path"] = str(Path(bot[key]["path"]).resolve())
    return bot


def _fit_detectors(models: Models, run: RunDir, labels: list[str], oos_pooled: np.ndarray | None,
                   knn_k: int) -> dict[str, Any]:
    """The embedding detectors: Mahalanobis on the training split; knn too when there are OOS examples."""
    train = read_split(run, "train")
    index = {label: i for i, label in enumerate(labels)}
    pooled = models.embed_raw([r["text"] for r in train])
    detectors: dict[str, Any] = {"mahalanobis": Mahalanobis().fit(pooled, np.array([index[r["label"]] for r in train]))}
    if oos_pooled is not None and len(oos_pooled) >= 2:
        detectors["knn"] = Neighbours(knn_k).fit(pooled, oos_pooled)
    return detectors


def calibrate_bot(spec: Spec, out: str | Path, *, faq: list[FaqEntry] | None = None,
                  oos: list[str] | None = None, test_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the bot adds to a trained run in ``out/run``: the OOS detector and threshold, the FAQ
    index and ``bot.json``. Run again after ``lmforge compress out/run`` to calibrate the new variant."""
    st = require("safetensors.numpy", extra="train", purpose="Saving the bot")
    out = Path(out)
    run = RunDir(out / RUN)
    labels = read_labels(run)
    models = load_models(run, variant=None, embeddings=True)
    oos_encoded = models.encode(oos, need_embeddings=True) if oos else None
    detectors = _fit_detectors(models, run, labels, None if oos_encoded is None else oos_encoded[1], spec.bot.oos.knn_k)
    st.save_file({k: v for d in detectors.values() for k, v in d.to_arrays().items()}, str(out / OOS_WEIGHTS))
    val = read_split(run, "val")
    val_scores = oos_scores(*models.encode([r["text"] for r in val], need_embeddings=True), detectors)
    oos_val = oos_scores(*oos_encoded, detectors, leave_one_out=True) if oos_encoded is not None else None
    target = spec.bot.oos.target_in_scope_recall
    choice = choose_method(val_scores, oos_val, target)
    method = choice["best"] if spec.bot.oos.method == "auto" else spec.bot.oos.method
    if spec.bot.oos.method == "auto" and oos is None:
        logger.warning("bot.oos.method is auto but bot.oos.path is unset: nothing to choose on, using max-prob")
    faq_info = None
    if faq is not None:
        (out / FAQ).mkdir(exist_ok=True)
        FaqIndex.build(faq, models.embed([e.question for e in faq])).save(out / FAQ)
        faq_info = {"entries": len(faq), "intents": sorted({e.intent for e in faq if e.intent})}
    unknown = sorted(set(spec.bot.escalate.intents) - set(labels))
    if unknown:
        logger.warning("bot.escalate.intents names intents the classifier does not know: %s", ", ".join(unknown))
    manifest = {
        "format": BOT_FORMAT, "version": 1, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": RUN, "classifier_variant": models.classifier_variant, "embedder_variant": models.embedder_variant,
        "labels": labels, "bot": _resolved(spec), "text_column": spec.data.text_column,
        "oos": {"method": method, "requested": spec.bot.oos.method, "threshold": choice["methods"][method]["threshold"],
                "target_in_scope_recall": target, "n_val": len(val), "n_oos": len(oos or []),
                "methods": choice["methods"]},
        "faq": faq_info, "test_metrics": {k: test_metrics.get(k) for k in ("accuracy", "macro_f1")}
        if test_metrics else None,
    }
    atomic_write_json(out / BOT_MANIFEST, manifest)
    return manifest
