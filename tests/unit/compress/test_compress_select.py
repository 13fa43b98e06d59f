"""Selection, options and registry rules, on synthetic measurements (no model, no torch)."""

from __future__ import annotations

import math

import pytest

from lmforge.compress import CompressOptions, get_compressor, parse_budget, parse_only, select_variant
from lmforge.compress._registry import resolve_names
from lmforge.errors import ConfigError

BASE = {"accuracy": 0.850, "latency": {"batch_1_ms": 20.0, "batch_32_ms": 300.0}, "size_bytes": 90_000_000}


def rec(accuracy: float, b1: float, b32: float, size: int = 20_000_000, **extra: object) -> dict:
    return {"accuracy": accuracy, "latency": {"batch_1_ms": b1, "batch_32_ms": b32}, "size_bytes": size, **extra}


def test_fastest_variant_within_budget_wins() -> None:
    variants = {
        "onnx-fp32": rec(0.850, 12.0, 200.0, 90_000_000),
        "onnx-int8-dynamic": rec(0.846, 6.0, 90.0),  # -0.4 points
        "distilled-int8": rec(0.835, 3.0, 45.0),  # -1.5 points: over a 1-point budget
    }
    sel = select_variant(BASE, variants, budget=1.0)
    assert sel["variant"] == "onnx-int8-dynamic"
    assert "(3.33x), 0.40 points below fp32" in sel["reason"]
    why = {c["name"]: c for c in sel["considered"]}
    assert not why["distilled-int8"]["qualifies"] and "1.50 accuracy points" in why["distilled-int8"]["why"]
    assert select_variant(BASE, variants, budget=2.0)["variant"] == "distilled-int8"


def test_budget_is_inclusive_and_in_points() -> None:
    exactly = {"v": rec(0.840, 5.0, 50.0)}  # exactly 1.0 point below
    assert select_variant(BASE, exactly, budget=1.0)["variant"] == "v"
    assert select_variant(BASE, exactly, budget=0.99)["variant"] == "fp32"
    more_accurate = {"v": rec(0.900, 5.0, 50.0)}
    sel = select_variant(BASE, more_accurate, budget=0.0)
    assert sel["variant"] == "v" and "5.00 points above fp32" in sel["reason"]


def test_a_variant_must_be_faster_than_fp32() -> None:
    sel = select_variant(BASE, {"torch-bf16": rec(0.850, 25.0, 400.0)}, budget=1.0)
    assert sel["variant"] == "fp32"
    assert "not faster than fp32 (25.00 ms vs 20.00 ms at batch 1)" in sel["reason"]


def test_when_none_qualifies_fp32_stays_and_every_reason_is_given() -> None:
    variants = {"a": rec(0.70, 5.0, 50.0), "b": rec(0.85, 30.0, 500.0), "c": rec(0.85, 1.0, 10.0, stale=True)}
    sel = select_variant(BASE, variants, budget=1.0)
    assert sel["variant"] == "fp32"
    assert sel["reason"].startswith("no variant qualifies, fp32 stays selected")
    assert "a loses 15.00 accuracy points" in sel["reason"]
    assert "b not faster than fp32" in sel["reason"] and "c stale" in sel["reason"]
    assert select_variant(BASE, {}, budget=1.0)["reason"] == "no variant was built, fp32 stays selected"


def test_speed_by_batch_32_and_size_breaks_ties() -> None:
    variants = {"low-latency": rec(0.85, 4.0, 200.0), "high-throughput": rec(0.85, 6.0, 60.0)}
    assert select_variant(BASE, variants, 1.0, speed_by="batch_1")["variant"] == "low-latency"
    assert select_variant(BASE, variants, 1.0, speed_by="batch_32")["variant"] == "high-throughput"
    tie = {"big": rec(0.85, 5.0, 50.0, 40), "small": rec(0.85, 5.0, 50.0, 10)}
    assert select_variant(BASE, tie, 1.0)["variant"] == "small"


@pytest.mark.parametrize("bad", ["abc", "", "1,5", "nan", "inf", "-0.5", "101", None, True, [1]])
def test_budget_must_be_a_number_of_points(bad: object) -> None:
    with pytest.raises(ConfigError, match="--budget"):
        parse_budget(bad)


def test_budget_parses_numbers_and_numeric_strings() -> None:
    assert parse_budget("0.5") == 0.5 and parse_budget(2) == 2.0 and parse_budget(" 1 ") == 1.0
    assert math.isclose(CompressOptions(budget="1.5").budget, 1.5)  # type: ignore[arg-type]


def test_options_report_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        CompressOptions(budget="x", calibration_size=4, prune_sparsity=1.0, speed_by="p99")  # type: ignore[arg-type]
    problems = "\n".join(info.value.problems)
    assert len(info.value.problems) == 4
    assert "--budget" in problems and "at least 16" in problems and "--prune-sparsity" in problems
    assert "--speed-by" in problems


def test_only_lists_unknown_names_and_pulls_in_what_they_build_on() -> None:
    with pytest.raises(ConfigError, match=r"Unknown compressors 'int3', 'fp8'.*Available: .*onnx-int8-dynamic"):
        resolve_names(("int3", "onnx-fp32", "fp8"))
    assert resolve_names(("distilled-int8",)) == ["distilled", "distilled-int8"]
    assert resolve_names(parse_only("pruned-int8, onnx-fp32,pruned-int8")) == ["pruned", "pruned-int8", "onnx-fp32"]
    with pytest.raises(ConfigError, match="at least one"):
        parse_only(" , ")
    with pytest.raises(ConfigError, match="Unknown compressor 'int3'. Available:"):
        get_compressor("int3")


def test_a_variant_that_does_not_beat_the_majority_baseline_never_qualifies() -> None:
    # Test split 52 % majority class: a variant must reach accuracy 0.52 + 0.05 * 0.48 = 0.544.
    floor = {"baselines": {"majority": {"accuracy": 0.52, "macro_f1": 0.3421},
                           "stratified": {"accuracy": 0.50, "macro_f1": 0.50}}, "margin": 0.05}  # 0.3421 + 0.05 * 0.6579
    baseline = rec(0.545, 10.0, 100.0, macro_f1=0.54)
    variants = {"onnx-int8-dynamic": rec(0.540, 4.0, 40.0, macro_f1=0.53),  # within a 1-point budget, yet chance
                "onnx-fp32": rec(0.545, 8.0, 80.0, macro_f1=0.54)}
    selection = select_variant(baseline, variants, budget=1.0, floor=floor)
    assert selection["variant"] == "onnx-fp32"
    why = {c["name"]: c["why"] for c in selection["considered"]}
    assert why["onnx-int8-dynamic"] == ("does not beat the majority-class baseline (accuracy 0.5400, macro-F1 "
                                        "0.5300; needs 0.5440 and 0.3750)")
    # Without the floor the faster one would have won.
    assert select_variant(baseline, variants, budget=1.0)["variant"] == "onnx-int8-dynamic"
