"""Fairness report: the test metrics per slice of the data, and how far apart the slices are.

A slice is a group of test examples: a value of a group column, a keyword-defined group, or
each ``@handle`` mentioned in the text (an airline tweet mentioning two airlines is in both
slices). Per slice: accuracy, macro-F1 (over the labels present in the slice), the share of
examples predicted as each label (selection rate), and recall per label. For each metric the
disparity ratio is the smallest slice value over the largest; a ratio below the threshold
(0.8, the "four-fifths rule") is a warning. Slices too small to measure (fewer than
``min_support`` examples, or true examples of the label for recall) are listed but left out
of the ratios.

:func:`fairness_report` is pure (no model); :func:`fairness_for_run` predicts the run's test
split itself (``eval/errors.jsonl`` holds only the mistakes) and writes ``eval/fairness.json``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError, DataError, RunDirError
from lmforge.predict import load_predictor
from lmforge.rundir import FP32, RunDir, atomic_write_json, read_split

__all__ = [
    "NO_GROUP",
    "fairness_for_run",
    "fairness_report",
    "groups_from_field",
    "groups_from_handles",
    "groups_from_keywords",
    "render_fairness_markdown",
]

NO_GROUP = "(none)"
_HANDLE = re.compile(r"(?<![\w@])@(\w{1,30})")

GroupSpec = str | Sequence[str] | None


def groups_from_handles(texts: Sequence[str], *, min_count: int = 1) -> list[list[str]]:
    """Each text's ``@handles`` (lower-cased); handles seen fewer than ``min_count`` times are dropped."""
    found = [sorted({"@" + h.lower() for h in _HANDLE.findall(t)}) for t in texts]
    counts = Counter(h for hs in found for h in hs)
    return [[h for h in hs if counts[h] >= min_count] for hs in found]


def groups_from_keywords(texts: Sequence[str], keywords: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Groups by keyword: ``{"united": ["@united", "united airlines"], ...}``, case-insensitive.

    A keyword made of word characters matches as a whole word; others (Chinese, handles)
    match anywhere in the text.
    """
    if not keywords:
        raise ConfigError("Keyword groups need at least one group, e.g. {\"united\": [\"@united\"]}.")
    patterns: dict[str, re.Pattern[str]] = {}
    for group, words in keywords.items():
        if isinstance(words, str) or not words or not all(isinstance(w, str) and w for w in words):
            raise ConfigError(f"Keyword group {group!r} must be a non-empty list of strings.")
        alternatives = [
            rf"(?<!\w){re.escape(w)}(?!\w)" if re.fullmatch(r"[\w ]+", w) and w.isascii() else re.escape(w)
            for w in words
        ]
        patterns[str(group)] = re.compile("|".join(alternatives), re.IGNORECASE)
    return [[g for g, p in patterns.items() if p.search(t)] for t in texts]


def groups_from_field(records: Sequence[Mapping[str, Any]], field: str) -> list[list[str]]:
    """Groups from a record field (a string, or a list of strings); missing values give no group."""
    out: list[list[str]] = []
    for record in records:
        value = record.get(field)
        if value is None or value == "":
            out.append([])
        elif isinstance(value, list):
            out.append([str(v) for v in value])
        else:
            out.append([str(value)])
    if not any(out):
        raise DataError(f"No test record has a value in field '{field}'; name a field the records carry.")
    return out


def _as_names(values: Sequence[str | int], labels: list[str], name: str) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not 0 <= int(v) < len(labels):
                raise DataError(f"{name} holds class index {v}, outside [0, {len(labels) - 1}].")
            out.append(labels[int(v)])
        elif isinstance(v, str) and v in labels:
            out.append(v)
        else:
            raise DataError(f"{name} holds {v!r}, which is not one of the labels {labels}.")
    return out


def _slice_metrics(true: list[str], pred: list[str], labels: list[str]) -> dict[str, Any]:
    n = len(true)
    correct = sum(t == p for t, p in zip(true, pred, strict=True))
    present = [lab for lab in labels if lab in true or lab in pred]
    f1s = []
    recall: dict[str, float | None] = {}
    support: dict[str, int] = {}
    for lab in labels:
        tp = sum(t == lab and p == lab for t, p in zip(true, pred, strict=True))
        n_true, n_pred = true.count(lab), pred.count(lab)
        support[lab] = n_true
        recall[lab] = tp / n_true if n_true else None
        if lab in present:
            f1s.append(2 * tp / (n_true + n_pred) if n_true + n_pred else 0.0)
    return {
        "n": n,
        "accuracy": correct / n if n else None,
        "macro_f1": sum(f1s) / len(f1s) if f1s else None,
        "selection_rate": {lab: pred.count(lab) / n if n else None for lab in labels},
        "recall": recall,
        "support": support,
    }


def _disparity(slices: dict[str, dict[str, Any]], labels: list[str], threshold: float,
               min_support: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per metric, the lowest slice value over the highest (slices with enough support), and warnings."""
    # metric -> {slice: value} over the slices with enough support for that metric
    values: dict[str, dict[str, float]] = defaultdict(dict)
    for name, m in slices.items():
        if m["n"] >= min_support:
            values["accuracy"][name] = m["accuracy"]
            values["macro_f1"][name] = m["macro_f1"]
            for lab in labels:
                values[f"selection_rate:{lab}"][name] = m["selection_rate"][lab]
        for lab in labels:
            if m["support"][lab] >= min_support:
                values[f"recall:{lab}"][name] = m["recall"][lab]
    disparity: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for metric, per_slice in values.items():
        if len(per_slice) < 2:
            continue
        lo = min(per_slice, key=lambda s: (per_slice[s], s))
        hi = max(per_slice, key=lambda s: (per_slice[s], s))
        ratio = per_slice[lo] / per_slice[hi] if per_slice[hi] > 0 else 1.0
        disparity[metric] = {"ratio": ratio, "min_slice": lo, "min": per_slice[lo], "max_slice": hi,
                             "max": per_slice[hi], "slices": len(per_slice)}
        if ratio < threshold:
            warnings.append(
                f"{metric}: slice '{lo}' ({per_slice[lo]:.3f}) is {ratio:.2f}x slice '{hi}' ({per_slice[hi]:.3f}), "
                f"below the {threshold} threshold."
            )
    return disparity, warnings


def fairness_report(
    y_true: Sequence[str | int],
    y_pred: Sequence[str | int],
    groups: Sequence[GroupSpec],
    labels: Sequence[str],
    *,
    threshold: float = 0.8,
    min_support: int = 20,
) -> dict[str, Any]:
    """Metrics per slice and the disparity between slices.

    Args:
        y_true: True labels (names, or indices into ``labels``), one per example.
        y_pred: Predicted labels, same form.
        groups: Per example, its group name, a list of names (it is in each), or None / []
            (then it is in the ``(none)`` slice).
        labels: Every class name.
        threshold: A disparity ratio below this is a warning (0.8: the four-fifths rule).
        min_support: Least examples for a slice to count in a ratio.

    Returns:
        JSON-ready ``{threshold, min_support, labels, overall, slices, disparity, warnings, small_slices}``.
    """
    labels = list(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise DataError(f"labels must be at least two distinct names, got {labels!r}.")
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"The fairness threshold must be in (0, 1], got {threshold}.")
    if min_support < 1:
        raise ConfigError(f"min_support must be at least 1, got {min_support}.")
    if not len(y_true) == len(y_pred) == len(groups):
        raise DataError(f"y_true ({len(y_true)}), y_pred ({len(y_pred)}) and groups ({len(groups)}) must have "
                        "one entry per example.")
    if not y_true:
        raise DataError("A fairness report needs at least one example.")
    true = _as_names(y_true, labels, "y_true")
    pred = _as_names(y_pred, labels, "y_pred")
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        names = [g] if isinstance(g, str) else list(g or [])
        for name in dict.fromkeys(names or [NO_GROUP]):
            members[str(name)].append(i)
    slices = {
        name: _slice_metrics([true[i] for i in idx], [pred[i] for i in idx], labels)
        for name, idx in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    }

    disparity, warnings = _disparity(slices, labels, threshold, min_support)
    return {
        "threshold": threshold,
        "min_support": min_support,
        "labels": labels,
        "overall": _slice_metrics(true, pred, labels),
        "slices": slices,
        "disparity": dict(sorted(disparity.items(), key=lambda kv: kv[1]["ratio"])),
        "warnings": warnings,
        "small_slices": sorted(name for name, m in slices.items() if m["n"] < min_support),
    }


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render_fairness_markdown(report: Mapping[str, Any], *, max_slices: int = 30) -> str:
    """The report as Markdown: warnings, disparity ratios, and a table of slices."""
    lines = [f"Disparity threshold {report['threshold']} (min/max ratio), slices of at least "
             f"{report['min_support']} examples.", ""]
    if report["warnings"]:
        lines += ["**Warnings**", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    else:
        lines += ["No disparity below the threshold.", ""]
    if report["disparity"]:
        lines += ["| metric | ratio | lowest slice | value | highest slice | value |", "|---|---|---|---|---|---|"]
        for metric, d in report["disparity"].items():
            lines.append(f"| {metric} | {d['ratio']:.3f} | {d['min_slice']} | {d['min']:.3f} | {d['max_slice']} | "
                         f"{d['max']:.3f} |")
        lines.append("")
    labels = report["labels"]
    lines += ["| slice | n | accuracy | macro-F1 | " + " | ".join(f"recall {lab}" for lab in labels) + " |",
              "|---" * (4 + len(labels)) + "|"]
    for name, m in list(report["slices"].items())[:max_slices]:
        recalls = " | ".join(_fmt(m["recall"][lab]) for lab in labels)
        lines.append(f"| {name} | {m['n']} | {_fmt(m['accuracy'])} | {_fmt(m['macro_f1'])} | {recalls} |")
    if len(report["slices"]) > max_slices:
        lines.append(f"\n({len(report['slices']) - max_slices} more slices in fairness.json)")
    return "\n".join(lines) + "\n"


def fairness_for_run(
    run: RunDir | str | Path,
    *,
    group_field: str | None = None,
    keywords: Mapping[str, Sequence[str]] | None = None,
    handles: bool = False,
    min_handle_count: int = 1,
    threshold: float = 0.8,
    min_support: int = 20,
    batch_size: int = 64,
    predictor: Any = None,
    write: bool = True,
) -> dict[str, Any]:
    """Predict a run's test split and report fairness across slices; writes ``eval/fairness.json``.

    Give exactly one way to form slices: ``group_field`` (a field of the test records),
    ``keywords`` (``{group: [keyword, ...]}``) or ``handles`` (each ``@handle`` in the text).

    Args:
        run: A trained run directory.
        predictor: Anything with ``labels`` and ``predict_proba(texts, batch_size)``; the run's
            fp32 model (``lmforge.predict.load_predictor(run, "fp32")``) when None.
        write: Write ``eval/fairness.json`` and record a summary in the manifest.
    """
    chosen = [name for name, on in (("group_field", group_field), ("keywords", keywords), ("handles", handles)) if on]
    if len(chosen) != 1:
        raise ConfigError("Choose exactly one way to form slices: a group field (--group-field), keyword groups "
                          f"(--keywords FILE.json) or @handles (--by-handle); got {chosen or 'none'}.")
    run = run if isinstance(run, RunDir) else RunDir(run)
    records = read_split(run, "test")
    if not records:
        raise RunDirError(f"{run.split_path('test')} is empty; a fairness report needs test examples.")
    texts = [r["text"] for r in records]
    if predictor is None:
        predictor = load_predictor(run, FP32)
    labels = list(predictor.labels)
    proba = predictor.predict_proba(texts, batch_size=batch_size)
    pred = [labels[int(row.argmax())] for row in proba]
    if group_field:
        groups: list[list[str]] = groups_from_field(records, group_field)
        source = f"field:{group_field}"
    elif keywords:
        groups, source = groups_from_keywords(texts, keywords), "keywords"
    else:
        groups, source = groups_from_handles(texts, min_count=min_handle_count), "handles"
    report = fairness_report([r["label"] for r in records], pred, groups, labels,
                             threshold=threshold, min_support=min_support)
    report = {"run": str(run.root), "split": "test", "groups": source, **report}
    if write:
        atomic_write_json(run.eval_dir / "fairness.json", report)
        run.update_manifest(fairness={"groups": source, "threshold": threshold, "slices": len(report["slices"]),
                                      "warnings": len(report["warnings"])})
    return report
