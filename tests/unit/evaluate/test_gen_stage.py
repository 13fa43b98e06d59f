"""evaluate_generation on a tiny causal LM run built in the test: metrics.json, baselines, report, card."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests._gen_runs import build_peaky_lm
from tests._tiny_lm import build_tiny_lm

from lmforge.config import spec_from_dict
from lmforge.errors import DataError, RunDirError
from lmforge.evaluate import BLOCK_KEYS, evaluate_generation, is_generative_run, perplexity
from lmforge.predict import load_generator, render_prompt
from lmforge.rundir import RunDir

SYSTEM = "you are a helpful bot"
TRAIN = [
    {"prompt": "how do i cancel my order", "response": "please call us to cancel"},
    {"prompt": "track my refund", "response": "your refund is open"},
    {"prompt": "reset my account password", "response": "reset it please"},
    {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hello how do i help"}]},
]
TEST = [
    {"prompt": "cancel my order please", "response": "please call us <script>alert(1)</script>"},
    {"messages": [{"role": "user", "content": "my refund"}, {"role": "assistant", "content": "your refund is open"}]},
    {"prompt": "password reset", "response": "yes"},
]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("base") / "tiny", seed=0)


def _make_run(root: Path, base: Path, *, test: list[dict[str, Any]] = TEST) -> RunDir:
    """A generative run: a "fine-tuned" tiny LM in model/, its base, and the splits.

    The fine-tuned stand-in is the decisive ("peaky") tiny LM of seed 3: with the system prompt and
    6 new tokens it ends the first and third test answers itself and runs the second to the limit.
    """
    run = RunDir(root)
    build_peaky_lm(run.model_dir, seed=3)
    meta = {"kind": "causal-lm", "format": "transformers", "base_model": str(base), "base_model_path": str(base),
            "max_length": 256, "system": SYSTEM}
    (run.model_dir / "lmforge_model.json").write_text(json.dumps(meta), encoding="utf-8")
    _write_jsonl(run.split_path("train"), TRAIN)
    _write_jsonl(run.split_path("val"), TRAIN[:1])
    _write_jsonl(run.split_path("test"), test)
    return run


def _spec(**evaluate: Any) -> Any:
    return spec_from_dict({"name": "tiny-gen", "task": "generate", "data": {"system": SYSTEM},
                           "evaluate": {"max_new_tokens": 6, "batch_size": 2, **evaluate}})


@pytest.fixture(scope="module")
def evaluated(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, dict[str, Any]]:
    run = _make_run(tmp_path_factory.mktemp("gen") / "run", base_model)
    return run, evaluate_generation(_spec(), run, progress=False)


def test_metrics_json_has_the_exact_keys_and_both_baselines(evaluated: tuple[RunDir, dict[str, Any]]) -> None:
    run, metrics = evaluated
    on_disk = json.loads((run.eval_dir / "metrics.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(metrics))
    assert set(on_disk) == {*BLOCK_KEYS, "baselines", "generation"}
    assert set(BLOCK_KEYS) == {"bleu", "chrf", "exact_match", "mean_length", "n_test", "perplexity", "pii",
                               "rouge_l", "stop_rate"}
    assert set(on_disk["baselines"]) == {"base_model", "retrieval"}
    for block in (on_disk, *on_disk["baselines"].values()):
        assert set(block) - {"baselines", "generation"} == set(BLOCK_KEYS)
        assert block["n_test"] == 3
        assert set(block["mean_length"]) == {"tokens", "words"}
        assert set(block["pii"]) == {"n_texts", "texts_with_pii", "share_with_pii", "counts"}
    assert on_disk["generation"] == {"max_new_tokens": 6, "temperature": 0.0, "max_test": None, "n_test_split": 3}
    nearest = on_disk["baselines"]["retrieval"]
    assert nearest["perplexity"] is None and nearest["stop_rate"] == 1.0
    assert on_disk["perplexity"] > 1 and on_disk["baselines"]["base_model"]["perplexity"] > 1
    assert on_disk["perplexity"] != on_disk["baselines"]["base_model"]["perplexity"]  # two different models
    manifest = run.read_manifest()
    assert {k: manifest["metrics"][k] for k in ("rouge_l", "perplexity", "stop_rate", "n_test")} == {
        k: on_disk[k] for k in ("rouge_l", "perplexity", "stop_rate", "n_test")}


def test_retrieval_baseline_answers_with_the_nearest_training_response(
        evaluated: tuple[RunDir, dict[str, Any]]) -> None:
    run, metrics = evaluated
    rows = [json.loads(line) for line in (run.eval_dir / "generations.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["retrieval"] for r in rows] == ["please call us to cancel", "your refund is open", "reset it please"]
    assert [r["prompt"] for r in rows] == ["cancel my order please", "my refund", "password reset"]
    # the second test answer is exactly its reference: exact match 1/3, and its ROUGE-L is 1
    assert metrics["baselines"]["retrieval"]["exact_match"] == pytest.approx(1 / 3)
    assert [r["finish_reason"] for r in rows] == ["stop", "length", "stop"]
    assert metrics["stop_rate"] == pytest.approx(2 / 3)


def test_generated_answers_are_the_generators_own_greedy_answers(
        evaluated: tuple[RunDir, dict[str, Any]]) -> None:
    run, _ = evaluated
    rows = [json.loads(line) for line in (run.eval_dir / "generations.jsonl").read_text(encoding="utf-8").splitlines()]
    generator = load_generator(run.root)
    prompts = ["cancel my order please", [{"role": "user", "content": "my refund"}], "password reset"]
    expected = generator.generate(prompts, max_new_tokens=6, temperature=0.0)
    assert [r["generated"] for r in rows] == [g.text for g in expected]


def test_perplexity_equals_a_hand_computation_on_the_tiny_model(
        evaluated: tuple[RunDir, dict[str, Any]]) -> None:
    import torch
    import transformers

    run, metrics = evaluated
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(run.model_dir, use_safetensors=True).eval()
    pairs = [("cancel my order please", "please call us <script>alert(1)</script>"),
             ([{"role": "user", "content": "my refund"}], "your refund is open"), ("password reset", "yes")]
    total, count = 0.0, 0
    for prompt, response in pairs:
        prefix = tokenizer(render_prompt(tokenizer, prompt, SYSTEM), add_special_tokens=False)["input_ids"]
        answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([prefix + answer])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        for k, token in enumerate(answer):
            total += float(logp[len(prefix) + k - 1, token])
        count += len(answer)
    assert metrics["perplexity"] == pytest.approx(math.exp(-total / count), rel=1e-5)
    assert perplexity([(total, count)]) == pytest.approx(metrics["perplexity"], rel=1e-5)


def test_report_and_card_show_the_side_by_side_rows_escaped(evaluated: tuple[RunDir, dict[str, Any]]) -> None:
    run, _ = evaluated
    page = (run.eval_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page
    assert "please call us &lt;script&gt;alert(1)&lt;/script&gt;" in page
    samples = page.split('<table class="samples">', 1)[1].split("</table>", 1)[0]
    assert samples.count("<tr>") == 4  # header + 3 examples
    assert samples.count("(cut at max_new_tokens)") == 1
    for prompt in ("cancel my order please", "my refund", "password reset"):
        assert f'<td class="text">{prompt}</td>' in samples
    card = run.model_card_path.read_text(encoding="utf-8")
    assert "| Metric | Fine-tuned | Base model | Retrieval |" in card
    assert f'System prompt: "{SYSTEM}".' in card


def test_max_test_caps_the_examples(base_model: Path, tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", base_model)
    metrics = evaluate_generation(_spec(max_test=2, max_new_tokens=2), run, progress=False)
    assert metrics["n_test"] == 2 and metrics["baselines"]["base_model"]["n_test"] == 2
    assert metrics["generation"] == {"max_new_tokens": 2, "temperature": 0.0, "max_test": 2, "n_test_split": 3}


def test_task_comes_from_the_spec_or_the_models_kind(base_model: Path, tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", base_model)
    assert is_generative_run(_spec(), run)
    unset = spec_from_dict({"name": "x"})
    assert is_generative_run(unset, run)  # kind: causal-lm
    shutil.rmtree(run.model_dir)
    assert not is_generative_run(unset, run)
    assert not is_generative_run(spec_from_dict({"name": "x", "task": "classify"}), run)


def test_empty_or_malformed_test_split_is_a_data_error(base_model: Path, tmp_path: Path) -> None:
    run = _make_run(tmp_path / "empty", base_model, test=[])
    with pytest.raises(DataError, match="is empty, so there is nothing to evaluate"):
        evaluate_generation(_spec(), run, progress=False)
    run = _make_run(tmp_path / "bad", base_model, test=[{"prompt": "x"}, {"text": "y", "label": "z"}])
    with pytest.raises(RunDirError, match=r"test.jsonl has 2 malformed lines: line 1: expected .*; line 2: "):
        evaluate_generation(_spec(), run, progress=False)


def test_cli_evaluate_dispatches_on_the_task_and_prints_the_baselines(
        base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.cli.__main__ import main
    from lmforge.config import spec_to_yaml

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LMFORGE_AUTO_SIGN", "0")
    run = _make_run(tmp_path / "run", base_model)
    run.spec_path.write_text(spec_to_yaml(_spec()), encoding="utf-8")
    run.update_manifest(spec={"name": "tiny-gen"})
    spec_before = run.spec_path.read_bytes()
    assert main(["evaluate", str(run.root), "--allow-unsigned", "--no-progress", "--set", "data.system=x"]) == 2
    assert "`lmforge evaluate --set` takes evaluate.* keys only, got data.system=x." in capsys.readouterr().err
    assert not run.eval_dir.exists()
    assert main(["evaluate", str(run.root), "--allow-unsigned", "--no-progress",
                 "--set", "evaluate.max_new_tokens=3"]) == 0
    assert run.spec_path.read_bytes() == spec_before  # the override applies to this evaluation only
    metrics = json.loads((run.eval_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["generation"]["max_new_tokens"] == 3
    base, nearest = metrics["baselines"]["base_model"], metrics["baselines"]["retrieval"]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test: "))
    assert line == (
        f"test: ROUGE-L {metrics['rouge_l']:.4f}  perplexity {metrics['perplexity']:.3f}  stop rate "
        f"{metrics['stop_rate']:.1%}  (n_test=3); base model: ROUGE-L {base['rouge_l']:.4f}  perplexity "
        f"{base['perplexity']:.3f}  stop rate {base['stop_rate']:.1%}; retrieval: ROUGE-L {nearest['rouge_l']:.4f}  "
        "perplexity n/a  stop rate 100.0%"
    )


@pytest.mark.slow
def test_lmforge_run_with_task_generate_ends_with_the_evaluation(
        base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.cli.__main__ import main

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LMFORGE_AUTO_SIGN", "0")
    words = ["cancel my order", "track my refund", "reset my password", "open my account", "call us"]
    pairs = [{"prompt": f"how do i {w} {i}", "response": f"please {w}"} for i in range(6) for w in words]
    data = tmp_path / "qa.jsonl"
    _write_jsonl(data, pairs)
    sets = ["task=generate", f"model.name={base_model}", f"data.path={data}", "data.dedupe=false",
            "train.max_steps=2", "train.batch_size=4", "evaluate.max_new_tokens=3", "evaluate.max_test=3"]
    out = tmp_path / "run"
    assert main(["run", *[a for s in sets for a in ("--set", s)], "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics) == {*BLOCK_KEYS, "baselines", "generation"} and metrics["n_test"] == 3
    assert any(line.startswith("test: ROUGE-L ") for line in capsys.readouterr().out.splitlines())
    assert {p.name for p in (out / "eval").iterdir()} == {"metrics.json", "generations.jsonl", "report.html"}
    assert (out / "MODEL_CARD.md").read_text(encoding="utf-8").startswith("# Model card: ")
