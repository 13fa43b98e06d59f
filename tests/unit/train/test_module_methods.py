"""The methods that do not merge (bottleneck adapters, prefix, prompt) through every stage, on a tiny BERT.

Each run trains a few steps (real train stage), saves the modules and head only, is loaded back
by the inference layer (base checked, modules re-attached) with the logits it had in memory,
exports to ONNX with the same logits at any batch size and length, and predicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file
from tests._runs import fast_options
from tests._tiny_bert import build_tiny_bert
from tests.unit.train._method_formulas import CONFIG_FORMULAS

from lmforge.compress import compress
from lmforge.config import TrainConfig, load_spec, spec_from_dict
from lmforge.errors import ConfigError
from lmforge.guard import IntegrityError
from lmforge.predict import MODULES_FORMAT, OnnxPredictor, TorchPredictor, attach_modules, load_predictor
from lmforge.rundir import RunDir
from lmforge.train import METHODS, get_method, train

pytestmark = pytest.mark.slow  # four tiny runs trained and compressed (about a minute on 2 cores)

METHODS_HERE = ("adapter-houlsby", "adapter-pfeiffer", "prefix", "prompt")
SETTINGS: dict[str, Any] = {"adapter": {"reduction_factor": 4}, "prefix": {"num_virtual_tokens": 4},
                            "prompt": {"num_virtual_tokens": 4}}
POS = ["the food is very good", "good service", "the service is good", "very good food !", "the food is good"]
NEG = ["the food is bad", "bad service", "the service is not good", "very bad food", "the food is not good"]
SAMPLE = ["the food is very good", "bad", "the service is not good , the food is bad , very bad !"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def _prepared(root: Path) -> RunDir:
    run = RunDir(root)
    run.data_dir.mkdir(parents=True)
    rows = [{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]
    for split, part in (("train", rows * 4), ("val", rows[::2]), ("test", rows)):
        run.split_path(split).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    run.labels_path.write_text(json.dumps({"labels": ["neg", "pos"]}), encoding="utf-8")
    return run


def _spec(tiny: Path, method: str, max_length: int = 32, **train_cfg: Any) -> Any:
    # fp32: bf16 autocast (precision auto on a bf16 CPU) stays on the in-memory model's forward.
    cfg = {"method": method, "max_steps": 6, "batch_size": 8, "learning_rate": 5e-2, "warmup_ratio": 0.0,
           "early_stopping_patience": None, "precision": "fp32", **SETTINGS, **train_cfg}
    return spec_from_dict({"model": {"name": str(tiny), "max_length": max_length, "extend_vocab": False},
                           "train": cfg})


@pytest.fixture(scope="module")
def runs(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RunDir, dict, Any]]:
    """Each method trained once: the run, the train summary and the model as it was in memory."""
    import lmforge.train._stage as stage

    out: dict[str, tuple[RunDir, dict, Any]] = {}
    real = stage._save_model
    for method in METHODS_HERE:
        kept: dict[str, Any] = {}

        def keep(run: Any, spec: Any, meth: Any, model: Any, *args: Any, _kept: dict = kept, **kw: Any) -> None:
            _kept["model"] = model
            real(run, spec, meth, model, *args, **kw)

        stage._save_model = keep  # type: ignore[assignment]
        try:
            run = _prepared(tmp_path_factory.mktemp(method) / "run")
            summary = train(_spec(tiny, method), run, progress=False)
        finally:
            stage._save_model = real  # type: ignore[assignment]
        out[method] = (run, summary, kept["model"].eval())
    return out


def _logits(model: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    enc = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        return np.asarray(model(**enc).logits.float().numpy())


def test_methods_are_registered() -> None:
    assert set(METHODS_HERE) <= set(METHODS)
    assert all(get_method(m).format == MODULES_FORMAT for m in METHODS_HERE)  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", METHODS_HERE)
def test_trainable_parameters_match_the_formula(method: str, runs: dict, tiny: Path) -> None:
    _, summary, model = runs[method]
    config = transformers.AutoConfig.from_pretrained(tiny)
    expected = CONFIG_FORMULAS[method](config, 2, TrainConfig(method=method, **_sections()))
    assert summary["trainable_parameters"] == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    # 1 layer, H = 16: Houlsby 2 x (16*4+4 + 4*16+16) + 3 x 32 + 34 = 426; prefix 2*4*16 + 34 = 162.
    assert expected == {"adapter-houlsby": 426, "adapter-pfeiffer": 182, "prefix": 162, "prompt": 98}[method]


def _sections() -> dict[str, Any]:
    from lmforge.config import AdapterConfig, PrefixConfig, PromptConfig

    return {"adapter": AdapterConfig(reduction_factor=4), "prefix": PrefixConfig(num_virtual_tokens=4),
            "prompt": PromptConfig(num_virtual_tokens=4)}


@pytest.mark.parametrize("method", METHODS_HERE)
def test_saved_as_modules_and_head_only(method: str, runs: dict, tiny: Path) -> None:
    run, _, model = runs[method]
    files = {p.name for p in run.model_dir.iterdir()}
    assert {"lmforge_modules.safetensors", "lmforge_modules.json", "lmforge_model.json", "tokenizer.json"} <= files
    assert "model.safetensors" not in files and not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    meta = json.loads((run.model_dir / "lmforge_model.json").read_text(encoding="utf-8"))
    assert meta["format"] == MODULES_FORMAT and meta["method"] == method
    layout = json.loads((run.model_dir / "lmforge_modules.json").read_text(encoding="utf-8"))
    assert layout["base_model_sha256"] == meta["base_model_sha256"]
    saved = load_file(str(run.model_dir / "lmforge_modules.safetensors"))
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert sorted(saved) == layout["trainable"] == trainable
    assert "classifier.weight" in saved and "bert.encoder.layer.0.attention.self.query.weight" not in saved
    # The base model did not move: its weights are not saved, so they must be the base's own.
    base = load_file(str(tiny / "model.safetensors"))
    frozen = model.state_dict()["bert.encoder.layer.0.attention.self.query.weight"]
    assert torch.equal(frozen, base["encoder.layer.0.attention.self.query.weight"])


@pytest.mark.parametrize("method", METHODS_HERE)
def test_reload_gives_the_trained_logits(method: str, runs: dict, tiny: Path) -> None:
    run, _, model = runs[method]
    predictor = load_predictor(run, "fp32")
    assert isinstance(predictor, TorchPredictor)
    before = _logits(model, predictor.tokenizer, SAMPLE)
    after = _logits(predictor.model, predictor.tokenizer, SAMPLE)
    assert np.abs(before - after).max() <= 1e-5
    # The modules count: the base model with only the trained head gives other logits.
    head_only = transformers.AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=2).eval()
    saved = load_file(str(run.model_dir / "lmforge_modules.safetensors"))
    head_only.load_state_dict({k: v for k, v in saved.items() if k.startswith("classifier.")}, strict=False)
    assert np.abs(_logits(head_only, predictor.tokenizer, SAMPLE) - before).max() > 1e-4


@pytest.mark.parametrize("method", METHODS_HERE)
def test_padding_does_not_change_a_text_s_logits(method: str, runs: dict) -> None:
    """The prefix and prompt extend the attention mask: a padded text is scored as when alone."""
    _, _, model = runs[method]
    tokenizer = transformers.AutoTokenizer.from_pretrained(runs[method][0].model_dir)
    together = _logits(model, tokenizer, SAMPLE)
    alone = np.concatenate([_logits(model, tokenizer, [t]) for t in SAMPLE])
    assert np.abs(together - alone).max() <= 1e-5


@pytest.mark.parametrize("method", ("adapter-houlsby", "adapter-pfeiffer"))
def test_a_new_adapter_starts_as_the_base_model(method: str, tiny: Path) -> None:
    base = transformers.AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=2).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny)
    before = _logits(base, tokenizer, SAMPLE)
    wrapped = get_method(method).wrap(base, TrainConfig(method=method, **_sections()))
    assert any(".adapter.up." in n for n, _ in wrapped.named_parameters())
    assert np.array_equal(_logits(wrapped, tokenizer, SAMPLE), before)


@pytest.mark.parametrize("method", METHODS_HERE)
def test_onnx_export_matches_torch_and_predicts(method: str, runs: dict, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    run = RunDir(tmp_path / "run")
    shutil.copytree(runs[method][0].root, run.root)
    summary = compress(run, fast_options(only=("onnx-fp32", "onnx-int8-dynamic")))
    assert {"onnx-fp32", "onnx-int8-dynamic"} <= set(summary["variants"])
    onnx = load_predictor(run, "onnx-fp32")
    assert isinstance(onnx, OnnxPredictor)
    torch_p = load_predictor(run, "fp32")
    texts = [*SAMPLE, "good", "the food is not very good , the service is bad !"]
    for batch in (texts, texts[:1], texts[3:]):  # other batch sizes and lengths than the export's
        assert np.abs(onnx.predict_proba(batch) - torch_p.predict_proba(batch)).max() <= 1e-5
        # The pooled states (a prompt's virtual tokens counted as real) match torch's, from the same pass.
        (onnx_logits, onnx_pooled), (torch_logits, torch_pooled) = onnx.encode(batch), torch_p.encode(batch)
        assert onnx_pooled.shape == (len(batch), torch_p.model.config.hidden_size)
        assert np.abs(onnx_pooled - torch_pooled).max() <= 1e-4
        assert np.abs(onnx_logits - torch_logits).max() <= 1e-4
    int8 = load_predictor(run, "onnx-int8-dynamic")
    assert np.abs(int8.predict_proba(texts) - torch_p.predict_proba(texts)).max() < 0.05
    chosen = load_predictor(run)  # the selected variant
    assert [p["label"] for p in chosen.predict(texts)] == [p["label"] for p in torch_p.predict(texts)]


def test_compress_builds_bf16_and_skips_what_would_drop_the_modules(runs: dict, tiny: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    run = RunDir(tmp_path / "run")
    shutil.copytree(runs["adapter-houlsby"][0].root, run.root)
    summary = compress(run, fast_options(force_bf16=True))
    assert set(summary["variants"]) == {"onnx-fp32", "onnx-int8-dynamic", "onnx-int8-static", "torch-bf16"}
    for name in ("pruned", "distilled"):
        assert "method 'adapter-houlsby', whose modules" in summary["skipped"][name]
    assert "only a run with a peft adapter (lora, adalora, ia3) has one to merge" in summary["skipped"]["merged"]
    # fp32 is the base model plus the modules: its size counts both.
    base_size = (tiny / "model.safetensors").stat().st_size
    modules_size = (run.model_dir / "lmforge_modules.safetensors").stat().st_size
    assert json.loads((run.compressed_dir / "baseline.json").read_text(encoding="utf-8"))["size_bytes"] == (
        base_size + modules_size)
    bf16 = load_predictor(run, "torch-bf16")
    assert isinstance(bf16, TorchPredictor)
    assert sum(".adapter." in n for n, _ in bf16.model.named_parameters()) == 8  # 2 adapters x (down, up) x 2
    assert np.abs(bf16.predict_proba(SAMPLE) - load_predictor(run, "fp32").predict_proba(SAMPLE)).max() < 0.02


def test_a_changed_base_model_is_refused(runs: dict, tiny: Path, tmp_path: Path) -> None:
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny, base)
    run = RunDir(tmp_path / "run")
    shutil.copytree(runs["adapter-pfeiffer"][0].root, run.root)
    meta_path = run.model_dir / "lmforge_model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["base_model"] = str(base)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    assert load_predictor(run, "fp32").labels == ["neg", "pos"]  # the copy is the same base
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    (base / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-6}), encoding="utf-8")
    with pytest.raises(IntegrityError, match="changed since training"):
        load_predictor(run, "fp32")


@pytest.mark.parametrize("method", ("prefix", "prompt"))
def test_virtual_tokens_that_do_not_fit_stop_train(method: str, tiny: Path, tmp_path: Path) -> None:
    run = _prepared(tmp_path / "run")
    # The tiny BERT has 64 positions: 62 text tokens + 4 virtual ones do not fit.
    with pytest.raises(ConfigError) as err:
        train(_spec(tiny, method, max_length=62), run, progress=False)
    assert str(err.value) == (
        f"train.{method}.num_virtual_tokens (4) + model.max_length (62) = 66 tokens, more than the 64 positions "
        f"{tiny} has. Lower model.max_length to 60, or train.{method}.num_virtual_tokens to 2 or fewer."
    )
    assert not run.model_dir.exists()
    train(_spec(tiny, method, max_length=60, max_steps=1), run, progress=False)  # 60 + 4 fits exactly
    assert (run.model_dir / "lmforge_modules.safetensors").is_file()


def test_validate_exits_2_when_the_prefix_does_not_fit(tiny: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.cli.__main__ import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {{name: '{tiny}', max_length: 62}}\ntrain: {{method: prefix}}\n", encoding="utf-8")
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "train.prefix.num_virtual_tokens (20) + model.max_length (62) = 82 tokens" in err
    assert "Traceback" not in err
    spec.write_text(f"model: {{name: '{tiny}', max_length: 44}}\ntrain: {{method: prefix}}\n", encoding="utf-8")
    assert main(["validate", str(spec)]) == 0, capsys.readouterr().err


def test_spec_sections_are_typed_and_suggest_keys(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("train:\n  adapter: {reduction_factr: 8}\n  prefix: {num_virtual_token: 4}\n"
                    "  prompt: {num_virtual_tokens: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    text = str(err.value)
    assert "Did you mean 'reduction_factor'?" in text
    assert "Did you mean 'num_virtual_tokens'?" in text
    assert "train.prompt.num_virtual_tokens must be in [1, 512], got 0." in text
    spec.write_text("train:\n  adapter: {reduction_factor: 0, non_linearity: gelu}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="reduction_factor must be at least 1, got 0"):
        load_spec(spec)
    spec.write_text("train:\n  adapter: {non_linearity: sigmoid}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="non_linearity"):
        load_spec(spec)


def test_a_causal_lm_is_refused_with_the_methods_that_take_one() -> None:
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2)
    model = transformers.LlamaForCausalLM(config)
    for method in METHODS_HERE:
        with pytest.raises(ConfigError, match="for task: generate use one of: full, lora"):
            get_method(method).wrap(model, TrainConfig(method=method))


def test_attach_refuses_a_model_without_the_modules_places() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    model.config = transformers.PretrainedConfig()  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="found no attention/FFN output projections"):
        attach_modules(model, {"kind": "bottleneck", "method": "adapter-pfeiffer", "placement": "ffn",
                               "reduction_factor": 4, "non_linearity": "relu"})
