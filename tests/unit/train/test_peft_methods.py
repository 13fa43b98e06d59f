"""AdaLoRA and IA3 beyond the method contract: AdaLoRA's rank budget really shrinks on the run's
own schedule (and its checkpoints load back for the best model and a bit-exact --resume), the modules each
method adapts in an encoder and in a causal LM, a generative run merged by the generator, and
the `train.adalora` / `train.ia3` sections' checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from safetensors.torch import load_file
from tests._tiny_bert import build_tiny_bert, write_en_prepared, write_zh_prepared
from tests._tiny_lm import build_tiny_lm

from lmforge.config import AdaLoraConfig, load_spec, spec_from_dict
from lmforge.errors import ConfigError
from lmforge.pipeline import prepare_run
from lmforge.predict import load_generator
from lmforge.rundir import ADAPTER_CONFIG, RunDir
from lmforge.train import METHODS, get_method, train
from lmforge.train._adalora import STATE_FILE, schedule
from lmforge.train._peft_methods import ia3_targets

# The tiny BERT's linear layers LoRA-style methods adapt: q, k, v, attention output, FFN in and
# out (one layer), and the pooler.
ADAPTED = 7


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def _train(root: Path, tiny: Path, method: str, **train_cfg: Any) -> tuple[RunDir, dict[str, Any]]:
    run = RunDir(write_en_prepared(root))
    cfg = {"max_steps": 8, "batch_size": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0, "method": method,
           "early_stopping_patience": None, "threads": 1, "precision": "fp32", **train_cfg}
    spec = spec_from_dict({"model": {"name": str(tiny), "max_length": 32}, "train": cfg})
    return run, train(spec, run, progress=False)


def _kept(run: RunDir) -> dict[str, int]:
    pattern = json.loads((run.model_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))["rank_pattern"]
    return {name: sum(kept) for name, kept in pattern.items()}


ADALORA = {"init_r": 4, "target_r": 2, "delta_t": 1, "tinit": 0.25, "tfinal": 0.25}


def test_adalora_prunes_ranks_to_the_target_budget_on_the_runs_schedule(tiny: Path, tmp_path: Path) -> None:
    # One evaluation, at the last step: the best model is the final one, with its final ranks.
    run, summary = _train(tmp_path / "run", tiny, "adalora", eval_steps=8, adalora=ADALORA)
    config = json.loads((run.model_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    # The schedule the callback derived from the run: 8 steps, a quarter each side.
    assert (config["peft_type"], config["total_step"], config["tinit"], config["tfinal"]) == ("ADALORA", 8, 2, 2)
    kept = _kept(run)
    assert len(kept) == ADAPTED
    assert sum(kept.values()) <= ADALORA["target_r"] * ADAPTED < ADALORA["init_r"] * ADAPTED
    # The adapter holds exactly the kept triplets: each matrix's singular values, one per kept rank.
    weights = load_file(str(run.model_dir / "adapter_model.safetensors"))
    for name, rank in kept.items():
        prefix = "base_model.model." + name.removesuffix(".lora_E")
        assert weights[f"{prefix}.lora_E"].shape == (rank, 1), name
        assert weights[f"{prefix}.lora_A"].shape[0] == rank
        assert weights[f"{prefix}.lora_B"].shape[1] == rank
        assert bool((weights[f"{prefix}.lora_E"] != 0).all())
    assert summary["trainable_parameters"] > 0


@pytest.mark.slow
def test_adalora_checkpoints_load_back_for_the_best_model_and_resume_bit_exactly(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 12 steps: ranks are cut from step 3 to 9, fixed after. Checkpoints at 4 and 8 (while ranks are
    # cut) and 12: peft would save each with its own rank pattern and fail to load one into modules
    # of another size (the best model at the end, a resume); here they hold every triplet.
    monkeypatch.setenv("LMFORGE_KEEP_CHECKPOINTS", "1")
    cfg = {"max_steps": 12, "eval_steps": 4, "save_total_limit": 3, "adalora": ADALORA}
    run, straight = _train(tmp_path / "run", tiny, "adalora", **cfg)
    assert straight["best_checkpoint_step"] in (4, 8, 12)
    for step in (4, 8, 12):
        ckpt = json.loads((run.checkpoints_dir / f"checkpoint-{step}" / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        assert ckpt["rank_pattern"] is None
    averages = load_file(str(run.checkpoints_dir / "checkpoint-8" / STATE_FILE))
    assert averages and any(bool(t.abs().sum() > 0) for t in averages.values())
    weights = load_file(str(run.checkpoints_dir / "checkpoint-12" / "adapter_model.safetensors"))
    kept, model = _kept(run), load_file(str(run.model_dir / "adapter_model.safetensors"))
    for step in (8, 12):
        shutil.rmtree(run.checkpoints_dir / f"checkpoint-{step}")
    shutil.rmtree(run.model_dir)
    spec = spec_from_dict({"model": {"name": str(tiny), "max_length": 32}, "train": {
        "batch_size": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0, "method": "adalora",
        "early_stopping_patience": None, "threads": 1, "precision": "fp32", **cfg}})
    resumed = train(spec, run, resume=True, progress=False)
    assert resumed["resumed_from"] == "checkpoint-4" and resumed["steps"] == 12
    # The importance averages came back with checkpoint-4: at step 8 they are the straight run's.
    again = load_file(str(run.checkpoints_dir / "checkpoint-8" / STATE_FILE))
    assert again.keys() == averages.keys()
    for key, tensor in averages.items():
        assert torch.equal(again[key], tensor), key
    final = load_file(str(run.checkpoints_dir / "checkpoint-12" / "adapter_model.safetensors"))
    assert final.keys() == weights.keys()
    for key, tensor in weights.items():
        assert torch.equal(final[key], tensor), key
    # model/ is the best checkpoint's, its kept triplets only: the same as the straight run's.
    assert resumed["best_checkpoint_step"] == straight["best_checkpoint_step"]
    assert _kept(run) == kept
    saved = load_file(str(run.model_dir / "adapter_model.safetensors"))
    assert saved.keys() == model.keys() and all(torch.equal(saved[k], model[k]) for k in model)


def test_a_run_too_short_for_adalora_s_schedule_is_a_config_error(tiny: Path, tmp_path: Path) -> None:
    assert schedule(AdaLoraConfig(tinit=0.1, tfinal=0.2), 100) == (10, 20)
    assert schedule(AdaLoraConfig(tinit=0.0, tfinal=0.0), 3) == (0, 1)  # tfinal: at least one step
    with pytest.raises(ConfigError, match=r"a run of 1 optimizer steps is too short for AdaLoRA's schedule"):
        _train(tmp_path / "run", tiny, "adalora", max_steps=1)


def test_ia3_rescales_keys_values_and_the_ffn_output_input(tiny: Path) -> None:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=2)
    layer = "bert.encoder.layer.0"
    assert ia3_targets(model) == ([f"{layer}.attention.self.key", f"{layer}.attention.self.value",
                                   f"{layer}.output.dense"], [f"{layer}.output.dense"])
    cfg = spec_from_dict({"train": {"method": "ia3"}}).train
    wrapped = get_method("ia3").wrap(model, cfg)
    vectors = {n: tuple(p.shape) for n, p in wrapped.named_parameters() if "ia3_l" in n}
    # Keys and values: one factor per output (16); the FFN output: one per input (its 32 inner units).
    assert sorted(vectors.values()) == [(1, 32), (16, 1), (16, 1)]


def test_ia3_cannot_train_added_tokens(tiny: Path, tmp_path: Path) -> None:
    run = RunDir(write_zh_prepared(tmp_path / "run"))  # Chinese: the tiny vocabulary is extended
    spec = spec_from_dict({"model": {"name": str(tiny), "max_length": 32},
                           "train": {"method": "ia3", "max_steps": 2, "batch_size": 8}})
    with pytest.raises(ConfigError, match="ia3 cannot train the tokens model.extend_vocab added"):
        train(spec, run, progress=False)


def test_causal_lm_targets(tmp_path: Path) -> None:
    lm = transformers.AutoModelForCausalLM.from_pretrained(build_tiny_lm(tmp_path / "lm"))
    cfg = spec_from_dict({"task": "generate", "train": {"adalora": {"init_r": 2, "target_r": 1}}}).train
    ada = get_method("adalora").wrap(lm, cfg)
    assert ada.peft_config["default"].task_type == "CAUSAL_LM"
    assert ada.peft_config["default"].target_modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"}
    lm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
    ia3 = get_method("ia3").wrap(lm, cfg).peft_config["default"]
    assert ia3.task_type == "CAUSAL_LM"
    assert {t.rsplit(".", 1)[-1] for t in ia3.target_modules} == {"k_proj", "v_proj", "down_proj"}
    assert {t.rsplit(".", 1)[-1] for t in ia3.feedforward_modules} == {"down_proj"}
    assert len(ia3.target_modules) == 3 * 2  # two layers


def _pairs(path: Path, n: int = 24) -> Path:
    words = "how do i cancel my order track refund reset password open account".split()
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            prompt = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(4 + i % 3))
            fh.write(json.dumps({"prompt": prompt, "response": "please call us thanks"}) + "\n")
    return path


@pytest.mark.parametrize("method", ["adalora", "ia3"])
def test_a_generative_run_loads_merged_with_the_trained_logits(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = build_tiny_lm(tmp_path / "lm")
    seen: dict[str, Any] = {}
    factory = METHODS[method]

    class Capture:  # the registered method, keeping the model it saves
        def __init__(self) -> None:
            self.method = factory()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.method, name)

        def save(self, model: torch.nn.Module, out_dir: Path) -> None:
            seen["model"] = model
            self.method.save(model, out_dir)

    monkeypatch.setitem(METHODS, method, Capture)
    spec = load_spec(None, ["task=generate", f"model.name={lm}", f"data.path={_pairs(tmp_path / 'pairs.jsonl')}",
                            "model.max_length=48", "train.batch_size=4", "train.max_steps=4", "train.threads=1",
                            "train.learning_rate=0.01", "train.precision=fp32", "train.early_stopping_patience=null",
                            f"train.method={method}", "train.adalora.init_r=2", "train.adalora.target_r=1",
                            "train.adalora.delta_t=1"])
    run, _ = prepare_run(spec, tmp_path / "run")
    train(spec, run, progress=False)
    generator = load_generator(run)
    ids = torch.tensor([[2, 6, 13, 14, 15, 16, 3]])
    with torch.no_grad():
        merged = generator.model(input_ids=ids).logits  # type: ignore[attr-defined]
        trained = seen["model"].eval()(input_ids=ids).logits
    torch.testing.assert_close(merged, trained, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.adalora.init_rank=4"], "Unknown key 'train.adalora.init_rank'. Did you mean 'init_r'?"),
    (["train.adalora.tfinall=0.1"], "Unknown key 'train.adalora.tfinall'. Did you mean 'tfinal'?"),
    (["train.ia3.target_module=[key]"], "Unknown key 'train.ia3.target_module'. Did you mean 'target_modules'?"),
    (["train.adalora.init_r=4", "train.adalora.target_r=6"], "train.adalora.target_r must be in [1, init_r = 4], got 6."),
    (["train.adalora.tinit=0.5", "train.adalora.tfinal=0.5"], "train.adalora.tinit + tfinal must be below 1"),
    (["train.adalora.tinit=1.5"], "train.adalora.tinit must be a fraction of the steps in [0, 1), got 1.5."),
    (["train.adalora.beta1=1.0"], "train.adalora.beta1 must be in (0, 1), got 1.0."),
    (["train.adalora.delta_t=0"], "train.adalora.delta_t must be at least 1, got 0."),
    (["train.adalora.orth_reg_weight=-1"], "train.adalora.orth_reg_weight must be >= 0, got -1.0."),
    (["train.ia3.feedforward_modules=[dense]"], "train.ia3.feedforward_modules is set but train.ia3.target_modules"),
    (["train.ia3.target_modules=[key]", "train.ia3.feedforward_modules=[dense]"],
     "train.ia3.feedforward_modules must be some of train.ia3.target_modules; not there: ['dense']."),
])
def test_section_checks_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec(None, overrides)
    assert any(message in problem for problem in info.value.problems), info.value.problems


def test_adalora_trains_the_tokens_extend_vocab_added(tiny: Path, tmp_path: Path) -> None:
    run = RunDir(write_zh_prepared(tmp_path / "run"))  # Chinese: the tiny vocabulary is extended
    spec = spec_from_dict({"model": {"name": str(tiny), "max_length": 32}, "train": {
        "method": "adalora", "max_steps": 4, "batch_size": 8, "precision": "fp32", "threads": 1,
        "early_stopping_patience": None, "adalora": {"init_r": 2, "target_r": 1, "delta_t": 1}}})
    summary = train(spec, run, progress=False)
    added = summary["readability"]["extension"]["added"]
    weights = load_file(str(run.model_dir / "adapter_model.safetensors"))
    # As with LoRA: the new rows train as a delta in the adapter, not a copy of the whole matrix.
    delta = weights["base_model.model.bert.embeddings.word_embeddings.token_adapter.trainable_tokens_delta"]
    assert added > 0 and delta.shape == (added, 16) and bool(delta.abs().sum() > 0)
    assert not [k for k in weights if k.endswith("word_embeddings.weight")]
