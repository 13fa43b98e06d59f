"""`lmforge compress` on a generative run: merged, int8 and bf16 variants of the tiny causal LM, measured,
selected within ROUGE-L points, saved without pickle, and loaded back through `load_generator`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests._gen_runs import full_run, lora_run
from tests._tiny_lm import build_tiny_lm

from lmforge.compress import GENERATOR_COMPRESSORS, CompressOptions, compress, select_variant
from lmforge.errors import ConfigError
from lmforge.guard import scan_model_dir
from lmforge.predict import load_generator, quantize_int8_dynamic, read_selected, save_int8_causal_lm
from lmforge.rundir import RunDir

PROMPTS = ["how do i cancel my order", "track my refund please", "reset password", "open account",
           "hello how are you", "is it open"]
ANSWERS = ["please call us", "your refund is open", "reset it please", "yes thanks", "hello thanks", "no"]
FAST = {"gen_max_test": 6, "gen_max_new_tokens": 6, "gen_timing_tokens": 3, "gen_repeats": 1, "warmup": 0}


def _with_test_split(root: Path) -> None:
    data = root / "data"
    data.mkdir(parents=True)
    rows = "".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in zip(PROMPTS, ANSWERS, strict=True))
    for split in ("train", "val", "test"):
        (data / f"{split}.jsonl").write_text(rows, encoding="utf-8")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm") / "base", seed=3)


@pytest.fixture(scope="module")
def compressed_lora(tmp_path_factory: pytest.TempPathFactory, base: Path) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("gen-compress") / "run"
    _with_test_split(root)
    lora_run(root, base)
    summary = compress(root, CompressOptions(force_bf16=True, budget=100.0, **FAST))
    return root, summary


def _answers(run: Path, variant: str | None = None) -> list[str]:
    return [g.text for g in load_generator(run, variant).generate(PROMPTS, max_new_tokens=8)]


def test_every_variant_is_built_measured_and_recorded(compressed_lora: tuple[Path, dict]) -> None:
    root, summary = compressed_lora
    assert sorted(summary["built"]) == ["merged", "torch-bf16", "torch-int8-dynamic"]
    assert summary["kind"] == "causal-lm" and summary["metric"] == "rouge_l"
    for name in summary["built"]:
        record = json.loads((root / "compressed" / name / "variant.json").read_text(encoding="utf-8"))
        lat = record["latency"]
        assert record["n_test"] == 6 and 0.0 <= record["rouge_l"] <= 1.0 and record["perplexity"] > 1.0
        assert lat["tokens_per_s_batch_1"] > 0 and lat["tokens_per_s_batch_8"] > 0 and lat["ttft_ms"] > 0
        assert lat["batch_1_ms"] == pytest.approx(1e3 / lat["tokens_per_s_batch_1"], rel=1e-2)
        assert record["size_bytes"] == (root / "compressed" / name / "model.safetensors").stat().st_size
        scan_model_dir(root / "compressed" / name)  # no pickle anywhere in the folder
    sizes = {n: summary["variants"][n]["size_mb"] for n in summary["built"]}
    assert sizes["torch-int8-dynamic"] < 0.6 * sizes["merged"] and sizes["torch-bf16"] < 0.6 * sizes["merged"]
    report = (root / "compressed" / "compression_report.md").read_text(encoding="utf-8")
    assert "| torch-int8-dynamic |" in report and "ROUGE-L" in report
    manifest = RunDir(root).read_manifest()
    assert manifest["compress"]["selected"] == summary["selected"]
    assert "compressed/torch-int8-dynamic/model.safetensors" in manifest["files"]
    int8 = json.loads((root / "compressed" / "torch-int8-dynamic" / "variant.json").read_text(encoding="utf-8"))
    smoothing = int8["build"]["quantization"]["smoothing"]  # the tiny LM is Llama-shaped: smoothed on train
    assert smoothing["method"] == "smoothquant" and smoothing["alpha"] == 0.8
    assert smoothing["calibration_texts"] == len(PROMPTS) and smoothing["inputs_smoothed"] == 3 * 2


def test_merged_answers_exactly_as_fp32_and_the_selection_loads(compressed_lora: tuple[Path, dict]) -> None:
    root, summary = compressed_lora
    fp32 = _answers(root, "fp32")
    assert _answers(root, "merged") == fp32
    # Budget 100 points: every variant is within it, so the selection is the fastest at batch 1 of those
    # faster than fp32, or fp32 if none is (the merged model computes what fp32 does: a timing coin toss).
    base_ms = json.loads((root / "compressed" / "baseline.json").read_text(encoding="utf-8"))["latency"]["batch_1_ms"]
    faster = {}
    for name in summary["built"]:
        record = json.loads((root / "compressed" / name / "variant.json").read_text(encoding="utf-8"))
        if record["latency"]["batch_1_ms"] < base_ms:
            faster[name] = record["latency"]["batch_1_ms"]
    assert summary["selected"] == (min(faster, key=faster.__getitem__) if faster else "fp32")
    assert read_selected(root)["variant"] == summary["selected"]
    assert _answers(root) == _answers(root, summary["selected"])  # load_generator(run) serves the selection


def test_int8_weights_round_trip_bit_for_bit(tmp_path: Path, base: Path) -> None:
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(base).eval()
    quantized, names = quantize_int8_dynamic(model)
    assert "lm_head" in names and "model.layers.0.self_attn.q_proj" in names
    out = tmp_path / "int8"
    out.mkdir()
    saved = save_int8_causal_lm(quantized, out)
    assert saved == names
    meta = {"kind": "causal-lm", "format": "transformers", "quantization": {"method": "torch-dynamic-int8",
                                                                          "modules": saved}}
    (out / "lmforge_model.json").write_text(json.dumps(meta), encoding="utf-8")
    transformers.AutoTokenizer.from_pretrained(base).save_pretrained(out)
    loaded = load_generator(out)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.inference_mode():
        assert torch.equal(loaded.model(ids).logits, quantized(ids).logits)


def test_full_run_skips_merged_with_the_reason(tmp_path: Path, base: Path) -> None:
    root = tmp_path / "run"
    _with_test_split(root)
    full_run(root, base)
    summary = compress(root, CompressOptions(only=("merged",), **FAST))
    assert summary["built"] == [] and summary["selected"] == "fp32"
    assert summary["skipped"] == {"merged": "the run was trained with method 'full': only a run with a peft "
                                            "adapter (lora, adalora, ia3) has one to merge"}


def test_a_run_without_its_train_split_gets_int8_unsmoothed_with_the_reason(tmp_path: Path, base: Path) -> None:
    root = tmp_path / "run"
    _with_test_split(root)
    (root / "data" / "train.jsonl").unlink()  # a model folder compressed without the data it was trained on
    full_run(root, base)
    summary = compress(root, CompressOptions(only=("torch-int8-dynamic",), **FAST))
    assert summary["built"] == ["torch-int8-dynamic"]
    record = json.loads((root / "compressed" / "torch-int8-dynamic" / "variant.json").read_text(encoding="utf-8"))
    assert record["build"]["quantization"]["smoothing"] == {"method": None, "reason": "no calibration texts"}


@pytest.mark.parametrize(("only", "speed_by", "message"), [
    (("onnx-int8-static",), "batch_1", "Unknown compressor 'onnx-int8-static' in --only for a generative run. "
     f"Available: {', '.join(sorted(GENERATOR_COMPRESSORS))}."),
    (None, "batch_32", "--speed-by must be batch_1 or batch_8 for a generative run, got 'batch_32'."),
])
def test_user_errors_name_the_fix_and_write_nothing(tmp_path: Path, base: Path, only: tuple[str, ...] | None,
                                                    speed_by: str, message: str) -> None:
    root = tmp_path / "run"
    _with_test_split(root)
    full_run(root, base)
    with pytest.raises(ConfigError) as info:
        compress(root, CompressOptions(only=only, speed_by=speed_by, **FAST))
    assert str(info.value) == message
    assert not (root / "compressed").exists()


def _record(rouge: float, ms: float, size: int = 10) -> dict:
    return {"rouge_l": rouge, "latency": {"batch_1_ms": ms, "batch_8_ms": ms / 4}, "size_bytes": size}


def test_selection_is_the_fastest_within_the_rouge_budget() -> None:
    baseline = _record(0.500, 20.0, 40)
    variants = {"torch-int8-dynamic": _record(0.480, 5.0), "torch-bf16": _record(0.497, 9.0),
                "merged": _record(0.500, 19.0)}
    chosen = select_variant(baseline, variants, 1.0, metric="rouge_l")
    assert chosen["variant"] == "torch-bf16"
    why = {c["name"]: c["why"] for c in chosen["considered"]}
    assert why["torch-int8-dynamic"] == "loses 2.00 ROUGE-L points, more than the budget of 1"
    assert why["merged"] == "within budget (the same ROUGE-L as fp32), 1.05x faster than fp32"
    assert chosen["reason"].startswith("fastest of 2 variant(s) within 1 ROUGE-L point(s) of fp32: 9.00 ms")
    assert select_variant(baseline, variants, 3.0, metric="rouge_l")["variant"] == "torch-int8-dynamic"
