"""What the manifest says about the data and the training, with "unknown" for any gap.

The report and the model card read the run's history only through :func:`run_summary`, so
a manifest written by an older (or partial) run still renders, and a missing field reads
"unknown" instead of raising.
"""

from __future__ import annotations

from typing import Any

from lmforge.catalog import MODELS

__all__ = ["UNKNOWN", "baseline_rows", "baseline_verdict", "format_value", "generation_summary_rows", "run_summary",
           "summary_rows"]

UNKNOWN = "unknown"


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or tree.get(key) is None:
            return None
        tree = tree[key]
    return tree


def format_value(value: Any) -> str:
    """A manifest value as short text: thousands separators, 4-digit floats, "unknown" for None."""
    if value is None or value == "":
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else UNKNOWN
    return str(value)


def _source(manifest: dict[str, Any]) -> Any:
    source = _get(manifest, "data", "source")
    if source is not None:
        return source
    data_spec = _get(manifest, "spec", "data") or {}
    return data_spec.get("path") or data_spec.get("dataset")


def run_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """Flatten the manifest into the facts the report and the model card show.

    Args:
        manifest: ``RunDir.read_manifest()``; any key may be absent.

    Returns:
        Raw values (None where unknown) under ``name``, ``source``, ``fingerprint``,
        ``counts`` (``{train, val, test}``), ``labels``, ``base_model``, ``method``,
        ``trainable_parameters``, ``total_parameters``, ``steps``, ``epochs``, ``seconds``,
        ``best_val_macro_f1``, ``best_val_loss`` (generative runs), ``precision``, ``max_length``, ``lmforge_version``.
    """
    train: dict[str, Any] = manifest["train"] if isinstance(manifest.get("train"), dict) else {}
    counts = _get(manifest, "data", "counts")
    counts = counts if isinstance(counts, dict) else {}
    return {
        "name": _get(manifest, "spec", "name"),
        "source": _source(manifest),
        "fingerprint": _get(manifest, "data", "fingerprint"),
        "counts": {split: counts.get(split) for split in ("train", "val", "test")},
        "labels": _get(manifest, "data", "labels"),
        "base_model": train.get("base_model") or _get(manifest, "spec", "model", "name"),
        "method": train.get("method") or _get(manifest, "spec", "train", "method"),
        "trainable_parameters": train.get("trainable_parameters"),
        "total_parameters": train.get("total_parameters"),
        "steps": train.get("steps"),
        "epochs": train.get("epochs"),
        "seconds": train.get("seconds"),
        "best_val_macro_f1": train.get("best_val_macro_f1"),
        "best_val_loss": train.get("best_val_loss"),
        "precision": train.get("precision"),
        "max_length": _get(manifest, "spec", "model", "max_length"),
        "lmforge_version": manifest.get("lmforge_version") or _get(manifest, "versions", "lmforge"),
        "readability": train.get("readability") if isinstance(train.get("readability"), dict) else None,
    }


def _readability_rows(readable: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Rows of the readability check recorded by training (none for a run trained before it existed)."""
    if not readable or not isinstance(readable.get("before"), dict):
        return []
    before = readable["before"]
    unknown = f"{before['unknown_rate']:.2%} of {before['tokens']:,} training tokens read as {before['unknown_token']}"
    extension = readable.get("extension")
    if isinstance(extension, dict) and isinstance(readable.get("after"), dict):
        unknown += (f"; {extension['added']:,} characters added to the vocabulary (model.extend_vocab), "
                    f"{readable['after']['unknown_rate']:.2%} after")
    shares = before.get("shares") or {}
    script = ", ".join(f"{name} {share:.0%}" for name, share in list(shares.items())[:3]) or UNKNOWN
    return [
        ("Unknown tokens", unknown),
        (f"Texts truncated at {before['max_length']} tokens",
         f"{before['truncated_share']:.2%} ({before['truncated']:,} of {before['texts']:,})"),
        ("Script of the letters", script),
    ]


def baseline_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(model, accuracy, macro-F1)`` rows: the model beside the baselines that never read a text."""
    rows = [("This model", f"{metrics['accuracy']:.4f}", f"{metrics['macro_f1']:.4f}")]
    baselines = metrics.get("baselines") or {}
    if "majority" in baselines:
        m = baselines["majority"]
        rows.append((f"Majority class ({m.get('label', m.get('class'))})", f"{m['accuracy']:.4f}",
                     f"{m['macro_f1']:.4f}"))
    if "stratified" in baselines:
        r = baselines["stratified"]
        rows.append((f"Stratified random (seed {r.get('seed')})", f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}"))
    return rows


def baseline_verdict(metrics: dict[str, Any]) -> str:
    """One sentence: does the model beat the majority-class baseline by ``evaluate.baseline_margin``?"""
    check = metrics.get("baseline_check")
    if not isinstance(check, dict):
        return "No baselines were computed for this evaluation."
    need = (f"(needed accuracy {check['required_accuracy']:.4f} and macro-F1 {check['required_macro_f1']:.4f}: "
            f"evaluate.baseline_margin {check['margin']:g} of the gap to a perfect score)")
    if check["beats"]:
        return f"The model beats the majority-class baseline {need}."
    return (f"WARNING: the model does NOT beat the majority-class baseline {need}: it is at chance level and learned next to "
            "nothing from the texts. Do not use it; see the readability check of the training data.")


def _licence_rows(base_model: Any) -> list[tuple[str, str]]:
    """The base model's licence, for a catalog model (a local folder's is the user's to know)."""
    entry = MODELS.get(base_model) if isinstance(base_model, str) else None
    return [("Base model licence", entry.license)] if entry is not None else []


def summary_rows(summary: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(data rows, training rows) of ``(name, text)`` for tables in the report and card."""
    counts = summary["counts"]
    data = [
        ("Source", format_value(summary["source"])),
        ("Fingerprint", format_value(summary["fingerprint"])),
        (
            "Examples (train / val / test)",
            " / ".join(format_value(counts[s]) for s in ("train", "val", "test")),
        ),
        ("Labels", format_value(summary["labels"])),
        *_readability_rows(summary.get("readability")),
    ]
    params = format_value(summary["trainable_parameters"])
    trainable, total = summary["trainable_parameters"], summary["total_parameters"]
    if isinstance(trainable, int) and isinstance(total, int) and total > 0:
        share = trainable / total
        params += f" of {format_value(summary['total_parameters'])} ({share:.2%})"
    seconds = summary["seconds"]
    duration = f"{seconds:.1f} s" if isinstance(seconds, int | float) else format_value(seconds)
    training = [
        ("Base model", format_value(summary["base_model"])),
        *_licence_rows(summary["base_model"]),
        ("Method", format_value(summary["method"])),
        ("Trainable parameters", params),
        ("Steps", format_value(summary["steps"])),
        ("Epochs", format_value(summary["epochs"])),
        ("Training time", duration),
        ("Best validation macro-F1", format_value(summary["best_val_macro_f1"])),
        ("Precision", format_value(summary["precision"])),
    ]
    return data, training


def generation_summary_rows(summary: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """:func:`summary_rows` for a generative run: no label row, the best validation loss for macro-F1."""
    data, training = summary_rows(summary)
    data = [row for row in data if row[0] != "Labels"]
    training = [
        ("Best validation loss", format_value(summary.get("best_val_loss"))) if name == "Best validation macro-F1"
        else (name, value)
        for name, value in training
    ]
    return data, training
