"""The evaluate stage of a generative run: answers, scores and baselines on the test split.

The fine-tuned model answers every test prompt (greedy, ``evaluate.max_new_tokens``), and so
do two baselines a fine-tune must beat to be worth it: the base model it started from (same
prompts, same system prompt, same decoding) and a retrieval baseline that answers with the
training response of the nearest training prompt. All three are scored with the same
functions; perplexity is of the reference answers under each model (the retrieval baseline
has no model, so its perplexity is null, and its answers are whole responses, so its stop
rate is 1). Generated text is scanned for PII, since a model can repeat what it memorized.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.catalog import resolve_model
from lmforge.errors import DataError, RunDirError
from lmforge.evaluate._gen_card import render_generation_card
from lmforge.evaluate._gen_data import GenExample, read_generation_split
from lmforge.evaluate._gen_metrics import (
    bleu,
    chrf,
    exact_match,
    mean_length,
    perplexity,
    rouge_l,
    stop_rate,
)
from lmforge.evaluate._gen_report import render_generation_report
from lmforge.evaluate._retrieval import NearestPrompt
from lmforge.evaluate._summary import run_summary
from lmforge.evaluate._track import log_evaluation
from lmforge.guard.pii import scan_texts
from lmforge.predict import Generator, load_generator, run_kind, to_messages
from lmforge.rundir import FP32, MODEL_META, RunDir, atomic_write_json, atomic_write_text, read_json

if TYPE_CHECKING:
    from lmforge.config import Spec

__all__ = ["BLOCK_KEYS", "evaluate_generation", "is_generative_run", "score_answers"]

logger = logging.getLogger(__name__)

BLOCK_KEYS = ("bleu", "chrf", "exact_match", "mean_length", "n_test", "perplexity", "pii", "rouge_l", "stop_rate")
"""The keys of every scored block of metrics.json: the model's (top level) and each baseline's."""


def is_generative_run(spec: Spec, run: RunDir | str | Path) -> bool:
    """Whether ``run`` is evaluated as a generator: ``task: generate``, or a causal LM in ``model/``.

    A spec whose task is unset takes it from the model's kind, so the trained model's
    ``lmforge_model.json`` (``"kind": "causal-lm"``) decides when the spec does not.
    """
    if spec.task is not None:
        return spec.task == "generate"
    return run_kind(run) == "causal-lm"


def score_answers(
    answers: Sequence[str],
    references: Sequence[str],
    *,
    finish_reasons: Sequence[str],
    token_counts: Sequence[int],
    logliks: Sequence[tuple[float, int]] | None,
) -> dict[str, Any]:
    """One block of metrics: overlap with the references, length, stop rate, perplexity, PII.

    Args:
        answers: The answers given, one per reference.
        references: The reference answers.
        finish_reasons: ``"stop"`` or ``"length"`` per answer.
        token_counts: Model tokens per answer.
        logliks: ``(summed log-probability, tokens)`` of each reference under the model, or
            None where there is no model (perplexity null).
    """
    if not len(answers) == len(references) == len(finish_reasons) == len(token_counts):
        raise DataError("Answers, references, finish reasons and token counts must have one entry per example.")
    return {
        "bleu": bleu(answers, references),
        "chrf": chrf(answers, references),
        "exact_match": exact_match(answers, references),
        "mean_length": mean_length(answers, token_counts),
        "n_test": len(answers),
        "perplexity": None if logliks is None else perplexity(logliks),
        "pii": scan_texts(answers).to_dict(),
        "rouge_l": rouge_l(answers, references),
        "stop_rate": stop_rate(finish_reasons),
    }


def _chunks(n: int, size: int, progress: bool, desc: str) -> Any:
    starts: Any = range(0, n, size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", dynamic_ncols=True)
    return starts


def _answer(generator: Generator, prompts: list[Any], *, max_new_tokens: int, batch_size: int,
            progress: bool, desc: str) -> tuple[list[str], list[str], list[int]]:
    """Greedy answers in batches of similar prompt length; (texts, finish reasons, tokens) in input order."""
    order = sorted(range(len(prompts)), key=lambda i: len(json.dumps(prompts[i])), reverse=True)
    texts, reasons, tokens = [""] * len(prompts), [""] * len(prompts), [0] * len(prompts)
    for start in _chunks(len(order), batch_size, progress, desc):
        idx = order[start : start + batch_size]
        outs = generator.generate([prompts[i] for i in idx], max_new_tokens=max_new_tokens, temperature=0.0)
        for i, out in zip(idx, outs, strict=True):
            texts[i], reasons[i], tokens[i] = out.text, out.finish_reason, out.completion_tokens
    return texts, reasons, tokens


def _logliks(generator: Generator, prompts: list[Any], responses: list[str], *, batch_size: int,
             progress: bool, desc: str) -> list[tuple[float, int]]:
    out: list[tuple[float, int]] = []
    for start in _chunks(len(prompts), batch_size, progress, desc):
        out += generator.loglikelihood(prompts[start : start + batch_size], responses[start : start + batch_size])
    return out


def _base_model_path(run: RunDir) -> Path:
    """The folder of the model the run was fine-tuned from: ``base_model_path``, else ``base_model`` resolved."""
    path = run.require(f"model/{MODEL_META}", hint="Run `lmforge train` first.")
    meta = read_json(path, hint="re-run `lmforge train`.")
    meta = meta if isinstance(meta, dict) else {}
    recorded = meta.get("base_model_path")
    if isinstance(recorded, str) and Path(recorded).is_dir():
        return Path(recorded)
    name = meta.get("base_model")
    if not isinstance(name, str) or not name:
        raise RunDirError(
            f"{path} names no base model (base_model_path or base_model), so the base-model baseline cannot "
            "load. Re-run `lmforge train` with this version of lmforge."
        )
    return resolve_model(name)


def _test_examples(run: RunDir, max_test: int | None) -> tuple[list[GenExample], int]:
    examples = read_generation_split(run, "test")
    if not examples:
        raise DataError(
            f"The test split {run.split_path('test')} is empty, so there is nothing to evaluate. "
            "Set data.test_fraction above 0 (or data.test_path) and run `lmforge prepare` again."
        )
    total = len(examples)
    return (examples[:max_test] if max_test is not None else examples), total


def _model_block(generator: Generator, prompts: list[Any], references: list[str], *, spec: Spec,
                 progress: bool, name: str) -> tuple[dict[str, Any], list[str], list[str]]:
    size = spec.evaluate.batch_size
    logger.info("%s: answering %d test prompts (at most %d new tokens each)", name, len(prompts),
                spec.evaluate.max_new_tokens)
    texts, reasons, tokens = _answer(generator, prompts, max_new_tokens=spec.evaluate.max_new_tokens,
                                     batch_size=size, progress=progress, desc=f"generate ({name})")
    logliks = _logliks(generator, prompts, references, batch_size=size, progress=progress,
                       desc=f"perplexity ({name})")
    block = score_answers(texts, references, finish_reasons=reasons, token_counts=tokens, logliks=logliks)
    return block, texts, reasons


def _count_tokens(generator: Generator) -> Callable[[str], int]:
    tokenizer = generator.tokenizer
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _write_eval(run: RunDir, spec: Spec, manifest: dict[str, Any], metrics: dict[str, Any],
                rows: list[dict[str, Any]], system: str | None) -> None:
    """``eval/`` atomically (metrics.json, generations.jsonl, report.html), then MODEL_CARD.md."""
    summary = run_summary(manifest)
    title = spec.name or summary["name"] or run.root.name
    with run.stage("eval") as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_text(tmp / "generations.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        atomic_write_text(tmp / "report.html", render_generation_report(title=title, metrics=metrics,
                                                                        summary=summary, rows=rows))
    atomic_write_text(run.model_card_path, render_generation_card(name=title, metrics=metrics, summary=summary,
                                                                  system=system))


def evaluate_generation(
    spec: Spec,
    run: RunDir | str | Path,
    *,
    generator: Generator | None = None,
    base_generator: Generator | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the fine-tuned causal LM of ``run`` and its two baselines on the test split.

    Writes ``eval/`` (``metrics.json``, ``generations.jsonl``: every evaluated example with the
    three answers, ``report.html``) atomically, then ``MODEL_CARD.md``, then merges
    ``rouge_l``, ``perplexity``, ``stop_rate`` and ``n_test`` into the manifest.

    Args:
        spec: The resolved spec; ``evaluate.max_new_tokens``, ``evaluate.max_test`` and
            ``evaluate.batch_size`` (prompts per generate call) apply.
        run: The run directory (or its path).
        generator: The fine-tuned model; ``load_generator(run)`` when None.
        base_generator: The model before fine-tuning; the base model folder named in
            ``model/lmforge_model.json`` when None.
        progress: Show progress bars.

    Returns:
        The dict written to ``eval/metrics.json``: the keys of :data:`BLOCK_KEYS` for the
        fine-tuned model, ``baselines`` ({``base_model``, ``retrieval``}: the same keys each)
        and ``generation`` (the decoding settings and how many test examples there were).

    Raises:
        RunDirError: the prepared data or the trained model is missing.
        DataError: a split is malformed, or the test or train split is empty.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    manifest = run.read_manifest()
    examples, total = _test_examples(run, spec.evaluate.max_test)
    train = read_generation_split(run, "train")
    retrieval = NearestPrompt().fit([e.query for e in train], [e.reference for e in train])
    if generator is None:
        generator = load_generator(run, FP32)
    if base_generator is None:
        base_generator = load_generator(_base_model_path(run))
    references = [e.reference for e in examples]
    # The base model is asked with the fine-tuned run's system prompt, so the two differ only in weights.
    prompts = [to_messages(e.prompt, generator.system) for e in examples]

    metrics, answers, reasons = _model_block(generator, prompts, references, spec=spec, progress=progress,
                                             name="fine-tuned")
    base, base_answers, _ = _model_block(base_generator, prompts, references, spec=spec, progress=progress,
                                         name="base model")
    looked_up = retrieval.answer([e.query for e in examples])
    count = _count_tokens(generator)
    nearest = score_answers(looked_up, references, finish_reasons=["stop"] * len(looked_up),
                            token_counts=[count(t) for t in looked_up], logliks=None)
    metrics["baselines"] = {"base_model": base, "retrieval": nearest}
    metrics["generation"] = {
        "max_new_tokens": spec.evaluate.max_new_tokens,
        "temperature": 0.0,
        "max_test": spec.evaluate.max_test,
        "n_test_split": total,
    }
    rows = [
        {"prompt": e.query, "reference": e.reference, "generated": a, "finish_reason": r,
         "base_model": b, "retrieval": n}
        for e, a, r, b, n in zip(examples, answers, reasons, base_answers, looked_up, strict=True)
    ]
    _write_eval(run, spec, manifest, metrics, rows, generator.system)
    run.update_manifest(metrics={key: metrics[key] for key in ("rouge_l", "perplexity", "stop_rate", "n_test")})
    log_evaluation(run, metrics)  # into the training's MLflow run, when it had one
    logger.info(
        "Test ROUGE-L %.4f, perplexity %.3f, stop rate %.1f%% on %d examples (base model ROUGE-L %.4f, "
        "retrieval %.4f); report at %s",
        metrics["rouge_l"], metrics["perplexity"], 100 * metrics["stop_rate"], metrics["n_test"],
        base["rouge_l"], nearest["rouge_l"], run.eval_dir / "report.html",
    )
    return metrics
