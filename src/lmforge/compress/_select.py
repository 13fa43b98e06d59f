"""Pick the variant to serve: the fastest one whose accuracy stays within the budget.

Pure functions over measurement records (the ``variant.json`` fields), so the rule is
tested with synthetic numbers. A variant qualifies when it is not stale (built from the
current model), its accuracy is at most ``budget`` points below fp32's, and it is faster
than fp32, and (given the run's baselines) it beats the majority-class baseline as evaluate
requires of a model (:func:`lmforge.metrics.beats_baselines`); the fastest qualifying one wins (ties: smaller, then by name). When none
qualifies, fp32 stays selected and the reason names what each variant missed.

A generative run is selected by the same rule in points of ROUGE-L (``metric="rouge_l"``,
0-1 like accuracy), with ``batch_N_ms`` the milliseconds per generated token at batch N.
"""

from __future__ import annotations

from typing import Any

from lmforge.metrics import beats_baselines

__all__ = ["accuracy_drop_points", "describe_drop", "select_variant"]

_EPS = 1e-9  # accuracies are ratios of counts; don't let float rounding flip a tie at the budget
METRIC_NAMES = {"accuracy": "accuracy", "rouge_l": "ROUGE-L"}


def accuracy_drop_points(baseline: dict[str, Any], record: dict[str, Any], metric: str = "accuracy") -> float:
    """Points of ``metric`` (a 0-1 score) lost against fp32 (negative: the variant scores higher)."""
    return (float(baseline[metric]) - float(record[metric])) * 100.0


def describe_drop(drop: float, metric: str = "accuracy") -> str:
    """``0.40 points below fp32`` / ``0.20 points above fp32`` / ``as accurate as fp32``."""
    if abs(drop) < 0.005:
        return "as accurate as fp32" if metric == "accuracy" else f"the same {METRIC_NAMES[metric]} as fp32"
    return f"{abs(drop):.2f} points {'below' if drop > 0 else 'above'} fp32"


def _speed(record: dict[str, Any], speed_by: str) -> float:
    return float(record["latency"][f"{speed_by}_ms"])


def select_variant(baseline: dict[str, Any], variants: dict[str, dict[str, Any]], budget: float,
                   speed_by: str = "batch_1", floor: dict[str, Any] | None = None,
                   metric: str = "accuracy") -> dict[str, Any]:
    """The selection and why.

    Args:
        baseline: fp32's record (``accuracy``, ``latency.{batch_1_ms, batch_32_ms}``).
        variants: name -> record (the same fields, ``size_bytes``; ``stale`` when built from other weights).
        budget: accuracy points a variant may lose.
        speed_by: ``batch_1`` or ``batch_32``: which latency "fastest" means.
        floor: ``{"baselines": baseline_scores(...), "margin": m}``: a variant that does not beat
            them (accuracy and ``macro_f1``) never qualifies, whatever the budget.
        metric: the 0-1 score the budget is in points of: ``accuracy``, or ``rouge_l`` for a generator.

    Returns:
        ``{"variant", "reason", "budget", "speed_by", "considered": [{name, qualifies, why, ...}]}``;
        ``variant`` is ``fp32`` when nothing qualifies.
    """
    base_ms = _speed(baseline, speed_by)
    label = METRIC_NAMES[metric]
    considered: list[dict[str, Any]] = []
    for name in sorted(variants):
        record = variants[name]
        drop = accuracy_drop_points(baseline, record, metric)
        ms = _speed(record, speed_by)
        if record.get("stale"):
            why = "stale: built from other model weights than model/ holds now; re-run `lmforge compress`"
        elif floor and not (check := beats_baselines(float(record["accuracy"]), float(record["macro_f1"]),
                                                     floor["baselines"], floor["margin"]))["beats"]:
            why = (f"does not beat the majority-class baseline (accuracy {float(record['accuracy']):.4f}, "
                   f"macro-F1 {float(record['macro_f1']):.4f}; needs {check['required_accuracy']:.4f} and "
                   f"{check['required_macro_f1']:.4f})")
        elif drop > budget + _EPS:
            why = f"loses {drop:.2f} {label} points, more than the budget of {budget:g}"
        elif ms >= base_ms:
            why = f"not faster than fp32 ({ms:.2f} ms vs {base_ms:.2f} ms at {speed_by.replace('_', ' ')})"
        else:
            why = f"within budget ({describe_drop(drop, metric)}), {base_ms / ms:.2f}x faster than fp32"
        considered.append({
            "name": name, "qualifies": why.startswith("within"), "why": why,
            "accuracy_drop_points": round(drop, 4), "latency_ms": ms, "size_bytes": record.get("size_bytes"),
        })
    winners = [c for c in considered if c["qualifies"]]
    out: dict[str, Any] = {"budget": budget, "speed_by": speed_by, "baseline_latency_ms": base_ms}
    if winners:
        best = min(winners, key=lambda c: (c["latency_ms"], c["size_bytes"] or 0, c["name"]))
        out.update(
            variant=best["name"],
            reason=(f"fastest of {len(winners)} variant(s) within {budget:g} {label} point(s) of fp32: "
                    f"{best['latency_ms']:.2f} ms vs fp32 {base_ms:.2f} ms at {speed_by.replace('_', ' ')} "
                    f"({base_ms / best['latency_ms']:.2f}x), {describe_drop(best['accuracy_drop_points'], metric)}"),
        )
    elif considered:
        out.update(variant="fp32", reason="no variant qualifies, fp32 stays selected: " + "; ".join(
            f"{c['name']} {c['why']}" for c in considered))
    else:
        out.update(variant="fp32", reason="no variant was built, fp32 stays selected")
    out["considered"] = considered
    return out
